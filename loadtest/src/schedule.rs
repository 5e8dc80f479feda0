//! k6's executors as pure functions of time, so the timing can be tested without a
//! clock.
//!
//! Closed-loop executors (`constant-vus`, `shared-iterations`) have no schedule: each
//! session keeps its window full. The arrival-rate executors start iteration `n`
//! (counting from 1) at the moment the integral of the rate reaches `n`; [`Schedule::due`]
//! gives how many are due by a time, and [`Schedule::time_of`] when one falls due.
//! Iterations are dealt round-robin to the scenario's sessions: session `i` of `n` owns
//! the iterations whose 0-based index is `i` modulo `n`.

use std::time::Duration;

/// One stage of `ramping-arrival-rate`: the rate moves linearly to `target` (iterations
/// per second) over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// When iterations start, for the arrival-rate executors.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Rate (iterations per second) at time 0.
    start: f64,
    /// Consecutive linear segments.
    stages: Vec<Stage>,
}

/// Guards `floor` against 9.999999 where the exact integral is 10 (relative to the
/// integral: f64 keeps about 16 digits).
const EPSILON: f64 = 1e-9;

fn floor(x: f64) -> u64 {
    (x + EPSILON * x.abs().max(1.0)).floor() as u64
}

/// Seconds to a Duration, rounded up to the nanosecond, so that an iteration is due
/// at the time [`Schedule::time_of`] gives, never a nanosecond later.
fn ceil_secs(s: f64) -> Duration {
    Duration::from_nanos((s * 1e9).ceil() as u64)
}

impl Schedule {
    /// `constant-arrival-rate`: `per_second` for `duration`.
    pub fn constant(per_second: f64, duration: Duration) -> Self {
        Self { start: per_second, stages: vec![Stage { duration, target: per_second }] }
    }

    /// `ramping-arrival-rate`: from `start` per second, through each stage.
    pub fn ramping(start: f64, stages: Vec<Stage>) -> Self {
        Self { start, stages }
    }

    /// The length of the schedule: the sum of its stages.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The rate (per second) at `t`; 0 after the end.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let mut from = self.start;
        let mut left = t.as_secs_f64();
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            if left < d {
                return from + (s.target - from) * left / d;
            }
            left -= d;
            from = s.target;
        }
        0.0
    }

    /// The integral of the rate from 0 to `t` (the end of the schedule at most).
    pub fn integral(&self, t: Duration) -> f64 {
        let mut from = self.start;
        let mut left = t.as_secs_f64();
        let mut total = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let span = left.min(d);
            if span > 0.0 {
                let slope = if d > 0.0 { (s.target - from) / d } else { 0.0 };
                total += from * span + slope * span * span / 2.0;
            }
            left -= span;
            if left <= 0.0 {
                break;
            }
            from = s.target;
        }
        total
    }

    /// Iterations due by `t` over the whole scenario.
    pub fn due(&self, t: Duration) -> u64 {
        floor(self.integral(t))
    }

    /// Every iteration of the schedule.
    pub fn total(&self) -> u64 {
        self.due(self.duration())
    }

    /// Iterations due by `t` for session `index` of `sessions`.
    pub fn due_for(&self, t: Duration, index: usize, sessions: usize) -> u64 {
        share(self.due(t), index, sessions)
    }

    /// When the iteration with 0-based index `k` falls due (the integral reaches
    /// `k + 1`); `None` if the schedule ends first.
    pub fn time_of(&self, k: u64) -> Option<Duration> {
        let goal = k as f64 + 1.0;
        let mut from = self.start;
        let mut at = 0.0;
        let mut reached = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let slope = if d > 0.0 { (s.target - from) / d } else { 0.0 };
            let area = from * d + slope * d * d / 2.0;
            if floor(reached + area) >= goal as u64 {
                // Solve from*τ + slope*τ²/2 = need for the smallest τ ≥ 0, in the form
                // that stays exact when slope is 0 or negative.
                let need = (goal - reached).max(0.0);
                let disc = (from * from + 2.0 * slope * need).max(0.0);
                let denom = from + disc.sqrt();
                let tau = if denom > 0.0 { 2.0 * need / denom } else { 0.0 };
                return Some(ceil_secs(at + tau.min(d)));
            }
            reached += area;
            at += d;
            from = s.target;
        }
        None
    }

    /// When the next iteration of session `index` of `sessions` falls due, given that
    /// it has taken (started or dropped) `taken` so far.
    pub fn next_for(&self, taken: u64, index: usize, sessions: usize) -> Option<Duration> {
        self.time_of(taken * sessions as u64 + index as u64)
    }
}

