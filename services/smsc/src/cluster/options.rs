//! How to start a [`Cluster`](super::Cluster): [`ClusterOptions`], with the members'
//! roles ([`ClusterRole`]) and the ESME accounts ([`ClusterAccount`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use smsc_delivery_worker::config::SimProfile;

/// What a member process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterRole {
    Edge,
    Router,
    Worker,
}

impl ClusterRole {
    /// The subcommand, also the member's name prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Edge => "edge",
            Self::Router => "router",
            Self::Worker => "worker",
        }
    }
}

impl fmt::Display for ClusterRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ESME account of the cluster; its password is hashed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAccount {
    pub system_id: String,
    pub password: String,
    /// MO destination prefixes (short codes) routed to this account; `""` takes all.
    pub mo_prefixes: Vec<String>,
    /// Where its HTTP receipts (and MO with no SMPP receiver) go.
    pub webhook: Option<smsc_accounts::WebhookConfig>,
}

impl ClusterAccount {
    pub fn new(system_id: &str, password: &str, mo_prefixes: &[&str]) -> Self {
        Self {
            system_id: system_id.to_owned(),
            password: password.to_owned(),
            mo_prefixes: mo_prefixes.iter().map(|p| (*p).to_owned()).collect(),
            webhook: None,
        }
    }

    /// With a webhook at `url`, signing with `secret`.
    pub fn with_webhook(mut self, url: &str, secret: &str) -> Self {
        self.webhook =
            Some(smsc_accounts::WebhookConfig { url: url.to_owned(), secret: secret.to_owned() });
        self
    }

    /// `demo` / `demo`, receiving every MO.
    pub fn demo() -> Self {
        Self::new("demo", "demo", &[""])
    }
}

/// How to start a [`Cluster`].
///
/// [`Cluster`]: super::Cluster
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `smsc` binary every member runs (built with the `cluster` feature).
    pub binary: PathBuf,
    /// `bootstrap.servers` of a running Kafka; `None`: start [`ClusterOptions::kafka_brokers`]
    /// Apache Kafka brokers with `tests/engines` and stop them with the cluster.
    pub brokers: Option<String>,
    /// How many brokers to start when none are given. Topics are replicated
    /// `min(3, brokers)` times either way.
    pub kafka_brokers: usize,
    /// CQL contact points (`host:port,…`) of a running Cassandra or ScyllaDB; `None`: start
    /// a Cassandra node with `tests/engines` and stop it with the cluster.
    pub cql: Option<String>,
    /// The cluster's keyspace (migrated by the members as they start); `None`: a new one.
    pub keyspace: Option<String>,
    /// `tests/engines`; `None`: looked for from the working directory and from the
    /// binary's directory upwards.
    pub engines_script: Option<PathBuf>,
    pub edges: usize,
    pub routers: usize,
    pub workers: usize,
    pub accounts: Vec<ClusterAccount>,
    /// Delays of the retry tiers (`retry.tiers`).
    pub retry_tiers: Vec<Duration>,
    /// The simulator connector's profiles (`connectors.sim.profiles`).
    pub sim_profiles: Vec<SimProfile>,
    /// Workers' simulators record every handoff in `<dir>/logs/<name>.handed`
    /// (`connectors.sim.journal`; [`Endpoints::handoff_journals`]).
    ///
    /// [`Endpoints::handoff_journals`]: super::Endpoints::handoff_journals
    pub sim_journal: bool,
    /// How often workers retry pending notifications (`worker.pending_interval`).
    pub pending_interval: Duration,
    /// More connectors beside `sim`: YAML lines going under `connectors:` as they are
    /// (each connector's name indented by 2), e.g. an SMPP upstream.
    pub extra_connectors: String,
    /// MT routes (destination prefix, connector), tried in order before the default
    /// route to `sim`.
    pub mt_routes: Vec<(String, String)>,
    pub partitions: u32,
    /// `bus.session_timeout`.
    pub session_timeout: Duration,
    /// Configs and logs; `None`: a new directory under the system's temp dir. Kept
    /// after the cluster stops, for the logs.
    pub dir: Option<PathBuf>,
    /// How long every member gets to answer `/ready` with 200.
    pub ready_timeout: Duration,
    /// How long members get to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
}

impl ClusterOptions {
    /// Two edges, one router, two workers, the demo account, tiers of 1 s, 2 s, 5 s.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            brokers: None,
            kafka_brokers: 1,
            cql: None,
            keyspace: None,
            engines_script: None,
            edges: 2,
            routers: 1,
            workers: 2,
            accounts: vec![ClusterAccount::demo()],
            retry_tiers: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(5),
            ],
            sim_profiles: Vec::new(),
            sim_journal: false,
            pending_interval: Duration::from_millis(500),
            extra_connectors: String::new(),
            mt_routes: Vec::new(),
            partitions: 4,
            session_timeout: Duration::from_secs(6),
            dir: None,
            ready_timeout: Duration::from_secs(90),
            stop_timeout: Duration::from_secs(15),
        }
    }
}
