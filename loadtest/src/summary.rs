//! The end-of-test summary, laid out like k6's (`name.....: value` lines, ✓/✗ on
//! metrics with thresholds), the scenario header printed before the run, and the JSON
//! of `--summary-export`.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::config::{BindMode, Plan};
use crate::metrics::Stats;
use crate::threshold::{Agg, Kind, Metric, Threshold};

/// One scenario's results.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub name: String,
    pub executor: &'static str,
    pub stats: Stats,
}

/// One threshold and how it came out.
#[derive(Debug, Clone)]
pub struct ThresholdResult {
    pub threshold: Threshold,
    pub observed: Option<f64>,
    pub ok: bool,
}

/// Everything the run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenarios: Vec<ScenarioResult>,
    pub total: Stats,
    pub thresholds: Vec<ThresholdResult>,
    /// From the first submit to the end of the receipt wait.
    pub duration: Duration,
    /// Stopped by a signal.
    pub interrupted: bool,
}

/// The aggregations a trend line shows, as k6 does by default plus p(99).
const TREND_AGGS: [(&str, Agg); 7] = [
    ("avg", Agg::Avg),
    ("min", Agg::Min),
    ("med", Agg::Med),
    ("max", Agg::Max),
    ("p(90)", Agg::P(90.0)),
    ("p(95)", Agg::P(95.0)),
    ("p(99)", Agg::P(99.0)),
];

impl Report {
    /// Evaluates `thresholds` against the merged results.
    pub fn evaluate(&mut self, thresholds: &[Threshold]) {
        self.thresholds = thresholds
            .iter()
            .map(|t| {
                let stats = match &t.scenario {
                    Some(name) => self.scenarios.iter().find(|s| &s.name == name).map(|s| &s.stats),
                    None => Some(&self.total),
                };
                let observed = stats.and_then(|s| s.value(t.metric, t.agg));
                ThresholdResult { threshold: t.clone(), observed, ok: t.passes(observed) }
            })
            .collect();
    }

