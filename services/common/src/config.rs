//! The one YAML config file every role reads, with environment overrides.
//!
//! Every key has a default, so an empty file (or no file at all) is a valid config.
//! Unknown keys are errors, and so is every bad value: a [`ConfigError`] names the key
//! (`edge.smpp_listen`, `accounts[2].window`), and the environment variable when one set
//! it. The binary exits 64 (`EX_USAGE`) on it: nothing falls back silently to a default.
//!
//! # Environment overrides
//!
//! Any key can be set by a variable named `SMSC_` + the key path in upper case, with
//! `__` between nesting levels and a list index as a level of its own:
//!
//! ```text
//! SMSC_ADMIN_LISTEN=0.0.0.0:9090           admin_listen
//! SMSC_EDGE__SMPP_LISTEN=0.0.0.0:2775      edge.smpp_listen
//! SMSC_EDGE__GRPC_ADVERTISE=10.1.2.3:50051 edge.grpc_advertise
//! SMSC_ACCOUNTS__0__WINDOW=128             accounts[0].window
//! SMSC_EDGE__TLS='{cert: /c.pem, key: /k.pem}'
//! ```
//!
//! The value is parsed as YAML and set into the file's tree *before* the tree is
//! deserialised, so an override is checked exactly like the same value in the file.
//! Flow collections work (`[transmitter, receiver]`); an empty value is YAML `null`.
//! When the key expects a string and the value reads as another YAML scalar
//! (`SMSC_NODE_ID=1234`), the raw text is used. Missing intermediate mappings are created;
//! an index may point at an existing list entry or one past the end (appending).
//! Variables are applied in name order. The binary's own flags (`SMSC_CONFIG`,
//! `SMSC_LOG_JSON`: [`RESERVED_ENV`]) and the test harness's `SMSC_TEST_*`/`SMSC_SKIP_*`
//! are not keys; any other `SMSC_` variable must be.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use serde_yaml::{Mapping, Value};

use crate::store::BindKind;

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "SMSC_";

/// `SMSC_` variables that belong to the binary's flags, not to config keys. Any other
/// `SMSC_` variable must name a key: a typo is an error, not silently ignored.
pub const RESERVED_ENV: &[&str] = &["SMSC_CONFIG", "SMSC_LOG_JSON"];

/// Prefixes of `SMSC_` variables that belong to the test harness (broker addresses,
/// skips), never to a config.
pub const RESERVED_ENV_PREFIXES: &[&str] = &["SMSC_TEST_", "SMSC_SKIP_"];

/// A config that cannot be used, naming where and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `file` is a path, or `<string>` for [`Config::from_yaml_str`].
    #[error("{file}: not valid YAML")]
    Syntax {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },
    /// The variable itself is unusable (bad path, bad YAML, not UTF-8).
    #[error("environment variable {var}: {reason}")]
    Override { var: String, reason: String },
    /// The value at `key` does not deserialise (wrong type, unknown key, bad address…).
    #[error("{key}{}: invalid value", set_by(env_var.as_deref()))]
    Value {
        key: String,
        env_var: Option<String>,
        #[source]
        source: serde_yaml::Error,
    },
    /// The value at `key` deserialised but breaks a rule.
    #[error("{key}{}: {reason}", set_by(env_var.as_deref()))]
    Invalid { key: String, env_var: Option<String>, reason: String },
    /// An entry of the accounts list is not a usable account.
    #[error("{key} (system_id {system_id:?})")]
    Account {
        key: String,
        system_id: String,
        #[source]
        source: crate::accounts::AccountError,
    },
}

fn set_by(env_var: Option<&str>) -> String {
    env_var.map(|v| format!(" (set by {v})")).unwrap_or_default()
}

/// The whole config. See the module docs for the file format and overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Names this process in logs, the session directory and metrics. Absent or empty:
    /// `$POD_NAME`, else the hostname, else `smsc-<random>`.
    pub node_id: String,
    /// `/metrics`, `/live`, `/ready`.
    pub admin_listen: SocketAddr,
    pub edge: EdgeConfig,
    pub accounts: Vec<AccountConfig>,
    /// A YAML file holding only `accounts: [...]`, watched for changes. When set, the
    /// `accounts` key must be empty. A relative path is taken from the config file's
    /// directory ([`Config::load`]) or the working directory ([`Config::from_yaml_str`]).
    pub accounts_file: Option<PathBuf>,
    /// Accounts from `SmppAccount` custom resources, watched through the Kubernetes API,
    /// instead of `accounts` / `accounts_file` (edge and worker; a build with the `k8s`
    /// feature). Absent: accounts come from the YAML.
    pub accounts_crd: Option<AccountsCrdConfig>,
    pub bus: BusConfig,
    pub store: StoreConfig,
    /// MT and MO routes (router).
    pub routing: RoutingConfig,
    /// Network connectors by name (delivery worker). Default: `sim`, a simulator that
    /// delivers every message at once.
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// Store-and-forward retry tiers (delivery worker).
    pub retry: RetryConfig,
    pub worker: WorkerConfig,
    /// Mutual TLS on every gRPC server and client between pods (`Edge`,
    /// `SessionDirectory`, the store server); absent: plaintext gRPC. The files usually
    /// come from a Kubernetes Secret.
    pub grpc_tls: Option<crate::grpc_tls::GrpcTls>,
    /// The file this config was loaded from, if any (not a key).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            edge: EdgeConfig::default(),
            accounts: Vec::new(),
            accounts_file: None,
            accounts_crd: None,
            bus: BusConfig::default(),
            store: StoreConfig::default(),
            routing: RoutingConfig::default(),
            connectors: BTreeMap::from([("sim".to_owned(), ConnectorConfig::default())]),
            retry: RetryConfig::default(),
            worker: WorkerConfig::default(),
            grpc_tls: None,
            path: None,
        }
    }
}

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
    /// Where the edge learns how many edge pods are ready; absent: no rebalancing.
    pub peers: Option<PeersConfig>,
    /// Shedding sessions above this pod's fair share (needs `peers`).
    pub rebalance: RebalanceConfig,
    /// TTL of a session's entry in the session directory, refreshed while it lives.
    #[serde(deserialize_with = "duration")]
    pub session_lease_ttl: Duration,
    /// How long a receipt or MO for an ESME whose receiver sessions all have a full
    /// queue waits for room before the edge answers "busy" (and the worker makes it
    /// pending). Longer holds a slow ESME's receipts on the bus; it also holds back the
    /// other accounts that share the worker's dispatcher lane for up to this long.
    #[serde(deserialize_with = "duration")]
    pub deliver_queue_wait: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            smpp_listen: SocketAddr::from(([127, 0, 0, 1], 2775)),
            tls: None,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            grpc_advertise: None,
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
            peers: None,
            rebalance: RebalanceConfig::default(),
            session_lease_ttl: Duration::from_secs(30),
            deliver_queue_wait: Duration::from_secs(2),
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

