//! The file and the flags made into a plan: k6's shortcuts for a single scenario, the
//! flags over the file's keys, and the thresholds.

use std::collections::BTreeMap;
use std::time::Duration;

use super::args::Args;
use super::file::{Dur, RawFile, RawMessage, RawMix, RawScenario};
use super::plan::{Plan, Scenario};
use super::scenario::scenario;
use super::{ConfigError, DEFAULT_RECEIPT_WAIT};
use crate::threshold::Threshold;

pub(super) fn build(mut file: RawFile, args: &Args) -> Result<Plan, ConfigError> {
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