    pub fn thresholds_ok(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok)
    }

    /// ✓/✗ for a metric line: `None` when no threshold watches it.
    fn mark(&self, metric: Metric, scenario: Option<&str>) -> Option<bool> {
        let mut mine = self
            .thresholds
            .iter()
            .filter(|r| r.threshold.metric == metric && r.threshold.scenario.as_deref() == scenario)
            .peekable();
        mine.peek()?;
        Some(mine.all(|r| r.ok))
    }

    /// The end-of-test summary.
    pub fn render(&self) -> String {
        let mut lines: Vec<(usize, Option<bool>, String, String)> = Vec::new();
        let many = self.scenarios.len() > 1;
        let t = &self.total;
        for &m in Metric::ALL {
            let watched = self.thresholds.iter().any(|r| r.threshold.metric == m);
            if !show(t, m) && !watched {
                continue;
            }
            lines.push((0, self.mark(m, None), m.name().to_owned(), value(t, m)));
            let mut sub =
                |label: String, v: String, mark: Option<bool>| lines.push((1, mark, label, v));
            match m {
                Metric::Errors => {
                    for (status, n) in &t.by_status {
                        sub(format!("{{ status:{status} }}"), n.to_string(), None);
                    }
                    if t.no_response > 0 {
                        sub("{ status:no_response }".into(), t.no_response.to_string(), None);
                    }
                }
                Metric::Receipts => {
                    for (stat, n) in &t.receipt_states {
                        sub(format!("{{ stat:{stat} }}"), n.to_string(), None);
                    }
                    if t.receipts_unmatched > 0 {
                        sub("{ unmatched }".into(), t.receipts_unmatched.to_string(), None);
                    }
                }
                _ => {}
            }
            if many
                && matches!(
                    m,
                    Metric::Submits
                        | Metric::SubmitLatency
                        | Metric::Errors
                        | Metric::Receipts
                        | Metric::ReceiptLatency
                )
            {
                for s in &self.scenarios {
                    if show(&s.stats, m) {
                        let label = format!("{{ scenario:{} }}", s.name);
                        sub(label, value(&s.stats, m), self.mark(m, Some(&s.name)));
                    }
                }
            } else {
                for s in &self.scenarios {
                    if let Some(mark) = self.mark(m, Some(&s.name)) {
                        sub(format!("{{ scenario:{} }}", s.name), value(&s.stats, m), Some(mark));
                    }
                }
            }
        }
        lines.push((0, None, "sessions".into(), t.sessions.to_string()));
        if t.protocol_errors > 0 {
            lines.push((0, None, "protocol_errors".into(), t.protocol_errors.to_string()));
        }
        let width = lines
            .iter()
            .map(|(indent, _, name, _)| indent * 2 + name.chars().count())
            .max()
            .unwrap_or(0)
            + 3;
        let mut out = String::from("\n");
        for (indent, mark, name, v) in &lines {
            let m = match mark {
                Some(true) => "✓ ",
                Some(false) => "✗ ",
                None => "  ",
            };
            let label = format!("{}{name}", "  ".repeat(*indent));
            let dots = ".".repeat(width.saturating_sub(label.chars().count()));
            let _ = writeln!(out, "   {m}{label}{dots}: {v}");
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(out, "\n   THRESHOLDS\n");
            for r in &self.thresholds {
                let th = &r.threshold;
                let seen = match r.observed {
                    Some(v) => format!("{}={}", th.agg, format_agg(th.metric, th.agg, v)),
                    None => "no samples".into(),
                };
                let m = if r.ok { "✓" } else { "✗" };
                let _ = writeln!(out, "   {m} {} '{}' {seen}", th.key(), th.expr);
            }
        }
        for f in &t.failures {
            let _ = writeln!(out, "\n   ! {f}");
        }
        let _ = writeln!(
            out,
            "\n   {} in {}{}",
            if self.thresholds_ok() { "done" } else { "thresholds crossed" },
            fmt_duration(self.duration),
            if self.interrupted { " (interrupted)" } else { "" }
        );
        out
    }

    /// The `--summary-export` document.
    pub fn to_json(&self) -> Value {
        let mut scenarios = Map::new();
        for s in &self.scenarios {
            scenarios.insert(
                s.name.clone(),
                json!({ "executor": s.executor, "metrics": metrics_json(&s.stats, &[]) }),
            );
        }
        let thresholds: Vec<Value> = self
            .thresholds
            .iter()
            .map(|r| json!({ "metric": r.threshold.key(), "threshold": r.threshold.expr, "ok": r.ok, "observed": r.observed }))
            .collect();
        json!({
            "metrics": metrics_json(&self.total, &self.thresholds),
            "scenarios": scenarios,
            "thresholds": thresholds,
            "failures": self.total.failures,
            "state": {
                "testRunDurationMs": self.duration.as_secs_f64() * 1e3,
                "loadDurationMs": self.total.load_secs() * 1e3,
                "interrupted": self.interrupted,
                "thresholdsOk": self.thresholds_ok(),
            },
        })
    }
}

/// Trends only when they have samples; dropped iterations, MO, throttled and protocol
/// errors only when there were any; receipts when some were asked for or came.
fn show(s: &Stats, m: Metric) -> bool {
    match m {
        Metric::SubmitLatency | Metric::ReceiptLatency => s.has(m),
        Metric::DroppedIterations => s.dropped_iterations > 0,
        Metric::Mo => s.mo > 0,
        Metric::Throttled => s.throttled() > 0,
        Metric::Receipts => s.receipts_requested > 0 || s.receipts_received > 0,
        _ => true,
    }
}

