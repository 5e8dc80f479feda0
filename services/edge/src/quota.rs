//! Account quotas (messages per UTC day and per UTC month), shared by every edge
//! through the store.
//!
//! Each edge leases blocks of an account's remaining quota from the store
//! ([`Store::take_quota`], a compare-and-set) and spends them locally, so a submit never
//! waits for the store and the cluster together never accepts more than the quota. A
//! lease is asked for before the last one runs out; a submit that finds none yet is
//! answered ESME_RTHROTTLED (held a moment: try again), one past the quota
//! [`QUOTA_EXCEEDED`]. What an edge holds unspent when it stops goes back to the store;
//! what a killed edge held counts as used (at most one lease, a 64th of the quota, per
//! edge and period).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use smsc_accounts::{Account, Quota};
use smsc_smpp::CommandStatus;
use smsc_store::{Clock, DynStore, UnixMillis};
use tracing::warn;

/// The answer to a submit past its account's quota: 0x400 opens the range SMPP 3.4
/// (§5.1.3) leaves to SMSC vendors. Not a throttle: the ESME should not retry before
/// the period turns.
pub const QUOTA_EXCEEDED: CommandStatus = CommandStatus(0x0000_0400);

/// After the store said a period's quota is spent, how long the edge believes it before
/// asking again (units given back by a stopping edge, or a raised limit, show up then).
const EXHAUSTED_FOR: Duration = Duration::from_secs(5);

/// After a failed lease, how long before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long a stopping edge tries to give back what it holds.
const GIVE_BACK_WITHIN: Duration = Duration::from_secs(5);

/// The most one lease takes: at 1,000 a lease, a busy account costs the store a few
/// compare-and-sets per second per edge.
const MAX_LEASE: u64 = 1000;

/// The calendar period a counter covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Day, Period::Month];

    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The store's name for the period holding `now` (`d2026-12-07`, `m2026-12`) and
    /// when it ends.
    fn at(self, now: UnixMillis) -> (String, UnixMillis) {
        let date = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_default().date_naive();
        let (key, next) = match self {
            Self::Day => (format!("d{}", date.format("%Y-%m-%d")), date.succ_opt()),
            Self::Month => {
                let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1);
                let next = first.and_then(|d| d.checked_add_months(Months::new(1)));
                (format!("m{}", date.format("%Y-%m")), next)
            }
        };
        let end = next.and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc().timestamp_millis());
        (key, end.unwrap_or(UnixMillis::MAX))
    }

    /// How long the store keeps a counter after its last change: past the period's end,
    /// with a day to spare for clocks that disagree.
    fn ttl(self) -> Duration {
        match self {
            Self::Day => Duration::from_secs(2 * 86_400),
            Self::Month => Duration::from_secs(32 * 86_400),
        }
    }

    fn limit(self, quota: &Quota) -> Option<u64> {
        match self {
            Self::Day => quota.daily,
            Self::Month => quota.monthly,
        }
    }
}

/// What a submit of `n` messages may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken from the leases: go on.
    Granted,
    /// The period's quota is spent.
    Exhausted(Period),
    /// No lease yet: one is on its way.
    Pending,
}

/// This edge's share of one account's quota for one period.
#[derive(Debug, Default)]
struct Lease {
    /// The store's name for the period (empty: none yet), and when it ends.
    key: String,
    ends_at: UnixMillis,
    limit: u64,
    left: u64,
    /// The store said the period is spent: believed until then.
    spent_until: UnixMillis,
    /// The store failed: no lease is asked for before then.
    retry_at: UnixMillis,
    asking: bool,
}

impl Lease {
    /// Starts over when the period turned or the limit changed.
    fn follow(&mut self, period: Period, limit: u64, now: UnixMillis) {
        if now >= self.ends_at || self.key.is_empty() {
            (self.key, self.ends_at) = period.at(now);
            (self.left, self.spent_until, self.retry_at) = (0, 0, 0);
        }
        if limit != self.limit {
            (self.limit, self.spent_until, self.retry_at) = (limit, 0, 0);
        }
    }

    fn spent(&self, now: UnixMillis) -> bool {
        now < self.spent_until
    }

    /// How much one lease takes: a 64th of the limit (so leases stranded on edges that
    /// die cost little), at least what the submit needs.
    fn size(&self, n: u64) -> u64 {
        (self.limit / 64).clamp(1, MAX_LEASE).max(n)
    }

    /// Asks for a lease when a submit of `n` finds too little, or a quarter of a lease
    /// (rounded up) is left, and none is on its way.
    fn wants_more(&self, n: u64, now: UnixMillis) -> bool {
        let low = self.left < n || self.left <= self.size(1).div_ceil(4);
        !self.asking && !self.spent(now) && now >= self.retry_at && low
    }
}

#[derive(Debug, Default)]
struct Leases {
    day: Lease,
    month: Lease,
}

impl Leases {
    fn get(&mut self, period: Period) -> &mut Lease {
        match period {
            Period::Day => &mut self.day,
            Period::Month => &mut self.month,
        }
    }
}

/// A lease to ask for: of `system_id`'s `period`, `want` of `limit`.
struct Ask {
    system_id: String,
    period: Period,
    key: String,
    want: u64,
    limit: u64,
}

/// Every account's leases on this edge.
#[derive(Debug)]
pub struct Quotas {
    store: DynStore,
    clock: Arc<dyn Clock>,
    accounts: Mutex<HashMap<String, Arc<Mutex<Leases>>>>,
    /// Stopping: what was given back is not asked for again.
    closed: AtomicBool,
}

