//! Which accounts crowd the hops that fall behind: each hop reports the accounts holding
//! more than their share of what it has read and not finished
//! ([`crate::fair::Scheduler::over_share`]), and the edge slows those accounts' submits
//! (ESME_RTHROTTLED), not everyone's.
//!
//! In `smsc all` the hops and the edge share one [`Pressure`]. Between processes the
//! reports travel on `<prefix>.pressure` ([`crate::Topics::pressure`]): [`share`] publishes this process's while it names
//! accounts (again every [`REPEAT`]), and [`follow`] on each edge keeps every report it
//! reads for [`TRUST`], so a hop that died stops counting on its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use smsc_runtime::clock::{Clock as _, SystemClock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{Bus, Record};

/// How often a report naming accounts is published again.
pub const REPEAT: Duration = Duration::from_secs(1);
/// How long an edge trusts a report from another process.
pub const TRUST: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Default)]
pub struct Pressure(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Whether any account is over its share: the edge's check costs one load while none is.
    any: AtomicBool,
    /// Per reporter (a hop of this process, or another process's), its accounts, sorted.
    reports: Mutex<BTreeMap<String, Report>>,
    /// Their union, what the edge reads.
    over: RwLock<HashSet<Bytes>>,
    /// Wakes [`share`] when this process's own reports change.
    changed: Notify,
}

#[derive(Debug, Clone, PartialEq)]
struct Report {
    accounts: Vec<Bytes>,
    /// A report from another process counts until then (unix ms); a local one always.
    until_ms: Option<i64>,
}

impl Pressure {
    /// `hop` of this process now finds `accounts` over their share (empty: it keeps up).
    pub fn report(&self, hop: &str, accounts: Vec<Bytes>) {
        if self.set(hop, Report { accounts, until_ms: None }) {
            self.0.changed.notify_one();
        }
    }

    /// A report from another process, trusted until `until_ms`.
    pub fn report_remote(&self, source: &str, accounts: Vec<Bytes>, until_ms: i64) {
        self.set(source, Report { accounts, until_ms: Some(until_ms) });
    }

    /// Drops the reports of other processes not renewed by `now_ms`.
    pub fn expire(&self, now_ms: i64) {
        let mut reports = self.lock();
        let before = reports.len();
        reports.retain(|_, r| r.until_ms.is_none_or(|until| until > now_ms));
        if reports.len() != before {
            self.publish_union(&reports);
        }
    }

    /// Whether `account` is over its share of some hop.
    pub fn is_over(&self, account: &[u8]) -> bool {
        self.0.any.load(Ordering::Acquire)
            && self.0.over.read().unwrap_or_else(|e| e.into_inner()).contains(account)
    }

