//! The plan a run follows: scenarios with every default applied.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;
use super::args::Args;
use super::file::{RawFile, parse_yaml};
use super::resolve::build;
use crate::pattern::Pattern;
use crate::schedule::{Schedule, Stage};
use crate::threshold::Threshold;

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
