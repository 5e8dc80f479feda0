//! How the one YAML config file is read: the error every section reports, the
//! `SMSC_*` environment overrides, and the value parsers the sections share. Each role
//! declares its own section (`smsc_edge::EdgeConfig`, ...); the `smsc` binary assembles
//! them into the whole file and checks what spans roles.
//!
//! Every key has a default, so an empty file (or no file at all) is a valid config.
//! Unknown keys are errors, and so is every bad value: a [`ConfigError`] names the key
//! (`edge.smpp_listen`, `accounts[2].window`), and the environment variable when one set
//! it. The binary exits 64 (`EX_USAGE`) on it: nothing falls back silently to a default.
//!
//! # Environment overrides
//!
//! Any key can be set by a variable named `SMSC_` + the key path in upper case, with
//! `__` between nesting levels and a list index as a level of its own:
//!
//! ```text
//! SMSC_ADMIN_LISTEN=0.0.0.0:9090           admin_listen
//! SMSC_EDGE__SMPP_LISTEN=0.0.0.0:2775      edge.smpp_listen
//! SMSC_EDGE__GRPC_ADVERTISE=10.1.2.3:50051 edge.grpc_advertise
//! SMSC_ACCOUNTS__0__WINDOW=128             accounts[0].window
//! SMSC_EDGE__TLS='{cert: /c.pem, key: /k.pem}'
//! ```
//!
//! The value is parsed as YAML and set into the file's tree *before* the tree is
//! deserialised, so an override is checked exactly like the same value in the file.
//! Flow collections work (`[transmitter, receiver]`); an empty value is YAML `null`.
//! When the key expects a string and the value reads as another YAML scalar
//! (`SMSC_NODE_ID=1234`), the raw text is used. Missing intermediate mappings are created;
//! an index may point at an existing list entry or one past the end (appending).
//! Variables are applied in name order. The binary's own flags (`SMSC_CONFIG`,
//! `SMSC_LOG_JSON`: [`RESERVED_ENV`]) and the test harness's `SMSC_TEST_*`/`SMSC_SKIP_*`
//! are not keys; any other `SMSC_` variable must be.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_yaml::{Mapping, Value};

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "SMSC_";

/// `SMSC_` variables that belong to the binary's flags, not to config keys. Any other
/// `SMSC_` variable must name a key: a typo is an error, not silently ignored.
pub const RESERVED_ENV: &[&str] = &["SMSC_CONFIG", "SMSC_LOG_JSON"];

/// Prefixes of `SMSC_` variables that belong to the test harness (broker addresses,
/// skips), never to a config.
pub const RESERVED_ENV_PREFIXES: &[&str] = &["SMSC_TEST_", "SMSC_SKIP_"];

/// A config that cannot be used, naming where and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `file` is a path, or `<string>` for a config given as text.
    #[error("{file}: not valid YAML")]
    Syntax {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },
    /// The variable itself is unusable (bad path, bad YAML, not UTF-8).
    #[error("environment variable {var}: {reason}")]
    Override { var: String, reason: String },
    /// The value at `key` does not deserialise (wrong type, unknown key, bad address…).
    #[error("{key}{}: invalid value", set_by(env_var.as_deref()))]
    Value {
        key: String,
        env_var: Option<String>,
        #[source]
        source: serde_yaml::Error,
    },
    /// The value at `key` deserialised but breaks a rule.
    #[error("{key}{}: {reason}", set_by(env_var.as_deref()))]
    Invalid { key: String, env_var: Option<String>, reason: String },
    /// The value at `key` is well formed, but what it names cannot be used: a file that
    /// does not open, a URL that does not parse, certificates that do not load.
    #[error("{key}: cannot be used")]
    Unusable {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An entry of the accounts list is not a usable account (the source is an
    /// `smsc_accounts::AccountError`).
    #[error("{key} (system_id {system_id:?})")]
    Account {
        key: String,
        system_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn set_by(env_var: Option<&str>) -> String {
    env_var.map(|v| format!(" (set by {v})")).unwrap_or_default()
}

/// humantime's format (`30s`, `5m`, `48h`, `1h 30m`), keeping its reason on a bad value.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Humantime;
    impl serde::de::Visitor<'_> for Humantime {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration like 30s, 5m or 48h")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text).map_err(|e| {
                E::custom(format!("`{text}` is not a duration like 30s, 5m or 48h: {e}"))
            })
        }
    }
    d.deserialize_str(Humantime)
}