/// How many of the first `due` iterations (dealt round-robin) belong to session `index`
/// of `sessions`.
pub fn share(due: u64, index: usize, sessions: usize) -> u64 {
    let (n, i) = (sessions.max(1) as u64, index as u64);
    (due + n - 1 - i.min(n - 1)) / n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn constant_rate_starts_one_every_period() {
        let c = Schedule::constant(10.0, s(1.0));
        assert_eq!(c.due(s(0.0)), 0);
        assert_eq!(c.due(s(0.099)), 0);
        assert_eq!(c.due(s(0.1)), 1);
        assert_eq!(c.due(s(0.55)), 5);
        assert_eq!(c.due(s(1.0)), 10);
        assert_eq!(c.due(s(7.0)), 10, "nothing after the end");
        assert_eq!(c.total(), 10);
        assert_eq!(c.time_of(0), Some(s(0.1)));
        assert_eq!(c.time_of(9), Some(s(1.0)));
        assert_eq!(c.time_of(10), None);
        // 30 000/s for 10 s: 300 000 exactly, and none lost to rounding at each step.
        let big = Schedule::constant(30_000.0, s(10.0));
        assert_eq!(big.total(), 300_000);
        for k in [0u64, 1, 12_345, 299_999] {
            let t = big.time_of(k).expect("within the schedule");
            assert_eq!(big.due(t), k + 1, "iteration {k} is due at its own time");
        }
    }

    #[test]
    fn ramping_integrates_linear_stages() {
        // 0 -> 10/s over 10 s (50 iterations), hold 10/s for 5 s (50), down to 0 in 2 s (10).
        let r = Schedule::ramping(
            0.0,
            vec![
                Stage { duration: s(10.0), target: 10.0 },
                Stage { duration: s(5.0), target: 10.0 },
                Stage { duration: s(2.0), target: 0.0 },
            ],
        );
        assert_eq!(r.duration(), s(17.0));
        assert_eq!(r.rate_at(s(5.0)), 5.0);
        assert_eq!(r.rate_at(s(12.0)), 10.0);
        assert_eq!(r.rate_at(s(16.0)), 5.0);
        assert_eq!(r.rate_at(s(20.0)), 0.0);
        assert_eq!(r.due(s(2.0)), 2, "t²/2");
        assert_eq!(r.due(s(10.0)), 50);
        assert_eq!(r.due(s(15.0)), 100);
        assert_eq!(r.total(), 110);
        // The first falls due at √2 s, when t²/2 reaches 1.
        let first = r.time_of(0).expect("due").as_secs_f64();
        assert!((first - 2f64.sqrt()).abs() < 1e-6, "{first}");
        for k in 0..110 {
            let t = r.time_of(k).expect("within the schedule");
            assert_eq!(r.due(t), k + 1, "iteration {k} at {t:?}");
        }
        assert_eq!(r.time_of(110), None);
    }

    #[test]
    fn ramping_from_a_start_rate() {
        let r = Schedule::ramping(100.0, vec![Stage { duration: s(1.0), target: 300.0 }]);
        assert_eq!(r.total(), 200, "mean rate 200/s over 1 s");
        assert_eq!(r.due(s(0.5)), 75, "100*0.5 + 200*0.5²/2");
    }

    #[test]
    fn sessions_share_round_robin() {
        // 10 iterations over 3 sessions: 4, 3, 3.
        assert_eq!((share(10, 0, 3), share(10, 1, 3), share(10, 2, 3)), (4, 3, 3));
        assert_eq!((share(0, 0, 3), share(1, 0, 3), share(1, 1, 3)), (0, 1, 0));
        for due in 0..50 {
            let sum: u64 = (0..4).map(|i| share(due, i, 4)).sum();
            assert_eq!(sum, due);
        }
        let c = Schedule::constant(100.0, s(1.0));
        assert_eq!(c.due_for(s(1.0), 1, 4), 25);
        // Session 1's next iteration after taking 2 is global index 2*4+1 = 9: at 0.1 s.
        assert_eq!(c.next_for(2, 1, 4), Some(s(0.1)));
    }
}
