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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::pattern::Pattern;
use crate::schedule::{Schedule, Stage};
use crate::threshold::Threshold;

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

/// How a virtual user binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    Transmitter,
    Transceiver,
    /// Two sessions per VU: a transmitter that submits and a receiver for receipts.
    ReceiverTransmitter,
}

impl BindMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transmitter => "transmitter",
            Self::Transceiver => "transceiver",
            Self::ReceiverTransmitter => "receiver+transmitter",
        }
    }
}

impl FromStr for BindMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "transmitter" => Ok(Self::Transmitter),
            "transceiver" => Ok(Self::Transceiver),
            "receiver+transmitter" | "transmitter+receiver" => Ok(Self::ReceiverTransmitter),
            _ => Err(format!(
                "`{s}` is not a bind type (transmitter, transceiver, receiver+transmitter)"
            )),
        }
    }
}

/// The share of each kind of message, as weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// One part of GSM 03.38 text (data_coding 0).
    pub gsm: f64,
    /// One part of UCS2 text (data_coding 8).
    pub ucs2: f64,
    /// A GSM text of `long_parts` parts, concatenated with a UDH (esm_class 0x40).
    pub long: f64,
}

/// What each iteration submits.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub mix: Mix,
    pub long_parts: u8,
    /// Share (0..=1) of iterations that ask for a receipt (registered_delivery 1).
    pub registered_delivery: f64,
    pub source: Pattern,
    pub destination: Pattern,
    pub text: String,
    pub text_ucs2: String,
}

/// k6's executors, with their options resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    /// `vus` sessions in a closed loop (each keeps `window` submits outstanding).
    ConstantVus { vus: usize, duration: Duration },
    /// `vus` sessions in a closed loop until `iterations` have started in all.
    SharedIterations { vus: usize, iterations: u64, max_duration: Duration },
    /// `rate` iterations per `time_unit`, over `pre_allocated_vus` sessions.
    ConstantArrivalRate {
        rate: f64,
        time_unit: Duration,
        duration: Duration,
        pre_allocated_vus: usize,
    },
    /// From `start_rate`, linearly through each stage (targets per `time_unit`).
    RampingArrivalRate {
        start_rate: f64,
        time_unit: Duration,
        stages: Vec<Stage>,
        pre_allocated_vus: usize,
    },
}

impl Executor {
    pub const fn name(&self) -> &'static str {
        match self {
            Self::ConstantVus { .. } => "constant-vus",
            Self::SharedIterations { .. } => "shared-iterations",
            Self::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Self::RampingArrivalRate { .. } => "ramping-arrival-rate",
        }
    }

    /// Sessions that submit (a receiver+transmitter VU adds a receiver each).
    pub fn vus(&self) -> usize {
        match self {
            Self::ConstantVus { vus, .. } | Self::SharedIterations { vus, .. } => *vus,
            Self::ConstantArrivalRate { pre_allocated_vus, .. }
            | Self::RampingArrivalRate { pre_allocated_vus, .. } => *pre_allocated_vus,
        }
    }

    /// How long the load phase lasts at most.
    pub fn duration(&self) -> Duration {
        match self {
            Self::ConstantVus { duration, .. } | Self::ConstantArrivalRate { duration, .. } => {
                *duration
            }
            Self::SharedIterations { max_duration, .. } => *max_duration,
            Self::RampingArrivalRate { stages, .. } => stages.iter().map(|s| s.duration).sum(),
        }
    }

    /// The arrival schedule in iterations per second; `None` for the closed loops.
    pub fn schedule(&self) -> Option<Schedule> {
        match self {
            Self::ConstantVus { .. } | Self::SharedIterations { .. } => None,
            Self::ConstantArrivalRate { rate, time_unit, duration, .. } => {
                Some(Schedule::constant(rate / time_unit.as_secs_f64(), *duration))
            }
            Self::RampingArrivalRate { start_rate, time_unit, stages, .. } => {
                let per_s = time_unit.as_secs_f64();
                let stages = stages
                    .iter()
                    .map(|s| Stage { duration: s.duration, target: s.target / per_s })
                    .collect();
                Some(Schedule::ramping(start_rate / per_s, stages))
            }
        }
    }

    /// One line for the summary, as k6 describes its executors.
    pub fn describe(&self) -> String {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Self::ConstantVus { vus, duration } => {
                format!("{vus} looping VUs for {}", d(duration))
            }
            Self::SharedIterations { vus, iterations, max_duration } => format!(
                "{iterations} iterations shared among {vus} VUs (maxDuration: {})",
                d(max_duration)
            ),
            Self::ConstantArrivalRate { rate, time_unit, duration, pre_allocated_vus } => {
                format!(
                    "{rate:.2} iterations/{} for {} (preAllocatedVUs: {pre_allocated_vus})",
                    d(time_unit),
                    d(duration)
                )
            }
            Self::RampingArrivalRate { start_rate, time_unit, stages, pre_allocated_vus } => {
                let peak = stages.iter().map(|s| s.target).fold(*start_rate, f64::max);
                format!(
                    "up to {peak:.2} iterations/{} over {} stages ({}) (preAllocatedVUs: {pre_allocated_vus})",
                    d(time_unit),
                    stages.len(),
                    d(&self.duration())
                )
            }
        }
    }
}