/// `accounts_crd`: accounts from `SmppAccount` resources and the Secrets holding their
/// password hashes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsCrdConfig {
    /// Namespace of the resources and of their Secrets; absent: the pod's own.
    pub namespace: Option<String>,
    /// Label selector for the Secrets watched (`smsc.io/account-password=true`); absent:
    /// every Secret of the namespace.
    pub secret_selector: Option<String>,
    /// Each pod writes an account's status (its bound sessions) at most this often, and
    /// only when it changed.
    #[serde(deserialize_with = "duration")]
    pub status_interval: Duration,
}

impl Default for AccountsCrdConfig {
    fn default() -> Self {
        Self { namespace: None, secret_selector: None, status_interval: Duration::from_secs(10) }
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

/// One `accounts:` entry as written. [`crate::accounts::Account`] is its checked form.
///
/// `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub system_id: String,
    /// Argon2 PHC string (`$argon2id$v=19$...`), from `smsc hash-password`.
    pub password_hash: String,
    #[serde(default = "all_bind_kinds", deserialize_with = "bind_kinds")]
    pub bind_types: Vec<BindKind>,
    #[serde(default = "default_max_binds")]
    pub max_binds: u32,
    /// Requests in process per session.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Messages per second for the account on one pod; 0 = unlimited.
    #[serde(default)]
    pub max_submit_rate: u32,
    /// Glob patterns on source_addr: `*` any run of characters, `?` one character.
    #[serde(default = "any_source")]
    pub source_addresses: Vec<String>,
    /// Client networks; a bare address means that one host.
    #[serde(default = "any_network", deserialize_with = "networks")]
    pub allowed_cidrs: Vec<IpNet>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Applied when a submit has no validity_period.
    #[serde(default = "default_validity", deserialize_with = "duration")]
    pub default_validity: Duration,
    /// Longer requested validity periods are cut to this.
    #[serde(default = "max_validity", deserialize_with = "duration")]
    pub max_validity: Duration,
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("system_id", &self.system_id)
            .field("password_hash", &"<redacted>")
            .field("bind_types", &self.bind_types)
            .field("max_binds", &self.max_binds)
            .field("window", &self.window)
            .field("max_submit_rate", &self.max_submit_rate)
            .field("source_addresses", &self.source_addresses)
            .field("allowed_cidrs", &self.allowed_cidrs)
            .field("enabled", &self.enabled)
            .field("default_validity", &self.default_validity)
            .field("max_validity", &self.max_validity)
            .finish()
    }
}

/// humantime's format (`30s`, `5m`, `48h`, `1h 30m`), keeping its reason on a bad value.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Humantime;
    impl serde::de::Visitor<'_> for Humantime {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration like 30s, 5m or 48h")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text).map_err(|e| {
                E::custom(format!("`{text}` is not a duration like 30s, 5m or 48h: {e}"))
            })
        }
    }
    d.deserialize_str(Humantime)
}

fn all_bind_kinds() -> Vec<BindKind> {
    vec![BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver]
}
fn default_max_binds() -> u32 {
    8
}
fn default_window() -> u32 {
    64
}
fn any_source() -> Vec<String> {
    vec!["*".to_owned()]
}
fn any_network() -> Vec<IpNet> {
    vec![IpNet::V4(ipnet::Ipv4Net::default()), IpNet::V6(ipnet::Ipv6Net::default())]
}
fn yes() -> bool {
    true
}
fn default_validity() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn max_validity() -> Duration {
    Duration::from_secs(72 * 3600)
}

/// `BindKind` lives in the store, which has no serde; this is its spelling in YAML.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum BindTypeName {
    Transmitter,
    Receiver,
    Transceiver,
}

fn bind_kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BindKind>, D::Error> {
    let names = Vec::<BindTypeName>::deserialize(d)?;
    Ok(names
        .into_iter()
        .map(|n| match n {
            BindTypeName::Transmitter => BindKind::Transmitter,
            BindTypeName::Receiver => BindKind::Receiver,
            BindTypeName::Transceiver => BindKind::Transceiver,
        })
        .collect())
}

fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            let t = t.trim();
            t.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("`{t}` is neither a CIDR nor an IP address"))
                })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub kind: BusKind,
    /// Partitions per topic (created when missing).
    pub partitions: u32,
    /// Embedded: consumer lag (records) above which producers see backpressure.
    pub max_lag: u64,
    /// Kafka: `bootstrap.servers`.
    pub brokers: String,
    /// Kafka: replication factor of the topics it creates (3 in production).
    pub replication_factor: u16,
    /// Kafka: consumer group `session.timeout.ms`.
    #[serde(deserialize_with = "duration")]
    pub session_timeout: Duration,
    /// Kafka: TLS to the brokers (their host names are checked against their
    /// certificates); absent: plaintext. Sets `security.protocol: ssl`; for SASL over
    /// TLS add `extra: {security.protocol: sasl_ssl, sasl.mechanism: ...}`.
    pub tls: Option<ClientTls>,
    /// Kafka: more librdkafka settings (`security.protocol`, SASL, ...), applied after
    /// the others, so they win.
    pub extra: BTreeMap<String, String>,
}

/// `bus.tls`, `store.tls`: TLS to the brokers or database nodes. Their certificates
/// must chain to `ca`; `cert` and `key`, together, are this client's certificate for
/// servers that require one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM CA certificate(s) the servers' certificates must chain to.
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            partitions: 8,
            max_lag: 100_000,
            brokers: "127.0.0.1:9092".into(),
            replication_factor: 3,
            session_timeout: Duration::from_secs(10),
            tls: None,
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BusKind {
    /// In-process, for `smsc all`.
    Embedded,
    /// Apache Kafka (or a Kafka-protocol broker); needs the `kafka` build feature.
    Kafka,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// How long a message is kept; an account's `max_validity` may not exceed it.
    #[serde(deserialize_with = "duration")]
    pub message_ttl: Duration,
    /// How long the embedded store keeps a message once final (query_sm after delivery);
    /// it is what bounds `smsc all`'s memory under sustained load.
    #[serde(deserialize_with = "duration")]
    pub final_ttl: Duration,
    /// ScyllaDB contact points (`host:port`).
    pub uris: Vec<String>,
    pub keyspace: String,
    /// The datacenter this process runs in (token-aware, DC-local routing).
    pub local_dc: String,
    pub replication_factor: u16,
    /// ScyllaDB: password authentication; absent: none.
    pub auth: Option<StoreAuth>,
    /// ScyllaDB: TLS to the nodes (their certificates must chain to `ca`; no host name
    /// is checked, as the driver dials the addresses the cluster reports); absent:
    /// plaintext.
    pub tls: Option<ClientTls>,
    /// `kind: remote`: `host:port` of the development store server (`smsc store-server`).
    pub endpoint: String,
    /// `kind: remote`: bound on each store call.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            message_ttl: Duration::from_secs(72 * 3600),
            final_ttl: Duration::from_secs(600),
            uris: vec!["127.0.0.1:9042".into()],
            keyspace: "smsc".into(),
            local_dc: "datacenter1".into(),
            replication_factor: 3,
            auth: None,
            tls: None,
            endpoint: "127.0.0.1:50060".into(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// `store.auth`: ScyllaDB's PasswordAuthenticator. The password is read from a file
/// (a mounted Secret) at start-up, so it is in no config file, variable or log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreAuth {
    pub username: String,
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In-process, for `smsc all`.
    Embedded,
    /// ScyllaDB; needs the `scylla` build feature.
    Scylla,
    /// The development store server at `store.endpoint` (`smsc store-server`): one
    /// in-memory store shared by the processes of a local cluster. Not for production.
    Remote,
}

/// Routes. MT rules are tried in order; the first whose conditions all hold wins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub mt: Vec<MtRoute>,
    pub mo: Vec<MoRoute>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self { mt: vec![MtRoute::default()], mo: Vec::new() }
    }
}

