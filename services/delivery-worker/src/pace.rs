//! Outbound rate limits: a connector's `rate` and a route's (`routing.mt[].rate`, which
//! the router puts on each task), messages per second from this worker toward the
//! network. Paced, never refused: a message waits for its turn, before the
//! worker claims it, so one waiting is still ENROUTE (a crash meanwhile hands nothing
//! over and loses nothing) and the hop that falls behind slows the accounts crowding
//! it at the edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use smsc_store::StoredMessage;
use tokio::time::Instant;

use crate::connector::{Connector, ConnectorContext, Outcome};

/// Turns spaced `1 / rate` apart, given in the order they are asked for.
#[derive(Debug)]
pub struct Pace {
    rate: u32,
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pace {
    /// `None` for 0: unlimited.
    pub fn per_second(rate: u32) -> Option<Pace> {
        (rate > 0).then(|| Pace {
            rate,
            interval: Duration::from_secs(1) / rate,
            next: Mutex::new(Instant::now()),
        })
    }

    /// Waits for this caller's turn. A caller that gives up (shutdown) leaves its turn
    /// unused: the rate is a ceiling.
    pub async fn turn(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The routes' paces by name, each at the rate its latest task carried (a route whose
/// rate changed in the router's config starts a new pace).
#[derive(Debug, Default)]
pub struct RoutePaces(Mutex<HashMap<String, Arc<Pace>>>);

impl RoutePaces {
    /// The pace of route `name` at `rate`; `None` for 0: unlimited.
    pub fn get(&self, name: &str, rate: u32) -> Option<Arc<Pace>> {
        if rate == 0 {
            return None;
        }
        let mut paces = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match paces.get(name) {
            Some(pace) if pace.rate == rate => Some(pace.clone()),
            _ => {
                let pace = Arc::new(Pace::per_second(rate)?);
                paces.insert(name.to_owned(), pace.clone());
                Some(pace)
            }
        }
    }
}

/// A connector with a `rate`.
#[derive(Debug)]
pub struct Paced {
    inner: Arc<dyn Connector>,
    pace: Pace,
}

impl Paced {
    /// `inner` at most `rate` messages per second; unchanged for 0.
    pub fn wrap(inner: Arc<dyn Connector>, rate: u32) -> Arc<dyn Connector> {
        match Pace::per_second(rate) {
            Some(pace) => Arc::new(Paced { inner, pace }),
            None => inner,
        }
    }
}

impl Connector for Paced {
    fn deliver<'a>(&'a self, message: &'a StoredMessage, attempt: u32) -> BoxFuture<'a, Outcome> {
        self.inner.deliver(message, attempt)
    }

    fn start(&self, ctx: ConnectorContext) {
        self.inner.start(ctx);
    }

    fn pace(&self) -> Option<&Pace> {
        Some(&self.pace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_by_the_rate_in_the_order_asked() {
        let pace = Arc::new(Pace::per_second(10).expect("limited"));
        let start = Instant::now();
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let pace = pace.clone();
            waiting.push(tokio::spawn(async move {
                pace.turn().await;
                Instant::now()
            }));
        }
        let mut at = Vec::new();
        for w in waiting {
            at.push(w.await.expect("turn") - start);
        }
        let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 100, 200, 300, 400]);
        // Idle for a while: the next turn is at once, not a burst of the turns missed.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = Instant::now();
        pace.turn().await;
        pace.turn().await;
        assert_eq!((Instant::now() - before).as_millis(), 100);
    }

    #[test]
    fn zero_is_unlimited() {
        assert!(Pace::per_second(0).is_none());
        assert!(RoutePaces::default().get("uk", 0).is_none());
    }

    #[test]
    fn a_route_keeps_its_pace_until_its_rate_changes() {
        let routes = RoutePaces::default();
        let uk = routes.get("uk", 10).expect("limited");
        assert!(Arc::ptr_eq(&uk, &routes.get("uk", 10).expect("limited")), "one pace per route");
        assert!(!Arc::ptr_eq(&uk, &routes.get("fr", 10).expect("limited")), "another route");
        let changed = routes.get("uk", 20).expect("limited");
        assert_eq!(changed.interval, Duration::from_millis(50), "the new rate");
    }
}
