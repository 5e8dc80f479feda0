//! `smsc_worker_*` and `smsc_upstream_*`: the delivery worker's metric families, on the
//! process's registry.

use std::fmt;

use prometheus::{Histogram, HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use smsc_runtime::telemetry::{
    Family, LATENCY_BUCKETS, counter_vec, gauge_vec, histogram, histogram_vec,
};

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
    /// Requests to accounts' webhooks by `result` = delivered (2xx)|refused (4xx but
    /// 408 and 429: dropped)|failed (anything else: kept pending, the endpoint rests).
    pub webhook_requests_total: IntCounterVec,
    /// From submit accepted to final state.
    pub end_to_end_seconds: Histogram,
}

impl fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl Family for WorkerMetrics {
    fn register(r: &Registry) -> Self {
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
            webhook_requests_total: counter_vec(
                r,
                "smsc_worker_webhook_requests_total",
                "Requests to accounts' webhooks (HTTP receipts, MO with no SMPP receiver), by result.",
                &["result"],
            ),
            end_to_end_seconds: histogram(
                r,
                "smsc_worker_end_to_end_seconds",
                "From submit accepted to final state.",
                LATENCY_BUCKETS,
            ),
        }
    }
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

impl Family for UpstreamMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            binds: gauge_vec(
                r,
                "smsc_upstream_binds",
                "Binds to upstream SMSCs that are up.",
                &["connector", "bind_type"],
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
            submit_seconds: histogram_vec(
                r,
                "smsc_upstream_submit_seconds",
                "From submit_sm written to the upstream to its submit_sm_resp read.",
                &["connector"],
                LATENCY_BUCKETS,
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use smsc_runtime::telemetry::Metrics;

    #[test]
    fn upstream_family_is_exposed_after_use() {
        let m = Metrics::new();
        let u = m.family::<UpstreamMetrics>();
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
}
