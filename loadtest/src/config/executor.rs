//! Each executor's options, checked as k6 checks them: an option the executor does not
//! take is refused, not ignored.

use std::time::Duration;

use super::file::{Dur, RawScenario};
use super::plan::Executor;
use super::{ConfigError, DEFAULT_MAX_DURATION, EXECUTORS};
use crate::schedule::Stage;

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

pub(super) fn executor(name: &str, raw: &RawScenario) -> Result<Executor, ConfigError> {
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