/// One scenario, every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub executor: Executor,
    pub start_time: Duration,
    pub graceful_stop: Duration,
    /// host:port; sessions are spread over them round-robin.
    pub targets: Vec<String>,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub bind: BindMode,
    pub window: usize,
    pub message: Message,
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenarios: Vec<Scenario>,
    pub thresholds: Vec<Threshold>,
    pub receipt_wait: Duration,
}

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

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30s or 1m: {e}"))
}

/// A duration in YAML: a string like `30s` or `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

/// One address or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Targets {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    gsm: Option<f64>,
    ucs2: Option<f64>,
    long: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    mix: Option<RawMix>,
    long_parts: Option<u8>,
    registered_delivery: Option<f64>,
    source: Option<String>,
    destination: Option<String>,
    text: Option<String>,
    text_ucs2: Option<String>,
}

impl RawMessage {
    /// `self` over `base`, key by key.
    fn over(self, base: &Self) -> Self {
        Self {
            mix: self.mix.or_else(|| base.mix.clone()),
            long_parts: self.long_parts.or(base.long_parts),
            registered_delivery: self.registered_delivery.or(base.registered_delivery),
            source: self.source.or_else(|| base.source.clone()),
            destination: self.destination.or_else(|| base.destination.clone()),
            text: self.text.or_else(|| base.text.clone()),
            text_ucs2: self.text_ucs2.or_else(|| base.text_ucs2.clone()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    duration: Dur,
    target: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    executor: Option<String>,
    vus: Option<usize>,
    duration: Option<Dur>,
    iterations: Option<u64>,
    #[serde(rename = "maxDuration")]
    max_duration: Option<Dur>,
    rate: Option<f64>,
    #[serde(rename = "timeUnit")]
    time_unit: Option<Dur>,
    #[serde(rename = "preAllocatedVUs")]
    pre_allocated_vus: Option<usize>,
    /// Accepted for k6 files; sessions are never added during a run (see the README).
    #[serde(rename = "maxVUs")]
    max_vus: Option<usize>,
    #[serde(rename = "startRate")]
    start_rate: Option<f64>,
    stages: Option<Vec<RawStage>>,
    #[serde(rename = "startTime")]
    start_time: Option<Dur>,
    #[serde(rename = "gracefulStop")]
    graceful_stop: Option<Dur>,
    // SMPP: override the file's defaults.
    target: Option<Targets>,
    system_id: Option<String>,
    password: Option<String>,
    system_type: Option<String>,
    bind: Option<String>,
    window: Option<usize>,
    message: Option<RawMessage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenarios: Option<BTreeMap<String, RawScenario>>,
    #[serde(default)]
    thresholds: BTreeMap<String, Vec<String>>,
    // k6's shortcuts for a single `default` scenario.
    vus: Option<usize>,
    duration: Option<Dur>,
    iterations: Option<u64>,
    rate: Option<f64>,
    // Defaults for every scenario.
    target: Option<Targets>,
    system_id: Option<String>,
    password: Option<String>,
    system_type: Option<String>,
    bind: Option<String>,
    window: Option<usize>,
    message: Option<RawMessage>,
    #[serde(alias = "receiptWait")]
    receipt_wait: Option<Dur>,
}

impl Plan {
    /// The plan from the flags and the file they name (if any).
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let file = match &args.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                parse_yaml(&text, path)?
            }
            None => RawFile::default(),
        };
        build(file, args)
    }

    /// The plan from YAML text alone (tests, and files passed by content).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        build(parse_yaml(text, Path::new("<yaml>"))?, &Args::default())
    }

    /// Sessions of every scenario (receivers included).
    pub fn sessions(&self) -> usize {
        self.scenarios
            .iter()
            .map(|s| {
                let per_vu = if s.bind == BindMode::ReceiverTransmitter { 2 } else { 1 };
                s.executor.vus() * per_vu
            })
            .sum()
    }

    /// The longest the load phases can take, start times included.
    pub fn max_duration(&self) -> Duration {
        self.scenarios
            .iter()
            .map(|s| s.start_time + s.executor.duration() + s.graceful_stop)
            .max()
            .unwrap_or_default()
            + self.receipt_wait
    }
}

fn parse_yaml(text: &str, path: &Path) -> Result<RawFile, ConfigError> {
    // An empty file is an empty mapping, not an error.
    if text.trim().is_empty() {
        return Ok(RawFile::default());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Yaml { path: path.to_owned(), key, message: e.into_inner().to_string() }
    })
}

