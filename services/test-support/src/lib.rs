//! Helpers the SMSC's tests share. A dev-dependency only: nothing here ships.
//!
//! - [`eventually`] / [`eventually_some`]: poll for state another task writes.
//! - [`engines`]: private Apache Kafka brokers (and a CQL node) for tests that break them.
//! - [`tls`]: a CA, certificates signed by it, and a server that demands a client certificate.
#![forbid(unsafe_code)]

use std::future::Future;
use std::time::Duration;

pub mod engines;
pub mod tls;

/// Polls `check` until it holds; fails the test naming `what` after `limit` (tokio time,
/// so a test on paused time waits nothing).
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(what, limit, || {
        let held = check();
        async move { held.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it gives a value; fails the test naming `what` after `limit`.
pub async fn eventually_some<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polled = tokio::time::timeout(limit, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    polled.unwrap_or_else(|_| panic!("never happened within {limit:?}: {what}"))
}
