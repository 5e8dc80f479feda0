//! The command line.

use std::path::PathBuf;
use std::time::Duration;

/// The command line. Flags override the file: `--vus/--rate/--duration/--iterations`
/// replace its scenarios with one named `default` (as k6 does), the connection and
/// message flags apply to every scenario, `--threshold` adds to its thresholds.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "smsc-load",
    version,
    about = "k6-style SMPP load tool: scenarios, executors, thresholds",
    after_help = "Exit codes: 0 all thresholds passed, 99 a threshold crossed, 64 bad flags or \
                  scenario file, 1 the sessions could not be set up (connect or bind failed)."
)]
pub struct Args {
    /// Scenario file (YAML, shaped like k6's options).
    pub file: Option<PathBuf>,
    /// Sessions (VUs): constant-vus, or preAllocatedVUs with --rate.
    #[arg(long)]
    pub vus: Option<usize>,
    /// Iterations per second (constant-arrival-rate); needs --duration.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Load phase, like 30s or 1m.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Iterations shared among the VUs (shared-iterations).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// SMSC address(es) host:port, comma-separated, for every scenario (sessions are
    /// spread over them); --host and --port then adjust them.
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// SMSC host, for every scenario.
    #[arg(long)]
    pub host: Option<String>,
    /// SMSC port, for every scenario.
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub system_id: Option<String>,
    #[arg(long)]
    pub password: Option<String>,
    /// Submits outstanding per session.
    #[arg(long)]
    pub window: Option<usize>,
    /// transmitter, transceiver or receiver+transmitter.
    #[arg(long)]
    pub bind: Option<String>,
    /// Share of iterations asking for a receipt, 0..=1.
    #[arg(long)]
    pub registered_delivery: Option<f64>,
    /// Message mix weights, like gsm=8,ucs2=1,long=1.
    #[arg(long)]
    pub mix: Option<String>,
    /// source_addr pattern, like Bank or 4470{seq:8}.
    #[arg(long)]
    pub source: Option<String>,
    /// destination_addr pattern, like 4479{seq:8} or 1555{rand:7}.
    #[arg(long)]
    pub destination: Option<String>,
    /// A threshold, like 'submit_latency=p(99)<10' (repeatable).
    #[arg(long = "threshold", value_name = "METRIC=EXPR")]
    pub thresholds: Vec<String>,
    /// How long to wait for outstanding receipts after the load phase [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub receipt_wait: Option<Duration>,
    /// Write the end-of-test summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_export: Option<PathBuf>,
    /// Print the progress line every second even when stderr is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Runtime worker threads (1: a single-threaded runtime; 0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30s or 1m: {e}"))
}