/// A metric's value column.
fn value(s: &Stats, m: Metric) -> String {
    let count = s.value(m, Agg::Count).unwrap_or(0.0);
    match m.kind() {
        Kind::Trend => TREND_AGGS
            .iter()
            .map(|(name, agg)| {
                let v = s.value(m, *agg).map_or_else(|| "-".into(), fmt_ms);
                format!("{name}={v:<9}")
            })
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end()
            .to_owned(),
        Kind::Rate => {
            let (n, of) = match m {
                Metric::Receipts => (s.receipts_matched, s.receipts_requested),
                _ => (s.errors(), s.submits),
            };
            let pct =
                s.value(m, Agg::Rate).map_or_else(|| "-".into(), |r| format!("{:.2}%", r * 100.0));
            format!("{pct:<8} {n} out of {of}")
        }
        Kind::Counter => {
            let rate = s.value(m, Agg::Rate).unwrap_or(0.0);
            if matches!(m, Metric::DataSent | Metric::DataReceived) {
                format!("{:<8} {}/s", fmt_bytes(count), fmt_bytes(rate))
            } else {
                format!("{:<8} {rate:.2}/s", count as u64)
            }
        }
    }
}

fn format_agg(m: Metric, agg: Agg, v: f64) -> String {
    match (m.kind(), agg) {
        (Kind::Trend, Agg::Count) => format!("{v}"),
        (Kind::Trend, _) => fmt_ms(v),
        (Kind::Rate, Agg::Rate) => format!("{:.2}%", v * 100.0),
        (Kind::Counter, Agg::Rate) => format!("{v:.2}/s"),
        _ => format!("{v}"),
    }
}

fn metrics_json(s: &Stats, thresholds: &[ThresholdResult]) -> Value {
    let mut out = Map::new();
    for &m in Metric::ALL {
        let values = match m.kind() {
            Kind::Trend => {
                let mut v = Map::new();
                for (name, agg) in
                    TREND_AGGS.iter().chain(&[("p(99.9)", Agg::P(99.9)), ("count", Agg::Count)])
                {
                    v.insert((*name).into(), json!(s.value(m, *agg)));
                }
                Value::Object(v)
            }
            Kind::Rate => {
                let (n, of) = match m {
                    Metric::Receipts => (s.receipts_matched, s.receipts_requested),
                    _ => (s.errors(), s.submits),
                };
                json!({ "rate": s.value(m, Agg::Rate), "count": n, "of": of })
            }
            Kind::Counter => {
                json!({ "count": s.value(m, Agg::Count), "rate": s.value(m, Agg::Rate) })
            }
        };
        let mut entry = json!({
            "type": match m.kind() { Kind::Trend => "trend", Kind::Rate => "rate", Kind::Counter => "counter" },
            "values": values,
        });
        if m.kind() == Kind::Trend {
            entry["unit"] = json!("ms");
        }
        let mine: Map<String, Value> = thresholds
            .iter()
            .filter(|r| r.threshold.metric == m)
            .map(|r| {
                (
                    format!("{}:{}", r.threshold.key(), r.threshold.expr),
                    json!({ "ok": r.ok, "observed": r.observed }),
                )
            })
            .collect();
        if !mine.is_empty() {
            entry["thresholds"] = Value::Object(mine);
        }
        out.insert(m.name().into(), entry);
    }
    out.insert(
        "errors_by_status".into(),
        json!(s.by_status.iter().map(|(st, n)| (st.to_string(), json!(n))).collect::<Map<_, _>>()),
    );
    out.insert("no_response".into(), json!(s.no_response));
    out.insert("receipts_received".into(), json!(s.receipts_received));
    out.insert("receipts_unmatched".into(), json!(s.receipts_unmatched));
    out.insert(
        "receipt_states".into(),
        json!(
            s.receipt_states
                .iter()
                .map(|(st, n)| ((*st).to_owned(), json!(n)))
                .collect::<Map<_, _>>()
        ),
    );
    out.insert("responses".into(), json!(s.responses));
    out.insert("protocol_errors".into(), json!(s.protocol_errors));
    out.insert("sessions".into(), json!(s.sessions));
    Value::Object(out)
}

