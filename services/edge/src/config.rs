//! `edge:`: the SMPP edge's section of the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use smsc_runtime::config::{ConfigError, duration, invalid};

pub use crate::proxy::ProxyProtocolConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    pub smpp_listen: SocketAddr,
    /// SMPP over TLS on a second port; absent: plain SMPP only.
    pub tls: Option<TlsConfig>,
    pub grpc_listen: SocketAddr,
    /// `host:port` other pods use to reach this edge's gRPC; absent: `grpc_listen`
    /// (see [`EdgeConfig::advertised_grpc_addr`]). In Kubernetes set it from the pod IP.
    pub grpc_advertise: Option<String>,
    /// The HTTP API (`POST /v1/messages`, ...: docs/http-api.md); absent: no HTTP API.
    /// `smsc all` opens it on 127.0.0.1:8080 unless set.
    pub http_listen: Option<SocketAddr>,
    /// HTTPS on `http_listen` with this certificate; absent: plain HTTP.
    pub http_tls: Option<HttpTlsConfig>,
    /// Limits of the HTTP API's requests.
    pub http: HttpConfig,
    /// From accept to a successful bind.
    #[serde(deserialize_with = "duration")]
    pub session_init_timeout: Duration,
    /// Idle time before the edge sends enquire_link.
    #[serde(deserialize_with = "duration")]
    pub enquire_link_interval: Duration,
    /// No PDU at all from the ESME for this long: unbind and close.
    #[serde(deserialize_with = "duration")]
    pub inactivity_timeout: Duration,
    /// For PDUs the edge sends (deliver_sm, enquire_link, unbind).
    #[serde(deserialize_with = "duration")]
    pub response_timeout: Duration,
    /// Largest command_length accepted before the body is buffered.
    pub max_command_length: u32,
    /// On SIGTERM: how long sessions get to finish in-flight work after the unbind.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
    pub max_connections: u32,
    /// Open connections from one client address (an IPv6 client counts by its /64);
    /// past it a new connection is closed at accept.
    pub max_connections_per_ip: u32,
    /// Once the first octet of a PDU has arrived, the whole PDU must arrive within this
    /// (slow-read attacks). Time between PDUs is the inactivity timer's business.
    #[serde(deserialize_with = "duration")]
    pub pdu_read_timeout: Duration,
    /// Refusing binds after repeated password failures.
    pub lockout: LockoutConfig,
    /// The PROXY protocol from load balancers that do not keep the client's address.
    pub proxy_protocol: ProxyProtocolConfig,
    /// Where the edge learns how many edge pods are ready; absent: no rebalancing.
    pub peers: Option<PeersConfig>,
    /// Shedding sessions above this pod's fair share (needs `peers`).
    pub rebalance: RebalanceConfig,
    /// Keeps the pod's `controller.kubernetes.io/pod-deletion-cost` annotation equal to
    /// its bound sessions, so that scaling in removes the least loaded edge; absent: off.
    pub pod_deletion_cost: Option<PodDeletionCostConfig>,
    /// TTL of a session's entry in the session directory, refreshed while it lives.
    #[serde(deserialize_with = "duration")]
    pub session_lease_ttl: Duration,
    /// How long a receipt or MO for an ESME whose receiver sessions all have a full
    /// queue waits for room before the edge answers "busy" (and the worker makes it
    /// pending). Longer holds a slow ESME's receipts on the bus; it also holds back the
    /// other accounts that share the worker's dispatcher lane for up to this long.
    #[serde(deserialize_with = "duration")]
    pub deliver_queue_wait: Duration,
    /// Bind credentials verified lately, so a rebind storm does not pay argon2 per bind.
    pub credential_cache: CredentialCacheConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            smpp_listen: SocketAddr::from(([127, 0, 0, 1], 2775)),
            tls: None,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            grpc_advertise: None,
            http_listen: None,
            http_tls: None,
            http: HttpConfig::default(),
            session_init_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            inactivity_timeout: Duration::from_secs(300),
            response_timeout: Duration::from_secs(10),
            max_command_length: smsc_smpp::DEFAULT_MAX_COMMAND_LENGTH,
            drain_timeout: Duration::from_secs(20),
            max_connections: 10_000,
            max_connections_per_ip: 100,
            pdu_read_timeout: Duration::from_secs(10),
            lockout: LockoutConfig::default(),
            proxy_protocol: ProxyProtocolConfig::default(),
            peers: None,
            rebalance: RebalanceConfig::default(),
            pod_deletion_cost: None,
            session_lease_ttl: Duration::from_secs(30),
            deliver_queue_wait: Duration::from_secs(2),
            credential_cache: CredentialCacheConfig::default(),
        }
    }
}

