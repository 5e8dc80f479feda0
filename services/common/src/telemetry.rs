//! Logs and metrics, the same way in every role.
//!
//! - [`init_tracing`]: the process's `tracing` subscriber (text or JSON, to stderr so
//!   stdout stays clean for commands like `smsc hash-password`).
//! - [`Metrics`]: the one Prometheus registry of the process and the metric families,
//!   registered once at startup. Names are `smsc_<role>_<what>_<unit>`; labels take a
//!   small fixed set of values only (never an address, system_id or message_id).
//! - [`error_chain`]: an error with all its sources, for one log field.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

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
/// trouble), in 1-2.5-5 steps.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Requests in process on a session, up to the largest windows ESMEs ask for.
const WINDOW_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process's registry and every role's metric families.
///
/// Built once at startup and shared as `Arc<Metrics>`. Fields are the prometheus
/// handles themselves, so a hot path can resolve its labels once and keep the child:
///
/// ```
/// # let metrics = smsc_common::telemetry::Metrics::new();
/// let ok = metrics.edge.submit_total.with_label_values(&["submit_sm", "ESME_ROK"]);
/// ok.inc(); // per PDU: an atomic add, no label lookup
/// ```
pub struct Metrics {
    registry: Registry,
    pub edge: EdgeMetrics,
    pub router: RouterMetrics,
    pub worker: WorkerMetrics,
    pub upstream: UpstreamMetrics,
    /// `smsc_bus_consumer_lag_records{group,topic}`: records not yet committed on the
    /// partitions this process consumes, refreshed every few seconds by each consumer.
    pub consumer_lag: IntGaugeVec,
}

/// `smsc_upstream_*`: the SMPP upstream connectors of a worker. `connector` is the
/// configured connector name.
pub struct UpstreamMetrics {
    /// Binds up now, by `connector` and `bind_type` = transmitter|receiver|transceiver.
    pub binds: IntGaugeVec,
    /// Bind attempts by `connector` and `result` = the bind_resp command_status name, or
    /// connect_failed|tls_failed|timeout.
    pub bind_attempts_total: IntCounterVec,
    /// submit_sm by `connector` and `status` = the submit_sm_resp command_status name,
    /// or timeout | connection_lost (sent, no answer) | no_bind | queue_full (not sent:
    /// no bind up, or no room in the binds' windows and rate in time) | refused (not
    /// sent: the message does not fit a submit_sm).
    pub submits_total: IntCounterVec,
    /// From submit_sm written to its submit_sm_resp read, by `connector`.
    pub submit_seconds: HistogramVec,
    /// Receipts from the upstream by `connector` and `result`, each counted once as it
    /// arrives: matched (its id links to one of our messages) | unmatched (unknown id:
    /// parked for the submit_sm_resp it may have overtaken) | malformed (no id or no
    /// state in it); and matched_late: a parked receipt applied when the link was written.
    pub receipts_total: IntCounterVec,
    /// MO from the upstream by `connector` and `result` = published|failed.
    pub mo_total: IntCounterVec,
}

impl fmt::Debug for UpstreamMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamMetrics").finish_non_exhaustive()
    }
}

impl UpstreamMetrics {
    fn register(r: &Registry) -> Self {
        let submit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "smsc_upstream_submit_seconds",
                "From submit_sm written to the upstream to its submit_sm_resp read.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["connector"],
        )
        .expect("metric name, labels and buckets are valid");
        Self {
            binds: register(
                r,
                IntGaugeVec::new(
                    Opts::new("smsc_upstream_binds", "Binds to upstream SMSCs that are up."),
                    &["connector", "bind_type"],
                )
                .expect("metric name and labels are valid"),
            ),
            bind_attempts_total: counter_vec(
                r,
                "smsc_upstream_bind_attempts_total",
                "Bind attempts to upstream SMSCs by result.",
                &["connector", "result"],
            ),
            submits_total: counter_vec(
                r,
                "smsc_upstream_submits_total",
                "submit_sm to upstream SMSCs by submit_sm_resp command_status.",
                &["connector", "status"],
            ),
            submit_seconds: register(r, submit_seconds),
            receipts_total: counter_vec(
                r,
                "smsc_upstream_receipts_total",
                "Receipts from upstream SMSCs by result (matched, unmatched, matched_late, malformed).",
                &["connector", "result"],
            ),
            mo_total: counter_vec(
                r,
                "smsc_upstream_mo_total",
                "MO from upstream SMSCs by result.",
                &["connector", "result"],
            ),
        }
    }
}

