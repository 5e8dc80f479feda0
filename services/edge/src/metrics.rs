//! `smsc_edge_*`: the edge's metric families, on the process's registry.

use std::fmt;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use smsc_runtime::telemetry::{
    Family, LATENCY_BUCKETS, counter, counter_vec, gauge, gauge_vec, histogram,
};

/// Requests in process on a session, up to the largest windows ESMEs ask for.
const WINDOW_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// `smsc_edge_*`. Label values are fixed sets noted on each field.
pub struct EdgeMetrics {
    /// `bind_type` = transmitter|receiver|transceiver, `result` = the command_status
    /// name of the bind_resp (`ESME_ROK`, `ESME_RINVPASWD`, ...).
    pub binds_total: IntCounterVec,
    /// Bound sessions now, by `bind_type`.
    pub sessions: IntGaugeVec,
    /// Requests from ESMEs: `command` = submit_sm|submit_multi|data_sm|query_sm|
    /// cancel_sm|replace_sm, `status` = the response's command_status name; and the
    /// HTTP API's messages (one per destination of each part): `command` = http, `status`
    /// = the SMPP status the same message would have got.
    pub submit_total: IntCounterVec,
    /// HTTP API requests: `route` = submit|batch|get|delete|openapi|other, `code` = the
    /// HTTP status code answered.
    pub http_requests_total: IntCounterVec,
    /// From a submit's last byte read to its response written.
    pub submit_seconds: Histogram,
    /// Requests answered ESME_RTHROTTLED (window full, rate exceeded, or the account's backlog).
    pub throttled_total: IntCounter,
    /// Of those, submits of an account holding more than its share of a hop that falls
    /// behind (backpressure aimed at the cause).
    pub backlog_throttled_total: IntCounter,
    /// Submits refused past the account's quota, by `period` = day|month.
    pub quota_refused_total: IntCounterVec,
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
    /// Binds' credential checks by `via` = cache (verified lately: no argon2)|shared
    /// (waited for another bind's argon2 check of the same credentials)|argon2.
    pub bind_password_checks_total: IntCounterVec,
    /// Connections closed because a PDU started and did not complete within
    /// `edge.pdu_read_timeout` (slow-read clients).
    pub pdu_read_timeouts_total: IntCounter,
    /// Bound sessions unbound because a changed account set no longer admits them
    /// (account removed or disabled, bind type or client address no longer allowed).
    pub sessions_revoked: IntCounter,
    /// Sessions unbound to spread them over the edge pods (rebalance), by `bind_type`.
    pub sessions_shed_total: IntCounterVec,
    /// Connections from a trusted balancer (`edge.proxy_protocol`) closed without a
    /// usable PROXY header, by `reason` = missing (no signature)|malformed|oversized|
    /// truncated (closed inside it)|timeout (not whole within `edge.pdu_read_timeout`).
    pub proxy_protocol_errors_total: IntCounterVec,
}

impl fmt::Debug for EdgeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeMetrics").finish_non_exhaustive()
    }
}

