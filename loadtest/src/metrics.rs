//! The numbers a session keeps, and how they add up.
//!
//! Each session owns its counters and HDR histograms (no locks, no atomics on the hot
//! path); the runner merges them per scenario and over the run at the end. What the
//! progress line needs is published separately, with plain atomic stores.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;
use smsc_smpp::CommandStatus;

use crate::threshold::{Agg, Kind, Metric};

/// Latencies are recorded in nanoseconds, up to an hour, with 3 significant digits.
pub const HIST_MAX_NS: u64 = 3_600_000_000_000;

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("constant bounds are valid")
}

/// Counters and latencies of a session, a scenario or the whole run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// submit_sm written.
    pub submits: u64,
    /// Messages started (a long message is one iteration of several submits).
    pub iterations: u64,
    /// Arrival-rate iterations that found the window full.
    pub dropped_iterations: u64,
    /// submit_sm_resp (and generic_nack for a submit) received.
    pub responses: u64,
    /// Responses with a status other than ESME_ROK, by status.
    pub by_status: Vec<(CommandStatus, u64)>,
    /// Submits still unanswered when the session gave up on them.
    pub no_response: u64,
    /// Submits answered OK with registered_delivery set and a message_id.
    pub receipts_requested: u64,
    /// deliver_sm recognised as receipts.
    pub receipts_received: u64,
    /// Receipts matched to a submit of this run by message_id.
    pub receipts_matched: u64,
    /// Receipts whose message_id matched no submit of this run (or came twice).
    pub receipts_unmatched: u64,
    /// Receipts by final state (`stat:` word).
    pub receipt_states: Vec<(&'static str, u64)>,
    /// deliver_sm that are not receipts.
    pub mo: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// PDUs this tool could not make sense of (unknown sequence numbers, undecodable
    /// deliver_sm, an OK submit_sm_resp without a message_id, ...).
    pub protocol_errors: u64,
    /// submit → submit_sm_resp, ns.
    pub submit_latency: Histogram<u64>,
    /// submit → matched receipt, ns.
    pub receipt_latency: Histogram<u64>,
    /// Sessions lost during the run, and why.
    pub failures: Vec<String>,
    /// Sessions that submitted or received.
    pub sessions: usize,
    /// The load phase, ns since the start of the run: first start and last end.
    pub load_start_ns: u64,
    pub load_end_ns: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            submits: 0,
            iterations: 0,
            dropped_iterations: 0,
            responses: 0,
            by_status: Vec::new(),
            no_response: 0,
            receipts_requested: 0,
            receipts_received: 0,
            receipts_matched: 0,
            receipts_unmatched: 0,
            receipt_states: Vec::new(),
            mo: 0,
            bytes_sent: 0,
            bytes_received: 0,
            protocol_errors: 0,
            submit_latency: histogram(),
            receipt_latency: histogram(),
            failures: Vec::new(),
            sessions: 0,
            load_start_ns: u64::MAX,
            load_end_ns: 0,
        }
    }

    /// Submits that failed: any status but ESME_ROK, and no answer at all.
    pub fn errors(&self) -> u64 {
        self.by_status.iter().map(|(_, n)| n).sum::<u64>() + self.no_response
    }

    pub fn throttled(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| *s == CommandStatus::ESME_RTHROTTLED)
            .map(|(_, n)| n)
            .sum()
    }

    /// Seconds of load: from the first session's start to the last one's end.
    pub fn load_secs(&self) -> f64 {
        if self.load_end_ns <= self.load_start_ns {
            return 0.0;
        }
        (self.load_end_ns - self.load_start_ns) as f64 / 1e9
    }

    pub(crate) fn count_status(&mut self, status: CommandStatus) {
        bump(&mut self.by_status, status);
    }

    pub(crate) fn count_state(&mut self, state: &'static str) {
        bump(&mut self.receipt_states, state);
    }

    pub fn merge(&mut self, o: &Self) {
        self.submits += o.submits;
        self.iterations += o.iterations;
        self.dropped_iterations += o.dropped_iterations;
        self.responses += o.responses;
        for &(s, n) in &o.by_status {
            add(&mut self.by_status, s, n);
        }
        self.no_response += o.no_response;
        self.receipts_requested += o.receipts_requested;
        self.receipts_received += o.receipts_received;
        self.receipts_matched += o.receipts_matched;
        self.receipts_unmatched += o.receipts_unmatched;
        for &(s, n) in &o.receipt_states {
            add(&mut self.receipt_states, s, n);
        }
        self.mo += o.mo;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.protocol_errors += o.protocol_errors;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.submit_latency.add(&o.submit_latency);
        let _ = self.receipt_latency.add(&o.receipt_latency);
        self.failures.extend(o.failures.iter().cloned());
        self.sessions += o.sessions;
        self.load_start_ns = self.load_start_ns.min(o.load_start_ns);
        self.load_end_ns = self.load_end_ns.max(o.load_end_ns);
    }

    /// A metric's value as thresholds and the summary see it: trends in ms, rates as
    /// a share (errors, receipts) or per second (counters). `None` without samples.
    pub fn value(&self, metric: Metric, agg: Agg) -> Option<f64> {
        let per_s = |n: u64| {
            let secs = self.load_secs();
            (secs > 0.0).then(|| n as f64 / secs)
        };
        let trend = |h: &Histogram<u64>| {
            if h.is_empty() {
                return None;
            }
            let ms = |ns: u64| ns as f64 / 1e6;
            Some(match agg {
                Agg::Avg => h.mean() / 1e6,
                Agg::Min => ms(h.min()),
                Agg::Med => ms(h.value_at_quantile(0.5)),
                Agg::Max => ms(h.max()),
                Agg::P(p) => ms(h.value_at_quantile(p / 100.0)),
                Agg::Count => h.len() as f64,
                Agg::Rate => return None,
            })
        };
        let share = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        let counter = |n: u64| match agg {
            Agg::Count => Some(n as f64),
            _ => per_s(n),
        };
        match metric {
            Metric::SubmitLatency => trend(&self.submit_latency),
            Metric::ReceiptLatency => trend(&self.receipt_latency),
            Metric::Errors => match agg {
                Agg::Count => Some(self.errors() as f64),
                _ => share(self.errors(), self.submits),
            },
            Metric::Receipts => match agg {
                Agg::Count => Some(self.receipts_matched as f64),
                _ => share(self.receipts_matched, self.receipts_requested),
            },
            Metric::Submits => counter(self.submits),
            Metric::Throttled => counter(self.throttled()),
            Metric::Mo => counter(self.mo),
            Metric::Iterations => counter(self.iterations),
            Metric::DroppedIterations => counter(self.dropped_iterations),
            Metric::DataSent => counter(self.bytes_sent),
            Metric::DataReceived => counter(self.bytes_received),
        }
    }

    /// Whether a metric has anything to show (the summary skips empty trends).
    pub fn has(&self, metric: Metric) -> bool {
        match metric.kind() {
            Kind::Trend => self.value(metric, Agg::Max).is_some(),
            _ => true,
        }
    }
}