/// `smsc_router_*`.
pub struct RouterMetrics {
    /// Submit events by `result` = routed|scheduled|duplicate|no_route.
    pub routed_total: IntCounterVec,
    /// MO by `result` = routed|no_route.
    pub mo_total: IntCounterVec,
}

/// `smsc_worker_*`.
pub struct WorkerMetrics {
    /// Connector calls by `connector` (configured names) and `outcome` =
    /// delivered|temporary|permanent.
    pub deliveries_total: IntCounterVec,
    /// Messages reaching a final state, by `state` (DELIVERED, UNDELIVERABLE, EXPIRED, ...).
    pub final_total: IntCounterVec,
    /// Tasks put on a retry tier, by `tier` (10s, 1m, ...).
    pub retries_total: IntCounterVec,
    /// Receipts and MO handed to an edge, by `kind` = receipt|mo and `outcome` =
    /// delivered|pending|refused.
    pub notifications_total: IntCounterVec,
    /// From submit accepted to final state.
    pub end_to_end_seconds: Histogram,
}

/// `smsc_edge_*`. Label values are fixed sets noted on each field.
pub struct EdgeMetrics {
    /// `bind_type` = transmitter|receiver|transceiver, `result` = the command_status
    /// name of the bind_resp (`ESME_ROK`, `ESME_RINVPASWD`, ...).
    pub binds_total: IntCounterVec,
    /// Bound sessions now, by `bind_type`.
    pub sessions: IntGaugeVec,
    /// Requests from ESMEs: `command` = submit_sm|submit_multi|data_sm|query_sm|
    /// cancel_sm|replace_sm, `status` = the response's command_status name.
    pub submit_total: IntCounterVec,
    /// From a submit's last byte read to its response written.
    pub submit_seconds: Histogram,
    /// Requests answered ESME_RTHROTTLED (window full or rate exceeded).
    pub throttled_total: IntCounter,
    /// deliver_sm sent: `kind` = receipt|mo, `outcome` = the deliver_sm_resp
    /// command_status name, or `timeout` / `unbound` when none came.
    pub deliver_sm_total: IntCounterVec,
    /// From deliver_sm written to its response read.
    pub deliver_sm_seconds: Histogram,
    /// Requests in process on the session, observed as each new request is admitted.
    ///
    /// A histogram, not a gauge: a gauge summed over sessions hides the one session
    /// that sits at its window, which is what a full window looks like to an operator.
    pub window_in_use: Histogram,
    /// Open TCP connections, bound or not.
    pub connections: IntGauge,
    /// PDUs that did not decode, by the command_status answered (`ESME_RINVCMDLEN`, ...).
    pub decode_errors_total: IntCounterVec,
    /// Connections closed without being served, by `reason` = per_pod (max_connections)|
    /// per_ip (max_connections_per_ip)|lockout (a bind from a locked-out
    /// system_id and address: answered ESME_RBINDFAIL, then closed).
    pub connections_refused_total: IntCounterVec,
    /// Pairs of system_id and client address locked out, by `reason` = bind_failures.
    pub lockouts_total: IntCounterVec,
    /// Connections closed because a PDU started and did not complete within
    /// `edge.pdu_read_timeout` (slow-read clients).
    pub pdu_read_timeouts_total: IntCounter,
    /// Bound sessions unbound because a changed account set no longer admits them
    /// (account removed or disabled, bind type or client address no longer allowed).
    pub sessions_revoked: IntCounter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl fmt::Debug for RouterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterMetrics").finish_non_exhaustive()
    }
}

impl fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric name and labels are valid");
    register(registry, c)
}

impl RouterMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            routed_total: counter_vec(
                r,
                "smsc_router_routed_total",
                "Submit events by routing result.",
                &["result"],
            ),
            mo_total: counter_vec(
                r,
                "smsc_router_mo_total",
                "MO messages by routing result.",
                &["result"],
            ),
        }
    }
}