fn build(mut file: RawFile, args: &Args) -> Result<Plan, ConfigError> {
    let flags_shape = args.vus.is_some()
        || args.rate.is_some()
        || args.duration.is_some()
        || args.iterations.is_some();
    let file_shape = file.vus.is_some()
        || file.rate.is_some()
        || file.duration.is_some()
        || file.iterations.is_some();
    if file_shape && file.scenarios.is_some() {
        return Err(ConfigError::invalid(
            "scenarios",
            "give either `scenarios` or the vus/duration/iterations/rate shortcuts, not both",
        ));
    }
    let scenarios = if flags_shape {
        BTreeMap::from([(
            "default".to_owned(),
            shortcut(args.vus, args.rate, args.duration, args.iterations, "--")?,
        )])
    } else if let Some(s) = file.scenarios.take() {
        if s.is_empty() {
            return Err(ConfigError::invalid("scenarios", "no scenario given"));
        }
        s
    } else {
        let d = file.duration.map(|d| d.0);
        BTreeMap::from([(
            "default".to_owned(),
            shortcut(file.vus, file.rate, d, file.iterations, "")?,
        )])
    };

    let file_message = file.message.clone().unwrap_or_default();
    let flag_message = message_flags(args)?;
    let mut out = Vec::with_capacity(scenarios.len());
    for (name, raw) in scenarios {
        let mut s = scenario(&name, raw, &file, &file_message, &flag_message)?;
        apply_connection_flags(&mut s, args)?;
        out.push(s);
    }

    let mut thresholds = Vec::new();
    for (key, exprs) in &file.thresholds {
        for expr in exprs {
            thresholds.push(
                Threshold::parse(key, expr)
                    .map_err(|e| ConfigError::invalid(format!("thresholds.{key}"), e))?,
            );
        }
    }
    for flag in &args.thresholds {
        let (key, expr) = flag.split_once('=').ok_or_else(|| {
            ConfigError::invalid(
                "--threshold",
                format!("`{flag}` is not METRIC=EXPR, like 'submit_latency=p(99)<10'"),
            )
        })?;
        thresholds.push(
            Threshold::parse(key.trim(), expr)
                .map_err(|e| ConfigError::invalid(format!("--threshold {flag}"), e))?,
        );
    }
    for t in &thresholds {
        if let Some(sc) = &t.scenario
            && !out.iter().any(|s| &s.name == sc)
        {
            return Err(ConfigError::invalid(
                format!("thresholds.{}", t.key()),
                format!("no scenario named `{sc}`"),
            ));
        }
    }
    let receipt_wait =
        args.receipt_wait.or(file.receipt_wait.map(|d| d.0)).unwrap_or(DEFAULT_RECEIPT_WAIT);
    Ok(Plan { scenarios: out, thresholds, receipt_wait })
}

/// The single `default` scenario of k6's shortcuts (`prefix`: `--` for flags).
fn shortcut(
    vus: Option<usize>,
    rate: Option<f64>,
    duration: Option<Duration>,
    iterations: Option<u64>,
    prefix: &str,
) -> Result<RawScenario, ConfigError> {
    let mut raw = RawScenario { vus, duration: duration.map(Dur), ..RawScenario::default() };
    match (rate, iterations) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{prefix}iterations"),
                format!("does not go with {prefix}rate (an arrival rate runs for a duration)"),
            ));
        }
        (Some(rate), None) => {
            if duration.is_none() {
                return Err(ConfigError::invalid(
                    format!("{prefix}rate"),
                    format!("needs {prefix}duration"),
                ));
            }
            raw.executor = Some("constant-arrival-rate".into());
            raw.rate = Some(rate);
            raw.vus = None;
            raw.pre_allocated_vus = Some(vus.unwrap_or(1));
        }
        (None, Some(n)) => {
            raw.executor = Some("shared-iterations".into());
            raw.iterations = Some(n);
            raw.duration = None;
            raw.max_duration = duration.map(Dur);
        }
        (None, None) if duration.is_some() => raw.executor = Some("constant-vus".into()),
        // k6 with no options: one VU, one iteration.
        (None, None) => {
            raw.executor = Some("shared-iterations".into());
            raw.iterations = Some(1);
        }
    }
    Ok(raw)
}

/// Rejects an executor option that the executor does not take, as k6 does.
fn reject<T>(v: &Option<T>, key: &str, name: &str, executor: &str) -> Result<(), ConfigError> {
    match v {
        Some(_) => Err(ConfigError::invalid(
            format!("scenarios.{name}.{key}"),
            format!("is not an option of {executor}"),
        )),
        None => Ok(()),
    }
}

fn positive(v: f64, key: &str) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ConfigError::invalid(key, format!("must be a number above 0, got {v}")))
    }
}

fn nonzero_duration(d: Duration, key: &str) -> Result<Duration, ConfigError> {
    if d.is_zero() { Err(ConfigError::invalid(key, "must be longer than 0s")) } else { Ok(d) }
}