impl Family for EdgeMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            quota_refused_total: {
                let c = counter_vec(
                    r,
                    "smsc_edge_quota_refused_total",
                    "Submits refused because the account's daily or monthly quota is spent, by period.",
                    &["period"],
                );
                // Both periods exist from the start, at 0: a dashboard or an alert on a
                // rate sees a series before the first refusal.
                for period in crate::quota::Period::ALL {
                    c.with_label_values(&[period.name()]);
                }
                c
            },
            sessions_shed_total: counter_vec(
                r,
                "smsc_edge_sessions_shed_total",
                "Sessions unbound to spread them over the edge pods, by bind type.",
                &["bind_type"],
            ),
            binds_total: counter_vec(
                r,
                "smsc_edge_binds_total",
                "Bind attempts by bind type and bind_resp command_status.",
                &["bind_type", "result"],
            ),
            sessions: gauge_vec(
                r,
                "smsc_edge_sessions",
                "Bound SMPP sessions by bind type.",
                &["bind_type"],
            ),
            submit_total: counter_vec(
                r,
                "smsc_edge_submit_total",
                "ESME requests by command and response command_status.",
                &["command", "status"],
            ),
            http_requests_total: counter_vec(
                r,
                "smsc_edge_http_requests_total",
                "HTTP API requests by route and status code.",
                &["route", "code"],
            ),
            submit_seconds: histogram(
                r,
                "smsc_edge_submit_seconds",
                "Time from a request read to its response written.",
                LATENCY_BUCKETS,
            ),
            throttled_total: counter(
                r,
                "smsc_edge_throttled_total",
                "Requests answered ESME_RTHROTTLED (window full, rate exceeded, or the account's backlog).",
            ),
            backlog_throttled_total: counter(
                r,
                "smsc_edge_backlog_throttled_total",
                "Submits throttled because their account holds more than its share of a hop that falls behind.",
            ),
            deliver_sm_total: counter_vec(
                r,
                "smsc_edge_deliver_sm_total",
                "deliver_sm sent by kind (receipt, mo) and outcome.",
                &["kind", "outcome"],
            ),
            deliver_sm_seconds: histogram(
                r,
                "smsc_edge_deliver_sm_seconds",
                "Time from deliver_sm written to deliver_sm_resp read.",
                LATENCY_BUCKETS,
            ),
            window_in_use: histogram(
                r,
                "smsc_edge_window_in_use",
                "Requests in process on a session, observed at each admitted request.",
                WINDOW_BUCKETS,
            ),
            connections: gauge(r, "smsc_edge_connections", "Open SMPP TCP connections."),
            decode_errors_total: counter_vec(
                r,
                "smsc_edge_decode_errors_total",
                "PDUs that failed to decode, by the command_status answered.",
                &["status"],
            ),
            connections_refused_total: counter_vec(
                r,
                "smsc_edge_connections_refused_total",
                "Connections closed without being served, by reason (per_pod, per_ip, lockout).",
                &["reason"],
            ),
            lockouts_total: counter_vec(
                r,
                "smsc_edge_lockouts_total",
                "system_id and client address pairs locked out after failed binds, by reason.",
                &["reason"],
            ),
            bind_password_checks_total: {
                let c = counter_vec(
                    r,
                    "smsc_edge_bind_password_checks_total",
                    "Binds' credential checks by how they were decided (cache, shared, argon2).",
                    &["via"],
                );
                for via in smsc_accounts::Via::ALL {
                    c.with_label_values(&[via.as_str()]);
                }
                c
            },
            pdu_read_timeouts_total: counter(
                r,
                "smsc_edge_pdu_read_timeouts_total",
                "Connections closed because a started PDU did not complete in time.",
            ),
            sessions_revoked: counter(
                r,
                "smsc_edge_sessions_revoked_total",
                "Bound sessions unbound because the account set no longer admits them.",
            ),
            proxy_protocol_errors_total: {
                let c = counter_vec(
                    r,
                    "smsc_edge_proxy_protocol_errors_total",
                    "Connections from a trusted load balancer closed without a usable PROXY protocol header, by reason.",
                    &["reason"],
                );
                for reason in crate::proxy::REASONS {
                    c.with_label_values(&[reason]);
                }
                c
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsc_runtime::telemetry::Metrics;

    #[test]
    fn every_family_is_exposed_after_use() {
        let m = Metrics::new();
        let e = m.family::<EdgeMetrics>();
        e.binds_total.with_label_values(&["transceiver", "ESME_ROK"]).inc();
        e.sessions.with_label_values(&["transceiver"]).set(3);
        let ok = e.submit_total.with_label_values(&["submit_sm", "ESME_ROK"]);
        ok.inc();
        ok.inc();
        e.submit_seconds.observe(0.000_2);
        e.throttled_total.inc();
        e.backlog_throttled_total.inc();
        e.deliver_sm_total.with_label_values(&["receipt", "ESME_ROK"]).inc();
        e.deliver_sm_seconds.observe(0.01);
        e.window_in_use.observe(5.0);
        e.connections.set(2);
        e.decode_errors_total.with_label_values(&["ESME_RINVCMDLEN"]).inc();
        e.connections_refused_total.with_label_values(&["per_ip"]).inc();
        e.lockouts_total.with_label_values(&["bind_failures"]).inc();
        e.pdu_read_timeouts_total.inc();
        e.proxy_protocol_errors_total.with_label_values(&["timeout"]).inc();

        let text = m.encode();
        for line in [
            r#"smsc_edge_binds_total{bind_type="transceiver",result="ESME_ROK"} 1"#,
            r#"smsc_edge_sessions{bind_type="transceiver"} 3"#,
            r#"smsc_edge_submit_total{command="submit_sm",status="ESME_ROK"} 2"#,
            r#"smsc_edge_submit_seconds_bucket{le="0.00005"} 0"#,
            r#"smsc_edge_submit_seconds_bucket{le="0.00025"} 1"#,
            r#"smsc_edge_submit_seconds_bucket{le="5"} 1"#,
            "smsc_edge_throttled_total 1",
            "smsc_edge_backlog_throttled_total 1",
            r#"smsc_edge_deliver_sm_total{kind="receipt",outcome="ESME_ROK"} 1"#,
            "smsc_edge_deliver_sm_seconds_count 1",
            r#"smsc_edge_window_in_use_bucket{le="8"} 1"#,
            "smsc_edge_connections 2",
            r#"smsc_edge_decode_errors_total{status="ESME_RINVCMDLEN"} 1"#,
            r#"smsc_edge_connections_refused_total{reason="per_ip"} 1"#,
            r#"smsc_edge_lockouts_total{reason="bind_failures"} 1"#,
            "smsc_edge_pdu_read_timeouts_total 1",
            r#"smsc_edge_proxy_protocol_errors_total{reason="timeout"} 1"#,
            r#"smsc_edge_proxy_protocol_errors_total{reason="missing"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn registries_are_per_instance() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.family::<EdgeMetrics>().connections.set(7);
        b.family::<EdgeMetrics>();
        assert!(a.encode().contains("smsc_edge_connections 7"));
        assert!(b.encode().contains("smsc_edge_connections 0"));
    }
}
