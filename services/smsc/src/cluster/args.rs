//! `smsc cluster`: its flags ([`ClusterArgs`]) and the command ([`run`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::process::tail;
use super::{Cluster, ClusterAccount, ClusterOptions};

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
    /// More ESME accounts beside demo / demo, as SYSTEM_ID:PASSWORD (repeatable).
    #[arg(long = "account", value_parser = account)]
    pub accounts: Vec<ClusterAccount>,
}

fn account(s: &str) -> Result<ClusterAccount, String> {
    match s.split_once(':') {
        Some((id, password)) if !id.is_empty() && (1..=8).contains(&password.len()) => {
            Ok(ClusterAccount::new(id, password, &[]))
        }
        _ => Err(format!("`{s}` is not SYSTEM_ID:PASSWORD (a password of 1 to 8 characters)")),
    }
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
    let mut options = ClusterOptions {
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
    options.accounts.extend(args.accounts.iter().cloned());
    if options.edges == 0 || options.routers == 0 || options.workers == 0 {
        bail!("a cluster needs at least one edge, router and worker");
    }
    eprintln!("smsc cluster: starting (this takes a few seconds)...");
    let mut cluster = Cluster::start(options).await?;
    println!("{}", cluster.endpoints());
    println!("  account            demo / demo (receives every MO)");
    for a in &args.accounts {
        println!("  account            {} / {}", a.system_id, a.password);
    }
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