fn executor(name: &str, raw: &RawScenario) -> Result<Executor, ConfigError> {
    let key = |k: &str| format!("scenarios.{name}.{k}");
    let kind = raw.executor.as_deref().ok_or_else(|| {
        ConfigError::invalid(key("executor"), format!("missing; one of {EXECUTORS}"))
    })?;
    let vus = |v: Option<usize>, k: &str, default: Option<usize>| match v.or(default) {
        Some(0) => Err(ConfigError::invalid(key(k), "must be at least 1")),
        Some(n) => Ok(n),
        None => Err(ConfigError::invalid(key(k), format!("is required by {kind}"))),
    };
    let duration = |d: Option<Dur>, k: &str| match d {
        Some(d) => nonzero_duration(d.0, &key(k)),
        None => Err(ConfigError::invalid(key(k), format!("is required by {kind}"))),
    };
    let time_unit = raw
        .time_unit
        .map_or(Ok(Duration::from_secs(1)), |d| nonzero_duration(d.0, &key("timeUnit")))?;
    let arrival_only = |e: &str| -> Result<(), ConfigError> {
        reject(&raw.rate, "rate", name, e)?;
        reject(&raw.time_unit, "timeUnit", name, e)?;
        reject(&raw.pre_allocated_vus, "preAllocatedVUs", name, e)?;
        reject(&raw.max_vus, "maxVUs", name, e)?;
        reject(&raw.start_rate, "startRate", name, e)?;
        reject(&raw.stages, "stages", name, e)
    };
    let pre_allocated = |raw: &RawScenario| -> Result<usize, ConfigError> {
        let pre = vus(raw.pre_allocated_vus, "preAllocatedVUs", None)?;
        if let Some(max) = raw.max_vus
            && max < pre
        {
            return Err(ConfigError::invalid(
                key("maxVUs"),
                format!("{max} is below preAllocatedVUs {pre}"),
            ));
        }
        Ok(pre)
    };
    match kind {
        "constant-vus" => {
            arrival_only(kind)?;
            reject(&raw.iterations, "iterations", name, kind)?;
            reject(&raw.max_duration, "maxDuration", name, kind)?;
            Ok(Executor::ConstantVus {
                vus: vus(raw.vus, "vus", Some(1))?,
                duration: duration(raw.duration, "duration")?,
            })
        }
        "shared-iterations" => {
            arrival_only(kind)?;
            reject(&raw.duration, "duration", name, kind)?;
            let iterations = match raw.iterations.unwrap_or(1) {
                0 => return Err(ConfigError::invalid(key("iterations"), "must be at least 1")),
                n => n,
            };
            let max_duration = raw
                .max_duration
                .map_or(Ok(DEFAULT_MAX_DURATION), |d| nonzero_duration(d.0, &key("maxDuration")))?;
            Ok(Executor::SharedIterations {
                vus: vus(raw.vus, "vus", Some(1))?,
                iterations,
                max_duration,
            })
        }
        "constant-arrival-rate" => {
            for (v, k) in [(raw.vus.is_some(), "vus"), (raw.iterations.is_some(), "iterations")] {
                if v {
                    return Err(ConfigError::invalid(
                        key(k),
                        format!("is not an option of {kind} (use preAllocatedVUs)"),
                    ));
                }
            }
            reject(&raw.start_rate, "startRate", name, kind)?;
            reject(&raw.stages, "stages", name, kind)?;
            reject(&raw.max_duration, "maxDuration", name, kind)?;
            let rate = raw.rate.ok_or_else(|| {
                ConfigError::invalid(key("rate"), format!("is required by {kind}"))
            })?;
            Ok(Executor::ConstantArrivalRate {
                rate: positive(rate, &key("rate"))?,
                time_unit,
                duration: duration(raw.duration, "duration")?,
                pre_allocated_vus: pre_allocated(raw)?,
            })
        }
        "ramping-arrival-rate" => {
            for (v, k) in [
                (raw.vus.is_some(), "vus"),
                (raw.iterations.is_some(), "iterations"),
                (raw.rate.is_some(), "rate"),
                (raw.duration.is_some(), "duration"),
            ] {
                if v {
                    return Err(ConfigError::invalid(
                        key(k),
                        format!("is not an option of {kind} (stages set the rate and length)"),
                    ));
                }
            }
            reject(&raw.max_duration, "maxDuration", name, kind)?;
            let start_rate = raw.start_rate.unwrap_or(0.0);
            if !start_rate.is_finite() || start_rate < 0.0 {
                return Err(ConfigError::invalid(
                    key("startRate"),
                    format!("must be 0 or more, got {start_rate}"),
                ));
            }
            let raw_stages = raw.stages.as_deref().unwrap_or_default();
            if raw_stages.is_empty() {
                return Err(ConfigError::invalid(
                    key("stages"),
                    format!("{kind} needs at least one stage"),
                ));
            }
            let mut stages = Vec::with_capacity(raw_stages.len());
            for (i, s) in raw_stages.iter().enumerate() {
                if !s.target.is_finite() || s.target < 0.0 {
                    return Err(ConfigError::invalid(
                        key(&format!("stages[{i}].target")),
                        format!("must be 0 or more, got {}", s.target),
                    ));
                }
                stages.push(Stage { duration: s.duration.0, target: s.target });
            }
            if stages.iter().all(|s| s.duration.is_zero()) {
                return Err(ConfigError::invalid(key("stages"), "last 0s in total"));
            }
            Ok(Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                pre_allocated_vus: pre_allocated(raw)?,
            })
        }
        other => Err(ConfigError::invalid(
            key("executor"),
            format!("`{other}` is not supported; one of {EXECUTORS}"),
        )),
    }
}