    /// The accounts this process's own hops report, sorted and without repeats.
    fn local(&self) -> Vec<Bytes> {
        let reports = self.lock();
        let mut all: Vec<Bytes> = reports
            .values()
            .filter(|r| r.until_ms.is_none())
            .flat_map(|r| r.accounts.iter().cloned())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Whether the report changed.
    fn set(&self, reporter: &str, mut report: Report) -> bool {
        report.accounts.sort_unstable();
        let mut reports = self.lock();
        let before = reports.get(reporter).map_or(&[][..], |r| r.accounts.as_slice());
        if before == report.accounts.as_slice() {
            if let Some(r) = reports.get_mut(reporter) {
                r.until_ms = report.until_ms;
            }
            return false;
        }
        // Debug: a hop near its threshold changes its report every few milliseconds;
        // `smsc_edge_backlog_throttled_total` counts what it costs the ESMEs.
        if report.until_ms.is_none() {
            let names: Vec<_> =
                report.accounts.iter().map(|a| String::from_utf8_lossy(a)).collect();
            debug!(hop = reporter, accounts = ?names, "accounts over their share of a hop that falls behind (their submits are throttled)");
        }
        if report.accounts.is_empty() {
            reports.remove(reporter);
        } else {
            reports.insert(reporter.to_owned(), report);
        }
        self.publish_union(&reports);
        true
    }

    fn publish_union(&self, reports: &BTreeMap<String, Report>) {
        let union: HashSet<Bytes> = reports.values().flat_map(|r| r.accounts.clone()).collect();
        self.0.any.store(!union.is_empty(), Ordering::Release);
        *self.0.over.write().unwrap_or_else(|e| e.into_inner()) = union;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Report>> {
        self.0.reports.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A report on `smsc.pressure`: `<unix ms>` then one system_id per line (system_ids are
/// printable ASCII without spaces), keyed by the reporting process.
fn encode(at_ms: i64, accounts: &[Bytes]) -> Bytes {
    let mut out = at_ms.to_string().into_bytes();
    for a in accounts {
        out.push(b'\n');
        out.extend_from_slice(a);
    }
    Bytes::from(out)
}

fn decode(payload: &Bytes) -> Option<(i64, Vec<Bytes>)> {
    let mut lines = payload.split(|b| *b == b'\n');
    let at = std::str::from_utf8(lines.next()?).ok()?.parse().ok()?;
    let accounts = lines.filter(|l| !l.is_empty()).map(|l| payload.slice_ref(l)).collect();
    Some((at, accounts))
}

/// Publishes this process's reports as `source` (its node id) on `topic` (the release's
/// `<prefix>.pressure`): when they change, and every [`REPEAT`] while they name accounts.
/// Best effort: a report that does not get through is followed by the next.
pub async fn share(
    bus: Arc<dyn Bus>,
    pressure: Pressure,
    topic: Arc<str>,
    source: String,
    shutdown: CancellationToken,
) {
    let mut last: Vec<Bytes> = Vec::new();
    loop {
        let accounts = pressure.local();
        if !accounts.is_empty() || accounts != last {
            let record = Record::new(source.clone(), encode(SystemClock.now_ms(), &accounts));
            if let Err(e) = bus.publish(&topic, vec![record]).await {
                debug!(error = %smsc_runtime::telemetry::error_chain(&e), "pressure report not published");
            }
            last = accounts;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = pressure.0.changed.notified() => {}
            _ = tokio::time::sleep(REPEAT), if !last.is_empty() => {}
        }
    }
}

/// Reads every process's reports from `topic` (`<prefix>.pressure`) into `pressure` (an
/// edge's), as consumer group `group` of its own, until shutdown; each counts for
/// [`TRUST`] from when it was made.
pub async fn follow(
    bus: Arc<dyn Bus>,
    pressure: Pressure,
    topic: Arc<str>,
    group: String,
    shutdown: CancellationToken,
) {
    let Some(mut consumer) =
        crate::lanes::join(&bus, &group, &[&topic], 256, &shutdown, None).await
    else {
        return;
    };
    let mut tick = tokio::time::interval(REPEAT);
    let trust = i64::try_from(TRUST.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => pressure.expire(SystemClock.now_ms()),
            r = consumer.recv() => match r {
                Ok(d) => {
                    match decode(&d.record.payload) {
                        Some((at, accounts)) if at.saturating_add(trust) > SystemClock.now_ms() => {
                            let source = String::from_utf8_lossy(&d.record.key);
                            pressure.report_remote(&source, accounts, at.saturating_add(trust));
                        }
                        Some(_) => {} // stale: from before this edge, or a dead hop
                        None => warn!("undecodable pressure report dropped"),
                    }
                    let _ = consumer.ack(&d);
                }
                Err(crate::BusError::Closed) => return,
                Err(e) => {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), "reading pressure reports failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{EmbeddedBus, EmbeddedBusConfig};

    #[test]
    fn an_account_is_over_while_any_hop_reports_it() {
        let p = Pressure::default();
        let b = Bytes::from_static(b"b");
        assert!(!p.is_over(b"b"));
        p.report("router", vec![b.clone()]);
        p.report("worker", vec![b.clone(), Bytes::from_static(b"c")]);
        assert!(p.is_over(b"b") && p.is_over(b"c") && !p.is_over(b"a"));
        p.report("worker", Vec::new());
        assert!(p.is_over(b"b") && !p.is_over(b"c"), "the router still reports b");
        p.report("router", Vec::new());
        assert!(!p.is_over(b"b"));
    }

    #[test]
    fn a_report_from_another_process_counts_until_it_is_stale() {
        let p = Pressure::default();
        p.report_remote("worker-2", vec![Bytes::from_static(b"b")], 1_000);
        assert!(p.is_over(b"b"));
        p.expire(999);
        assert!(p.is_over(b"b"));
        p.expire(1_000);
        assert!(!p.is_over(b"b"), "not renewed in time: the hop may be gone");
        assert!(p.local().is_empty(), "only this process's hops are shared");
    }

    #[test]
    fn reports_round_trip_and_garbage_is_refused() {
        let accounts = vec![Bytes::from_static(b"a"), Bytes::from_static(b"bank-1")];
        assert_eq!(decode(&encode(42, &accounts)), Some((42, accounts)));
        assert_eq!(decode(&encode(7, &[])), Some((7, Vec::new())));
        assert_eq!(decode(&Bytes::from_static(b"not a time\nb")), None);
    }

    #[tokio::test]
    async fn an_edge_follows_the_reports_another_process_shares() {
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedBusConfig::default()));
        let (hops, edge) = (Pressure::default(), Pressure::default());
        let shutdown = CancellationToken::new();
        let topic: Arc<str> = "smsc.pressure".into();
        let report =
            share(bus.clone(), hops.clone(), topic.clone(), "worker-1".into(), shutdown.clone());
        tokio::spawn(report);
        tokio::spawn(follow(bus, edge.clone(), topic, "edge-1-pressure".into(), shutdown.clone()));
        hops.report("worker", vec![Bytes::from_static(b"flood")]);
        let until = |over: bool| {
            let edge = edge.clone();
            async move {
                while edge.is_over(b"flood") != over {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), until(true)).await.expect("reported");
        hops.report("worker", Vec::new());
        tokio::time::timeout(Duration::from_secs(10), until(false)).await.expect("cleared");
        shutdown.cancel();
    }
}
