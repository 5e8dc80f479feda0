//! `smsc cluster`: a local multi-process cluster on loopback, for development and for
//! the end-to-end and chaos tests that drive [`Cluster`] from `services/smsc/tests/`.
//!
//! Every member is a child process of the same `smsc` binary with a generated config
//! in the cluster's directory: the edges, the routers and the workers, on the production
//! engines: Apache Kafka and a CQL store (Apache Cassandra here, ScyllaDB in production),
//! either given or started with `tests/engines` and stopped with the cluster. The store is
//! a keyspace of the cluster's own, so clusters can share one CQL server. Each member gets
//! its own free loopback ports; its stdout and stderr go to `<dir>/logs/<name>.log`.
//!
//! Members stay in this process's process group on purpose: whatever kills the group
//! (Ctrl-C in a terminal, a test runner timing a test out) reaches them too, so a
//! crashed test does not leave an SMSC running. [`Cluster`] kills what is left when it
//! is dropped; [`Cluster::stop`] is the orderly way (SIGTERM, then SIGKILL).

use std::fmt;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use smsc_delivery_worker::config::SimProfile;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

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
}

impl ClusterAccount {
    pub fn new(system_id: &str, password: &str, mo_prefixes: &[&str]) -> Self {
        Self {
            system_id: system_id.to_owned(),
            password: password.to_owned(),
            mo_prefixes: mo_prefixes.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// `demo` / `demo`, receiving every MO.
    pub fn demo() -> Self {
        Self::new("demo", "demo", &[""])
    }
}

/// How to start a [`Cluster`].
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

/// A member that exited, on its own or when stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub role: ClusterRole,
    pub index: usize,
    pub status: ExitStatus,
    /// SIGKILLed after the stop deadline.
    pub forced: bool,
    pub log: PathBuf,
}

impl fmt::Display for Exited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} exited ({})", self.role, self.index, self.status)?;
        if self.forced {
            f.write_str(", killed after the stop deadline")?;
        }
        write!(f, "; log: {}", self.log.display())
    }
}

/// Engines this cluster started with `tests/engines` (in its own run directory) and stops.
#[derive(Debug)]
struct OwnEngines {
    script: PathBuf,
    run_dir: PathBuf,
    kafka: bool,
    cassandra: bool,
}

impl OwnEngines {
    /// Runs `tests/engines args…` on a blocking thread; returns its stdout.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(&self.script);
        command.args(args).env("SMSC_TEST_RUN", &self.run_dir).stdin(Stdio::null());
        let what = format!("tests/engines {}", args.join(" "));
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("engines task")?
            .with_context(|| format!("running {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `KEY=value` from the output of `tests/engines start …`.
    async fn start(&self, args: &[&str], key: &str) -> anyhow::Result<String> {
        let stdout = self.run(args).await?;
        let value = stdout.lines().find_map(|l| l.strip_prefix(key));
        Ok(value.with_context(|| format!("tests/engines printed no {key}"))?.trim().to_owned())
    }

    fn stop(&self) {
        let stopped = Command::new(&self.script)
            .arg("stop")
            .env("SMSC_TEST_RUN", &self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "could not stop the engines");
        }
    }
}

/// A running multi-process cluster. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    options: ClusterOptions,
    endpoints: Endpoints,
    /// By the index of `endpoints.members`; `None` while not running.
    children: Vec<Option<Child>>,
    engines: Option<OwnEngines>,
}

