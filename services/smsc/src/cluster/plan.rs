//! The cluster's layout: every member with its free loopback ports and its files
//! ([`Member`], [`Endpoints`]), and the config file generated for each.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::{Cluster, ClusterRole};

/// One member process: where it listens and where its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub role: ClusterRole,
    pub index: usize,
    /// `edge-0`, also its node_id.
    pub name: String,
    pub admin: SocketAddr,
    /// The edge's gRPC (`Edge.Deliver`); only an edge serves it.
    pub grpc: SocketAddr,
    /// Edges only.
    pub smpp: Option<SocketAddr>,
    /// Edges only: the HTTP API.
    pub http: Option<SocketAddr>,
    /// Workers only: the simulator's gRPC (`smsc mo --simulator`).
    pub simulator: Option<SocketAddr>,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// Where everything of a running cluster is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `bootstrap.servers` of Kafka.
    pub brokers: String,
    /// CQL contact points of the store.
    pub cql: String,
    /// The store's keyspace.
    pub keyspace: String,
    /// Configs, `logs/`, and the engines' run directory when the cluster started them.
    pub dir: PathBuf,
    /// Edges, routers, workers, each by index.
    pub members: Vec<Member>,
}

impl Endpoints {
    /// The simulator journals of the workers (written when
    /// [`ClusterOptions::sim_journal`] is set).
    ///
    /// [`ClusterOptions::sim_journal`]: super::ClusterOptions::sim_journal
    pub fn handoff_journals(&self) -> Vec<PathBuf> {
        self.members
            .iter()
            .filter(|m| m.role == ClusterRole::Worker)
            .map(|m| self.dir.join("logs").join(format!("{}.handed", m.name)))
            .collect()
    }

    pub fn member(&self, role: ClusterRole, index: usize) -> Option<&Member> {
        self.members.iter().find(|m| m.role == role && m.index == index)
    }

    /// SMPP address of edge `index`.
    pub fn smpp(&self, index: usize) -> Option<SocketAddr> {
        self.member(ClusterRole::Edge, index)?.smpp
    }

    /// HTTP API address of edge `index`.
    pub fn http(&self, index: usize) -> Option<SocketAddr> {
        self.member(ClusterRole::Edge, index)?.http
    }

    /// The CDRs router `index` writes (`cdr.file`), one JSON object per line.
    pub fn cdr_file(&self, index: usize) -> Option<PathBuf> {
        let m = self.member(ClusterRole::Router, index)?;
        Some(self.dir.join("logs").join(format!("{}.cdr.jsonl", m.name)))
    }

    /// Simulator gRPC address of worker `index`.
    pub fn simulator(&self, index: usize) -> Option<SocketAddr> {
        self.member(ClusterRole::Worker, index)?.simulator
    }

    /// Topics are replicated this many times: `min(3, brokers)`.
    pub fn replication_factor(&self) -> u16 {
        let brokers = self.brokers.split(',').filter(|b| !b.trim().is_empty()).count();
        u16::try_from(brokers.clamp(1, 3)).unwrap_or(1)
    }
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "smsc cluster")?;
        writeln!(f, "  kafka              {}", self.brokers)?;
        writeln!(f, "  store (CQL)        {} keyspace {}", self.cql, self.keyspace)?;
        for m in &self.members {
            let mut line = format!("  {:<18} admin http://{}", m.name, m.admin);
            match m.role {
                ClusterRole::Edge => {
                    if let Some(smpp) = m.smpp {
                        line.push_str(&format!("  SMPP {smpp}"));
                    }
                    if let Some(http) = m.http {
                        line.push_str(&format!("  HTTP {http}"));
                    }
                    line.push_str(&format!("  gRPC {}", m.grpc));
                }
                ClusterRole::Router => {}
                ClusterRole::Worker => {
                    if let Some(sim) = m.simulator {
                        line.push_str(&format!("  simulator gRPC {sim}"));
                    }
                }
            }
            writeln!(f, "{line}")?;
        }
        writeln!(f, "  configs            {}", self.dir.display())?;
        write!(f, "  logs               {}", self.dir.join("logs").display())
    }
}

impl Cluster {
    /// Every member with free loopback ports.
    pub(super) fn plan(&self) -> anyhow::Result<Vec<Member>> {
        let o = &self.options;
        let mut roles: Vec<(ClusterRole, usize)> =
            (0..o.edges).map(|i| (ClusterRole::Edge, i)).collect();
        roles.extend((0..o.routers).map(|i| (ClusterRole::Router, i)));
        roles.extend((0..o.workers).map(|i| (ClusterRole::Worker, i)));
        let needed = roles.len() * 2 + 2 * o.edges + o.workers;
        let mut ports = free_ports(needed)?.into_iter();
        let mut next = || ports.next().context("ran out of free ports");
        let mut members = Vec::new();
        for (role, index) in roles {
            let name = format!("{role}-{index}");
            members.push(Member {
                role,
                index,
                admin: next()?,
                grpc: next()?,
                smpp: if role == ClusterRole::Edge { Some(next()?) } else { None },
                http: if role == ClusterRole::Edge { Some(next()?) } else { None },
                simulator: if role == ClusterRole::Worker { Some(next()?) } else { None },
                config: self.endpoints.dir.join(format!("{name}.yaml")),
                log: self.endpoints.dir.join("logs").join(format!("{name}.log")),
                name,
            });
        }
        Ok(members)
    }

