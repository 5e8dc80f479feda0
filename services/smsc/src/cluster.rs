//! `smsc cluster`: a local multi-process cluster on loopback, for development and for
//! the end-to-end and chaos tests that drive [`Cluster`] from `services/smsc/tests/`.
//!
//! Every member is a child process of the same `smsc` binary with a generated config
//! in the cluster's directory: one `smsc store-server` (the shared in-memory store),
//! the edges, the routers and the workers, all on a Kafka-protocol broker (given, or a
//! tansu started with `tests/brokers`). Each member gets its own free loopback ports;
//! its stdout and stderr go to `<dir>/logs/<name>.log`.
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
use smsc_common::config::SimProfile;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

/// What a member process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterRole {
    StoreServer,
    Edge,
    Router,
    Worker,
}

impl ClusterRole {
    /// The subcommand, also the member's name prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StoreServer => "store-server",
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
    /// The `smsc` binary every member runs (built with the `kafka` feature).
    pub binary: PathBuf,
    /// `host:port` of a running Kafka-protocol broker; `None`: start a tansu with
    /// [`ClusterOptions::brokers_script`] and stop it with the cluster.
    pub brokers: Option<String>,
    /// `tests/brokers`; `None`: looked for from the working directory and from the
    /// binary's directory upwards.
    pub brokers_script: Option<PathBuf>,
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
    /// `bus.session_timeout`: tansu needs 6 s (see shared/INFRA.md).
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
            brokers_script: None,
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
    /// The store server's `StoreService`, or the role's gRPC (`Edge`, `SessionDirectory`).
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
    /// `bootstrap.servers` of the broker.
    pub brokers: String,
    /// Configs, `logs/`, and the broker's run directory when the cluster started it.
    pub dir: PathBuf,
    /// The store server first, then edges, routers, workers, each by index.
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

    /// The store server's gRPC address.
    pub fn store(&self) -> Option<SocketAddr> {
        Some(self.member(ClusterRole::StoreServer, 0)?.grpc)
    }
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "smsc cluster")?;
        writeln!(f, "  broker (kafka)     {}", self.brokers)?;
        for m in &self.members {
            let mut line = format!("  {:<18} admin http://{}", m.name, m.admin);
            match m.role {
                ClusterRole::StoreServer => line.push_str(&format!("  store gRPC {}", m.grpc)),
                ClusterRole::Edge => {
                    if let Some(smpp) = m.smpp {
                        line.push_str(&format!("  SMPP {smpp}"));
                    }
                    line.push_str(&format!("  gRPC {}", m.grpc));
                }
                ClusterRole::Router => line.push_str(&format!("  gRPC {}", m.grpc)),
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

/// A broker this cluster started and must stop.
#[derive(Debug)]
struct OwnBroker {
    script: PathBuf,
    run_dir: PathBuf,
}

impl OwnBroker {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.script);
        c.args(args).env("SMSC_TEST_RUN", &self.run_dir).stdin(Stdio::null());
        c
    }

    fn stop(&self) {
        let stopped = self.command(&["stop", "tansu"]).stdout(Stdio::null()).status();
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "could not stop the broker");
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
    broker: Option<OwnBroker>,
}

impl Cluster {
    /// Starts the broker (unless given), the store server, then every other member,
    /// and returns once every member's `/ready` answers 200. On failure, whatever was
    /// started is stopped again and the error carries the failed member's log tail.
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

        let mut cluster = Cluster {
            endpoints: Endpoints { brokers: String::new(), dir: dir.clone(), members: Vec::new() },
            children: Vec::new(),
            broker: None,
            options,
        };
        // From here on, an early return drops `cluster`, which kills what was started.
        cluster.endpoints.brokers = match cluster.options.brokers.clone() {
            Some(b) => b,
            None => cluster.start_broker().await?,
        };
        cluster.endpoints.members = cluster.plan()?;
        cluster.children = cluster.endpoints.members.iter().map(|_| None).collect();
        cluster.write_configs()?;

