//! `connectors:` and `worker:`: the delivery worker's section of the config file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use smsc_runtime::config::{ConfigError, duration, invalid};

/// A network connector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectorConfig {
    /// The built-in network simulator.
    Simulator {
        /// Per destination prefix behaviour; the longest matching prefix wins, and a
        /// destination no profile matches is delivered at once.
        #[serde(default)]
        profiles: Vec<SimProfile>,
        /// Appends `message_id dest_index` of every message handed to the simulated
        /// network to this file, one line each, unbuffered: an audit of the handoffs
        /// (the chaos test checks no message reaches the network twice).
        #[serde(default)]
        journal: Option<std::path::PathBuf>,
        /// Messages per second from each worker; 0 = unlimited. More wait their turn.
        #[serde(default)]
        rate: u32,
    },
    /// POSTs JSON to `url`: 2xx delivered, 4xx permanent failure, 5xx temporary.
    Webhook {
        url: String,
        #[serde(default = "default_webhook_timeout", deserialize_with = "duration")]
        timeout: Duration,
        /// Requests per second from each worker; 0 = unlimited. More wait their turn.
        #[serde(default)]
        rate: u32,
    },
    /// Another SMSC or an aggregator over SMPP (docs/upstreams.md).
    Smpp(Box<SmppUpstreamConfig>),
}

/// `connectors.<name>` of `kind: smpp`: the binds this cluster keeps to an upstream
/// SMSC, shared by the workers through leases in the store.
///
/// `Debug` leaves the password out.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppUpstreamConfig {
    /// `host:port` of the upstream's SMPP (or SMPP over TLS) listener.
    pub address: String,
    pub system_id: String,
    /// In clear (the upstream checks it); at most 8 characters. Set it from a Secret
    /// through `SMSC_CONNECTORS__<NAME>__PASSWORD`.
    pub password: String,
    #[serde(default)]
    pub system_type: String,
    /// `transceiver` (one bind per slot) or `transmitter_receiver` (a pair per slot).
    #[serde(default)]
    pub bind: UpstreamBindMode,
    /// Binds the upstream allows this account across the whole cluster (a transmitter
    /// and a receiver count one each).
    #[serde(default = "one")]
    pub max_binds: u32,
    /// Bind slots one worker holds at most. Every worker should get one: with
    /// `max_binds` below workers × binds_per_worker, some workers hold none and
    /// fail their messages to this connector temporarily (they are retried).
    #[serde(default = "one")]
    pub binds_per_worker: u32,
    /// submit_sm outstanding per bind.
    #[serde(default = "default_upstream_window")]
    pub window: u32,
    /// submit_sm per second to the upstream across the cluster (each bind slot gets its
    /// share); 0 = unlimited.
    #[serde(default)]
    pub rate: u32,
    /// Idle time after which a bind sends enquire_link.
    #[serde(default = "default_upstream_enquire_link", deserialize_with = "duration")]
    pub enquire_link_interval: Duration,
    /// For every request we send (bind, submit_sm, enquire_link, unbind).
    #[serde(default = "default_upstream_response_timeout", deserialize_with = "duration")]
    pub response_timeout: Duration,
    /// TCP connect and TLS handshake.
    #[serde(default = "default_upstream_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Reconnect backoff: from `reconnect_min`, doubling up to `reconnect_max`.
    #[serde(default = "default_reconnect_min", deserialize_with = "duration")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", deserialize_with = "duration")]
    pub reconnect_max: Duration,
    /// TTL of a worker's lease on a bind slot, refreshed at a third of it. A worker that
    /// cannot refresh closes the slot's binds before the lease can pass to another.
    #[serde(default = "default_slot_lease_ttl", deserialize_with = "duration")]
    pub lease_ttl: Duration,
    /// How long a receipt for an upstream id we do not know (yet) is kept for the
    /// submit_sm_resp it may have overtaken.
    #[serde(default = "default_receipt_park_ttl", deserialize_with = "duration")]
    pub receipt_park_ttl: Duration,
    /// How receipts name the upstream's message_id, relative to its submit_sm_resp.
    #[serde(default)]
    pub receipt_id: ReceiptIdFormat,
    /// SMPP over TLS; absent: plain TCP.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
}

impl std::fmt::Debug for SmppUpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppUpstreamConfig")
            .field("address", &self.address)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .field("bind", &self.bind)
            .field("max_binds", &self.max_binds)
            .field("binds_per_worker", &self.binds_per_worker)
            .field("window", &self.window)
            .field("rate", &self.rate)
            .field("enquire_link_interval", &self.enquire_link_interval)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("lease_ttl", &self.lease_ttl)
            .field("receipt_park_ttl", &self.receipt_park_ttl)
            .field("receipt_id", &self.receipt_id)
            .field("tls", &self.tls)
            .finish()
    }
}

impl SmppUpstreamConfig {
    /// Binds one slot holds.
    pub fn binds_per_slot(&self) -> u32 {
        match self.bind {
            UpstreamBindMode::Transceiver => 1,
            UpstreamBindMode::TransmitterReceiver => 2,
        }
    }

    /// Slots of the cluster: `max_binds` over the binds of one slot.
    pub fn slots(&self) -> u32 {
        self.max_binds / self.binds_per_slot()
    }
}

/// How an upstream connector binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamBindMode {
    #[default]
    Transceiver,
    /// A transmitter for submits and a receiver for receipts and MO.
    TransmitterReceiver,
}

