//! One scenario from the file: its executor, connection keys (file defaults under the
//! scenario's own) and message, checked.

use std::time::Duration;

use super::executor::executor;
use super::file::{RawFile, RawMessage, RawScenario, Targets};
use super::plan::{BindMode, Message, Mix, Scenario};
use super::resolve::split_target;
use super::{
    ConfigError, DEFAULT_ACCOUNT, DEFAULT_GRACEFUL_STOP, DEFAULT_TARGET, DEFAULT_TEXT,
    DEFAULT_TEXT_UCS2, DEFAULT_WINDOW,
};
use crate::pattern::Pattern;

pub(super) fn scenario(
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
