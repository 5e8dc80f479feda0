//! `smsc`: every role of the SMSC in one binary (one container image).
//!
//! ```text
//! smsc all [--config FILE]            every role in one process, embedded defaults
//! smsc edge --config FILE             the SMPP edge
//! smsc hash-password [PASSWORD]       an argon2 hash for an account's password_hash
//! smsc api-key                        a new HTTP API key and its api_key_sha256
//! smsc trace MESSAGE_ID --config FILE a message's life, from the store
//! smsc store-server [--listen ADDR]   the in-memory store shared by a local cluster
//! smsc cluster [--brokers B --cql C]  a local multi-process cluster on Kafka and Cassandra
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's malloc spent a fifth of the edge's CPU on the submit path (frees on another
// thread than the allocation); mimalloc's per-thread heaps do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "smsc", version, about = "A Kubernetes-native, horizontally scaled SMSC")]
struct Cli {
    /// Log as JSON lines (for log collectors) instead of text.
    #[arg(long, global = true, env = "SMSC_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every role in one process on embedded defaults, with the `demo`/`demo` account
    /// when the config has no accounts.
    All(smsc::RunArgs),
    /// The SMPP edge.
    Edge(smsc::RunArgs),
    /// The router (smsc.submit, smsc.mo).
    Router(smsc::RunArgs),
    /// The delivery worker and notification dispatcher.
    Worker(smsc::RunArgs),
    /// Sends a handset message through the network simulator (MO).
    Mo {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        text: String,
        /// The simulator's gRPC address (worker.simulator_listen).
        #[arg(long, default_value = "127.0.0.1:50052")]
        simulator: String,
    },
    /// Prints an argon2id hash of PASSWORD (read from stdin when absent).
    HashPassword { password: Option<String> },
    /// Prints a message's life from the store (`store.*` of the config): each
    /// destination's state and times, attempts, route, connector, receipt, CDR key.
    Trace {
        message_id: String,
        #[command(flatten)]
        args: smsc::RunArgs,
    },
    /// Prints a new HTTP API key, then its SHA-256 for the account's `api_key_sha256`
    /// (the SMSC keeps only the digest: hand the key over once).
    ApiKey,
    /// Applies the ScyllaDB schema (`store.*` of the config) and exits; the store also
    /// does it at start-up. Needs a build with the `scylla` feature.
    Migrate(smsc::RunArgs),
    /// The store shared by a local cluster's processes; for local clusters and tests,
    /// not production.
    ///
    /// Serves one in-memory store over gRPC (`smsc.v1.StoreService`) to the processes
    /// of a local cluster (`store.kind: remote`, `store.endpoint`). Not for production:
    /// the data lives in this one process's memory, with no copy, and is gone when it
    /// stops.
    StoreServer(smsc::StoreServerArgs),
    /// A local multi-process cluster on loopback, for development.
    ///
    /// Starts Apache Kafka and Apache Cassandra with tests/engines (unless --brokers and
    /// --cql name running ones), then 2 edges, 1 router and 2 workers as child processes
    /// on them, prints their endpoints, and stops them all on Ctrl-C or SIGTERM. Needs a
    /// build with the `cluster` feature.
    Cluster(smsc::cluster::ClusterArgs),
}

/// With transparent huge pages the resident set kept climbing under a steady load, and
/// even idle (khugepaged filling the allocator's half-used 2 MiB ranges): at 20 k msg/s
/// after a burst, 542 -> 592 MiB in two minutes, and 181 -> 220 MiB idle afterwards;
/// without them it stays flat, within 3 % of its level before the burst. The flag
/// covers the process.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "could not disable transparent huge pages");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = smsc_runtime::telemetry::init_tracing(cli.log_json) {
        eprintln!("smsc: {e}");
        return ExitCode::from(70);
    }
    no_transparent_huge_pages();
    let (role, args) = match cli.command {
        Command::HashPassword { password } => return smsc::hash_password(password),
        Command::ApiKey => return smsc::api_key(),
        Command::Trace { message_id, args } => {
            let config = match smsc::load_config(smsc::Role::Router, &args) {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            return block_on("trace", async move {
                print!("{}", smsc::trace(&config, &message_id).await?);
                Ok(())
            });
        }
        Command::Mo { from, to, text, simulator } => {
            return smsc::inject_mo(&simulator, from, to, text);
        }
        Command::StoreServer(args) => {
            return match args.load() {
                Ok((config, listen)) => block_on(
                    "store server",
                    smsc::run_store_server(listen, config, smsc::shutdown_signal()),
                ),
                Err(e) => config_error(&e),
            };
        }
        Command::Cluster(args) => {
            return block_on("smsc cluster", smsc::cluster::run(args, smsc::shutdown_signal()));
        }
        Command::Migrate(args) => (None, args),
        Command::All(a) => (Some(smsc::Role::All), a),
        Command::Edge(a) => (Some(smsc::Role::Edge), a),
        Command::Router(a) => (Some(smsc::Role::Router), a),
        Command::Worker(a) => (Some(smsc::Role::Worker), a),
    };
    let config = match smsc::load_config(role.unwrap_or(smsc::Role::Router), &args) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    match role {
        Some(role) => block_on("smsc", smsc::run(role, config, smsc::shutdown_signal())),
        None => block_on("migrate", smsc::migrate(config)),
    }
}

/// EX_USAGE: the operator must fix the configuration.
fn config_error(e: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("smsc: configuration: {}", smsc_runtime::telemetry::error_chain(e));
    ExitCode::from(64)
}

/// Runs `f` on the process's one runtime: 0 when it returns Ok, 64 when a config error
/// is anywhere in its error's chain (a file or certificate that cannot be used, found
/// only at start-up, by the binary or by a role's `start`), 1 on any other error.
fn block_on(what: &str, f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smsc: tokio runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.chain().find_map(|c| c.downcast_ref::<smsc::config::ConfigError>()) {
            Some(config) => config_error(config),
            None => {
                tracing::error!(error = format!("{e:#}"), "{what} stopped on an error");
                ExitCode::from(1)
            }
        },
    }
}