fn scenario(
    name: &str,
    raw: RawScenario,
    file: &RawFile,
    file_message: &RawMessage,
    flag_message: &RawMessage,
) -> Result<Scenario, ConfigError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ConfigError::invalid(
            format!("scenarios.{name}"),
            "a scenario name is letters, digits, `_` and `-`",
        ));
    }
    let key = |k: &str| format!("scenarios.{name}.{k}");
    let executor = executor(name, &raw)?;
    let targets = match raw.target.clone().or_else(|| file.target.clone()) {
        None => vec![DEFAULT_TARGET.to_owned()],
        Some(Targets::One(t)) => vec![t],
        Some(Targets::Many(ts)) => ts,
    };
    if targets.is_empty() {
        return Err(ConfigError::invalid(key("target"), "no address given"));
    }
    for t in &targets {
        split_target(t).map_err(|e| ConfigError::invalid(key("target"), e))?;
    }
    let bind = match raw.bind.as_deref().or(file.bind.as_deref()) {
        Some(b) => b.parse().map_err(|e| ConfigError::invalid(key("bind"), e))?,
        None => BindMode::Transceiver,
    };
    let window = match raw.window.or(file.window).unwrap_or(DEFAULT_WINDOW) {
        0 => return Err(ConfigError::invalid(key("window"), "must be at least 1")),
        w if w > 1 << 20 => {
            return Err(ConfigError::invalid(key("window"), "must be at most 1048576"));
        }
        w => w,
    };
    let merged = raw.message.clone().unwrap_or_default().over(file_message);
    let message = message(flag_message.clone().over(&merged), &key("message"))?;
    if message.mix.long > 0.0 && usize::from(message.long_parts) > window {
        return Err(ConfigError::invalid(
            key("window"),
            format!(
                "{window} is below message.long_parts {}: a long message would never fit",
                message.long_parts
            ),
        ));
    }
    let field = |v: Option<&String>, f: Option<&String>, k: &str, max: usize, default: &str| {
        let v = v.or(f).map_or(default, String::as_str).to_owned();
        if v.len() >= max || v.contains('\0') {
            return Err(ConfigError::invalid(
                key(k),
                format!("must be at most {} characters without NUL", max - 1),
            ));
        }
        Ok(v)
    };
    Ok(Scenario {
        name: name.to_owned(),
        start_time: raw.start_time.map_or(Duration::ZERO, |d| d.0),
        graceful_stop: raw.graceful_stop.map_or(DEFAULT_GRACEFUL_STOP, |d| d.0),
        system_id: field(
            raw.system_id.as_ref(),
            file.system_id.as_ref(),
            "system_id",
            16,
            DEFAULT_ACCOUNT,
        )?,
        password: field(
            raw.password.as_ref(),
            file.password.as_ref(),
            "password",
            9,
            DEFAULT_ACCOUNT,
        )?,
        system_type: field(
            raw.system_type.as_ref(),
            file.system_type.as_ref(),
            "system_type",
            13,
            "",
        )?,
        executor,
        targets,
        bind,
        window,
        message,
    })
}

fn message(raw: RawMessage, key: &str) -> Result<Message, ConfigError> {
    let k = |s: &str| format!("{key}.{s}");
    let mix = match raw.mix {
        None => Mix { gsm: 1.0, ucs2: 0.0, long: 0.0 },
        Some(m) => Mix {
            gsm: m.gsm.unwrap_or(0.0),
            ucs2: m.ucs2.unwrap_or(0.0),
            long: m.long.unwrap_or(0.0),
        },
    };
    for (v, name) in [(mix.gsm, "gsm"), (mix.ucs2, "ucs2"), (mix.long, "long")] {
        if !v.is_finite() || v < 0.0 {
            return Err(ConfigError::invalid(
                k(&format!("mix.{name}")),
                format!("a weight is 0 or more, got {v}"),
            ));
        }
    }
    if mix.gsm + mix.ucs2 + mix.long <= 0.0 {
        return Err(ConfigError::invalid(k("mix"), "every weight is 0"));
    }
    let long_parts = raw.long_parts.unwrap_or(3);
    if long_parts < 2 {
        return Err(ConfigError::invalid(
            k("long_parts"),
            "a concatenated message has 2 to 255 parts",
        ));
    }
    let registered_delivery = raw.registered_delivery.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&registered_delivery) {
        return Err(ConfigError::invalid(
            k("registered_delivery"),
            format!("is a share between 0 and 1, got {registered_delivery}"),
        ));
    }
    let pattern = |v: Option<String>, name: &str, default: &str| {
        let v = v.unwrap_or_else(|| default.to_owned());
        Pattern::parse(&v).map_err(|e| ConfigError::invalid(k(name), format!("`{v}` {e}")))
    };
    let text = raw.text.unwrap_or_else(|| DEFAULT_TEXT.to_owned());
    match smsc_smpp::text::gsm7_septets(&text) {
        Some(n) if n <= 160 && n > 0 => {}
        Some(n) if n > 0 => {
            return Err(ConfigError::invalid(
                k("text"),
                format!("takes {n} GSM septets; one part holds 160 (use the `long` mix for more)"),
            ));
        }
        Some(_) => return Err(ConfigError::invalid(k("text"), "is empty")),
        None => {
            return Err(ConfigError::invalid(
                k("text"),
                "is not GSM 03.38 text (use text_ucs2 and the `ucs2` mix)",
            ));
        }
    }
    let text_ucs2 = raw.text_ucs2.unwrap_or_else(|| DEFAULT_TEXT_UCS2.to_owned());
    let units = text_ucs2.encode_utf16().count();
    if units == 0 || units > 70 {
        return Err(ConfigError::invalid(
            k("text_ucs2"),
            format!("takes {units} UCS2 characters; one part holds 1 to 70"),
        ));
    }
    Ok(Message {
        mix,
        long_parts,
        registered_delivery,
        source: pattern(raw.source, "source", "Load")?,
        destination: pattern(raw.destination, "destination", "4479{seq:8}")?,
        text,
        text_ucs2,
    })
}