/// How a receipt's id relates to the submit_sm_resp's message_id (upstreams differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptIdFormat {
    /// The same text first; failing that, a decimal receipt id is tried as hexadecimal
    /// (both cases) and a hexadecimal one as decimal.
    #[default]
    Auto,
    /// The same text only.
    Exact,
    /// submit_sm_resp in hexadecimal, receipts in decimal (leading zeros and case
    /// do not matter).
    HexSubmitDecimalReceipt,
    /// submit_sm_resp in decimal, receipts in hexadecimal.
    DecimalSubmitHexReceipt,
}

/// `connectors.<name>.tls`: the upstream's certificate is checked against `ca`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA certificate(s) the upstream's certificate must chain to (for a public CA,
    /// the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt).
    pub ca: PathBuf,
    /// The name the certificate must carry; absent: the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn one() -> u32 {
    1
}
fn default_upstream_window() -> u32 {
    10
}
fn default_upstream_enquire_link() -> Duration {
    Duration::from_secs(30)
}
fn default_upstream_response_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_upstream_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
fn default_slot_lease_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_receipt_park_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self::Simulator { profiles: Vec::new(), journal: None, rate: 0 }
    }
}

/// How the simulated network treats destinations with a prefix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimProfile {
    pub prefix: String,
    /// Delivery takes this long.
    #[serde(deserialize_with = "duration")]
    pub latency: Duration,
    /// The first N attempts fail temporarily (absent subscriber), then it is delivered.
    pub temporary_failures: u32,
    /// Always fails temporarily (handset off for good): the message expires.
    pub unreachable: bool,
    /// Fails permanently (unknown subscriber).
    pub permanent: bool,
    /// The network error code reported for failures (GSM MAP: 1 unknown subscriber,
    /// 27 absent subscriber).
    pub error_code: u16,
}

impl Default for SimProfile {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            latency: Duration::ZERO,
            temporary_failures: 0,
            unreachable: false,
            permanent: false,
            error_code: 0,
        }
    }
}

/// The delivery worker and the notification dispatcher.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Delivery tasks in progress at once per worker.
    pub max_in_flight: usize,
    /// Notifications (receipts, MO) in progress at once per worker.
    pub notify_in_flight: usize,
    /// How often pending notifications of accounts are retried.
    #[serde(deserialize_with = "duration")]
    pub pending_interval: Duration,
    /// gRPC for the simulator's handset side (`smsc mo`).
    pub simulator_listen: SocketAddr,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            notify_in_flight: 1024,
            pending_interval: Duration::from_secs(2),
            simulator_listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
        }
    }
}

/// The rules of `connectors.*` that deserialising does not check.
pub fn validate_connectors(
    connectors: &BTreeMap<String, ConnectorConfig>,
) -> Result<(), ConfigError> {
    for (name, connector) in connectors {
        match connector {
            ConnectorConfig::Smpp(u) => validate_upstream(name, u)?,
            ConnectorConfig::Webhook { url, .. } => validate_webhook_url(name, url)?,
            ConnectorConfig::Simulator { .. } => {}
        }
    }
    Ok(())
}

/// The webhook client speaks plain HTTP/1.1: `http://host[:port]/path`.
fn validate_webhook_url(name: &str, url: &str) -> Result<(), ConfigError> {
    let key = format!("connectors.{name}.url");
    let uri: hyper::Uri = url.parse().map_err(|e| ConfigError::Invalid {
        key: key.clone(),
        env_var: None,
        reason: format!("`{url}` is not a URL: {e}"),
    })?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return Err(invalid(&key, format!("`{url}`: give http://host[:port]/path")));
    }
    Ok(())
}

fn validate_upstream(name: &str, u: &SmppUpstreamConfig) -> Result<(), ConfigError> {
    let key = |field: &str| format!("connectors.{name}.{field}");
    let ok = u
        .address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        return Err(invalid(&key("address"), format!("`{}` is not host:port", u.address)));
    }
    // The SMPP 3.4 field sizes, less the NUL.
    for (field, value, max) in [
        ("system_id", &u.system_id, 15),
        ("password", &u.password, 8),
        ("system_type", &u.system_type, 12),
    ] {
        if value.len() > max || !value.is_ascii() {
            return Err(invalid(&key(field), format!("must be at most {max} ASCII characters")));
        }
    }
    if u.system_id.is_empty() {
        return Err(invalid(&key("system_id"), "must not be empty"));
    }
    if u.slots() == 0 {
        return Err(invalid(
            &key("max_binds"),
            format!("{} binds cannot hold one {:?} slot", u.max_binds, u.bind),
        ));
    }
    if u.binds_per_worker == 0 {
        return Err(invalid(&key("binds_per_worker"), "must be at least 1"));
    }
    if u.window == 0 {
        return Err(invalid(&key("window"), "must be at least 1"));
    }
    for (field, value) in [
        ("enquire_link_interval", u.enquire_link_interval),
        ("response_timeout", u.response_timeout),
        ("connect_timeout", u.connect_timeout),
        ("reconnect_min", u.reconnect_min),
        ("lease_ttl", u.lease_ttl),
        ("receipt_park_ttl", u.receipt_park_ttl),
    ] {
        if value.is_zero() {
            return Err(invalid(&key(field), "must be longer than 0s"));
        }
    }
    if u.reconnect_max < u.reconnect_min {
        return Err(invalid(&key("reconnect_max"), "must not be shorter than reconnect_min"));
    }
    if u.lease_ttl < Duration::from_secs(3) {
        return Err(invalid(&key("lease_ttl"), "must be at least 3s (it is refreshed at a third)"));
    }
    if let Some(tls) = &u.tls
        && tls.ca.as_os_str().is_empty()
    {
        return Err(invalid(&key("tls.ca"), "must name a PEM file"));
    }
    Ok(())
}