/// `edge.lockout`: after `max_failures` failed binds (unknown system_id or wrong
/// password) for one system_id from one client address within `window`, binds of that
/// pair are refused for `duration` without their password being checked. A successful
/// bind clears the count. Per edge pod, in memory, at most `max_entries` pairs (the
/// oldest are forgotten first).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// 0 turns the lockout off.
    pub max_failures: u32,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    pub max_entries: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(5 * 60),
            duration: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

/// `edge.credential_cache`: a bind whose password argon2 accepted lets the next binds
/// with the same system_id, password and account password_hash through without argon2
/// for `ttl` after that check (a hit does not extend it), so the ESMEs of a lost or
/// drained pod rebind on the others at once without each paying argon2. Per edge pod,
/// in memory, a keyed digest per system_id (never the password), at most `max_entries`
/// (the one expiring first goes). Wrong passwords and unknown system_ids are never
/// remembered. `ttl: 0s` turns it off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialCacheConfig {
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    pub max_entries: usize,
}

impl Default for CredentialCacheConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(5 * 60), max_entries: 10_000 }
    }
}

/// `edge.http_tls`: the HTTP API's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `edge.http`: what one request of the HTTP API may carry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Bytes of a request body; past it, 413 before the body is read on.
    pub max_body_bytes: usize,
    /// Messages one request may submit, counting every destination of every part (and
    /// every message of a batch).
    pub max_messages: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { max_body_bytes: 1 << 20, max_messages: 1_000 }
    }
}

/// `edge.peers`: how many edge pods are ready, for [`RebalanceConfig`]. Exactly one
/// source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// A headless Service that lists only ready pods (no `publishNotReadyAddresses`):
    /// each address it resolves to is a ready edge.
    #[serde(default)]
    pub dns: Option<String>,
    /// The edges' admin addresses (`host:port`); one counts while its `/ready` answers
    /// 200. For local clusters and tests.
    #[serde(default)]
    pub admin: Vec<String>,
    /// A Service of the pod's namespace (the SMPP one): its EndpointSlices' ready
    /// endpoints are the ready edges. Needs a build with the `k8s` feature.
    #[serde(default)]
    pub service: Option<String>,
}

/// `edge.rebalance`: every `interval`, an edge holding more than its fair share
/// (`ceil(sessions in the cluster / ready edges)`) plus `slack` unbinds up to
/// `max_shed_per_interval` sessions, never going below the fair share; the ESMEs bind
/// again through the Service, to the other pods.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RebalanceConfig {
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// 0 turns rebalancing off.
    pub max_shed_per_interval: u32,
    pub slack: u32,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(15), max_shed_per_interval: 5, slack: 1 }
    }
}

/// `edge.pod_deletion_cost`: every `interval`, if the pod's bound sessions changed, the
/// edge patches its own Pod (`node_id`, which is `$POD_NAME` by default, in the pod's
/// namespace) with `controller.kubernetes.io/pod-deletion-cost: "<sessions>"`. The
/// ReplicaSet controller deletes the pods of lowest cost first when the Deployment
/// scales in. Needs a build with the `k8s` feature and RBAC `patch` on `pods`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodDeletionCostConfig {
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
}

impl Default for PodDeletionCostConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(10) }
    }
}

impl EdgeConfig {
    /// `grpc_advertise`, or `grpc_listen` when it is not set.
    pub fn advertised_grpc_addr(&self) -> String {
        self.grpc_advertise.clone().unwrap_or_else(|| self.grpc_listen.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

fn default_tls_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2776))
}

