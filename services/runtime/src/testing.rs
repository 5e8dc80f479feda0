//! What the Bus and Store contract suites share (feature `testing`): time under the
//! test's control and names no other run uses.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;

use crate::clock::ManualClock;

/// Time as the implementation under test sees it.
pub trait TimeControl: Send + Sync {
    fn now(&self) -> SystemTime;

    /// Lets `by` pass for the implementation under test.
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()>;
}

/// Wall-clock time: `advance` sleeps. For implementations whose clock cannot be
/// injected (Kafka, ScyllaDB).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealTime;

impl TimeControl for RealTime {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(by))
    }
}

/// A [`ManualClock`] shared with the implementation under test, moved together with
/// tokio's time: `advance` moves the clock, then sleeps `by`, which is instant under
/// `tokio::time::pause()` and wakes whatever waits on a tokio timer for that long.
#[derive(Debug, Clone)]
pub struct ManualTime {
    clock: Arc<ManualClock>,
}

impl ManualTime {
    pub fn new(clock: Arc<ManualClock>) -> Self {
        Self { clock }
    }

    pub fn clock(&self) -> &Arc<ManualClock> {
        &self.clock
    }
}

impl TimeControl for ManualTime {
    fn now(&self) -> SystemTime {
        let ms = crate::clock::Clock::now_ms(&*self.clock);
        let offset = Duration::from_millis(ms.unsigned_abs());
        let at =
            if ms >= 0 { UNIX_EPOCH.checked_add(offset) } else { UNIX_EPOCH.checked_sub(offset) };
        at.unwrap_or(UNIX_EPOCH)
    }

    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.clock.advance(by);
            tokio::time::sleep(by).await;
        })
    }
}

/// A name no other run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
