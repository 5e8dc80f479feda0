//! `smsc`: every role of the SMSC in one binary (one container image).
//!
//! ```text
//! smsc all [--config FILE]            every role in one process, embedded defaults
//! smsc edge --config FILE             the SMPP edge
//! smsc hash-password [PASSWORD]       an argon2 hash for an account's password_hash
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
    /// Prints an argon2id hash of PASSWORD (read from stdin when absent).
    HashPassword { password: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = smsc_common::telemetry::init_tracing(cli.log_json) {
        eprintln!("smsc: {e}");
        return ExitCode::from(70);
    }
    let (role, args) = match cli.command {
        Command::HashPassword { password } => return smsc::hash_password(password),
        Command::All(a) => (smsc::Role::All, a),
        Command::Edge(a) => (smsc::Role::Edge, a),
    };
    let config = match smsc::load_config(role, &args) {
        Ok(c) => c,
        Err(e) => {
            // EX_USAGE: the operator must fix the configuration.
            eprintln!("smsc: configuration: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smsc: tokio runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(smsc::run(role, config, smsc::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "smsc stopped on an error");
            ExitCode::from(1)
        }
    }
}