/// k6's duration format: µs below a millisecond, ms below a second, then s.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.2}µs", ms * 1e3)
    } else if ms < 1e3 {
        format!("{ms:.2}ms")
    } else {
        format!("{:.2}s", ms / 1e3)
    }
}

/// Decimal units, as k6 writes data sizes (`2.3 MB`, `75 kB`).
pub fn fmt_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 || v >= 10.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// What is about to run, as k6 prints it before a test.
pub fn header(plan: &Plan) -> String {
    let mut out = String::new();
    let n = plan.scenarios.len();
    let _ = writeln!(
        out,
        "\n  scenarios: (100.00%) {n} scenario{}, {} max VUs, {} max duration (incl. graceful stop and receipt wait):",
        if n == 1 { "" } else { "s" },
        plan.scenarios.iter().map(|s| s.executor.vus()).sum::<usize>(),
        humantime::format_duration(plan.max_duration()),
    );
    for s in &plan.scenarios {
        let start = if s.start_time.is_zero() {
            String::new()
        } else {
            format!(", startTime: {}", humantime::format_duration(s.start_time))
        };
        let sessions =
            if s.bind == BindMode::ReceiverTransmitter { " (2 sessions per VU)" } else { "" };
        let _ = writeln!(
            out,
            "           * {}: {} (gracefulStop: {}{start})\n             {} as {} to {}{sessions}, window {}, receipts {:.0}%",
            s.name,
            s.executor.describe(),
            humantime::format_duration(s.graceful_stop),
            s.bind.as_str(),
            s.system_id,
            s.targets.join(", "),
            s.window,
            s.message.registered_delivery * 100.0,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use smsc_smpp::CommandStatus;

    use super::*;

    fn stats(submits: u64, latency_ms: &[u64]) -> Stats {
        let mut s = Stats::new();
        s.sessions = 2;
        s.submits = submits;
        s.iterations = submits;
        s.responses = submits;
        s.bytes_sent = 12_345_678;
        s.bytes_received = 2_345;
        s.load_start_ns = 0;
        s.load_end_ns = 2_000_000_000;
        for &ms in latency_ms {
            s.submit_latency.record(ms * 1_000_000).expect("in range");
        }
        s
    }

    #[test]
    fn k6_like_layout() {
        let mut bulk = stats(1000, &[1, 2, 3, 40]);
        bulk.count_status(CommandStatus::ESME_RTHROTTLED);
        bulk.receipts_requested = 4;
        bulk.receipts_matched = 3;
        bulk.receipts_received = 3;
        bulk.count_state("DELIVRD");
        bulk.receipt_latency.record(250_000).expect("in range");
        let otp = stats(10, &[5]);
        let mut total = bulk.clone();
        total.merge(&otp);
        let mut report = Report {
            scenarios: vec![
                ScenarioResult { name: "bulk".into(), executor: "constant-vus", stats: bulk },
                ScenarioResult {
                    name: "otp".into(),
                    executor: "constant-arrival-rate",
                    stats: otp,
                },
            ],
            total,
            thresholds: Vec::new(),
            duration: Duration::from_millis(2500),
            interrupted: false,
        };
        report.evaluate(&[
            Threshold::parse("submit_latency", "p(99)<10").expect("valid"),
            Threshold::parse("errors", "rate<0.01").expect("valid"),
            Threshold::parse("submits{scenario:otp}", "count>100").expect("valid"),
        ]);
        assert!(!report.thresholds_ok());
        let text = report.render();
        println!("{text}");
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(prefix))
                .unwrap_or_else(|| panic!("no line {prefix:?} in\n{text}"))
        };
        // Every value column starts at the same place.
        let cols: std::collections::HashSet<_> = text
            .lines()
            .filter(|l| l.contains("..: "))
            .map(|l| l.find("..: ").map(|i| l[..i].chars().count()))
            .collect();
        assert_eq!(cols.len(), 1, "aligned {cols:?}:\n{text}");
        assert!(line("✗ submit_latency").contains("avg=10.20ms"), "{text}");
        assert!(line("✗ submit_latency").contains("p(99)=40.01ms"), "{text}");
        assert!(line("✓ errors").contains("0.10%    1 out of 1010"), "{text}");
        assert!(line("{ status:ESME_RTHROTTLED }").ends_with(": 1"));
        assert!(line("receipts...").contains("75.00%   3 out of 4"), "{text}");
        assert!(line("{ stat:DELIVRD }").ends_with(": 1"));
        assert!(line("receipt_latency").contains("med=250.11µs"), "{text}");
        assert!(line("submits...").contains("1010     505.00/s"), "{text}");
        assert!(line("data_sent").contains("25 MB    12 MB/s"), "{text}");
        assert!(
            line("✗   { scenario:otp }").contains("10 "),
            "a scenario threshold marks its line:\n{text}"
        );
        assert!(line("throttled").contains(": 1 "), "{text}");
        assert!(!text.contains("dropped_iterations"), "hidden when 0");
        assert!(text.contains("✗ submit_latency 'p(99)<10' p(99)=40.01ms"), "{text}");
        assert!(text.contains("✓ errors 'rate<0.01' rate=0.10%"), "{text}");
        assert!(text.contains("✗ submits{scenario:otp} 'count>100' count=10"), "{text}");
        assert!(text.trim_end().ends_with("thresholds crossed in 2.5s"));

        let json = report.to_json();
        assert_eq!(json["metrics"]["submits"]["values"]["count"], 1010.0);
        assert_eq!(json["metrics"]["errors_by_status"]["ESME_RTHROTTLED"], 1);
        assert_eq!(json["metrics"]["receipts"]["values"]["rate"], 0.75);
        assert_eq!(
            json["metrics"]["submit_latency"]["thresholds"]["submit_latency:p(99)<10"]["ok"],
            false
        );
        assert_eq!(json["scenarios"]["otp"]["metrics"]["submits"]["values"]["count"], 10.0);
        assert_eq!(json["state"]["thresholdsOk"], false);
    }

    #[test]
    fn units() {
        assert_eq!(fmt_ms(0.01234), "12.34µs");
        assert_eq!(fmt_ms(12.345), "12.35ms");
        assert_eq!(fmt_ms(1234.5), "1.23s");
        assert_eq!(fmt_bytes(999.0), "999 B");
        assert_eq!(fmt_bytes(2_345.0), "2.3 kB");
        assert_eq!(fmt_bytes(75_000.0), "75 kB");
        assert_eq!(fmt_bytes(12_345_678.0), "12 MB");
        assert_eq!(fmt_duration(Duration::from_secs(75)), "1m15s");
    }

    #[test]
    fn header_describes_scenarios() {
        let plan = Plan::from_yaml(
            "scenarios:\n  a: { executor: constant-vus, vus: 4, duration: 30s }\n  b: { executor: constant-arrival-rate, rate: 100, duration: 1m, preAllocatedVUs: 2, startTime: 5s, bind: receiver+transmitter, message: { registered_delivery: 1 } }\n",
        )
        .expect("valid");
        let h = header(&plan);
        assert!(h.contains("2 scenarios, 6 max VUs"), "{h}");
        assert!(h.contains("* a: 4 looping VUs for 30s (gracefulStop: 30s)"), "{h}");
        assert!(h.contains("* b: 100.00 iterations/1s for 1m (preAllocatedVUs: 2) (gracefulStop: 30s, startTime: 5s)"), "{h}");
        assert!(h.contains("receiver+transmitter as demo to 127.0.0.1:2775 (2 sessions per VU), window 64, receipts 100%"), "{h}");
    }
}