/// `bus.tls`, `store.tls`: TLS to the brokers or database nodes. Their certificates
/// must chain to `ca`; `cert` and `key`, together, are this client's certificate for
/// servers that require one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM CA certificate(s) the servers' certificates must chain to.
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

pub fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .collect()
}

/// `text` as a YAML tree: an empty file is an empty mapping, merge keys (`<<`) applied.
/// `file` names it in errors.
pub fn yaml_tree(text: &str, file: &str) -> Result<Value, ConfigError> {
    let syntax = |source| ConfigError::Syntax { file: file.to_owned(), source };
    let mut tree: Value = serde_yaml::from_str(text).map_err(syntax)?;
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    tree.apply_merge().map_err(syntax)?;
    Ok(tree)
}

/// Parses `text` (the file `file`), sets the `SMSC_*` variables of `env` into its tree and
/// deserialises a `T` from it. The [`Overrides`] returned name the variable behind a key
/// that a later check refuses.
pub fn deserialize<T: DeserializeOwned>(
    text: &str,
    file: &str,
    env: &[(String, String)],
) -> Result<(T, Overrides), ConfigError> {
    let mut tree = yaml_tree(text, file)?;
    if !tree.is_mapping() {
        return Err(ConfigError::Invalid {
            key: ".".into(),
            env_var: None,
            reason: format!("{file}: the top level must be a mapping of keys"),
        });
    }

    let mut overrides = parse_overrides(env)?;
    for o in &mut overrides {
        let value = parse_env_value(o)?;
        o.coercible = matches!(value, Value::Number(_) | Value::Bool(_) | Value::Null);
        o.key = set_path(&mut tree, &o.segments, value)
            .map_err(|reason| ConfigError::Override { var: o.var.clone(), reason })?;
    }

    // Each coercible override may need one retry as text, so this ends.
    loop {
        match serde_path_to_error::deserialize(&tree) {
            Ok(value) => return Ok((value, Overrides(overrides))),
            Err(e) => {
                let key = e.path().to_string();
                if let Some(o) = overrides.iter_mut().find(|o| o.coercible && o.key == key) {
                    o.coercible = false;
                    set_path(&mut tree, &o.segments, Value::String(o.raw.clone()))
                        .map_err(|reason| ConfigError::Override { var: o.var.clone(), reason })?;
                    continue;
                }
                return Err(ConfigError::Value {
                    env_var: env_var_for(&overrides, &key),
                    key,
                    source: e.into_inner(),
                });
            }
        }
    }
}

/// The `SMSC_*` variables applied to a config, to name the one behind a refused key.
#[derive(Debug, Default)]
pub struct Overrides(Vec<Override>);

impl Overrides {
    /// The variable that set `key`, one of its parents, or something inside it.
    pub fn env_var_for(&self, key: &str) -> Option<String> {
        env_var_for(&self.0, key)
    }

    /// `error`, naming the variable that set its key when it does not yet.
    pub fn blame(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid { key, env_var: None, reason } => {
                ConfigError::Invalid { env_var: self.env_var_for(&key), key, reason }
            }
            other => other,
        }
    }
}

/// One `SMSC_` variable, parsed.
#[derive(Debug)]
struct Override {
    var: String,
    segments: Vec<String>,
    /// Display form of the path, as serde_path_to_error prints it (`accounts[0].window`).
    key: String,
    raw: String,
    /// Parsed as a YAML scalar other than a string: retried as raw text if the key
    /// turns out to want a string.
    coercible: bool,
}

pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