/// An MT rule: destination prefix and/or glob pattern, optionally limited to accounts,
/// to a connector with failovers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtRoute {
    /// Destination address prefix ("" matches all).
    pub prefix: String,
    /// Glob on the destination ('*', '?'); empty means no pattern condition.
    pub pattern: String,
    /// Submitting accounts this rule applies to; empty means all.
    pub accounts: Vec<String>,
    pub connector: String,
    /// Tried in order when the connector is unreachable.
    pub failover: Vec<String>,
}

impl Default for MtRoute {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            pattern: String::new(),
            accounts: Vec::new(),
            connector: "sim".to_owned(),
            failover: Vec::new(),
        }
    }
}

/// An MO rule: messages to a destination (short code) prefix go to an account. The
/// longest matching prefix wins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoRoute {
    pub prefix: String,
    pub account: String,
}

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
    },
    /// POSTs JSON to `url`: 2xx delivered, 4xx permanent failure, 5xx temporary.
    Webhook {
        url: String,
        #[serde(default = "default_webhook_timeout", deserialize_with = "duration")]
        timeout: Duration,
    },
    /// Another SMSC or an aggregator over SMPP (services/delivery-worker/UPSTREAM.md).
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
        Self::Simulator { profiles: Vec::new(), journal: None }
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

/// Delays of the retry tiers, in order: attempt n waits `tiers[min(n, len) - 1]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    #[serde(deserialize_with = "durations")]
    pub tiers: Vec<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let m = |mins: u64| Duration::from_secs(60 * mins);
        Self { tiers: vec![Duration::from_secs(10), m(1), m(5), m(30), m(120)] }
    }
}

impl RetryConfig {
    /// Topic suffix of a tier: `10s`, `1m`, `2h`.
    pub fn tier_name(d: Duration) -> String {
        let s = d.as_secs();
        match s {
            0 => format!("{}ms", d.as_millis()),
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
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

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .collect()
}

/// A file holding only the accounts list (`accounts_file`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    accounts: Vec<AccountConfig>,
}

/// Where the accounts are (re)loaded from at run time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AccountsSource {
    /// The main config file: reloaded whole, with the process's env overrides, and only
    /// its `accounts` taken (other changed keys wait for a restart).
    ConfigFile(PathBuf),
    /// A file holding only `accounts:`; `max_validity_cap` is the config's
    /// `store.message_ttl`.
    AccountsFile { path: PathBuf, max_validity_cap: Duration },
}

impl AccountsSource {
    pub fn path(&self) -> &Path {
        match self {
            Self::ConfigFile(path) | Self::AccountsFile { path, .. } => path,
        }
    }
}

/// One `SMSC_` variable, parsed.
struct Override {
    var: String,
    segments: Vec<String>,
    /// Display form of the path, as serde_path_to_error prints it (`accounts[0].window`).
    key: String,
    raw: String,
    /// Parsed as a YAML scalar other than a string: retried as raw text if the key
    /// turns out to want a string.
    coercible: bool,
}

impl Config {
    /// Loads `path` (or nothing: all defaults) with the process environment's overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, process_env()?)
    }

    /// [`Config::load`] with a given environment instead of the process's.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return build("", "<defaults>", env.into_iter().collect(), None);
        };
        let text = read_text(path)?;
        Self::from_file_text(path, &text, env.into_iter().collect())
    }

    /// The config file at `path`, already read as `text`.
    pub(crate) fn from_file_text(
        path: &Path,
        text: &str,
        env: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = build(text, &path.display().to_string(), env, path.parent())?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Parses `text` as the config file, with `env` as the environment (only `SMSC_*`,
    /// `POD_NAME` and `HOSTNAME` are looked at).
    pub fn from_yaml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        build(text, "<string>", env.into_iter().collect(), None)
    }

    /// What the accounts watcher reloads, if anything: the accounts file when there is
    /// one, else the config file this was loaded from.
    pub fn accounts_source(&self) -> Option<AccountsSource> {
        if self.accounts_crd.is_some() {
            return None;
        }
        match (&self.accounts_file, &self.path) {
            (Some(path), _) => Some(AccountsSource::AccountsFile {
                path: path.clone(),
                max_validity_cap: self.store.message_ttl,
            }),
            (None, Some(path)) => Some(AccountsSource::ConfigFile(path.clone())),
            (None, None) => None,
        }
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

/// The process environment, as UTF-8. A non-UTF-8 `SMSC_` variable is an error; other
/// non-UTF-8 variables are none of our business.
pub(crate) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => env.push((k, v)),
            (Ok(k), Err(_)) if k.starts_with(ENV_PREFIX) => {
                return Err(ConfigError::Override { var: k, reason: "value is not UTF-8".into() });
            }
            (Err(k), _) if k.to_string_lossy().starts_with(ENV_PREFIX) => {
                return Err(ConfigError::Override {
                    var: k.to_string_lossy().into_owned(),
                    reason: "name is not UTF-8".into(),
                });
            }
            _ => {}
        }
    }
    Ok(env)
}

/// The accounts list of an `accounts_file` at `path`, already read as `text`, checked
/// as [`Config::load`] checks the `accounts` key.
pub(crate) fn parse_accounts_file(
    path: &Path,
    text: &str,
    max_validity_cap: Duration,
) -> Result<Vec<AccountConfig>, ConfigError> {
    let file = path.display().to_string();
    let mut tree: Value = serde_yaml::from_str(text)
        .map_err(|source| ConfigError::Syntax { file: file.clone(), source })?;
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    tree.apply_merge().map_err(|source| ConfigError::Syntax { file: file.clone(), source })?;
    let parsed: AccountsFile =
        serde_path_to_error::deserialize(&tree).map_err(|e| ConfigError::Value {
            key: format!("{file}: {}", e.path()),
            env_var: None,
            source: e.into_inner(),
        })?;
    crate::accounts::compile(&parsed.accounts, max_validity_cap, &format!("{file}: "))?;
    Ok(parsed.accounts)
}