impl Quotas {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self { store, clock, accounts: Mutex::default(), closed: AtomicBool::new(false) })
    }

    fn leases(&self, system_id: &str) -> Arc<Mutex<Leases>> {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        // No key allocated per submit: only an account's first take inserts.
        if let Some(leases) = accounts.get(system_id) {
            return leases.clone();
        }
        accounts.entry(system_id.to_owned()).or_default().clone()
    }

    /// Takes `n` messages of `account`'s quota (both periods, or neither).
    pub fn take(self: &Arc<Self>, account: &Account, n: u64) -> Verdict {
        if account.quota.is_unlimited() {
            return Verdict::Granted;
        }
        let now = self.clock.now_ms();
        let leases = self.leases(&account.system_id);
        let mut asks = Vec::new();
        let verdict = {
            let mut leases = leases.lock().unwrap_or_else(PoisonError::into_inner);
            let mut verdict = Verdict::Granted;
            for period in Period::ALL {
                let Some(limit) = period.limit(&account.quota) else { continue };
                let lease = leases.get(period);
                lease.follow(period, limit, now);
                if lease.left >= n {
                    continue;
                }
                if lease.spent(now) {
                    verdict = Verdict::Exhausted(period);
                } else if verdict == Verdict::Granted {
                    verdict = Verdict::Pending;
                }
            }
            for period in Period::ALL {
                let Some(limit) = period.limit(&account.quota) else { continue };
                let lease = leases.get(period);
                if verdict == Verdict::Granted {
                    lease.left -= n;
                }
                if lease.wants_more(n, now) && !self.closed.load(Ordering::Relaxed) {
                    lease.asking = true;
                    let (key, want) = (lease.key.clone(), lease.size(n));
                    let system_id = account.system_id.clone();
                    asks.push(Ask { system_id, period, key, want, limit });
                }
            }
            verdict
        };
        for ask in asks {
            tokio::spawn(Arc::clone(self).lease(leases.clone(), ask));
        }
        verdict
    }

    /// Asks for the first leases of an account before its first submit (at bind).
    pub fn prepare(self: &Arc<Self>, account: &Account) {
        let _ = self.take(account, 0);
    }

    /// Puts back `n` messages taken by [`Quotas::take`] at `taken_at` that were not
    /// accepted after all (the bus refused them), into the periods they were taken from
    /// only: a refund after the period turned is dropped (counted as used).
    pub fn refund(&self, account: &Account, n: u64, taken_at: UnixMillis) {
        if account.quota.is_unlimited() || n == 0 {
            return;
        }
        let leases = self.leases(&account.system_id);
        let mut leases = leases.lock().unwrap_or_else(PoisonError::into_inner);
        for period in Period::ALL {
            let lease = leases.get(period);
            if period.limit(&account.quota).is_some() && period.at(taken_at).0 == lease.key {
                lease.left += n;
            }
        }
    }

    async fn lease(self: Arc<Self>, leases: Arc<Mutex<Leases>>, ask: Ask) {
        let Ask { system_id, period, key, want, limit } = ask;
        let taken = self.store.take_quota(&system_id, &key, want, limit, period.ttl()).await;
        let now = self.clock.now_ms();
        let unwanted = {
            let mut leases = leases.lock().unwrap_or_else(PoisonError::into_inner);
            let lease = leases.get(period);
            lease.asking = false;
            match taken {
                // The period turned meanwhile: what was taken counts in the old one.
                Ok(_) if lease.key != key => 0,
                // Stopping: what comes now goes back at once.
                Ok(n) if self.closed.load(Ordering::Relaxed) => n,
                Ok(0) => {
                    lease.spent_until = now.saturating_add(EXHAUSTED_FOR.as_millis() as i64);
                    0
                }
                Ok(n) => {
                    lease.left += n;
                    0
                }
                Err(e) => {
                    warn!(
                        error = %smsc_runtime::telemetry::error_chain(&e),
                        system_id, period = period.name(), "cannot lease quota; submits are throttled meanwhile"
                    );
                    lease.retry_at = now.saturating_add(RETRY_AFTER.as_millis() as i64);
                    0
                }
            }
        };
        if unwanted > 0 {
            self.give_back_one(system_id, period, key, unwanted).await;
        }
    }

    async fn give_back_one(&self, system_id: String, period: Period, key: String, n: u64) {
        if let Err(e) = self.store.give_back_quota(&system_id, &key, n, period.ttl()).await {
            warn!(error = %smsc_runtime::telemetry::error_chain(&e), system_id, n, "cannot give back unspent quota; it counts as used");
        }
    }

    /// Gives back to the store what this edge holds unspent, and from now on what leases
    /// still come (at shutdown, once the sessions are done). Bounded by a deadline: what
    /// does not make it counts as used.
    pub async fn give_back(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let held: Vec<(String, Period, String, u64)> = {
            let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
            let mut held = Vec::new();
            for (system_id, leases) in accounts.iter() {
                let mut leases = leases.lock().unwrap_or_else(PoisonError::into_inner);
                for period in Period::ALL {
                    let lease = leases.get(period);
                    if lease.left > 0 {
                        held.push((system_id.clone(), period, lease.key.clone(), lease.left));
                        lease.left = 0;
                    }
                }
            }
            held
        };
        let all =
            held.into_iter().map(|(id, period, key, n)| self.give_back_one(id, period, key, n));
        if tokio::time::timeout(GIVE_BACK_WITHIN, futures::future::join_all(all)).await.is_err() {
            warn!(
                "giving back unspent quota took too long; what was not given back counts as used"
            );
        }
    }
}

#[cfg(test)]
mod tests;