impl WorkerMetrics {
    fn register(r: &Registry) -> Self {
        let h = Histogram::with_opts(
            HistogramOpts::new(
                "smsc_worker_end_to_end_seconds",
                "From submit accepted to final state.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("metric name and buckets are valid");
        Self {
            deliveries_total: counter_vec(
                r,
                "smsc_worker_deliveries_total",
                "Connector calls by connector and outcome.",
                &["connector", "outcome"],
            ),
            final_total: counter_vec(
                r,
                "smsc_worker_final_total",
                "Messages reaching a final state, by state.",
                &["state"],
            ),
            retries_total: counter_vec(
                r,
                "smsc_worker_retries_total",
                "Delivery tasks put on a retry tier, by tier.",
                &["tier"],
            ),
            notifications_total: counter_vec(
                r,
                "smsc_worker_notifications_total",
                "Receipts and MO handed to edges, by kind and outcome.",
                &["kind", "outcome"],
            ),
            end_to_end_seconds: register(r, h),
        }
    }
}

impl fmt::Debug for EdgeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeMetrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let edge = EdgeMetrics::register(&registry);
        let router = RouterMetrics::register(&registry);
        let worker = WorkerMetrics::register(&registry);
        let upstream = UpstreamMetrics::register(&registry);
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "smsc_bus_consumer_lag_records",
                "Records not yet committed on the partitions this process consumes.",
            ),
            &["group", "topic"],
        )
        .expect("metric name and labels are valid");
        registry.register(Box::new(consumer_lag.clone())).expect("registered once");
        Arc::new(Metrics { registry, edge, router, worker, upstream, consumer_lag })
    }

    /// For a role's own metrics beyond the shared ones.
    pub fn registry(&self) -> &Registry {
        &self.registry
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

impl EdgeMetrics {
    fn register(registry: &Registry) -> Self {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric name and labels are valid");
            register(registry, c)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("metric name and buckets are valid");
            register(registry, h)
        };
        Self {
            binds_total: counter_vec(
                "smsc_edge_binds_total",
                "Bind attempts by bind type and bind_resp command_status.",
                &["bind_type", "result"],
            ),
            sessions: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("smsc_edge_sessions", "Bound SMPP sessions by bind type."),
                    &["bind_type"],
                )
                .expect("metric name and labels are valid"),
            ),
            submit_total: counter_vec(
                "smsc_edge_submit_total",
                "ESME requests by command and response command_status.",
                &["command", "status"],
            ),
            submit_seconds: histogram(
                "smsc_edge_submit_seconds",
                "Time from a request read to its response written.",
                LATENCY_BUCKETS,
            ),
            throttled_total: register(
                registry,
                IntCounter::new(
                    "smsc_edge_throttled_total",
                    "Requests answered ESME_RTHROTTLED (window full or rate exceeded).",
                )
                .expect("metric name is valid"),
            ),
            deliver_sm_total: counter_vec(
                "smsc_edge_deliver_sm_total",
                "deliver_sm sent by kind (receipt, mo) and outcome.",
                &["kind", "outcome"],
            ),
            deliver_sm_seconds: histogram(
                "smsc_edge_deliver_sm_seconds",
                "Time from deliver_sm written to deliver_sm_resp read.",
                LATENCY_BUCKETS,
            ),
            window_in_use: histogram(
                "smsc_edge_window_in_use",
                "Requests in process on a session, observed at each admitted request.",
                WINDOW_BUCKETS,
            ),
            connections: register(
                registry,
                IntGauge::new("smsc_edge_connections", "Open SMPP TCP connections.")
                    .expect("metric name is valid"),
            ),
            decode_errors_total: counter_vec(
                "smsc_edge_decode_errors_total",
                "PDUs that failed to decode, by the command_status answered.",
                &["status"],
            ),
            connections_refused_total: counter_vec(
                "smsc_edge_connections_refused_total",
                "Connections closed without being served, by reason (per_pod, per_ip, lockout).",
                &["reason"],
            ),
            lockouts_total: counter_vec(
                "smsc_edge_lockouts_total",
                "system_id and client address pairs locked out after failed binds, by reason.",
                &["reason"],
            ),
            pdu_read_timeouts_total: register(
                registry,
                IntCounter::new(
                    "smsc_edge_pdu_read_timeouts_total",
                    "Connections closed because a started PDU did not complete in time.",
                )
                .expect("metric name is valid"),
            ),
            sessions_revoked: register(
                registry,
                IntCounter::new(
                    "smsc_edge_sessions_revoked_total",
                    "Bound sessions unbound because the account set no longer admits them.",
                )
                .expect("metric name is valid"),
            ),
        }
    }
}