fn build(
    text: &str,
    file: &str,
    env: Vec<(String, String)>,
    base_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let mut tree: Value = serde_yaml::from_str(text)
        .map_err(|source| ConfigError::Syntax { file: file.to_owned(), source })?;
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    tree.apply_merge().map_err(|source| ConfigError::Syntax { file: file.to_owned(), source })?;
    if !tree.is_mapping() {
        return Err(ConfigError::Invalid {
            key: ".".into(),
            env_var: None,
            reason: format!("{file}: the top level must be a mapping of keys"),
        });
    }

    let mut overrides = parse_overrides(&env)?;
    for o in &mut overrides {
        let value = parse_env_value(o)?;
        o.coercible = matches!(value, Value::Number(_) | Value::Bool(_) | Value::Null);
        o.key = set_path(&mut tree, &o.segments, value)
            .map_err(|reason| ConfigError::Override { var: o.var.clone(), reason })?;
    }

    // Each coercible override may need one retry as text, so this ends.
    let mut config: Config = loop {
        match serde_path_to_error::deserialize(&tree) {
            Ok(config) => break config,
            Err(e) => {
                let key = e.path().to_string();
                if let Some(o) = overrides.iter_mut().find(|o| o.coercible && o.key == key) {
                    o.coercible = false;
                    set_path(&mut tree, &o.segments, Value::String(o.raw.clone()))
                        .map_err(|reason| ConfigError::Override { var: o.var.clone(), reason })?;
                    continue;
                }
                return Err(ConfigError::Value {
                    env_var: env_var_for(&overrides, &key),
                    key,
                    source: e.into_inner(),
                });
            }
        }
    };

    if config.node_id.is_empty() {
        config.node_id = default_node_id(&env);
    }
    if let Some(accounts_file) = config.accounts_file.take() {
        let resolved = match base_dir {
            Some(dir) if accounts_file.is_relative() => dir.join(&accounts_file),
            _ => accounts_file,
        };
        if !config.accounts.is_empty() {
            return Err(ConfigError::Invalid {
                key: "accounts_file".into(),
                env_var: env_var_for(&overrides, "accounts_file"),
                reason: "set together with a non-empty `accounts` list: keep accounts in one place"
                    .into(),
            });
        }
        let text = read_text(&resolved)?;
        config.accounts = parse_accounts_file(&resolved, &text, config.store.message_ttl)?;
        config.accounts_file = Some(resolved);
    }
    validate(&config).map_err(|e| match e {
        ConfigError::Invalid { key, env_var: None, reason } => {
            ConfigError::Invalid { env_var: env_var_for(&overrides, &key), key, reason }
        }
        other => other,
    })?;
    Ok(config)
}

fn parse_overrides(env: &[(String, String)]) -> Result<Vec<Override>, ConfigError> {
    let mut overrides = Vec::new();
    for (var, raw) in env {
        let Some(path) = var.strip_prefix(ENV_PREFIX) else { continue };
        if RESERVED_ENV.contains(&var.as_str())
            || RESERVED_ENV_PREFIXES.iter().any(|p| var.starts_with(p))
        {
            continue;
        }
        let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::Override {
                var: var.clone(),
                reason: "empty key between `__` separators".into(),
            });
        }
        overrides.push(Override {
            var: var.clone(),
            segments,
            key: String::new(),
            raw: raw.clone(),
            coercible: false,
        });
    }
    // Deterministic: the environment's order is not.
    overrides.sort_by(|a, b| a.var.cmp(&b.var));
    Ok(overrides)
}

fn parse_env_value(o: &Override) -> Result<Value, ConfigError> {
    serde_yaml::from_str(&o.raw).map_err(|e| ConfigError::Override {
        var: o.var.clone(),
        reason: format!("not a YAML value: {e}"),
    })
}

/// Sets `value` at `segments` in `tree`, creating mappings on the way; returns the path
/// as serde_path_to_error prints it.
fn set_path(tree: &mut Value, segments: &[String], value: Value) -> Result<String, String> {
    let mut key = String::new();
    let mut node = tree;
    for segment in segments {
        if node.is_null() {
            // None of our keys is a number, so a number indexes a list.
            *node = if segment.parse::<usize>().is_ok() {
                Value::Sequence(Vec::new())
            } else {
                Value::Mapping(Mapping::new())
            };
        }
        node = match node {
            Value::Mapping(map) => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(segment);
                map.entry(Value::String(segment.clone())).or_insert(Value::Null)
            }
            Value::Sequence(list) => {
                let len = list.len();
                let index = segment
                    .parse::<usize>()
                    .map_err(|_| format!("`{key}` is a list: `{segment}` is not an index"))?;
                if index > len {
                    return Err(format!("`{key}` has {len} entries: index {index} leaves a gap"));
                }
                if index == len {
                    list.push(Value::Null);
                }
                key.push_str(&format!("[{index}]"));
                list.get_mut(index).ok_or_else(|| format!("`{key}`: no such entry"))?
            }
            _ => return Err(format!("`{key}` is a single value: it has no key `{segment}`")),
        };
    }
    *node = value;
    Ok(key)
}