fn bump<K: PartialEq + Copy>(v: &mut Vec<(K, u64)>, k: K) {
    add(v, k, 1);
}

fn add<K: PartialEq + Copy>(v: &mut Vec<(K, u64)>, k: K, n: u64) {
    match v.iter_mut().find(|(x, _)| *x == k) {
        Some((_, c)) => *c += n,
        None => v.push((k, n)),
    }
}

/// What a session publishes for the progress line and for the runner to decide when
/// the load phase and the receipt wait are over. Only the session writes; plain stores.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub submits: AtomicU64,
    pub responses: AtomicU64,
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
    pub receipts_requested: AtomicU64,
    pub receipts_received: AtomicU64,
    /// Its load phase is over and nothing is in flight (or it gave up waiting).
    pub drained: AtomicBool,
    /// The connection is gone.
    pub closed: AtomicBool,
}

impl Live {
    pub(crate) fn publish(&self, s: &Stats, in_flight: usize) {
        self.submits.store(s.submits, Relaxed);
        self.responses.store(s.responses, Relaxed);
        self.errors.store(s.errors(), Relaxed);
        self.in_flight.store(in_flight as u64, Relaxed);
        self.receipts_requested.store(s.receipts_requested, Relaxed);
        self.receipts_received.store(s.receipts_received, Relaxed);
    }
}

/// A message_id reduced to 64 bits, for the receipt tables. Ids are short ASCII, so
/// eight octets at a time through a multiply-rotate, then a final avalanche; a
/// collision among a run's ids is vanishingly unlikely and costs one mismatched receipt.
pub(crate) fn id_key(id: &[u8]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64 ^ id.len() as u64;
    for chunk in id.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
}

/// Keys are already [`id_key`] hashes: hashing them again would be wasted work.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// message_id key → submit time (ns since the start of the run).
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_values() {
        let mut a = Stats::new();
        a.submits = 900;
        a.count_status(CommandStatus::ESME_RTHROTTLED);
        a.count_status(CommandStatus::ESME_RTHROTTLED);
        a.submit_latency.record(1_000_000).expect("in range");
        a.load_start_ns = 1_000_000_000;
        a.load_end_ns = 2_000_000_000;
        let mut b = Stats::new();
        b.submits = 100;
        b.no_response = 1;
        b.count_status(CommandStatus::ESME_RSYSERR);
        b.submit_latency.record(3_000_000).expect("in range");
        b.receipts_requested = 10;
        b.receipts_matched = 9;
        b.load_start_ns = 1_500_000_000;
        b.load_end_ns = 3_000_000_000;
        a.merge(&b);
        assert_eq!((a.submits, a.errors(), a.throttled()), (1000, 4, 2));
        assert_eq!(a.load_secs(), 2.0);
        assert_eq!(a.value(Metric::Submits, Agg::Rate), Some(500.0));
        assert_eq!(a.value(Metric::Submits, Agg::Count), Some(1000.0));
        assert_eq!(a.value(Metric::Errors, Agg::Rate), Some(0.004));
        assert_eq!(a.value(Metric::Receipts, Agg::Rate), Some(0.9));
        assert_eq!(a.value(Metric::Throttled, Agg::Count), Some(2.0));
        let avg = a.value(Metric::SubmitLatency, Agg::Avg).expect("samples");
        assert!((avg - 2.0).abs() < 0.01, "{avg}");
        assert!((a.value(Metric::SubmitLatency, Agg::Max).expect("samples") - 3.0).abs() < 0.01);
        assert_eq!(a.value(Metric::ReceiptLatency, Agg::P(99.0)), None, "no receipts matched");
        assert!(!a.has(Metric::ReceiptLatency) && a.has(Metric::Mo));
        assert_eq!(Stats::new().value(Metric::Errors, Agg::Rate), None, "no submits, no rate");
    }

    #[test]
    fn id_keys_differ() {
        let ids = [
            "1",
            "01",
            "10",
            "100000001",
            "100000002",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdee",
        ];
        let keys: std::collections::HashSet<_> = ids.iter().map(|i| id_key(i.as_bytes())).collect();
        assert_eq!(keys.len(), ids.len());
        assert_eq!(id_key(b"abc"), id_key(b"abc"));
    }
}