    pub(super) fn write_configs(&self) -> anyhow::Result<()> {
        let o = &self.options;
        let mut accounts = String::new();
        let mut mo_routes = String::new();
        for a in &o.accounts {
            let hash = smsc_accounts::hash_password(&a.password)
                .with_context(|| format!("hashing the password of {}", a.system_id))?;
            accounts.push_str(&format!(
                "  - system_id: {}\n    password_hash: {}\n",
                quote(&a.system_id),
                quote(&hash)
            ));
            if let Some(w) = &a.webhook {
                accounts.push_str(&format!(
                    "    webhook: {{ url: {}, secret: {} }}\n",
                    quote(&w.url),
                    quote(&w.secret)
                ));
            }
            for prefix in &a.mo_prefixes {
                mo_routes.push_str(&format!(
                    "    - prefix: {}\n      account: {}\n",
                    quote(prefix),
                    quote(&a.system_id)
                ));
            }
        }
        let mut profiles = String::new();
        for p in &o.sim_profiles {
            profiles.push_str(&format!(
                "      - prefix: {}\n        latency: {}\n        temporary_failures: {}\n        unreachable: {}\n        permanent: {}\n        error_code: {}\n",
                quote(&p.prefix),
                millis(p.latency),
                p.temporary_failures,
                p.unreachable,
                p.permanent,
                p.error_code
            ));
        }
        let tiers: Vec<String> = o.retry_tiers.iter().map(|d| millis(*d)).collect();
        let mut mt_routes = String::new();
        if !o.mt_routes.is_empty() {
            mt_routes.push_str("  mt:\n");
            for (prefix, connector) in &o.mt_routes {
                mt_routes.push_str(&format!(
                    "    - prefix: {}\n      connector: {}\n",
                    quote(prefix),
                    quote(connector)
                ));
            }
            mt_routes.push_str("    - connector: sim\n");
        }
        let cql: Vec<String> = self.endpoints.cql.split(',').map(|u| quote(u.trim())).collect();
        for m in &self.endpoints.members {
            let any = "127.0.0.1:0";
            let smpp = m.smpp.map_or(any.to_owned(), |a| a.to_string());
            let simulator = m.simulator.map_or(any.to_owned(), |a| a.to_string());
            let http = m.http.map(|a| format!("  http_listen: \"{a}\"\n")).unwrap_or_default();
            // The routers write the CDRs (any role could: one is enough).
            let cdr = match m.role {
                ClusterRole::Router => {
                    let path = self.endpoints.cdr_file(m.index).unwrap_or_default();
                    format!("cdr:\n  file: {}\n", quote(&path.display().to_string()))
                }
                _ => String::new(),
            };
            let yaml = format!(
                "# Generated by `smsc cluster` for {name}.\n\
                 node_id: {name}\n\
                 admin_listen: \"{admin}\"\n\
                 edge:\n  smpp_listen: \"{smpp}\"\n  grpc_listen: \"{grpc}\"\n  grpc_advertise: \"{grpc}\"\n  drain_timeout: 5s\n{http}\
                 accounts:\n{accounts}\
                 bus:\n  kind: kafka\n  brokers: {brokers}\n  partitions: {partitions}\n  replication_factor: {bus_rf}\n  session_timeout: {session_timeout}\n\
                 store:\n  kind: scylla\n  uris: [{cql}]\n  keyspace: {keyspace}\n  replication_factor: 1\n\
                 routing:\n{mt_routes}  mo:\n{mo_routes}\
                 connectors:\n  sim:\n    kind: simulator\n{journal}    profiles:\n{profiles}{extra_connectors}\
                 retry:\n  tiers: [{tiers}]\n\
                 worker:\n  pending_interval: {pending}\n  simulator_listen: \"{simulator}\"\n{cdr}",
                name = m.name,
                admin = m.admin,
                grpc = m.grpc,
                accounts = if accounts.is_empty() { "  []\n" } else { &accounts },
                brokers = quote(&self.endpoints.brokers),
                bus_rf = self.endpoints.replication_factor(),
                cql = cql.join(", "),
                keyspace = quote(&self.endpoints.keyspace),
                partitions = o.partitions,
                session_timeout = millis(o.session_timeout),
                mo_routes = if mo_routes.is_empty() { "    []\n" } else { &mo_routes },
                profiles = if profiles.is_empty() { "      []\n" } else { &profiles },
                journal = if o.sim_journal {
                    let path = self.endpoints.dir.join("logs").join(format!("{}.handed", m.name));
                    format!("    journal: {}\n", quote(&path.display().to_string()))
                } else {
                    String::new()
                },
                tiers = tiers.join(", "),
                pending = millis(o.pending_interval),
                extra_connectors = o.extra_connectors,
            );
            fs::write(&m.config, yaml)
                .with_context(|| format!("writing {}", m.config.display()))?;
        }
        Ok(())
    }
}

/// Where members' ports are picked: below Linux's ephemeral range (32768-60999), so that
/// no outgoing connection (the Kafka and CQL clients open many) takes a member's port
/// while it is free, between the pick and the bind or while a killed member restarts.
pub(super) const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// `n` distinct ports free on 127.0.0.1 now (held together while picked, so distinct).
pub(super) fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let mut listeners = Vec::with_capacity(n);
    let span = u32::from(PORTS.end - PORTS.start);
    let mut next = rand_u32() % span;
    for _ in 0..span {
        if listeners.len() == n {
            break;
        }
        next = (next + 7_919) % span; // a prime stride visits every port of the span
        let port = PORTS.start + u16::try_from(next).unwrap_or(0);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
        }
    }
    if listeners.len() < n {
        bail!("only {} free loopback ports in {PORTS:?}", listeners.len());
    }
    listeners.iter().map(|l| l.local_addr().context("a bound port")).collect()
}

pub(super) fn new_temp_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("smsc-cluster-{}-{nanos:08x}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A random keyspace suffix without a dependency: the clock's nanoseconds and the pid.
pub(super) fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A duration as humantime reads it back exactly.
fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}