/// The override that set `key`, one of its parents, or something inside it (an
/// override can turn a value into a mapping it should not be).
fn env_var_for(overrides: &[Override], key: &str) -> Option<String> {
    let under = |inner: &str, outer: &str| {
        inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    overrides
        .iter()
        .rev()
        .find(|o| key == o.key || under(key, &o.key) || under(&o.key, key))
        .map(|o| o.var.clone())
}

fn default_node_id(env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
    };
    lookup("POD_NAME")
        .or_else(|| lookup("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| format!("smsc-{:08x}", rand::random::<u32>()))
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), env_var: None, reason: reason.into() }
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    let node_ok = c.node_id.len() <= 253
        && c.node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !node_ok {
        // The value may come from POD_NAME or the hostname, so show it.
        return Err(invalid(
            "node_id",
            format!("`{}`: use at most 253 of A-Z a-z 0-9 - . _", c.node_id),
        ));
    }

    let e = &c.edge;
    for (key, value) in [
        ("edge.session_init_timeout", e.session_init_timeout),
        ("edge.enquire_link_interval", e.enquire_link_interval),
        ("edge.inactivity_timeout", e.inactivity_timeout),
        ("edge.response_timeout", e.response_timeout),
        ("edge.session_lease_ttl", e.session_lease_ttl),
        ("edge.pdu_read_timeout", e.pdu_read_timeout),
        ("store.message_ttl", c.store.message_ttl),
    ] {
        if value.is_zero() {
            return Err(invalid(key, "must be longer than 0s"));
        }
    }
    if e.deliver_queue_wait + e.response_timeout >= crate::pipeline::EDGE_DELIVER_DEADLINE {
        return Err(invalid(
            "edge.deliver_queue_wait",
            format!(
                "plus edge.response_timeout must stay under the workers' {} Edge.Deliver deadline",
                humantime::format_duration(crate::pipeline::EDGE_DELIVER_DEADLINE)
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
    if let Some(t) = &c.grpc_tls {
        for (key, path) in
            [("grpc_tls.ca", &t.ca), ("grpc_tls.cert", &t.cert), ("grpc_tls.key", &t.key)]
        {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "must name a PEM file"));
            }
        }
    }
    for (section, tls) in [("bus.tls", &c.bus.tls), ("store.tls", &c.store.tls)] {
        if let Some(t) = tls {
            validate_client_tls(section, t)?;
        }
    }
    if let Some(auth) = &c.store.auth {
        if auth.username.is_empty() {
            return Err(invalid("store.auth.username", "must not be empty"));
        }
        if auth.password_file.as_os_str().is_empty() {
            return Err(invalid("store.auth.password_file", "must name a file"));
        }
    }
    if let Some(advertise) = &e.grpc_advertise {
        let ok = advertise.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(invalid("edge.grpc_advertise", format!("`{advertise}` is not host:port")));
        }
    }

    let mut listeners = vec![
        ("admin_listen", c.admin_listen),
        ("edge.smpp_listen", e.smpp_listen),
        ("edge.grpc_listen", e.grpc_listen),
    ];
    if let Some(tls) = &e.tls {
        listeners.push(("edge.tls.listen", tls.listen));
    }
    // Port 0 picks a free port; a wildcard address takes the port on every address.
    for (i, (key, addr)) in listeners.iter().enumerate() {
        let clash = listeners[..i].iter().find(|(_, other)| {
            addr.port() != 0
                && addr.port() == other.port()
                && (addr.ip() == other.ip()
                    || addr.ip().is_unspecified()
                    || other.ip().is_unspecified())
        });
        if let Some((other_key, _)) = clash {
            return Err(invalid(key, format!("{addr} clashes with {other_key}")));
        }
    }

    if c.bus.partitions == 0 {
        return Err(invalid("bus.partitions", "must be at least 1"));
    }
    if c.bus.max_lag == 0 {
        return Err(invalid("bus.max_lag", "must be at least 1"));
    }

    if let Some(crd) = &c.accounts_crd {
        if c.accounts_file.is_some() || !c.accounts.is_empty() {
            return Err(invalid(
                "accounts_crd",
                "set together with `accounts` or `accounts_file`: keep accounts in one place",
            ));
        }
        if crd.status_interval.is_zero() {
            return Err(invalid("accounts_crd.status_interval", "must be longer than 0s"));
        }
        if crd.namespace.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("accounts_crd.namespace", "empty: leave it out for the pod's own"));
        }
    }
    if let Some(p) = &e.peers {
        let sources = [p.dns.is_some(), !p.admin.is_empty(), p.service.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(invalid("edge.peers", "give exactly one of `dns`, `admin` and `service`"));
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

    for (name, connector) in &c.connectors {
        if let ConnectorConfig::Smpp(u) = connector {
            validate_upstream(name, u)?;
        }
    }

    crate::accounts::compile(&c.accounts, c.store.message_ttl, "")?;
    Ok(())
}

fn validate_client_tls(section: &str, t: &ClientTls) -> Result<(), ConfigError> {
    let key = |field: &str| format!("{section}.{field}");
    if t.ca.as_os_str().is_empty() {
        return Err(invalid(&key("ca"), "must name a PEM file"));
    }
    match (&t.cert, &t.key) {
        (Some(_), None) => Err(invalid(&key("key"), format!("is needed with {section}.cert"))),
        (None, Some(_)) => Err(invalid(&key("cert"), format!("is needed with {section}.key"))),
        _ => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::fixtures::SECRET_HASH as HASH;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, env(pairs))
    }

    /// The full chain, as the binary prints it.
    fn chain(e: &ConfigError) -> String {
        crate::telemetry::error_chain(e).to_string()
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("", &[("POD_NAME", "edge-7")]).expect("empty config is valid");
        assert_eq!(c.node_id, "edge-7");
        assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().expect("addr"));
        assert_eq!(c.edge, EdgeConfig::default());
        assert_eq!(c.edge.inactivity_timeout, Duration::from_secs(300));
        assert_eq!(c.edge.advertised_grpc_addr(), "127.0.0.1:50051");
        assert_eq!(c.edge.max_connections_per_ip, 100);
        assert_eq!(c.edge.pdu_read_timeout, Duration::from_secs(10));
        assert_eq!(
            (c.edge.lockout.max_failures, c.edge.lockout.window, c.edge.lockout.duration),
            (5, Duration::from_secs(300), Duration::from_secs(900))
        );
        assert_eq!(c.edge.lockout.max_entries, 100_000);
        assert_eq!(c.grpc_tls, None);
        assert!(c.accounts.is_empty());
        assert_eq!(
            c.bus,
            BusConfig {
                kind: BusKind::Embedded,
                partitions: 8,
                max_lag: 100_000,
                ..BusConfig::default()
            }
        );
        assert_eq!(c.store.message_ttl, Duration::from_secs(72 * 3600));
        assert_eq!(c.accounts_source(), None);
    }

    #[test]
    fn node_id_falls_back_to_hostname() {
        let c = parse("", &[("HOSTNAME", "box-1")]).expect("valid");
        assert_eq!(c.node_id, "box-1");
        let c = parse("node_id: n1", &[("POD_NAME", "edge-7")]).expect("valid");
        assert_eq!(c.node_id, "n1");
        assert!(!parse("", &[]).expect("valid").node_id.is_empty());
    }

    #[test]
    fn full_file_parses() {
        let text = format!(
            r#"
node_id: edge-1
admin_listen: 0.0.0.0:9091
edge:
  smpp_listen: 0.0.0.0:2775
  tls: {{ listen: 0.0.0.0:2776, cert: /c.pem, key: /k.pem }}
  grpc_listen: 0.0.0.0:50051
  grpc_advertise: edge-1.edge:50051
  session_init_timeout: 5s
  enquire_link_interval: 1m
  inactivity_timeout: 10m
  response_timeout: 3s
  max_command_length: 4096
  drain_timeout: 30s
  max_connections: 100
  max_connections_per_ip: 20
  pdu_read_timeout: 3s
  lockout: {{ max_failures: 3, window: 1m, duration: 1h, max_entries: 1000 }}
  session_lease_ttl: 15s
  deliver_queue_wait: 500ms
grpc_tls: {{ ca: /tls/ca.crt, cert: /tls/tls.crt, key: /tls/tls.key, server_name: smsc.internal }}
accounts:
  - system_id: bank
    password_hash: "{HASH}"
    bind_types: [transmitter]
    max_binds: 2
    window: 10
    max_submit_rate: 50
    source_addresses: ["BANK", "4470??"]
    allowed_cidrs: ["10.0.0.0/8", "192.168.1.5"]
    enabled: false
    default_validity: 1h
    max_validity: 2h
bus: {{ kind: embedded, partitions: 4, max_lag: 10, tls: {{ ca: /k/ca.crt }} }}
store: {{ kind: embedded, message_ttl: 24h, auth: {{ username: smsc, password_file: /s/pw }}, tls: {{ ca: /s/ca.crt }} }}
"#
        );
        let c = parse(&text, &[]).expect("valid");
        assert_eq!(c.edge.tls.as_ref().map(|t| t.cert.as_path()), Some(Path::new("/c.pem")));
        assert_eq!(c.edge.enquire_link_interval, Duration::from_secs(60));
        assert_eq!(c.edge.advertised_grpc_addr(), "edge-1.edge:50051");
        assert_eq!(c.edge.max_connections_per_ip, 20);
        assert_eq!(c.edge.pdu_read_timeout, Duration::from_secs(3));
        assert_eq!(c.edge.deliver_queue_wait, Duration::from_millis(500));
        assert_eq!(
            c.edge.lockout,
            LockoutConfig {
                max_failures: 3,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(3600),
                max_entries: 1000,
            }
        );
        let tls = c.grpc_tls.as_ref().expect("grpc_tls");
        assert_eq!(
            (tls.ca.as_path(), tls.cert.as_path(), tls.key.as_path()),
            (Path::new("/tls/ca.crt"), Path::new("/tls/tls.crt"), Path::new("/tls/tls.key"))
        );
        assert_eq!(tls.server_name.as_deref(), Some("smsc.internal"));
        let a = &c.accounts[0];
        assert_eq!(a.bind_types, vec![BindKind::Transmitter]);
        assert_eq!(a.allowed_cidrs[1], "192.168.1.5/32".parse::<IpNet>().expect("net"));
        assert!(!a.enabled);
        assert_eq!(a.max_validity, Duration::from_secs(7200));
        assert_eq!(c.bus.partitions, 4);
        assert_eq!(
            c.bus.tls,
            Some(ClientTls { ca: PathBuf::from("/k/ca.crt"), cert: None, key: None })
        );
        let auth = c.store.auth.as_ref().expect("store.auth");
        assert_eq!(
            (auth.username.as_str(), auth.password_file.as_path()),
            ("smsc", Path::new("/s/pw"))
        );
        assert_eq!(c.store.tls.as_ref().map(|t| t.ca.as_path()), Some(Path::new("/s/ca.crt")));
    }

    #[test]
    fn account_defaults() {
        let c = parse(&format!("accounts: [{{system_id: a, password_hash: '{HASH}'}}]"), &[])
            .expect("valid");
        let a = &c.accounts[0];
        assert_eq!(a.bind_types.len(), 3);
        assert_eq!((a.max_binds, a.window, a.max_submit_rate), (8, 64, 0));
        assert_eq!(a.source_addresses, vec!["*"]);
        assert_eq!(a.allowed_cidrs.len(), 2);
        assert!(a.enabled);
        assert_eq!(a.default_validity, Duration::from_secs(48 * 3600));
    }

    #[test]
    fn env_overrides_set_nested_keys() {
        let c = parse(
            "edge: { smpp_listen: 127.0.0.1:1 }",
            &[
                ("SMSC_EDGE__SMPP_LISTEN", "0.0.0.0:2775"),
                ("SMSC_ADMIN_LISTEN", "0.0.0.0:9999"),
                ("SMSC_EDGE__ENQUIRE_LINK_INTERVAL", "45s"),
                ("SMSC_EDGE__TLS__CERT", "/c.pem"),
                ("SMSC_EDGE__TLS__KEY", "/k.pem"),
                ("SMSC_BUS__PARTITIONS", "16"),
                ("SMSC_CONFIG", "/etc/smsc.yaml"),
                ("SMSC_LOG_JSON", "true"),
                ("OTHER", "ignored"),
            ],
        )
        .expect("valid");
        assert_eq!(c.edge.smpp_listen, "0.0.0.0:2775".parse().expect("addr"));
        assert_eq!(c.admin_listen, "0.0.0.0:9999".parse().expect("addr"));
        assert_eq!(c.edge.enquire_link_interval, Duration::from_secs(45));
        assert_eq!(c.edge.tls.as_ref().map(|t| t.listen), Some(default_tls_listen()));
        assert_eq!(c.bus.partitions, 16);
    }

    #[test]
    fn env_overrides_reach_into_lists_and_coerce_to_strings() {
        let text = format!("accounts: [{{system_id: a, password_hash: '{HASH}'}}]");
        let c = parse(
            &text,
            &[
                ("SMSC_ACCOUNTS__0__WINDOW", "128"),
                ("SMSC_ACCOUNTS__0__BIND_TYPES", "[receiver]"),
                ("SMSC_ACCOUNTS__1__SYSTEM_ID", "12345"),
                ("SMSC_ACCOUNTS__1__PASSWORD_HASH", HASH),
                ("SMSC_NODE_ID", "42"),
            ],
        )
        .expect("valid");
        assert_eq!(c.accounts[0].window, 128);
        assert_eq!(c.accounts[0].bind_types, vec![BindKind::Receiver]);
        assert_eq!(c.accounts[1].system_id, "12345");
        assert_eq!(c.node_id, "42");

        // No `accounts` in the file: an index makes the list.
        let c = parse(
            "",
            &[("SMSC_ACCOUNTS__0__SYSTEM_ID", "env"), ("SMSC_ACCOUNTS__0__PASSWORD_HASH", HASH)],
        )
        .expect("valid");
        assert_eq!(c.accounts[0].system_id, "env");
    }

    #[test]
    fn bad_override_names_the_variable_and_key() {
        let e = parse("", &[("SMSC_EDGE__SMPP_LISTEN", "nowhere")]).expect_err("bad addr");
        assert!(
            matches!(&e, ConfigError::Value { key, env_var: Some(v), .. }
                if key == "edge.smpp_listen" && v == "SMSC_EDGE__SMPP_LISTEN"),
            "{e:?}"
        );
        assert!(chain(&e).contains("invalid socket address"), "{}", chain(&e));

        let e = parse("", &[("SMSC_EDGE__NOPE", "1")]).expect_err("unknown key");
        assert!(chain(&e).contains("unknown field `nope`"), "{}", chain(&e));
        assert!(chain(&e).contains("SMSC_EDGE__NOPE"), "{}", chain(&e));

        let e = parse("", &[("SMSC_EDGE__", "1")]).expect_err("empty segment");
        assert!(matches!(&e, ConfigError::Override { var, .. } if var == "SMSC_EDGE__"));

        let e = parse("admin_listen: 127.0.0.1:1", &[("SMSC_ADMIN_LISTEN__X", "1")])
            .expect_err("into a scalar");
        assert!(matches!(e, ConfigError::Override { .. }), "{e:?}");
        let e = parse("", &[("SMSC_ADMIN_LISTEN__X", "1")]).expect_err("scalar made a map");
        assert!(
            matches!(&e, ConfigError::Value { key, env_var: Some(v), .. }
                if key == "admin_listen" && v == "SMSC_ADMIN_LISTEN__X"),
            "{e:?}"
        );

        let e = parse("", &[("SMSC_ACCOUNTS__1__WINDOW", "1")]).expect_err("gap in list");
        assert!(matches!(e, ConfigError::Override { .. }), "{e:?}");

        let e = parse("", &[("SMSC_EDGE__MAX_CONNECTIONS", "[1")]).expect_err("bad yaml");
        assert!(matches!(e, ConfigError::Override { .. }), "{e:?}");

        let e = parse("", &[("SMSC_EDGE__INACTIVITY_TIMEOUT", "10s")]).expect_err("rule");
        assert!(
            matches!(&e, ConfigError::Invalid { key, env_var: Some(_), .. }
                if key == "edge.inactivity_timeout"),
            "{e:?}"
        );
    }

    #[test]
    fn file_errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("edge: { smpp_lisen: x }", "edge", "unknown field `smpp_lisen`"),
            ("nope: 1", "nope", "unknown field `nope`"),
            ("edge: { response_timeout: 10 }", "edge.response_timeout", "expected a duration like"),
            (
                "edge: { response_timeout: 10 parsecs }",
                "edge.response_timeout",
                "unknown time unit",
            ),
            ("bus: { kind: rabbitmq }", "bus.kind", "unknown variant `rabbitmq`"),
            ("edge: { max_connections: -1 }", "edge.max_connections", "invalid value"),
            (
                "accounts: [{system_id: a, password_hash: x, allowed_cidrs: [10.0.0.0/33]}]",
                "accounts[0].allowed_cidrs",
                "`10.0.0.0/33` is neither",
            ),
            ("accounts: [{system_id: a}]", "accounts[0]", "missing field `password_hash`"),
            (
                "accounts: [{system_id: a, password_hash: x, bind_types: [outbind]}]",
                "accounts[0].bind_types[0]",
                "unknown variant",
            ),
        ];
        for (text, key, reason) in cases {
            let e = parse(text, &[]).expect_err(text);
            let ConfigError::Value { key: got, env_var: None, .. } = &e else {
                panic!("{text}: {e:?}");
            };
            assert!(got.starts_with(key), "{text}: key {got}");
            assert!(chain(&e).contains(reason), "{text}: {}", chain(&e));
        }
    }

    #[test]
    fn rules_are_checked() {
        let cases: &[(&str, &str)] = &[
            ("edge: { max_connections: 0 }", "edge.max_connections"),
            ("edge: { max_connections_per_ip: 0 }", "edge.max_connections_per_ip"),
            ("edge: { pdu_read_timeout: 0s }", "edge.pdu_read_timeout"),
            ("edge: { lockout: { window: 0s } }", "edge.lockout.window"),
            ("edge: { lockout: { duration: 0s } }", "edge.lockout.duration"),
            ("edge: { lockout: { max_entries: 0 } }", "edge.lockout.max_entries"),
            ("grpc_tls: { ca: '', cert: /c, key: /k }", "grpc_tls.ca"),
            ("bus: { tls: { ca: '' } }", "bus.tls.ca"),
            ("bus: { tls: { ca: /ca.crt, cert: /c.crt } }", "bus.tls.key"),
            ("bus: { tls: { ca: /ca.crt, key: /c.key } }", "bus.tls.cert"),
            ("store: { tls: { ca: /ca.crt, cert: /c.crt } }", "store.tls.key"),
            ("store: { auth: { username: '', password_file: /p } }", "store.auth.username"),
            ("store: { auth: { username: u, password_file: '' } }", "store.auth.password_file"),
            ("edge: { response_timeout: 0s }", "edge.response_timeout"),
            ("edge: { deliver_queue_wait: 25s }", "edge.deliver_queue_wait"),
            ("edge: { max_command_length: 15 }", "edge.max_command_length"),
            ("edge: { grpc_advertise: 'nohost' }", "edge.grpc_advertise"),
            ("edge: { grpc_listen: '127.0.0.1:2775' }", "edge.grpc_listen"),
            ("edge: { grpc_listen: '0.0.0.0:9090' }", "edge.grpc_listen"),
            ("bus: { partitions: 0 }", "bus.partitions"),
            ("node_id: 'has space'", "node_id"),
            ("[1, 2]", "."),
        ];
        for (text, key) in cases {
            let e = parse(text, &[]).expect_err(text);
            assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if k == key), "{text}: {e:?}");
        }
        let e = parse("edge: {", &[]).expect_err("syntax");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    }

    #[test]
    fn accounts_crd_and_rebalancing() {
        let c = parse("", &[]).expect("defaults");
        assert_eq!((c.accounts_crd, c.edge.peers), (None, None));
        assert_eq!(c.edge.rebalance, RebalanceConfig::default());

        let c = parse(
            "accounts_crd: {}\nedge: { peers: { dns: smsc-edge-peers.smsc.svc } }",
            &[("SMSC_EDGE__REBALANCE__MAX_SHED_PER_INTERVAL", "2")],
        )
        .expect("valid");
        let crd = c.accounts_crd.clone().expect("accounts_crd");
        assert_eq!(crd.status_interval, Duration::from_secs(10));
        assert_eq!(crd.namespace, None);
        assert_eq!(c.accounts_source(), None, "no file reload replaces CRD accounts");
        let peers = c.edge.peers.expect("peers");
        assert_eq!(peers.dns.as_deref(), Some("smsc-edge-peers.smsc.svc"));
        assert_eq!(c.edge.rebalance.max_shed_per_interval, 2);
        assert_eq!(c.edge.rebalance.interval, Duration::from_secs(15));

        let c = parse(
            "accounts_crd: { namespace: smsc, secret_selector: a=b, status_interval: 30s }\n\
             edge: { peers: { admin: ['127.0.0.1:9091'] }, rebalance: { interval: 1s, slack: 0 } }",
            &[],
        )
        .expect("valid");
        assert_eq!(c.accounts_crd.expect("crd").namespace.as_deref(), Some("smsc"));
        assert_eq!(c.edge.rebalance.slack, 0);
        let c = parse("edge: { peers: { service: smsc-edge-smpp } }", &[]).expect("valid");
        assert_eq!(c.edge.peers.expect("peers").service.as_deref(), Some("smsc-edge-smpp"));

        for (text, key) in [
            (
                format!(
                    "accounts_crd: {{}}\naccounts: [{{system_id: a, password_hash: '{HASH}'}}]"
                ),
                "accounts_crd",
            ),
            ("accounts_crd: { status_interval: 0s }".to_owned(), "accounts_crd.status_interval"),
            ("accounts_crd: { namespace: '' }".to_owned(), "accounts_crd.namespace"),
            ("edge: { peers: {} }".to_owned(), "edge.peers"),
            ("edge: { peers: { dns: a, admin: ['b:1'] } }".to_owned(), "edge.peers"),
            ("edge: { peers: { dns: ' ' } }".to_owned(), "edge.peers.dns"),
            ("edge: { peers: { service: '' } }".to_owned(), "edge.peers.service"),
            ("edge: { peers: { dns: a, service: b } }".to_owned(), "edge.peers"),
            (
                "edge: { peers: { dns: a }, rebalance: { interval: 0s } }".to_owned(),
                "edge.rebalance.interval",
            ),
        ] {
            let e = parse(&text, &[]).expect_err(&text);
            assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if k == key), "{text}: {e:?}");
        }
        let e = parse("accounts_crd: { bogus: 1 }", &[]).expect_err("unknown key");
        assert!(chain(&e).contains("accounts_crd"), "{}", chain(&e));
    }

    #[test]
    fn edge_lockout_off_and_overrides() {
        let c = parse("edge: { lockout: { max_failures: 0, window: 0s, duration: 0s } }", &[])
            .expect("a lockout that is off needs no durations");
        assert_eq!(c.edge.lockout.max_failures, 0);
        let c = parse(
            "",
            &[
                ("SMSC_EDGE__LOCKOUT__MAX_FAILURES", "10"),
                ("SMSC_EDGE__LOCKOUT__DURATION", "1h"),
                ("SMSC_EDGE__MAX_CONNECTIONS_PER_IP", "7"),
                ("SMSC_GRPC_TLS", "{ca: /s/ca.crt, cert: /s/tls.crt, key: /s/tls.key}"),
            ],
        )
        .expect("valid");
        assert_eq!(c.edge.lockout.max_failures, 10);
        assert_eq!(c.edge.lockout.duration, Duration::from_secs(3600));
        assert_eq!(c.edge.lockout.window, Duration::from_secs(300));
        assert_eq!(c.edge.max_connections_per_ip, 7);
        let tls = c.grpc_tls.expect("grpc_tls from the environment");
        assert_eq!(tls.key, Path::new("/s/tls.key"));
        assert_eq!(tls.server_name, None);
        let e = parse("grpc_tls: { ca: /a, cert: /b }", &[]).expect_err("no key");
        assert!(chain(&e).contains("missing field `key`"), "{}", chain(&e));
    }

    #[test]
    fn account_rules_name_the_entry() {
        let long = format!(
            "accounts: [{{system_id: a, password_hash: '{HASH}'}}, \
             {{system_id: b, password_hash: '{HASH}', max_validity: 100h}}]"
        );
        let e = parse(&long, &[]).expect_err("validity past ttl");
        assert!(
            matches!(&e, ConfigError::Account { key, system_id, .. } if key == "accounts[1]" && system_id == "b"),
            "{e:?}"
        );
        assert!(chain(&e).contains("max_validity"), "{}", chain(&e));

        let dup = format!(
            "accounts: [{{system_id: a, password_hash: '{HASH}'}}, \
             {{system_id: a, password_hash: '{HASH}'}}]"
        );
        let e = parse(&dup, &[]).expect_err("duplicate");
        assert!(chain(&e).contains("accounts[1]") && chain(&e).contains("accounts[0]"), "{e}");

        let e = parse("accounts: [{system_id: a, password_hash: 'plain'}]", &[]).expect_err("hash");
        assert!(chain(&e).contains("password_hash"), "{}", chain(&e));
        assert!(!chain(&e).contains("plain"), "{}", chain(&e));
    }

    #[test]
    fn smpp_upstream_connectors_parse_with_defaults_and_checks() {
        let text = r#"
connectors:
  up:
    kind: smpp
    address: smsc.example.net:2775
    system_id: acme
    password: s3cret
  pair:
    kind: smpp
    address: 10.0.0.9:3550
    system_id: acme2
    password: pw
    system_type: VMA
    bind: transmitter_receiver
    max_binds: 6
    binds_per_worker: 2
    window: 50
    rate: 200
    enquire_link_interval: 15s
    response_timeout: 5s
    receipt_id: hex_submit_decimal_receipt
    tls: { ca: /etc/ssl/certs/ca-certificates.crt, server_name: smsc.example.net }
"#;
        let c = parse(text, &[("SMSC_CONNECTORS__UP__PASSWORD", "fromenv")]).expect("valid");
        let Some(ConnectorConfig::Smpp(up)) = c.connectors.get("up") else { panic!("smpp") };
        assert_eq!(up.password, "fromenv");
        assert_eq!(
            (up.bind, up.max_binds, up.binds_per_worker),
            (UpstreamBindMode::Transceiver, 1, 1)
        );
        assert_eq!((up.window, up.rate, up.slots()), (10, 0, 1));
        assert_eq!(up.response_timeout, Duration::from_secs(10));
        assert_eq!(up.receipt_id, ReceiptIdFormat::Auto);
        assert_eq!(up.tls, None);
        assert!(!format!("{up:?}").contains("fromenv"), "password redacted");
        let Some(ConnectorConfig::Smpp(pair)) = c.connectors.get("pair") else { panic!("smpp") };
        assert_eq!((pair.slots(), pair.binds_per_slot(), pair.rate), (3, 2, 200));
        assert_eq!(pair.receipt_id, ReceiptIdFormat::HexSubmitDecimalReceipt);
        assert_eq!(
            pair.tls.as_ref().and_then(|t| t.server_name.as_deref()),
            Some("smsc.example.net")
        );

        let base = "connectors:\n  up:\n    kind: smpp\n    address: h:2775\n    system_id: a\n    password: p\n";
        for (extra, key) in [
            ("    max_binds: 1\n    bind: transmitter_receiver\n", "connectors.up.max_binds"),
            ("    window: 0\n", "connectors.up.window"),
            ("    lease_ttl: 1s\n", "connectors.up.lease_ttl"),
            ("    reconnect_min: 5s\n    reconnect_max: 1s\n", "connectors.up.reconnect_max"),
        ] {
            let e = parse(&format!("{base}{extra}"), &[]).expect_err(extra);
            assert!(chain(&e).starts_with(key), "{}", chain(&e));
        }
        let bad = base.replace("h:2775", "nohost");
        assert!(
            chain(&parse(&bad, &[]).expect_err("address")).starts_with("connectors.up.address")
        );
        let bad = base.replace("password: p", "password: ninechars");
        assert!(chain(&parse(&bad, &[]).expect_err("pw")).starts_with("connectors.up.password"));
        let e = parse(&format!("{base}    colour: red\n"), &[]).expect_err("unknown key");
        assert!(chain(&e).contains("colour"), "{}", chain(&e));
    }

    #[test]
    fn debug_redacts_password_hashes() {
        let c = parse(&format!("accounts: [{{system_id: a, password_hash: '{HASH}'}}]"), &[])
            .expect("valid");
        let debug = format!("{c:?}");
        assert!(debug.contains("system_id: \"a\""), "{debug}");
        assert!(!debug.contains("argon2"), "{debug}");
        assert!(!debug.contains("WJEFL8Nn"), "{debug}");
    }

    #[test]
    fn loads_files_and_resolves_accounts_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("smsc.yaml");
        std::fs::write(&config_path, "accounts_file: accounts.yaml\n").expect("write");
        std::fs::write(
            dir.path().join("accounts.yaml"),
            format!("accounts:\n  - system_id: a\n    password_hash: '{HASH}'\n"),
        )
        .expect("write");
        let c = Config::load_with_env(Some(&config_path), env(&[])).expect("valid");
        assert_eq!(c.accounts.len(), 1);
        assert_eq!(c.path.as_deref(), Some(config_path.as_path()));
        assert_eq!(
            c.accounts_source(),
            Some(AccountsSource::AccountsFile {
                path: dir.path().join("accounts.yaml"),
                max_validity_cap: Duration::from_secs(72 * 3600),
            })
        );

        std::fs::write(
            &config_path,
            format!(
                "accounts_file: accounts.yaml\naccounts: [{{system_id: b, password_hash: '{HASH}'}}]\n"
            ),
        )
        .expect("write");
        let e = Config::load_with_env(Some(&config_path), env(&[])).expect_err("both");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "accounts_file"), "{e:?}");

        std::fs::write(dir.path().join("accounts.yaml"), "accounts: [{system_id: a}]\n")
            .expect("write");
        std::fs::write(&config_path, "accounts_file: accounts.yaml\n").expect("write");
        let e = Config::load_with_env(Some(&config_path), env(&[])).expect_err("bad accounts");
        assert!(chain(&e).contains("accounts.yaml: accounts[0]"), "{}", chain(&e));

        let missing = dir.path().join("missing.yaml");
        let e = Config::load_with_env(Some(&missing), env(&[])).expect_err("missing");
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    }
}