/// The process environment, as UTF-8. A non-UTF-8 `SMSC_` variable is an error; other
/// non-UTF-8 variables are none of our business.
pub fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => env.push((k, v)),
            (Ok(k), Err(_)) if k.starts_with(ENV_PREFIX) => {
                return Err(ConfigError::Override { var: k, reason: "value is not UTF-8".into() });
            }
            (Err(k), _) if k.to_string_lossy().starts_with(ENV_PREFIX) => {
                return Err(ConfigError::Override {
                    var: k.to_string_lossy().into_owned(),
                    reason: "name is not UTF-8".into(),
                });
            }
            _ => {}
        }
    }
    Ok(env)
}

fn parse_overrides(env: &[(String, String)]) -> Result<Vec<Override>, ConfigError> {
    let mut overrides = Vec::new();
    for (var, raw) in env {
        let Some(path) = var.strip_prefix(ENV_PREFIX) else { continue };
        if RESERVED_ENV.contains(&var.as_str())
            || RESERVED_ENV_PREFIXES.iter().any(|p| var.starts_with(p))
        {
            continue;
        }
        let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::Override {
                var: var.clone(),
                reason: "empty key between `__` separators".into(),
            });
        }
        overrides.push(Override {
            var: var.clone(),
            segments,
            key: String::new(),
            raw: raw.clone(),
            coercible: false,
        });
    }
    // Deterministic: the environment's order is not.
    overrides.sort_by(|a, b| a.var.cmp(&b.var));
    Ok(overrides)
}

fn parse_env_value(o: &Override) -> Result<Value, ConfigError> {
    serde_yaml::from_str(&o.raw).map_err(|e| ConfigError::Override {
        var: o.var.clone(),
        reason: format!("not a YAML value: {e}"),
    })
}

/// Sets `value` at `segments` in `tree`, creating mappings on the way; returns the path
/// as serde_path_to_error prints it.
fn set_path(tree: &mut Value, segments: &[String], value: Value) -> Result<String, String> {
    let mut key = String::new();
    let mut node = tree;
    for segment in segments {
        if node.is_null() {
            // None of our keys is a number, so a number indexes a list.
            *node = if segment.parse::<usize>().is_ok() {
                Value::Sequence(Vec::new())
            } else {
                Value::Mapping(Mapping::new())
            };
        }
        node = match node {
            Value::Mapping(map) => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(segment);
                map.entry(Value::String(segment.clone())).or_insert(Value::Null)
            }
            Value::Sequence(list) => {
                let len = list.len();
                let index = segment
                    .parse::<usize>()
                    .map_err(|_| format!("`{key}` is a list: `{segment}` is not an index"))?;
                if index > len {
                    return Err(format!("`{key}` has {len} entries: index {index} leaves a gap"));
                }
                if index == len {
                    list.push(Value::Null);
                }
                key.push_str(&format!("[{index}]"));
                list.get_mut(index).ok_or_else(|| format!("`{key}`: no such entry"))?
            }
            _ => return Err(format!("`{key}` is a single value: it has no key `{segment}`")),
        };
    }
    *node = value;
    Ok(key)
}

/// The override that set `key`, one of its parents, or something inside it (an
/// override can turn a value into a mapping it should not be).
fn env_var_for(overrides: &[Override], key: &str) -> Option<String> {
    let under = |inner: &str, outer: &str| {
        inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    overrides
        .iter()
        .rev()
        .find(|o| key == o.key || under(key, &o.key) || under(&o.key, key))
        .map(|o| o.var.clone())
}

pub fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), env_var: None, reason: reason.into() }
}

impl ClientTls {
    /// Checks `section` (`bus.tls`, `store.tls`).
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let t = self;
        let key = |field: &str| format!("{section}.{field}");
        if t.ca.as_os_str().is_empty() {
            return Err(invalid(&key("ca"), "must name a PEM file"));
        }
        match (&t.cert, &t.key) {
            (Some(_), None) => Err(invalid(&key("key"), format!("is needed with {section}.cert"))),
            (None, Some(_)) => Err(invalid(&key("cert"), format!("is needed with {section}.key"))),
            _ => Ok(()),
        }
    }
}
