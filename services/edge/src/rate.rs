//! Per-account submit rate on this pod: a token bucket shared by the account's sessions.
//!
//! Checked once per read batch (`take` asks for as many tokens as there are submits),
//! so the mutex is taken once per batch rather than once per PDU.

use std::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    configured: u32,
    per_second: f64,
    /// Bucket size: one second of traffic, so a burst never exceeds the configured rate
    /// over any whole second.
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `per_second` = 0 means unlimited.
    pub fn new(configured: u32) -> Self {
        let per_second = f64::from(configured);
        Self {
            configured,
            per_second,
            burst: per_second.max(1.0),
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    /// The configured rate (0 = unlimited).
    pub fn per_second(&self) -> u32 {
        self.configured
    }

    pub fn unlimited(&self) -> bool {
        self.per_second == 0.0
    }

    /// The bucket, locked, with what it earned since it was last taken from.
    fn refilled(&self) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1);
        s.0 = (s.0 + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        s.1 = now;
        s
    }

    /// Takes up to `want` tokens and returns how many were granted.
    pub fn take(&self, want: u32) -> u32 {
        if self.unlimited() || want == 0 {
            return want;
        }
        let mut s = self.refilled();
        let granted = (s.0.floor() as u32).min(want);
        s.0 -= f64::from(granted);
        granted
    }

    /// Takes `want` tokens or none: an HTTP request is accepted or refused whole. A
    /// request larger than the bucket passes once the bucket is full and leaves it in
    /// debt, so such requests still average out at the configured rate.
    pub fn take_all(&self, want: u32) -> bool {
        if self.unlimited() || want == 0 {
            return true;
        }
        let mut s = self.refilled();
        let want = f64::from(want);
        if s.0 < want.min(self.burst) {
            return false;
        }
        s.0 -= want;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn grants_the_rate_and_refills() {
        let r = RateLimiter::new(10);
        assert_eq!(r.take(25), 10, "a second's worth of burst");
        assert_eq!(r.take(1), 0);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(r.take(25), 5);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(r.take(25), 10, "never more than the burst");
    }

    #[tokio::test(start_paused = true)]
    async fn take_all_is_whole_and_a_request_past_the_burst_leaves_a_debt() {
        let r = RateLimiter::new(10);
        assert!(r.take_all(4));
        assert!(!r.take_all(7), "6 left: none of the 7 taken");
        assert!(r.take_all(6));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(r.take_all(25), "a full bucket lets a larger request through");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!r.take_all(1), "15 in debt, 10 refilled");
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(r.take_all(1), "paid off");
    }

    #[test]
    fn zero_is_unlimited() {
        let r = RateLimiter::new(0);
        assert_eq!(r.take(1_000_000), 1_000_000);
    }
}
