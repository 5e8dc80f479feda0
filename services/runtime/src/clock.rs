//! Time as the store and the embedded bus see it: the system clock, or a manual one
//! that tests move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// Time as the store sees it; tests inject a manual clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> UnixMillis;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map(|d| d.as_millis() as UnixMillis).unwrap_or(0)
    }
}

/// A clock that moves only when told to: tests drive TTLs and delays with it.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: UnixMillis) -> Self {
        Self { now_ms: AtomicI64::new(now_ms) }
    }

    pub fn set(&self, now_ms: UnixMillis) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = UnixMillis::try_from(by.as_millis()).unwrap_or(UnixMillis::MAX);
        // The closure always returns Some, so this cannot fail.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(by)));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMillis {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// The instant `delay` after `now` (Unix milliseconds of a [`Clock`]): when a bus record
/// held back by that much is due. A `now` before the epoch counts as the epoch.
pub fn after(now: UnixMillis, delay: Duration) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0)) + delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_adds_the_delay_to_the_clock_s_milliseconds() {
        let at = after(1_700_000_000_123, Duration::from_secs(10));
        let ms = at.duration_since(std::time::UNIX_EPOCH).expect("after the epoch").as_millis();
        assert_eq!(ms, 1_700_000_010_123);
        assert_eq!(after(-5, Duration::ZERO), std::time::UNIX_EPOCH);
    }
}