        // The store server first: the others connect to it as they start.
        cluster.spawn(0)?;
        cluster.wait_ready(&[0]).await?;
        let rest: Vec<usize> = (1..cluster.endpoints.members.len()).collect();
        for &i in &rest {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(&rest).await?;
        Ok(cluster)
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

    /// Stops every member: SIGTERM to the edges, routers and workers, then to the
    /// store server (so the others can finish their writes), each group SIGKILLed
    /// after the stop timeout; then the broker if the cluster started it. Returns how
    /// each running member exited.
    pub async fn stop(mut self) -> Vec<Exited> {
        let mut exited = Vec::new();
        let roles: Vec<usize> = (1..self.children.len()).collect();
        for group in [roles, vec![0]] {
            let children: Vec<(usize, Child)> = group
                .into_iter()
                .filter_map(|i| self.children.get_mut(i)?.take().map(|c| (i, c)))
                .collect();
            exited.extend(self.stop_children(children).await);
        }
        if let Some(broker) = self.broker.take() {
            tokio::task::spawn_blocking(move || broker.stop()).await.ok();
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

    async fn start_broker(&mut self) -> anyhow::Result<String> {
        let script = match &self.options.brokers_script {
            Some(s) => s.clone(),
            None => find_brokers_script(&self.options.binary).context(
                "no --brokers given and tests/brokers not found (run from the repository, or pass --brokers-script)",
            )?,
        };
        let broker = OwnBroker { script, run_dir: self.endpoints.dir.join("brokers") };
        let mut command = broker.command(&["start", "tansu"]);
        self.broker = Some(broker);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("broker start task")?
            .context("running tests/brokers start tansu")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let brokers = stdout.lines().find_map(|l| l.strip_prefix("KAFKA_BROKERS="));
        match brokers {
            Some(b) if output.status.success() => Ok(b.trim().to_owned()),
            _ => bail!(
                "tests/brokers start tansu failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }

    /// Every member with free loopback ports.
    fn plan(&self) -> anyhow::Result<Vec<Member>> {
        let o = &self.options;
        let mut roles = vec![(ClusterRole::StoreServer, 0)];
        roles.extend((0..o.edges).map(|i| (ClusterRole::Edge, i)));
        roles.extend((0..o.routers).map(|i| (ClusterRole::Router, i)));
        roles.extend((0..o.workers).map(|i| (ClusterRole::Worker, i)));
        let needed = roles.len() * 2 + o.edges + o.workers;
        let mut ports = free_ports(needed)?.into_iter();
        let mut next = || ports.next().context("ran out of free ports");
        let mut members = Vec::new();
        for (role, index) in roles {
            let name = if role == ClusterRole::StoreServer {
                role.as_str().to_owned()
            } else {
                format!("{role}-{index}")
            };
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
            let hash = smsc_common::accounts::hash_password(&a.password)
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
        let store = self.endpoints.store().context("no store server planned")?;
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
                 bus:\n  kind: kafka\n  brokers: {brokers}\n  partitions: {partitions}\n  replication_factor: 1\n  session_timeout: {session_timeout}\n\
                 store:\n  kind: remote\n  endpoint: \"{store}\"\n\
                 routing:\n{mt_routes}  mo:\n{mo_routes}\
                 connectors:\n  sim:\n    kind: simulator\n{journal}    profiles:\n{profiles}{extra_connectors}\
                 retry:\n  tiers: [{tiers}]\n\
                 worker:\n  pending_interval: {pending}\n  simulator_listen: \"{simulator}\"\n",
                name = m.name,
                admin = m.admin,
                grpc = m.grpc,
                accounts = if accounts.is_empty() { "  []\n" } else { &accounts },
                brokers = quote(&self.endpoints.brokers),
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
        if m.role == ClusterRole::StoreServer {
            command.arg("--listen").arg(m.grpc.to_string());
        }
        // The generated config is the whole truth: no override from our environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(smsc_common::config::ENV_PREFIX) {
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
        if let Some(broker) = self.broker.take() {
            broker.stop();
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

/// `n` distinct ports free on 127.0.0.1 now (held together while picked, so distinct).
fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free loopback ports")?;
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

/// `tests/brokers` from the working directory or the binary's directory upwards
/// (`target/debug/smsc` sits two levels under the repository).
fn find_brokers_script(binary: &Path) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let starts = cwd.iter().map(PathBuf::as_path).chain(binary.parent());
    starts.flat_map(Path::ancestors).map(|d| d.join("tests").join("brokers")).find(|p| p.is_file())
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
    /// A running Kafka-protocol broker (host:port); default: start tansu with
    /// tests/brokers and stop it with the cluster.
    #[arg(long)]
    pub brokers: Option<String>,
    /// The broker script (default: tests/brokers, found from the working directory).
    #[arg(long)]
    pub brokers_script: Option<PathBuf>,
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
    if !cfg!(feature = "kafka") {
        bail!(
            "this smsc was built without the `kafka` feature: cargo build -p smsc --features kafka"
        );
    }
    let binary = std::env::current_exe().context("locating the smsc binary")?;
    let options = ClusterOptions {
        brokers: args.brokers,
        brokers_script: args.brokers_script,
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
                brokers: "127.0.0.1:9092".into(),
                dir: dir.clone(),
                members: Vec::new(),
            },
            children: Vec::new(),
            broker: None,
            options,
        };
        fs::create_dir_all(dir.join("logs")).expect("logs dir");
        cluster.endpoints.members = cluster.plan().expect("plan");
        assert_eq!(cluster.endpoints.members.len(), 6);
        cluster.write_configs().expect("configs");
        for m in &cluster.endpoints.members {
            let c = smsc_common::config::Config::load_with_env(Some(&m.config), Vec::new())
                .unwrap_or_else(|e| panic!("{}: {e}", m.config.display()));
            assert_eq!(c.admin_listen, m.admin);
            assert_eq!(c.node_id, m.name);
            assert_eq!(c.store.kind, smsc_common::config::StoreKind::Remote);
            assert_eq!(c.bus.kind, smsc_common::config::BusKind::Kafka);
            assert_eq!((c.bus.replication_factor, c.bus.session_timeout.as_secs()), (1, 6));
            assert_eq!(c.accounts.len(), 2);
            assert_eq!(c.accounts[1].system_id, "b\"ank");
            assert_eq!(c.routing.mo.len(), 2);
            let mt: Vec<(&str, &str)> =
                c.routing.mt.iter().map(|r| (r.prefix.as_str(), r.connector.as_str())).collect();
            assert_eq!(mt, [("3361", "up"), ("", "sim")]);
            assert!(matches!(
                c.connectors.get("up"),
                Some(smsc_common::config::ConnectorConfig::Smpp(u)) if u.max_binds == 2
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
