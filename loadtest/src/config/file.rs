//! The scenario file as written: k6's keys (camelCase) and the SMPP ones (snake_case),
//! every key known (`deny_unknown_fields`), nothing checked yet.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::args::parse_duration;

/// A duration in YAML: a string like `30s` or `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

/// One address or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Targets {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMix {
    pub(super) gsm: Option<f64>,
    pub(super) ucs2: Option<f64>,
    pub(super) long: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMessage {
    pub(super) mix: Option<RawMix>,
    pub(super) long_parts: Option<u8>,
    pub(super) registered_delivery: Option<f64>,
    pub(super) source: Option<String>,
    pub(super) destination: Option<String>,
    pub(super) text: Option<String>,
    pub(super) text_ucs2: Option<String>,
}

impl RawMessage {
    /// `self` over `base`, key by key.
    pub(super) fn over(self, base: &Self) -> Self {
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
pub(super) struct RawStage {
    pub(super) duration: Dur,
    pub(super) target: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) executor: Option<String>,
    pub(super) vus: Option<usize>,
    pub(super) duration: Option<Dur>,
    pub(super) iterations: Option<u64>,
    #[serde(rename = "maxDuration")]
    pub(super) max_duration: Option<Dur>,
    pub(super) rate: Option<f64>,
    #[serde(rename = "timeUnit")]
    pub(super) time_unit: Option<Dur>,
    #[serde(rename = "preAllocatedVUs")]
    pub(super) pre_allocated_vus: Option<usize>,
    /// Accepted for k6 files; sessions are never added during a run (see the README).
    #[serde(rename = "maxVUs")]
    pub(super) max_vus: Option<usize>,
    #[serde(rename = "startRate")]
    pub(super) start_rate: Option<f64>,
    pub(super) stages: Option<Vec<RawStage>>,
    #[serde(rename = "startTime")]
    pub(super) start_time: Option<Dur>,
    #[serde(rename = "gracefulStop")]
    pub(super) graceful_stop: Option<Dur>,
    // SMPP: override the file's defaults.
    pub(super) target: Option<Targets>,
    pub(super) system_id: Option<String>,
    pub(super) password: Option<String>,
    pub(super) system_type: Option<String>,
    pub(super) bind: Option<String>,
    pub(super) window: Option<usize>,
    pub(super) message: Option<RawMessage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) scenarios: Option<BTreeMap<String, RawScenario>>,
    #[serde(default)]
    pub(super) thresholds: BTreeMap<String, Vec<String>>,
    // k6's shortcuts for a single `default` scenario.
    pub(super) vus: Option<usize>,
    pub(super) duration: Option<Dur>,
    pub(super) iterations: Option<u64>,
    pub(super) rate: Option<f64>,
    // Defaults for every scenario.
    pub(super) target: Option<Targets>,
    pub(super) system_id: Option<String>,
    pub(super) password: Option<String>,
    pub(super) system_type: Option<String>,
    pub(super) bind: Option<String>,
    pub(super) window: Option<usize>,
    pub(super) message: Option<RawMessage>,
    #[serde(alias = "receiptWait")]
    pub(super) receipt_wait: Option<Dur>,
}

pub(super) fn parse_yaml(text: &str, path: &Path) -> Result<RawFile, ConfigError> {
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
