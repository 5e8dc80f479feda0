//! Logs and metrics, the same way in every role.
//!
//! - [`init_tracing`]: the process's `tracing` subscriber (text or JSON, to stderr so
//!   stdout stays clean for commands like `smsc hash-password`).
//! - [`Metrics`]: the one Prometheus registry of the process. Each role declares its
//!   metric families ([`Family`]) and takes them from it. Names are
//!   `smsc_<role>_<what>_<unit>`; labels take a small fixed set of values only (never
//!   an address, system_id or message_id).
//! - [`error_chain`]: an error with all its sources, for one log field.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid filter")]
    Filter {
        #[source]
        source: tracing_subscriber::filter::FromEnvError,
    },
    #[error("a tracing subscriber is already installed")]
    Init {
        #[source]
        source: Box<dyn Error + Send + Sync + 'static>,
    },
}

/// Installs the global subscriber: filter from `RUST_LOG` (default `info`), text or
/// one JSON object per line. A `RUST_LOG` that does not parse is an error rather than
/// silently logging something else.
pub fn init_tracing(json: bool) -> Result<(), TelemetryError> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(|source| TelemetryError::Filter { source })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = if json {
        builder.json().with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|source| TelemetryError::Init { source })
}

/// Displays an error followed by each of its sources: `a: b: c`.
pub fn error_chain<'a>(error: &'a (dyn Error + 'static)) -> impl fmt::Display + 'a {
    struct Chain<'a>(&'a (dyn Error + 'static));
    impl fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)?;
            let mut next = self.0.source();
            while let Some(e) = next {
                write!(f, ": {e}")?;
                next = e.source();
            }
            Ok(())
        }
    }
    Chain(error)
}

/// Submit and deliver latencies: 50µs (in-process embedded bus) to 5s (a broker in
/// trouble), in 1-2.5-5 steps. Every role's latency histograms use them.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// A role's metric families (`smsc_edge::EdgeMetrics`, ...), registered on the process's
/// registry the first time the role asks for them ([`Metrics::family`]).
pub trait Family: Send + Sync + 'static {
    fn register(registry: &Registry) -> Self;
}

/// The process's one Prometheus registry, with the metric families of the roles it runs.
///
/// Built once at startup and shared as `Arc<Metrics>`. A role takes its families once,
/// when it is built, and keeps the prometheus handles; a hot path resolves its labels
/// once and keeps the child:
///
/// ```
/// # use smsc_runtime::telemetry::{Family, Metrics};
/// # struct EdgeMetrics { submit_total: prometheus::IntCounterVec }
/// # impl Family for EdgeMetrics {
/// #     fn register(r: &prometheus::Registry) -> Self {
/// #         let submit_total = smsc_runtime::telemetry::counter_vec(r, "smsc_edge_submit_total", "h", &["command", "status"]);
/// #         Self { submit_total }
/// #     }
/// # }
/// let metrics = Metrics::new();
/// let edge = metrics.family::<EdgeMetrics>();
/// let ok = edge.submit_total.with_label_values(&["submit_sm", "ESME_ROK"]);
/// ok.inc(); // per PDU: an atomic add, no label lookup
/// ```
pub struct Metrics {
    registry: Registry,
    families: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// `smsc_bus_consumer_lag_records{group,topic}`: records not yet handled (acked in order) on the
    /// partitions this process consumes, refreshed every few seconds by each consumer
    /// (the router's and the worker's alike).
    pub consumer_lag: IntGaugeVec,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let consumer_lag = gauge_vec(
            &registry,
            "smsc_bus_consumer_lag_records",
            "Records not yet handled (acked in order) on the partitions this process consumes.",
            &["group", "topic"],
        );
        Arc::new(Metrics { registry, families: Mutex::default(), consumer_lag })
    }

    /// The families `F`, registered on first use; every caller in the process shares them
    /// (in `smsc all`, the roles of one process; in tests, the instances of one role).
    pub fn family<F: Family>(&self) -> Arc<F> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families
            .entry(TypeId::of::<F>())
            .or_insert_with(|| Arc::new(F::register(&self.registry)) as Arc<dyn Any + Send + Sync>)
            .clone();
        family.downcast::<F>().unwrap_or_else(|_| unreachable!("keyed by the type"))
    }

    /// Everything registered, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            // Only a malformed family fails, and ours are fixed; a scrape with what
            // was written beats no scrape.
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

/// Registers a collector built here; names are unique by construction (each family is
/// registered once per registry).
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).expect("metric names are unique within the registry");
    c
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("metric name is valid"))
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric name and labels are valid");
    register(registry, c)
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("metric name is valid"))
}

pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("metric name and labels are valid");
    register(registry, g)
}

pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("metric name and buckets are valid");
    register(registry, h)
}

pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("metric name, labels and buckets are valid");
    register(registry, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample {
        seen: IntCounter,
    }

    impl Family for Sample {
        fn register(registry: &Registry) -> Self {
            Self { seen: counter(registry, "smsc_test_seen_total", "Seen.") }
        }
    }

    #[test]
    fn a_family_is_registered_once_and_shared() {
        let m = Metrics::new();
        m.family::<Sample>().seen.inc();
        m.family::<Sample>().seen.inc();
        assert!(m.encode().lines().any(|l| l == "smsc_test_seen_total 2"), "{}", m.encode());
    }

    #[test]
    fn registries_are_per_instance() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.family::<Sample>().seen.inc();
        b.family::<Sample>();
        assert!(a.encode().contains("smsc_test_seen_total 1"));
        assert!(b.encode().contains("smsc_test_seen_total 0"));
    }

    #[test]
    fn error_chain_shows_sources() {
        let inner = std::io::Error::other("disk on fire");
        let outer = crate::config::ConfigError::Read { path: "/x.yaml".into(), source: inner };
        assert_eq!(error_chain(&outer).to_string(), "cannot read /x.yaml: disk on fire");
    }
}