/// The message keys the flags set; they win over the file's.
fn message_flags(args: &Args) -> Result<RawMessage, ConfigError> {
    let mut m = RawMessage {
        registered_delivery: args.registered_delivery,
        source: args.source.clone(),
        destination: args.destination.clone(),
        ..RawMessage::default()
    };
    if let Some(mix) = &args.mix {
        let mut out = RawMix::default();
        for part in mix.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, w) = part.split_once('=').ok_or_else(|| {
                ConfigError::invalid(
                    "--mix",
                    format!("`{part}` is not KIND=WEIGHT, like gsm=8,ucs2=1,long=1"),
                )
            })?;
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid("--mix", format!("`{w}` is not a number")))?;
            match kind.trim() {
                "gsm" => out.gsm = Some(w),
                "ucs2" => out.ucs2 = Some(w),
                "long" => out.long = Some(w),
                other => {
                    return Err(ConfigError::invalid(
                        "--mix",
                        format!("`{other}` is not gsm, ucs2 or long"),
                    ));
                }
            }
        }
        m.mix = Some(out);
    }
    Ok(m)
}

fn apply_connection_flags(s: &mut Scenario, args: &Args) -> Result<(), ConfigError> {
    if !args.target.is_empty() {
        for t in &args.target {
            split_target(t).map_err(|e| ConfigError::invalid("--target", e))?;
        }
        s.targets.clone_from(&args.target);
    }
    if args.host.is_some() || args.port.is_some() {
        for t in &mut s.targets {
            let (host, port) = split_target(t).map_err(|e| ConfigError::invalid("target", e))?;
            let host = args.host.as_deref().unwrap_or(host);
            let port = args.port.unwrap_or(port);
            *t = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
        }
    }
    if let Some(id) = &args.system_id {
        if id.len() > 15 {
            return Err(ConfigError::invalid("--system-id", "must be at most 15 characters"));
        }
        s.system_id.clone_from(id);
    }
    if let Some(pw) = &args.password {
        if pw.len() > 8 {
            return Err(ConfigError::invalid("--password", "must be at most 8 characters"));
        }
        s.password.clone_from(pw);
    }
    if let Some(w) = args.window {
        if w == 0 {
            return Err(ConfigError::invalid("--window", "must be at least 1"));
        }
        s.window = w;
    }
    if let Some(b) = &args.bind {
        s.bind = b.parse().map_err(|e| ConfigError::invalid("--bind", e))?;
    }
    Ok(())
}