/// Registers a collector built here; names are unique by construction.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).expect("metric names are unique within the registry");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_after_use() {
        let m = Metrics::new();
        let e = &m.edge;
        e.binds_total.with_label_values(&["transceiver", "ESME_ROK"]).inc();
        e.sessions.with_label_values(&["transceiver"]).set(3);
        let ok = e.submit_total.with_label_values(&["submit_sm", "ESME_ROK"]);
        ok.inc();
        ok.inc();
        e.submit_seconds.observe(0.000_2);
        e.throttled_total.inc();
        e.deliver_sm_total.with_label_values(&["receipt", "ESME_ROK"]).inc();
        e.deliver_sm_seconds.observe(0.01);
        e.window_in_use.observe(5.0);
        e.connections.set(2);
        e.decode_errors_total.with_label_values(&["ESME_RINVCMDLEN"]).inc();
        e.connections_refused_total.with_label_values(&["per_ip"]).inc();
        e.lockouts_total.with_label_values(&["bind_failures"]).inc();
        e.pdu_read_timeouts_total.inc();

        let text = m.encode();
        for line in [
            r#"smsc_edge_binds_total{bind_type="transceiver",result="ESME_ROK"} 1"#,
            r#"smsc_edge_sessions{bind_type="transceiver"} 3"#,
            r#"smsc_edge_submit_total{command="submit_sm",status="ESME_ROK"} 2"#,
            r#"smsc_edge_submit_seconds_bucket{le="0.00005"} 0"#,
            r#"smsc_edge_submit_seconds_bucket{le="0.00025"} 1"#,
            r#"smsc_edge_submit_seconds_bucket{le="5"} 1"#,
            "smsc_edge_throttled_total 1",
            r#"smsc_edge_deliver_sm_total{kind="receipt",outcome="ESME_ROK"} 1"#,
            "smsc_edge_deliver_sm_seconds_count 1",
            r#"smsc_edge_window_in_use_bucket{le="8"} 1"#,
            "smsc_edge_connections 2",
            r#"smsc_edge_decode_errors_total{status="ESME_RINVCMDLEN"} 1"#,
            r#"smsc_edge_connections_refused_total{reason="per_ip"} 1"#,
            r#"smsc_edge_lockouts_total{reason="bind_failures"} 1"#,
            "smsc_edge_pdu_read_timeouts_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn upstream_family_is_exposed_after_use() {
        let m = Metrics::new();
        let u = &m.upstream;
        u.binds.with_label_values(&["up", "transceiver"]).set(2);
        u.bind_attempts_total.with_label_values(&["up", "ESME_ROK"]).inc();
        u.submits_total.with_label_values(&["up", "ESME_RTHROTTLED"]).inc();
        u.submit_seconds.with_label_values(&["up"]).observe(0.003);
        u.receipts_total.with_label_values(&["up", "matched"]).inc();
        u.mo_total.with_label_values(&["up", "published"]).inc();
        let text = m.encode();
        for line in [
            r#"smsc_upstream_binds{bind_type="transceiver",connector="up"} 2"#,
            r#"smsc_upstream_bind_attempts_total{connector="up",result="ESME_ROK"} 1"#,
            r#"smsc_upstream_submits_total{connector="up",status="ESME_RTHROTTLED"} 1"#,
            r#"smsc_upstream_submit_seconds_bucket{connector="up",le="0.005"} 1"#,
            r#"smsc_upstream_receipts_total{connector="up",result="matched"} 1"#,
            r#"smsc_upstream_mo_total{connector="up",result="published"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn registries_are_per_instance() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.edge.connections.set(7);
        assert!(a.encode().contains("smsc_edge_connections 7"));
        assert!(b.encode().contains("smsc_edge_connections 0"));
    }

    #[test]
    fn error_chain_shows_sources() {
        let inner = std::io::Error::other("disk on fire");
        let outer = crate::config::ConfigError::Read { path: "/x.yaml".into(), source: inner };
        assert_eq!(error_chain(&outer).to_string(), "cannot read /x.yaml: disk on fire");
    }
}
