//! smsc-load: a k6-style SMPP load tool.
//!
//! A test plan ([`config::Plan`]) holds scenarios shaped like k6's (`constant-vus`,
//! `shared-iterations`, `constant-arrival-rate`, `ramping-arrival-rate`) and thresholds
//! on metrics like k6's (`submit_latency`, `errors`, `receipts`, ...). [`run`] binds
//! every session, drives the load, waits for receipts, and returns a
//! [`summary::Report`] that renders like k6's end-of-test summary.
//!
//! Layout:
//! - [`config`]: the YAML file and the flags, checked key by key.
//! - [`schedule`]: the arrival-rate executors as pure functions of time.
//! - [`threshold`]: k6 threshold expressions.
//! - [`pattern`], `template`: addresses and the pre-encoded submit_sm.
//! - `session`, `scan`: one task per SMPP session, the hot path.
//! - [`metrics`], [`summary`]: what is counted, and how it is shown.
//!
//! The tool is built not to be the bottleneck: submits are copied from templates
//! encoded once with `smsc-smpp` and patched in place, a session writes a whole batch
//! with one syscall and handles every PDU of a read before the next write (the two that
//! come once per message read in place by `scan`, the rest framed by the codec's
//! `split_frame`), and counters and HDR histograms are per session, merged at the end.
#![forbid(unsafe_code)]

pub mod config;
pub mod metrics;
pub mod pattern;
mod runner;
mod scan;
pub mod schedule;
mod session;
pub mod summary;
mod template;
pub mod threshold;

pub use config::{Args, ConfigError, Plan};
pub use runner::{RunError, RunOptions, run};
pub use summary::Report;

/// Exit codes, as k6 uses them where k6 has one.
pub mod exit {
    /// Every threshold passed (or none was set).
    pub const OK: u8 = 0;
    /// The sessions could not be set up: nothing was measured.
    pub const SETUP: u8 = 1;
    /// Bad flags or scenario file (EX_USAGE).
    pub const USAGE: u8 = 64;
    /// A threshold was crossed (k6's ThresholdsHaveFailed).
    pub const THRESHOLDS: u8 = 99;
}
