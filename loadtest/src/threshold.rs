//! k6 thresholds: `submit_latency: ["p(99)<10"]`, `errors: ["rate<0.001"]`, optionally
//! narrowed to one scenario with k6's tag syntax, `receipts{scenario:otp}`.
//!
//! Latencies are in milliseconds; `rate` is a share for the rate metrics (`errors`,
//! `receipts`) and a per-second figure for the counters (`submits`, `throttled`, ...).

use std::fmt;

/// How a metric aggregates, which decides the expressions it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Latencies: avg, min, med, max, p(N).
    Trend,
    /// A share of events: rate (0..=1) and count.
    Rate,
    /// A number of events: count and rate (per second).
    Counter,
}

macro_rules! metrics {
    ($($variant:ident = $name:literal, $kind:ident, $doc:literal;)*) => {
        /// The metrics a threshold can name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric {
            $(#[doc = $doc] $variant,)*
        }

        impl Metric {
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            pub const fn kind(self) -> Kind {
                match self {
                    $(Self::$variant => Kind::$kind,)*
                }
            }

            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $doc,)*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

metrics! {
    DataReceived = "data_received", Counter, "Octets read from the SMSC.";
    DataSent = "data_sent", Counter, "Octets written to the SMSC.";
    DroppedIterations = "dropped_iterations", Counter, "Arrival-rate iterations that found every window full.";
    Errors = "errors", Rate, "Submits answered with a status other than ESME_ROK (or generic_nack, or never answered), over submits sent.";
    Iterations = "iterations", Counter, "Messages started (a long message is one iteration of several submits).";
    Mo = "mo", Counter, "deliver_sm that are not receipts.";
    ReceiptLatency = "receipt_latency", Trend, "From the submit to its matched receipt, ms.";
    Receipts = "receipts", Rate, "Receipts matched to their message_id, over receipts requested (submits answered OK with registered_delivery).";
    SubmitLatency = "submit_latency", Trend, "From the submit to its submit_sm_resp, ms.";
    Submits = "submits", Counter, "submit_sm sent.";
    Throttled = "throttled", Counter, "Submits answered ESME_RTHROTTLED.";
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    Avg,
    Min,
    Med,
    Max,
    /// A percentile, 0..=100.
    P(f64),
    Count,
    Rate,
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Avg => f.write_str("avg"),
            Self::Min => f.write_str("min"),
            Self::Med => f.write_str("med"),
            Self::Max => f.write_str("max"),
            Self::P(p) => write!(f, "p({p})"),
            Self::Count => f.write_str("count"),
            Self::Rate => f.write_str("rate"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, observed: f64, bound: f64) -> bool {
        match self {
            Self::Lt => observed < bound,
            Self::Le => observed <= bound,
            Self::Gt => observed > bound,
            Self::Ge => observed >= bound,
            Self::Eq => observed == bound,
            Self::Ne => observed != bound,
        }
    }
}

/// Why a threshold does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ThresholdError {
    #[error("unknown metric `{0}` (one of {list})", list = metric_list())]
    UnknownMetric(String),
    #[error("`{0}` is not a tag filter; only {{scenario:NAME}} is supported")]
    Tag(String),
    #[error("`{0}` is not AGGREGATION OP NUMBER, like p(99)<10 or rate<0.001")]
    Syntax(String),
    #[error("`{agg}` does not apply to {metric} (it takes {takes})")]
    Aggregation { agg: String, metric: &'static str, takes: &'static str },
    #[error("`{0}` is not a percentile between 0 and 100")]
    Percentile(String),
}

fn metric_list() -> String {
    Metric::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

/// One threshold expression on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    /// `{scenario:NAME}`: only that scenario's samples.
    pub scenario: Option<String>,
    pub agg: Agg,
    pub op: Op,
    pub value: f64,
    /// As written, for the summary.
    pub expr: String,
}

impl Threshold {
    /// `key` is `metric` or `metric{scenario:NAME}`; `expr` like `p(99)<10`.
    pub fn parse(key: &str, expr: &str) -> Result<Self, ThresholdError> {
        let (name, scenario) = match key.split_once('{') {
            None => (key.trim(), None),
            Some((name, tag)) => {
                let inner = tag.strip_suffix('}').ok_or_else(|| ThresholdError::Tag(tag.into()))?;
                let (k, v) =
                    inner.split_once(':').ok_or_else(|| ThresholdError::Tag(inner.into()))?;
                if k.trim() != "scenario" || v.trim().is_empty() {
                    return Err(ThresholdError::Tag(inner.into()));
                }
                (name.trim(), Some(v.trim().to_owned()))
            }
        };
        let metric =
            Metric::parse(name).ok_or_else(|| ThresholdError::UnknownMetric(name.into()))?;
        let e = expr.trim();
        let syntax = || ThresholdError::Syntax(expr.into());
        let at = e.find(['<', '>', '=', '!']).ok_or_else(syntax)?;
        let (agg_text, rest) = e.split_at(at);
        let (op, number) = [
            ("===", Op::Eq),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(text, op)| rest.strip_prefix(text).map(|n| (*op, n)))
        .ok_or_else(syntax)?;
        let value: f64 = number.trim().parse().map_err(|_| syntax())?;
        if !value.is_finite() {
            return Err(syntax());
        }
        let agg_text = agg_text.trim();
        let agg = match agg_text {
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "med" => Agg::Med,
            "max" => Agg::Max,
            "count" => Agg::Count,
            "rate" => Agg::Rate,
            p if p.starts_with("p(") && p.ends_with(')') => {
                let n = &p[2..p.len() - 1];
                match n.trim().parse::<f64>() {
                    Ok(v) if (0.0..=100.0).contains(&v) => Agg::P(v),
                    _ => return Err(ThresholdError::Percentile(p.into())),
                }
            }
            _ => return Err(syntax()),
        };
        let (ok, takes) = match metric.kind() {
            Kind::Trend => (!matches!(agg, Agg::Count | Agg::Rate), "avg, min, med, max, p(N)"),
            Kind::Rate | Kind::Counter => (matches!(agg, Agg::Count | Agg::Rate), "rate, count"),
        };
        if !ok {
            return Err(ThresholdError::Aggregation {
                agg: agg_text.into(),
                metric: metric.name(),
                takes,
            });
        }
        Ok(Self { metric, scenario, agg, op, value, expr: e.to_owned() })
    }

    /// `metric` or `metric{scenario:NAME}`.
    pub fn key(&self) -> String {
        match &self.scenario {
            Some(s) => format!("{}{{scenario:{s}}}", self.metric.name()),
            None => self.metric.name().to_owned(),
        }
    }

    /// Whether `observed` passes; no observation (no samples) fails.
    pub fn passes(&self, observed: Option<f64>) -> bool {
        observed.is_some_and(|v| self.op.holds(v, self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k6_expressions() {
        let t = Threshold::parse("submit_latency", "p(99)<10").expect("valid");
        assert_eq!(
            (t.metric, t.scenario.as_deref(), t.agg, t.op, t.value),
            (Metric::SubmitLatency, None, Agg::P(99.0), Op::Lt, 10.0)
        );
        let t = Threshold::parse("receipt_latency", " p(99.9) <= 250 ").expect("valid");
        assert_eq!(
            (t.agg, t.op, t.value, t.expr.as_str()),
            (Agg::P(99.9), Op::Le, 250.0, "p(99.9) <= 250")
        );
        let t = Threshold::parse("errors", "rate<0.001").expect("valid");
        assert_eq!((t.agg, t.op), (Agg::Rate, Op::Lt));
        let t = Threshold::parse("receipts{scenario:otp}", "rate>0.999").expect("valid");
        assert_eq!(
            (t.metric, t.scenario.as_deref(), t.key()),
            (Metric::Receipts, Some("otp"), "receipts{scenario:otp}".to_owned())
        );
        let t = Threshold::parse("submits", "count>100").expect("valid");
        assert_eq!((t.agg, t.op, t.value), (Agg::Count, Op::Gt, 100.0));
        for (e, op) in [
            ("avg>=1", Op::Ge),
            ("med==2", Op::Eq),
            ("max===2", Op::Eq),
            ("min!=0", Op::Ne),
            ("max>1e3", Op::Gt),
        ] {
            assert_eq!(Threshold::parse("submit_latency", e).expect(e).op, op);
        }
        assert_eq!(Threshold::parse("throttled", "count==0").expect("valid").value, 0.0);
    }

    #[test]
    fn rejects_what_k6_would() {
        use ThresholdError as E;
        let err = |k: &str, e: &str| Threshold::parse(k, e).expect_err("rejected");
        assert!(matches!(err("latency", "p(99)<10"), E::UnknownMetric(m) if m == "latency"));
        assert!(
            err("latency", "p(99)<10").to_string().contains("submit_latency"),
            "lists the metrics"
        );
        assert!(matches!(err("errors{status:x}", "rate<1"), E::Tag(_)));
        assert!(matches!(err("errors{scenario:a", "rate<1"), E::Tag(_)));
        assert!(matches!(err("submit_latency", "p99<10"), E::Syntax(_)));
        assert!(matches!(err("submit_latency", "p(99)"), E::Syntax(_)));
        assert!(matches!(err("submit_latency", "p(99)<ten"), E::Syntax(_)));
        assert!(matches!(err("submit_latency", "p(101)<10"), E::Percentile(_)));
        assert!(matches!(err("submit_latency", "rate<10"), E::Aggregation { .. }));
        assert!(matches!(err("errors", "p(99)<0.1"), E::Aggregation { .. }));
        assert!(matches!(err("submits", "avg>1"), E::Aggregation { .. }));
    }

    #[test]
    fn evaluation() {
        let t = Threshold::parse("submit_latency", "p(99)<10").expect("valid");
        assert!(t.passes(Some(9.99)));
        assert!(!t.passes(Some(10.0)));
        assert!(!t.passes(None), "no samples fails");
        let t = Threshold::parse("receipts", "rate>=0.999").expect("valid");
        assert!(t.passes(Some(0.999)) && t.passes(Some(1.0)) && !t.passes(Some(0.99)));
    }
}
