//! `smsc-load`: parses the flags and the scenario file, runs the plan, prints the
//! summary, and exits 0, 99 (a threshold crossed), 64 (bad config) or 1 (no session).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use smsc_load::{Args, Plan, RunError, RunOptions, exit};

// The load generator allocates little, but what it does (decoded receipts) it frees on
// the same thread; mimalloc keeps that cheap, as in the smsc binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("smsc-load: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    match run(&args, &plan) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("smsc-load: {e:#}");
            ExitCode::from(exit::SETUP)
        }
    }
}

fn run(args: &Args, plan: &Plan) -> anyhow::Result<u8> {
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .context("starting the runtime")?;
    let opts = RunOptions {
        progress: !args.quiet && (args.progress || std::io::stderr().is_terminal()),
        ..RunOptions::default()
    };
    print!("{}", smsc_load::summary::header(plan));
    let report = runtime.block_on(smsc_load::run(plan, opts, shutdown()));
    let report = match report {
        Ok(r) => r,
        Err(e @ RunError::Config { .. }) => {
            eprintln!("smsc-load: {e}");
            return Ok(exit::USAGE);
        }
        Err(e) => {
            eprintln!("smsc-load: {e}");
            return Ok(exit::SETUP);
        }
    };
    print!("{}", report.render());
    if let Some(path) = &args.summary_export {
        let json =
            serde_json::to_string_pretty(&report.to_json()).context("encoding the summary")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    Ok(if report.thresholds_ok() { exit::OK } else { exit::THRESHOLDS })
}

/// SIGINT or SIGTERM: stop the load and print what was measured, as k6 does.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
