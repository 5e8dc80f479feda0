//! The test plan: scenarios from a YAML file shaped like k6's options, or from flags,
//! every key checked and every failure named (the binary exits 64 on any of them).
//!
//! ```yaml
//! target: 127.0.0.1:2775           # defaults for every scenario
//! system_id: demo
//! password: demo
//! scenarios:
//!   bulk:
//!     executor: constant-vus
//!     vus: 4
//!     duration: 30s
//!     window: 64
//!   otp:
//!     executor: constant-arrival-rate
//!     rate: 500
//!     timeUnit: 1s
//!     duration: 30s
//!     preAllocatedVUs: 2
//!     message: { registered_delivery: 1 }
//! thresholds:
//!   submit_latency: ["p(99)<10"]
//!   receipts{scenario:otp}: ["rate>0.999"]
//! ```
//!
//! k6's own keys keep k6's camelCase (`preAllocatedVUs`, `timeUnit`, `startTime`); the
//! SMPP keys are snake_case, as the spec names its fields (`system_id`).
//!
//! The files of this module:
//! - `plan.rs`: the plan a run follows, every default applied: scenarios, executors,
//!   messages.
//! - `args.rs`: the command line.
//! - `file.rs`: the YAML file as written (k6's keys and the SMPP ones), before checks.
//! - `resolve.rs`: the file and the flags made into a plan: k6's shortcuts, flags over
//!   the file, thresholds.
//! - `executor.rs`: each executor's options, checked as k6 checks them.
//! - `scenario.rs`: one scenario's connection keys and message, checked.

mod args;
mod executor;
mod file;
mod plan;
mod resolve;
mod scenario;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use args::Args;
pub use plan::{BindMode, Executor, Message, Mix, Plan, Scenario};
pub use resolve::split_target;

/// Where the SMSC is when nothing says otherwise: `smsc all`'s listener.
pub const DEFAULT_TARGET: &str = "127.0.0.1:2775";
/// `smsc all`'s demo account.
pub const DEFAULT_ACCOUNT: &str = "demo";
pub const DEFAULT_WINDOW: usize = 64;
pub const DEFAULT_RECEIPT_WAIT: Duration = Duration::from_secs(10);
/// k6's default gracefulStop: how long outstanding submits get to be answered.
pub const DEFAULT_GRACEFUL_STOP: Duration = Duration::from_secs(30);
/// k6's default maxDuration of shared-iterations.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(600);
/// 100 GSM characters, the size smpp-blast sends by default.
pub const DEFAULT_TEXT: &str = "smsc-load test message: the quick brown fox jumps over the lazy dog 0123456789 @ £$ ABCDEFGHIJKLMNO";
pub const DEFAULT_TEXT_UCS2: &str = "smsc-load: Привет, мир! 你好 ✓";
/// The mandatory executor keys of k6 and the supported executors.
const EXECUTORS: &str =
    "constant-vus, shared-iterations, constant-arrival-rate, ramping-arrival-rate";

/// A bad file, flag or key: the run does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: `{key}`: {message}")]
    Yaml { path: PathBuf, key: String, message: String },
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::Invalid { key: key.into(), message: message.to_string() }
    }
}