impl Cluster {
    /// Starts the engines (unless given), then every member, and returns once every
    /// member's `/ready` answers 200. On failure, whatever was started is stopped again and
    /// the error carries the failed member's log tail.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        if !options.binary.is_file() {
            bail!("no smsc binary at {}", options.binary.display());
        }
        let dir = match &options.dir {
            Some(d) => d.clone(),
            None => new_temp_dir()?,
        };
        fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.join("logs").display()))?;

        let keyspace = match &options.keyspace {
            Some(k) => k.clone(),
            None => format!("smsc_cluster_{:08x}", rand_u32()),
        };
        let mut cluster = Cluster {
            endpoints: Endpoints {
                brokers: options.brokers.clone().unwrap_or_default(),
                cql: options.cql.clone().unwrap_or_default(),
                keyspace,
                dir: dir.clone(),
                members: Vec::new(),
            },
            children: Vec::new(),
            engines: None,
            options,
        };
        // From here on, an early return drops `cluster`, which stops what was started.
        cluster.start_engines().await?;
        cluster.endpoints.members = cluster.plan()?;
        cluster.children = cluster.endpoints.members.iter().map(|_| None).collect();
        cluster.write_configs()?;

        // One member first: it creates the keyspace and applies the migrations, which the
        // others then find recorded (concurrent schema changes are what Cassandra handles
        // worst).
        cluster.spawn(0)?;
        cluster.wait_ready(&[0]).await?;
        let rest: Vec<usize> = (1..cluster.endpoints.members.len()).collect();
        for &i in &rest {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(&rest).await?;
        Ok(cluster)
    }

    /// SIGKILLs Kafka broker `n` (1-based) of the brokers this cluster started.
    pub async fn kill_broker(&self, n: usize) -> anyhow::Result<()> {
        self.own_engine(true)?.run(&["kill", "kafka", &n.to_string()]).await.map(drop)
    }

    /// Starts Kafka broker `n` again with its data and waits until it serves.
    pub async fn revive_broker(&self, n: usize) -> anyhow::Result<()> {
        self.own_engine(true)?.run(&["revive", "kafka", &n.to_string()]).await.map(drop)
    }

    /// Stops the CQL node this cluster started (SIGTERM) and starts it again with its data.
    pub async fn restart_cql(&self) -> anyhow::Result<()> {
        self.own_engine(false)?.run(&["restart", "cassandra"]).await.map(drop)
    }

    fn own_engine(&self, kafka: bool) -> anyhow::Result<&OwnEngines> {
        match &self.engines {
            Some(e) if (kafka && e.kafka) || (!kafka && e.cassandra) => Ok(e),
            _ => bail!(
                "the cluster did not start its own {}",
                if kafka { "Kafka" } else { "CQL server" }
            ),
        }
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// SIGKILLs a member (no drain, as a crash) and waits until it is gone.
    pub async fn kill(&mut self, role: ClusterRole, index: usize) -> anyhow::Result<()> {
        let i = self.position(role, index)?;
        let Some(mut child) = self.children[i].take() else {
            bail!("{role} {index} is not running");
        };
        // Fails only if it exited already, which is what we want.
        let _ = child.kill();
        wait_exit(&mut child, Duration::from_secs(10)).await.map(|_| ())
    }

    /// SIGTERMs a member and waits for it to exit (SIGKILL after the stop timeout).
    pub async fn terminate(&mut self, role: ClusterRole, index: usize) -> anyhow::Result<Exited> {
        let i = self.position(role, index)?;
        let Some(child) = self.children[i].take() else {
            bail!("{role} {index} is not running");
        };
        let mut exited = self.stop_children(vec![(i, child)]).await;
        exited.pop().context("the member's exit")
    }

    /// Starts a member again on the same config and ports (stopping it first if it
    /// runs), and waits until it is ready.
    pub async fn restart(&mut self, role: ClusterRole, index: usize) -> anyhow::Result<()> {
        let i = self.position(role, index)?;
        if self.children[i].is_some() {
            self.terminate(role, index).await?;
        }
        self.spawn(i)?;
        self.wait_ready(&[i]).await
    }

    /// Whether a member's process is running (not exited, not killed).
    pub fn is_running(&mut self, role: ClusterRole, index: usize) -> bool {
        let Ok(i) = self.position(role, index) else { return false };
        matches!(self.children[i].as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Members that exited on their own since the last call (not those killed,
    /// terminated or stopped through this type).
    pub fn exited(&mut self) -> Vec<Exited> {
        let mut out = Vec::new();
        for (i, slot) in self.children.iter_mut().enumerate() {
            let status = match slot.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            *slot = None;
            let m = &self.endpoints.members[i];
            out.push(Exited {
                role: m.role,
                index: m.index,
                status,
                forced: false,
                log: m.log.clone(),
            });
        }
        out
    }

    /// Stops every member at once (SIGTERM, SIGKILL after the stop timeout), then the
    /// engines if the cluster started them. Returns how each running member exited.
    pub async fn stop(mut self) -> Vec<Exited> {
        let children: Vec<(usize, Child)> = self
            .children
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| c.take().map(|c| (i, c)))
            .collect();
        let exited = self.stop_children(children).await;
        if let Some(engines) = self.engines.take() {
            tokio::task::spawn_blocking(move || engines.stop()).await.ok();
        }
        exited
    }

    /// The last lines of a member's log, for failure messages.
    pub fn log_tail(&self, role: ClusterRole, index: usize, lines: usize) -> String {
        match self.endpoints.member(role, index) {
            Some(m) => tail(&m.log, lines),
            None => String::new(),
        }
    }

    fn position(&self, role: ClusterRole, index: usize) -> anyhow::Result<usize> {
        self.endpoints
            .members
            .iter()
            .position(|m| m.role == role && m.index == index)
            .with_context(|| format!("the cluster has no {role} {index}"))
    }

    /// Starts with `tests/engines` whichever of Kafka and the CQL server was not given.
    async fn start_engines(&mut self) -> anyhow::Result<()> {
        let (kafka, cassandra) = (self.options.brokers.is_none(), self.options.cql.is_none());
        if !kafka && !cassandra {
            return Ok(());
        }
        let script = match &self.options.engines_script {
            Some(s) => s.clone(),
            None => find_engines_script(&self.options.binary).context(
                "tests/engines not found to start Kafka and Cassandra (run from the repository, \
                 pass --engines-script, or give --brokers and --cql)",
            )?,
        };
        let run_dir = self.endpoints.dir.join("engines");
        self.engines = Some(OwnEngines { script, run_dir, kafka, cassandra });
        let engines = self.engines.as_ref().context("engines")?;
        if kafka {
            let n = self.options.kafka_brokers.to_string();
            self.endpoints.brokers =
                engines.start(&["start", "kafka", "--brokers", &n], "KAFKA_BROKERS=").await?;
        }
        if cassandra {
            self.endpoints.cql = engines.start(&["start", "cassandra"], "SCYLLA_URI=").await?;
        }
        Ok(())
    }

    /// Every member with free loopback ports.
    fn plan(&self) -> anyhow::Result<Vec<Member>> {
        let o = &self.options;
        let mut roles: Vec<(ClusterRole, usize)> =
            (0..o.edges).map(|i| (ClusterRole::Edge, i)).collect();
        roles.extend((0..o.routers).map(|i| (ClusterRole::Router, i)));
        roles.extend((0..o.workers).map(|i| (ClusterRole::Worker, i)));
        let needed = roles.len() * 2 + o.edges + o.workers;
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
                simulator: if role == ClusterRole::Worker { Some(next()?) } else { None },
                config: self.endpoints.dir.join(format!("{name}.yaml")),
                log: self.endpoints.dir.join("logs").join(format!("{name}.log")),
                name,
            });
        }
        Ok(members)
    }

    fn write_configs(&self) -> anyhow::Result<()> {
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
            let yaml = format!(
                "# Generated by `smsc cluster` for {name}.\n\
                 node_id: {name}\n\
                 admin_listen: \"{admin}\"\n\
                 edge:\n  smpp_listen: \"{smpp}\"\n  grpc_listen: \"{grpc}\"\n  grpc_advertise: \"{grpc}\"\n  drain_timeout: 5s\n\
                 accounts:\n{accounts}\
                 bus:\n  kind: kafka\n  brokers: {brokers}\n  partitions: {partitions}\n  replication_factor: {bus_rf}\n  session_timeout: {session_timeout}\n\
                 store:\n  kind: scylla\n  uris: [{cql}]\n  keyspace: {keyspace}\n  replication_factor: 1\n\
                 routing:\n{mt_routes}  mo:\n{mo_routes}\
                 connectors:\n  sim:\n    kind: simulator\n{journal}    profiles:\n{profiles}{extra_connectors}\
                 retry:\n  tiers: [{tiers}]\n\
                 worker:\n  pending_interval: {pending}\n  simulator_listen: \"{simulator}\"\n",
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

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.endpoints.members[i];
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .with_context(|| format!("opening {}", m.log.display()))?;
        let _ = writeln!(log, "==== smsc cluster: starting {} ====", m.name);
        let mut command = Command::new(&self.options.binary);
        command.arg(m.role.as_str()).arg("--config").arg(&m.config);
        // The generated config is the whole truth: no override from our environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(smsc_runtime::config::ENV_PREFIX) {
                command.env_remove(key);
            }
        }
        // Plain text in the log files (tracing-subscriber honours NO_COLOR).
        command.env("NO_COLOR", "1");
        let stderr = log.try_clone().context("log file handle")?;
        command.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(stderr));
        let child = command
            .spawn()
            .with_context(|| format!("starting {} ({})", m.name, self.options.binary.display()))?;
        tracing::debug!(member = %m.name, pid = child.id(), "started");
        self.children[i] = Some(child);
        Ok(())
    }

    /// Waits until the members at `indices` answer `/ready` with 200; fails at once
    /// when one exits, and after the ready timeout.
    async fn wait_ready(&mut self, indices: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let mut waiting: Vec<usize> = indices.to_vec();
        loop {
            let mut still = Vec::new();
            for &i in &waiting {
                let m = &self.endpoints.members[i];
                let exit = match self.children[i].as_mut() {
                    None => bail!("{} is not running", m.name),
                    Some(child) => child.try_wait().context("checking a member")?,
                };
                if let Some(status) = exit {
                    self.children[i] = None;
                    bail!(
                        "{} exited while starting ({status}); the end of {}:\n{}",
                        m.name,
                        m.log.display(),
                        tail(&m.log, 30)
                    );
                }
                if http_status(m.admin, "/ready").await != Some(200) {
                    still.push(i);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let m = &self.endpoints.members[still[0]];
                bail!(
                    "not ready within {:?}: {}; the end of {}:\n{}",
                    self.options.ready_timeout,
                    still
                        .iter()
                        .map(|&i| self.endpoints.members[i].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    m.log.display(),
                    tail(&m.log, 30)
                );
            }
            waiting = still;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM to all of `children` at once, then SIGKILL to those left at the deadline.
    async fn stop_children(&self, mut children: Vec<(usize, Child)>) -> Vec<Exited> {
        for (_, child) in &mut children {
            if let Ok(None) = child.try_wait() {
                sigterm(child.id());
            }
        }
        let deadline = Instant::now() + self.options.stop_timeout;
        let mut exited = Vec::new();
        while !children.is_empty() {
            let now = Instant::now();
            let mut left = Vec::new();
            for (i, mut child) in children {
                let m = &self.endpoints.members[i];
                let exit = |status, forced| Exited {
                    role: m.role,
                    index: m.index,
                    status,
                    forced,
                    log: m.log.clone(),
                };
                match child.try_wait() {
                    Ok(Some(status)) => exited.push(exit(status, false)),
                    Ok(None) if now < deadline => left.push((i, child)),
                    _ => {
                        let _ = child.kill();
                        match child.wait() {
                            Ok(status) => exited.push(exit(status, true)),
                            Err(e) => tracing::warn!(member = %m.name, error = %e, "lost a member"),
                        }
                    }
                }
            }
            children = left;
            if !children.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        exited
    }
}

impl Drop for Cluster {
    /// Kills whatever still runs (a test that failed half way): no orphans.
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(engines) = self.engines.take() {
            engines.stop();
        }
    }
}

/// SIGTERM through kill(1): the workspace forbids `unsafe`, which `libc::kill` needs.
/// The pid is still ours: the caller has not reaped the child.
fn sigterm(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = sent {
        tracing::warn!(pid, error = %e, "could not send SIGTERM");
    }
}

async fn wait_exit(child: &mut Child, within: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a member")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!("pid {} did not exit within {within:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status code of `GET path`, or `None` if there is no answer within a second.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let mut len = 0;
        while len < 12 {
            let n = s.read(&mut head[len..]).await.ok()?;
            if n == 0 {
                break;
            }
            len += n;
        }
        let line = std::str::from_utf8(&head[..len]).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange).await.ok().flatten()
}

/// Where members' ports are picked: below Linux's ephemeral range (32768-60999), so that
/// no outgoing connection (the Kafka and CQL clients open many) takes a member's port
/// while it is free, between the pick and the bind or while a killed member restarts.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// `n` distinct ports free on 127.0.0.1 now (held together while picked, so distinct).
fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
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

fn new_temp_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("smsc-cluster-{}-{nanos:08x}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `tests/engines` from the working directory or the binary's directory upwards
/// (`target/debug/smsc` sits two levels under the repository).
fn find_engines_script(binary: &Path) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let starts = cwd.iter().map(PathBuf::as_path).chain(binary.parent());
    starts.flat_map(Path::ancestors).map(|d| d.join("tests").join("engines")).find(|p| p.is_file())
}

/// A random keyspace suffix without a dependency: the clock's nanoseconds and the pid.
fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
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

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `smsc cluster` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// A running Kafka (host:port,...); default: start Apache Kafka with tests/engines and
    /// stop it with the cluster.
    #[arg(long)]
    pub brokers: Option<String>,
    /// How many Kafka brokers to start when --brokers is not given (topics are replicated
    /// min(3, N) times).
    #[arg(long, default_value_t = 1)]
    pub kafka_brokers: usize,
    /// A running CQL store, Cassandra or ScyllaDB (host:port,...); default: start Apache
    /// Cassandra with tests/engines and stop it with the cluster.
    #[arg(long)]
    pub cql: Option<String>,
    /// The keyspace (default: a new smsc_cluster_XXXXXXXX).
    #[arg(long)]
    pub keyspace: Option<String>,
    /// The engines script (default: tests/engines, found from the working directory).
    #[arg(long)]
    pub engines_script: Option<PathBuf>,
    /// Configs and logs go here (default: a new directory under $TMPDIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub edges: usize,
    #[arg(long, default_value_t = 1)]
    pub routers: usize,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Retry tier delays, comma-separated (retry.tiers).
    #[arg(long, value_delimiter = ',', value_parser = humantime_duration, default_value = "1s,2s,5s")]
    pub retry_tiers: Vec<Duration>,
    /// How long the members get to become ready.
    #[arg(long, value_parser = humantime_duration, default_value = "90s")]
    pub ready_timeout: Duration,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 500ms or 2s: {e}"))
}

/// `smsc cluster`: starts the cluster, prints where everything is, reports members
/// that exit on their own, and stops everything when `shutdown` resolves.
pub async fn run(
    args: ClusterArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if !cfg!(all(feature = "kafka", feature = "scylla")) {
        bail!(
            "this smsc was built without Kafka and ScyllaDB: cargo build -p smsc --features cluster"
        );
    }
    let binary = std::env::current_exe().context("locating the smsc binary")?;
    let options = ClusterOptions {
        brokers: args.brokers,
        kafka_brokers: args.kafka_brokers,
        cql: args.cql,
        keyspace: args.keyspace,
        engines_script: args.engines_script,
        dir: args.dir,
        edges: args.edges,
        routers: args.routers,
        workers: args.workers,
        retry_tiers: args.retry_tiers,
        ready_timeout: args.ready_timeout,
        ..ClusterOptions::new(binary)
    };
    if options.edges == 0 || options.routers == 0 || options.workers == 0 {
        bail!("a cluster needs at least one edge, router and worker");
    }
    eprintln!("smsc cluster: starting (this takes a few seconds)...");
    let mut cluster = Cluster::start(options).await?;
    println!("{}", cluster.endpoints());
    println!("  account            demo / demo (receives every MO)");
    println!("Ctrl-C stops the cluster.");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                for e in cluster.exited() {
                    eprintln!("smsc cluster: unexpected exit: {e}; its last lines:");
                    eprintln!("{}", tail(&e.log, 10));
                }
            }
        }
    }
    eprintln!("smsc cluster: stopping...");
    let log_dir = cluster.endpoints().dir.join("logs");
    for e in cluster.stop().await {
        if e.forced || !e.status.success() {
            eprintln!("smsc cluster: {e}");
        }
    }
    eprintln!("smsc cluster: stopped; logs kept in {}", log_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_yaml_specials_literal() {
        assert_eq!(quote("$argon2id$v=19$m"), "\"$argon2id$v=19$m\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(12).expect("ports");
        let mut unique: Vec<u16> = ports.iter().map(SocketAddr::port).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 12);
        assert!(unique.iter().all(|p| PORTS.contains(p)), "{unique:?}");
    }

    /// The generated member configs load with the binary's own config loader.
    #[test]
    fn generated_configs_are_valid() {
        let dir = new_temp_dir().expect("dir");
        let options = ClusterOptions {
            brokers: Some("127.0.0.1:9092".into()),
            dir: Some(dir.clone()),
            accounts: vec![ClusterAccount::demo(), ClusterAccount::new("b\"ank", "pw", &["6666"])],
            sim_profiles: vec![SimProfile {
                prefix: "1555".into(),
                temporary_failures: 1,
                latency: Duration::from_millis(20),
                ..SimProfile::default()
            }],
            extra_connectors: "  up:\n    kind: smpp\n    address: 127.0.0.1:2775\n    system_id: a\n    password: p\n    max_binds: 2\n".into(),
            mt_routes: vec![("3361".into(), "up".into())],
            ..ClusterOptions::new("/bin/true")
        };
        let mut cluster = Cluster {
            endpoints: Endpoints {
                brokers: "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094,127.0.0.1:9095".into(),
                cql: "127.0.0.1:9042, 127.0.0.2:9042".into(),
                keyspace: "smsc_cluster_test".into(),
                dir: dir.clone(),
                members: Vec::new(),
            },
            children: Vec::new(),
            engines: None,
            options,
        };
        fs::create_dir_all(dir.join("logs")).expect("logs dir");
        cluster.endpoints.members = cluster.plan().expect("plan");
        assert_eq!(cluster.endpoints.members.len(), 5);
        cluster.write_configs().expect("configs");
        for m in &cluster.endpoints.members {
            let c = crate::config::Config::load_with_env(Some(&m.config), Vec::new())
                .unwrap_or_else(|e| panic!("{}: {e}", m.config.display()));
            assert_eq!(c.admin_listen, m.admin);
            assert_eq!(c.node_id, m.name);
            assert_eq!(c.store.kind, smsc_store::config::StoreKind::Scylla);
            assert_eq!(c.store.uris, ["127.0.0.1:9042", "127.0.0.2:9042"]);
            assert_eq!(
                (c.store.keyspace.as_str(), c.store.replication_factor),
                ("smsc_cluster_test", 1)
            );
            assert_eq!(c.bus.kind, smsc_bus::BusKind::Kafka);
            assert_eq!((c.bus.replication_factor, c.bus.session_timeout.as_secs()), (3, 6));
            assert_eq!(c.accounts.len(), 2);
            assert_eq!(c.accounts[1].system_id, "b\"ank");
            assert_eq!(c.routing.mo.len(), 2);
            let mt: Vec<(&str, &str)> =
                c.routing.mt.iter().map(|r| (r.prefix.as_str(), r.connector.as_str())).collect();
            assert_eq!(mt, [("3361", "up"), ("", "sim")]);
            assert!(matches!(
                c.connectors.get("up"),
                Some(smsc_delivery_worker::config::ConnectorConfig::Smpp(u)) if u.max_binds == 2
            ));
            assert_eq!(c.retry.tiers, cluster.options.retry_tiers);
            if let Some(smpp) = m.smpp {
                assert_eq!(c.edge.smpp_listen, smpp);
                assert_eq!(c.edge.grpc_advertise, Some(m.grpc.to_string()));
            }
            if let Some(sim) = m.simulator {
                assert_eq!(c.worker.simulator_listen, sim);
            }
        }
        let text = cluster.endpoints.to_string();
        assert!(text.contains("edge-1") && text.contains("SMPP"), "{text}");
        fs::remove_dir_all(dir).ok();
    }
}
