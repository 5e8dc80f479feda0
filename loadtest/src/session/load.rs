//! What the session sends, and when: iterations started as the scenario's executor
//! allows (closed loop, shared budget, arrival rate), and the phases from waiting for
//! the startTime to the unbind.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::state::{Phase, ScenarioRun, Session, Slot, put};
use super::{IDLE_TICK, UNBIND_WAIT};

impl Session {
    /// Starts one iteration of kind `k`: its submits go into the write buffer.
    fn start_iteration(&mut self, sc: &ScenarioRun, k: usize, iteration: u64, now_ns: u64) {
        let t = &sc.templates;
        let receipt = t.wants_receipt(&mut self.rng);
        let first = self.wbuf.len();
        let parts = t.parts(k);
        for p in 0..parts {
            let seq = self.alloc_seq();
            self.ring[seq as usize & self.mask] = Slot { seq, receipt, t_ns: now_ns };
            let first = (p > 0).then_some(first);
            t.write(k, p, &mut self.wbuf, seq, iteration, receipt, first, &mut self.rng);
        }
        self.in_flight += parts;
        self.stats.submits += parts as u64;
        self.stats.iterations += 1;
    }

    /// Fills the window as the executor allows. Returns when the next arrival falls
    /// due (ns since the start of the run), for the arrival-rate executors.
    fn generate(&mut self, now_ns: u64) -> Option<u64> {
        let vu = self.vu?;
        // One clone per batch, not per message: the count is shared by every session.
        let sc = Arc::clone(&self.sc);
        let window = sc.window;
        match &sc.schedule {
            // One kind of one part, no shared budget: the window's free slots in one go.
            None if sc.budget.is_none() && sc.templates.is_single() => {
                let free = window.saturating_sub(self.in_flight);
                let t = &sc.templates;
                self.wbuf.reserve(free * t.single_len());
                for _ in 0..free {
                    let seq = self.alloc_seq();
                    let receipt = t.wants_receipt(&mut self.rng);
                    self.ring[seq as usize & self.mask] = Slot { seq, receipt, t_ns: now_ns };
                    let iteration = self.taken * sc.vus as u64 + vu as u64;
                    self.taken += 1;
                    t.write_single(&mut self.wbuf, seq, iteration, receipt, &mut self.rng);
                }
                self.in_flight += free;
                self.stats.submits += free as u64;
                self.stats.iterations += free as u64;
                None
            }
            None => loop {
                let k = *self.next_kind.get_or_insert_with(|| sc.templates.pick(&mut self.rng));
                if self.in_flight + sc.templates.parts(k) > window {
                    return None;
                }
                if let Some(budget) = &sc.budget
                    && self.claimed == 0
                {
                    // Claim a window's worth at a time, so sessions rarely touch the atomic.
                    let want = window as i64;
                    let got = budget
                        .fetch_update(Relaxed, Relaxed, |left| {
                            (left > 0).then(|| left - left.min(want))
                        })
                        .map_or(0, |left| left.min(want));
                    if got == 0 {
                        return None;
                    }
                    self.claimed = got as u64;
                }
                self.claimed = self.claimed.saturating_sub(1);
                self.next_kind = None;
                let iteration = self.taken * sc.vus as u64 + vu as u64;
                self.taken += 1;
                self.start_iteration(&sc, k, iteration, now_ns);
            },
            Some(schedule) => {
                let t = Duration::from_nanos(now_ns.saturating_sub(sc.start_ns));
                let due = schedule.due_for(t, vu, sc.vus);
                while self.taken < due {
                    let k = *self.next_kind.get_or_insert_with(|| sc.templates.pick(&mut self.rng));
                    if self.in_flight + sc.templates.parts(k) > window {
                        // No free slot in the window: like k6 with no idle VU, the
                        // iterations due now are dropped rather than queued.
                        self.stats.dropped_iterations += due - self.taken;
                        self.taken = due;
                        break;
                    }
                    self.next_kind = None;
                    let iteration = self.taken * sc.vus as u64 + vu as u64;
                    self.taken += 1;
                    self.start_iteration(&sc, k, iteration, now_ns);
                }
                schedule.next_for(self.taken, vu, sc.vus).map(|d| sc.start_ns + d.as_nanos() as u64)
            }
        }
    }

    /// Whether the load phase is over for this session.
    fn load_over(&self, now_ns: u64) -> bool {
        if self.shared.abort.is_cancelled() || now_ns >= self.sc.end_ns {
            return true;
        }
        match (&self.sc.budget, &self.sc.schedule) {
            (Some(b), _) => self.claimed == 0 && b.load(Relaxed) <= 0,
            (None, Some(s)) => {
                self.vu.is_some_and(|vu| s.next_for(self.taken, vu, self.sc.vus).is_none())
            }
            (None, None) => false,
        }
    }

    /// Moves the session through its phases; returns the next time it must look.
    pub(super) fn step(&mut self, now_ns: u64) -> u64 {
        let mut wake = now_ns + IDLE_TICK.as_nanos() as u64;
        if self.phase == Phase::Waiting {
            if now_ns >= self.sc.start_ns {
                self.phase = Phase::Load;
                self.stats.load_start_ns = self.sc.start_ns;
            } else {
                wake = wake.min(self.sc.start_ns);
            }
        }
        if self.phase == Phase::Load {
            if self.load_over(now_ns) {
                if self.sc.schedule.is_some() && !self.shared.abort.is_cancelled() {
                    // Iterations due up to the very end (the last one falls due at it).
                    self.generate(now_ns.min(self.sc.end_ns));
                }
                self.stats.load_end_ns = now_ns.min(self.sc.end_ns);
                if let Some(b) = &self.sc.budget {
                    b.fetch_add(std::mem::take(&mut self.claimed) as i64, Relaxed);
                }
                self.phase = Phase::Draining { until: now_ns + self.sc.graceful_ns };
            } else {
                if let Some(due) = self.generate(now_ns) {
                    wake = wake.min(due);
                }
                wake = wake.min(self.sc.end_ns);
            }
        }
        if let Phase::Draining { until } = self.phase {
            if self.in_flight == 0 || self.shared.stop.is_cancelled() {
                self.phase = Phase::Done;
            } else if now_ns >= until {
                self.abandon();
                self.phase = Phase::Done;
            } else {
                wake = wake.min(until);
            }
        }
        if self.phase == Phase::Done && !self.live.drained.load(Relaxed) {
            self.live.drained.store(true, Relaxed);
        }
        if self.shared.stop.is_cancelled() && self.unbind_seq.is_none() && !self.closed {
            if self.phase != Phase::Done {
                self.abandon();
                self.phase = Phase::Done;
            }
            let seq = self.plain_seq();
            put(&mut self.wbuf, &self.canned.unbind, seq);
            self.unbind_seq = Some(seq);
            self.unbind_deadline = Some(now_ns + UNBIND_WAIT.as_nanos() as u64);
        }
        if let Some(d) = self.unbind_deadline {
            wake = wake.min(d);
        }
        wake
    }
}