/// host and port of `host:port` (`[v6]:port` too).
pub fn split_target(t: &str) -> Result<(&str, u16), String> {
    let bad = || format!("`{t}` is not host:port");
    let (host, port) = t.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::threshold::{Agg, Op};

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("smsc-load").chain(flags.iter().copied()))
            .expect("flags parse")
    }

    fn err(yaml: &str) -> String {
        Plan::from_yaml(yaml).expect_err("rejected").to_string()
    }

    #[test]
    fn k6_shaped_file() {
        let plan = Plan::from_yaml(
            r#"
target: 10.0.0.1:2775
system_id: bank
password: secret
window: 32
message:
  registered_delivery: 0.5
  destination: "1555{rand:7}"
receipt_wait: 5s
scenarios:
  bulk:
    executor: constant-vus
    vus: 4
    duration: 30s
    message: { mix: { gsm: 8, ucs2: 1, long: 1 }, long_parts: 4 }
  otp:
    executor: constant-arrival-rate
    rate: 600
    timeUnit: 1m
    duration: 1m
    preAllocatedVUs: 2
    maxVUs: 10
    startTime: 10s
    gracefulStop: 5s
    target: [127.0.0.1:2775, 127.0.0.1:2776]
    bind: receiver+transmitter
    window: 8
  ramp:
    executor: ramping-arrival-rate
    startRate: 10
    preAllocatedVUs: 1
    stages:
      - { duration: 10s, target: 100 }
      - { duration: 20s, target: 100 }
  once:
    executor: shared-iterations
    vus: 2
    iterations: 1000
thresholds:
  submit_latency: ["p(99)<10", "avg<2"]
  "receipts{scenario:otp}": ["rate>0.999"]
"#,
        )
        .expect("valid");
        assert_eq!(plan.receipt_wait, Duration::from_secs(5));
        let names: Vec<_> = plan.scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["bulk", "once", "otp", "ramp"]);
        let bulk = &plan.scenarios[0];
        assert_eq!(
            bulk.executor,
            Executor::ConstantVus { vus: 4, duration: Duration::from_secs(30) }
        );
        assert_eq!(
            (bulk.targets.as_slice(), bulk.system_id.as_str(), bulk.window),
            (&["10.0.0.1:2775".to_owned()][..], "bank", 32)
        );
        assert_eq!(bulk.message.mix, Mix { gsm: 8.0, ucs2: 1.0, long: 1.0 });
        assert_eq!(bulk.message.long_parts, 4);
        assert_eq!(
            bulk.message.registered_delivery, 0.5,
            "file default kept under the scenario's message"
        );
        assert_eq!(bulk.message.destination.to_string(), "1555{rand:7}");
        assert_eq!(bulk.graceful_stop, DEFAULT_GRACEFUL_STOP);
        let once = &plan.scenarios[1];
        assert_eq!(
            once.executor,
            Executor::SharedIterations {
                vus: 2,
                iterations: 1000,
                max_duration: DEFAULT_MAX_DURATION
            }
        );
        let otp = &plan.scenarios[2];
        assert_eq!(otp.executor.vus(), 2);
        assert_eq!(
            (otp.start_time, otp.graceful_stop),
            (Duration::from_secs(10), Duration::from_secs(5))
        );
        assert_eq!(otp.bind, BindMode::ReceiverTransmitter);
        assert_eq!(otp.targets.len(), 2);
        let per_s = otp.executor.schedule().expect("arrival rate");
        assert_eq!(per_s.total(), 600, "600 per minute for a minute");
        let ramp = &plan.scenarios[3];
        assert_eq!(ramp.executor.duration(), Duration::from_secs(30));
        assert_eq!(ramp.executor.schedule().expect("ramp").total(), 550 + 2000);
        assert_eq!(plan.sessions(), 4 + 2 + 2 * 2 + 1);
        assert_eq!(plan.thresholds.len(), 3);
        let t =
            plan.thresholds.iter().find(|t| t.scenario.is_some()).expect("a scenario threshold");
        assert_eq!(
            (t.scenario.as_deref(), t.agg, t.op, t.value),
            (Some("otp"), Agg::Rate, Op::Gt, 0.999)
        );
    }

    #[test]
    fn shortcuts_and_defaults() {
        let plan = Plan::from_yaml("vus: 3\nduration: 1m\n").expect("valid");
        let s = &plan.scenarios[0];
        assert_eq!(s.name, "default");
        assert_eq!(s.executor, Executor::ConstantVus { vus: 3, duration: Duration::from_secs(60) });
        assert_eq!(
            (s.targets[0].as_str(), s.system_id.as_str(), s.password.as_str()),
            (DEFAULT_TARGET, "demo", "demo")
        );
        assert_eq!((s.bind, s.window), (BindMode::Transceiver, DEFAULT_WINDOW));
        assert_eq!(s.message.mix, Mix { gsm: 1.0, ucs2: 0.0, long: 0.0 });
        assert_eq!(plan.receipt_wait, DEFAULT_RECEIPT_WAIT);
        let empty = Plan::from_yaml("").expect("an empty file is one iteration, like k6");
        assert_eq!(
            empty.scenarios[0].executor,
            Executor::SharedIterations {
                vus: 1,
                iterations: 1,
                max_duration: DEFAULT_MAX_DURATION
            }
        );
    }

    #[test]
    fn flags_build_and_override() {
        let plan = Plan::from_args(&args(&[
            "--vus",
            "4",
            "--duration",
            "2s",
            "--port",
            "2790",
            "--window",
            "16",
            "--threshold",
            "errors=rate<0.01",
            "--threshold",
            "submit_latency{scenario:default}=p(95)<5",
        ]))
        .expect("valid");
        let s = &plan.scenarios[0];
        assert_eq!(s.executor, Executor::ConstantVus { vus: 4, duration: Duration::from_secs(2) });
        assert_eq!((s.targets[0].as_str(), s.window), ("127.0.0.1:2790", 16));
        assert_eq!(plan.thresholds.len(), 2);

        let many = Plan::from_args(&args(&[
            "--duration",
            "1s",
            "--target",
            "10.0.0.1:1,10.0.0.2:2",
            "--host",
            "127.0.0.1",
        ]))
        .expect("valid");
        assert_eq!(many.scenarios[0].targets, ["127.0.0.1:1", "127.0.0.1:2"]);
        let e =
            Plan::from_args(&args(&["--duration", "1s", "--target", "nohost"])).expect_err("bad");
        assert!(e.to_string().contains("`--target`: `nohost` is not host:port"), "{e}");

        let rate = Plan::from_args(&args(&[
            "--rate",
            "1000",
            "--duration",
            "10s",
            "--vus",
            "2",
            "--host",
            "::1",
            "--system-id",
            "bank",
            "--password",
            "pw",
            "--bind",
            "transmitter",
            "--mix",
            "gsm=1,long=1",
            "--registered-delivery",
            "1",
            "--receipt-wait",
            "3s",
        ]))
        .expect("valid");
        let s = &rate.scenarios[0];
        assert_eq!(
            s.executor,
            Executor::ConstantArrivalRate {
                rate: 1000.0,
                time_unit: Duration::from_secs(1),
                duration: Duration::from_secs(10),
                pre_allocated_vus: 2
            }
        );
        assert_eq!(
            (s.targets[0].as_str(), s.system_id.as_str(), s.bind),
            ("[::1]:2775", "bank", BindMode::Transmitter)
        );
        assert_eq!(s.message.mix, Mix { gsm: 1.0, ucs2: 0.0, long: 1.0 });
        assert_eq!(
            (s.message.registered_delivery, rate.receipt_wait),
            (1.0, Duration::from_secs(3))
        );

        let iters = Plan::from_args(&args(&["--iterations", "500", "--vus", "2"])).expect("valid");
        assert_eq!(
            iters.scenarios[0].executor,
            Executor::SharedIterations {
                vus: 2,
                iterations: 500,
                max_duration: DEFAULT_MAX_DURATION
            }
        );
    }

    #[test]
    fn flags_replace_the_files_scenarios() {
        let dir = std::env::temp_dir().join(format!("smsc-load-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("s.yaml");
        std::fs::write(&path, "target: 10.1.1.1:2000\nscenarios:\n  a: { executor: constant-vus, duration: 1m }\n  b: { executor: constant-vus, duration: 1m }\n").expect("write");
        let file = path.to_str().expect("utf-8");
        let both = Plan::from_args(&args(&[file, "--port", "3000"])).expect("valid");
        assert_eq!(both.scenarios.len(), 2);
        assert!(
            both.scenarios.iter().all(|s| s.targets == ["10.1.1.1:3000"]),
            "--port keeps the file's host"
        );
        let one = Plan::from_args(&args(&[file, "--vus", "1", "--duration", "1s"])).expect("valid");
        assert_eq!(one.scenarios.len(), 1);
        assert_eq!(
            (one.scenarios[0].name.as_str(), one.scenarios[0].targets[0].as_str()),
            ("default", "10.1.1.1:2000")
        );
        let missing = Plan::from_args(&args(&["/nonexistent/s.yaml"])).expect_err("no file");
        assert!(missing.to_string().starts_with("reading /nonexistent/s.yaml"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "scenarios:\n  a: { executor: constant-vus, vus: 2 }\n",
                "`scenarios.a.duration`: is required by constant-vus",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, rate: 5 }\n",
                "`scenarios.a.rate`: is not an option of constant-vus",
            ),
            (
                "scenarios:\n  a: { executor: per-vu-iterations }\n",
                "`scenarios.a.executor`: `per-vu-iterations` is not supported",
            ),
            ("scenarios:\n  a: { duration: 1m }\n", "`scenarios.a.executor`: missing"),
            ("scenarios:\n  a: { executor: constant-vus, duration: 30 }\n", "scenarios.a.duration"),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 30x }\n",
                "is not a duration like 30s",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, vu: 3 }\n",
                "unknown field `vu`",
            ),
            (
                "scenarios:\n  a: { executor: constant-arrival-rate, rate: 10, duration: 1m }\n",
                "`scenarios.a.preAllocatedVUs`: is required",
            ),
            (
                "scenarios:\n  a: { executor: constant-arrival-rate, rate: 10, duration: 1m, vus: 2 }\n",
                "use preAllocatedVUs",
            ),
            (
                "scenarios:\n  a: { executor: constant-arrival-rate, rate: 0, duration: 1m, preAllocatedVUs: 1 }\n",
                "`scenarios.a.rate`: must be a number above 0",
            ),
            (
                "scenarios:\n  a: { executor: constant-arrival-rate, rate: 5, duration: 1m, preAllocatedVUs: 4, maxVUs: 2 }\n",
                "below preAllocatedVUs",
            ),
            (
                "scenarios:\n  a: { executor: ramping-arrival-rate, preAllocatedVUs: 1 }\n",
                "needs at least one stage",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, bind: receiver }\n",
                "`scenarios.a.bind`: `receiver` is not a bind type",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, window: 0 }\n",
                "`scenarios.a.window`: must be at least 1",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, window: 2, message: { mix: { long: 1 } } }\n",
                "below message.long_parts 3",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { destination: \"44{seq:20}\" } }\n",
                "`scenarios.a.message.destination`",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { registered_delivery: 2 } }\n",
                "is a share between 0 and 1",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { mix: { gsm: 0 } } }\n",
                "every weight is 0",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { text: \"Привет\" } }\n",
                "is not GSM 03.38 text",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, system_id: abcdefghijklmnopq }\n",
                "`scenarios.a.system_id`: must be at most 15",
            ),
            (
                "scenarios:\n  a: { executor: constant-vus, duration: 1m, target: localhost }\n",
                "is not host:port",
            ),
            ("scenarios: {}\n", "no scenario given"),
            (
                "vus: 2\nduration: 1m\nscenarios:\n  a: { executor: constant-vus, duration: 1m }\n",
                "not both",
            ),
            (
                "duration: 1m\nthresholds:\n  latency: [\"p(99)<10\"]\n",
                "`thresholds.latency`: unknown metric `latency`",
            ),
            (
                "duration: 1m\nthresholds:\n  \"errors{scenario:nope}\": [\"rate<0.1\"]\n",
                "no scenario named `nope`",
            ),
            ("duration: 1m\nthresholds:\n  errors: [\"p(99)<0.1\"]\n", "`thresholds.errors`"),
            ("rate: 5\n", "`rate`: needs duration"),
        ];
        for (yaml, want) in cases {
            let got = err(yaml);
            assert!(got.contains(want), "{yaml:?}\n  got:  {got}\n  want: {want}");
        }
    }

    #[test]
    fn flag_errors_are_usage_errors() {
        let e = Plan::from_args(&args(&["--rate", "10"])).expect_err("no duration");
        assert_eq!(e.to_string(), "`--rate`: needs --duration");
        let e = Plan::from_args(&args(&["--rate", "10", "--iterations", "5", "--duration", "1s"]))
            .expect_err("both");
        assert!(e.to_string().contains("does not go with --rate"), "{e}");
        let e = Plan::from_args(&args(&["--duration", "1s", "--threshold", "submit_latency<5"]))
            .expect_err("no =");
        assert!(e.to_string().contains("is not METRIC=EXPR"), "{e}");
        let e = Plan::from_args(&args(&["--duration", "1s", "--mix", "gsm=1,mms=2"]))
            .expect_err("kind");
        assert!(e.to_string().contains("`mms` is not gsm, ucs2 or long"), "{e}");
        assert!(Args::try_parse_from(["smsc-load", "--duration", "soon"]).is_err());
    }
}