impl EdgeConfig {
    /// The rules of `edge.*` that deserialising does not check. `deliver_deadline` is the
    /// workers' deadline on one `Edge.Deliver` call, which the edge's waits must fit in.
    pub fn validate(&self, deliver_deadline: Duration) -> Result<(), ConfigError> {
        let e = self;
        for (key, value) in [
            ("edge.session_init_timeout", e.session_init_timeout),
            ("edge.enquire_link_interval", e.enquire_link_interval),
            ("edge.inactivity_timeout", e.inactivity_timeout),
            ("edge.response_timeout", e.response_timeout),
            ("edge.session_lease_ttl", e.session_lease_ttl),
            ("edge.pdu_read_timeout", e.pdu_read_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }
        if e.deliver_queue_wait + e.response_timeout >= deliver_deadline {
            return Err(invalid(
                "edge.deliver_queue_wait",
                format!(
                    "plus edge.response_timeout must stay under the workers' {} Edge.Deliver deadline",
                    humantime::format_duration(deliver_deadline)
                ),
            ));
        }
        // The idle probe must get its answer before the session counts as dead.
        if e.inactivity_timeout <= e.enquire_link_interval + e.response_timeout {
            return Err(invalid(
                "edge.inactivity_timeout",
                format!(
                    "must exceed enquire_link_interval + response_timeout ({})",
                    humantime::format_duration(e.enquire_link_interval + e.response_timeout)
                ),
            ));
        }
        let header = smsc_smpp::HEADER_LEN as u32;
        if e.max_command_length < header {
            return Err(invalid(
                "edge.max_command_length",
                format!("must be at least the {header}-byte header"),
            ));
        }
        if e.max_connections == 0 {
            return Err(invalid("edge.max_connections", "must be at least 1"));
        }
        if e.max_connections_per_ip == 0 {
            return Err(invalid("edge.max_connections_per_ip", "must be at least 1"));
        }
        if e.lockout.max_failures > 0 {
            for (key, value) in [
                ("edge.lockout.window", e.lockout.window),
                ("edge.lockout.duration", e.lockout.duration),
            ] {
                if value.is_zero() {
                    return Err(invalid(
                        key,
                        "must be longer than 0s (max_failures: 0 turns the lockout off)",
                    ));
                }
            }
            if e.lockout.max_entries == 0 {
                return Err(invalid("edge.lockout.max_entries", "must be at least 1"));
            }
        }
        if !e.credential_cache.ttl.is_zero() && e.credential_cache.max_entries == 0 {
            return Err(invalid(
                "edge.credential_cache.max_entries",
                "must be at least 1 (ttl: 0s turns the cache off)",
            ));
        }
        if let Some(advertise) = &e.grpc_advertise {
            let ok = advertise.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(invalid(
                    "edge.grpc_advertise",
                    format!("`{advertise}` is not host:port"),
                ));
            }
        }
        if e.http_tls.is_some() && e.http_listen.is_none() {
            return Err(invalid("edge.http_tls", "needs edge.http_listen"));
        }
        if e.http.max_messages == 0 {
            return Err(invalid("edge.http.max_messages", "must be at least 1"));
        }
        if e.http.max_body_bytes < 1024 {
            return Err(invalid("edge.http.max_body_bytes", "must be at least 1024"));
        }
        if e.pod_deletion_cost.as_ref().is_some_and(|c| c.interval.is_zero()) {
            return Err(invalid("edge.pod_deletion_cost.interval", "must be longer than 0s"));
        }
        if let Some(p) = &e.peers {
            let sources = [p.dns.is_some(), !p.admin.is_empty(), p.service.is_some()];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(invalid(
                    "edge.peers",
                    "give exactly one of `dns`, `admin` and `service`",
                ));
            }
            for (key, name) in [("edge.peers.dns", &p.dns), ("edge.peers.service", &p.service)] {
                if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                    return Err(invalid(key, "empty"));
                }
            }
            if e.rebalance.interval.is_zero() {
                return Err(invalid("edge.rebalance.interval", "must be longer than 0s"));
            }
        }
        Ok(())
    }

    /// The listeners this section opens, by key, for the binary's clash check.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut l =
            vec![("edge.smpp_listen", self.smpp_listen), ("edge.grpc_listen", self.grpc_listen)];
        if let Some(tls) = &self.tls {
            l.push(("edge.tls.listen", tls.listen));
        }
        if let Some(http) = self.http_listen {
            l.push(("edge.http_listen", http));
        }
        l
    }
}
