//! The whole config file: every role's section, assembled, with the checks that span
//! roles. How the file is read (errors that name the key, `SMSC_*` overrides) is
//! `smsc_runtime::config`; each section, its defaults and its own rules belong to the
//! crate that uses it:
//!
//! | key | section | crate |
//! |---|---|---|
//! | `edge` | `EdgeConfig` | `smsc-edge` |
//! | `accounts`, `accounts_file`, `accounts_crd` | `AccountConfig`, `AccountsCrdConfig` | `smsc-accounts` |
//! | `bus`, `retry` | `BusConfig`, `RetryConfig` | `smsc-bus` |
//! | `store` | `StoreConfig` | `smsc-store` |
//! | `routing` | `RoutingConfig` | `smsc-router` |
//! | `connectors`, `worker` | `ConnectorConfig`, `WorkerConfig` | `smsc-delivery-worker` |
//! | `grpc_tls` | `GrpcTls` | `smsc-runtime` |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use smsc_accounts::{AccountConfig, AccountsCrdConfig, AccountsSource, ReadConfigFile};
use smsc_bus::{BusConfig, RetryConfig};
use smsc_delivery_worker::config::{ConnectorConfig, WorkerConfig};
use smsc_edge::EdgeConfig;
use smsc_router::RoutingConfig;
pub use smsc_runtime::config::ConfigError;
use smsc_runtime::config::{invalid, process_env, read_text};
use smsc_store::config::StoreConfig;

#[cfg(test)]
mod tests;

/// The whole config. See the module docs for the file format and overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Names this process in logs, the session directory and metrics. Absent or empty:
    /// `$POD_NAME`, else the hostname, else `smsc-<random>`.
    pub node_id: String,
    /// `/metrics`, `/live`, `/ready`.
    pub admin_listen: SocketAddr,
    pub edge: EdgeConfig,
    pub accounts: Vec<AccountConfig>,
    /// A YAML file holding only `accounts: [...]`, watched for changes. When set, the
    /// `accounts` key must be empty. A relative path is taken from the config file's
    /// directory ([`Config::load`]) or the working directory ([`Config::from_yaml_str`]).
    pub accounts_file: Option<PathBuf>,
    /// Accounts from `SmppAccount` custom resources, watched through the Kubernetes API,
    /// instead of `accounts` / `accounts_file` (edge and worker; a build with the `k8s`
    /// feature). Absent: accounts come from the YAML.
    pub accounts_crd: Option<AccountsCrdConfig>,
    pub bus: BusConfig,
    pub store: StoreConfig,
    /// MT and MO routes (router).
    pub routing: RoutingConfig,
    /// Network connectors by name (delivery worker). Default: `sim`, a simulator that
    /// delivers every message at once.
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// Store-and-forward retry tiers (delivery worker).
    pub retry: RetryConfig,
    pub worker: WorkerConfig,
    /// Mutual TLS on every gRPC server and client between pods (`Edge`,
    /// the store server); absent: plaintext gRPC. The files usually
    /// come from a Kubernetes Secret.
    pub grpc_tls: Option<smsc_runtime::grpc_tls::GrpcTls>,
    /// CDRs as JSON lines (`<prefix>.cdr` read by this process), for `smsc all` and
    /// development; production billing reads the topic itself.
    pub cdr: CdrConfig,
    /// The file this config was loaded from, if any (not a key).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// `cdr:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdrConfig {
    /// Appends every CDR to this file, one JSON object per line; absent: none written.
    /// A relative path is taken from the working directory.
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            edge: EdgeConfig::default(),
            accounts: Vec::new(),
            accounts_file: None,
            accounts_crd: None,
            bus: BusConfig::default(),
            store: StoreConfig::default(),
            routing: RoutingConfig::default(),
            connectors: BTreeMap::from([("sim".to_owned(), ConnectorConfig::default())]),
            retry: RetryConfig::default(),
            worker: WorkerConfig::default(),
            grpc_tls: None,
            cdr: CdrConfig::default(),
            path: None,
        }
    }
}

impl Config {
    /// Loads `path` (or nothing: all defaults) with the process environment's overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, process_env()?)
    }

    /// [`Config::load`] with a given environment instead of the process's.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return build("", "<defaults>", env.into_iter().collect(), None);
        };
        let text = read_text(path)?;
        Self::from_file_text(path, &text, env.into_iter().collect())
    }

    /// The config file at `path`, already read as `text`.
    pub(crate) fn from_file_text(
        path: &Path,
        text: &str,
        env: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = build(text, &path.display().to_string(), env, path.parent())?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Parses `text` as the config file, with `env` as the environment (only `SMSC_*`,
    /// `POD_NAME` and `HOSTNAME` are looked at).
    pub fn from_yaml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        build(text, "<string>", env.into_iter().collect(), None)
    }

    /// What the accounts watcher reloads, if anything: the accounts file when there is
    /// one, else the config file this was loaded from.
    pub fn accounts_source(&self) -> Option<AccountsSource> {
        if self.accounts_crd.is_some() {
            return None;
        }
        match (&self.accounts_file, &self.path) {
            (Some(path), _) => Some(AccountsSource::AccountsFile {
                path: path.clone(),
                max_validity_cap: self.store.message_ttl,
            }),
            (None, Some(path)) => {
                Some(AccountsSource::ConfigFile { path: path.clone(), read: Arc::new(Reread) })
            }
            (None, None) => None,
        }
    }
}

/// The accounts watcher's reload of the whole file, with the process's env overrides.
#[derive(Debug)]
struct Reread;

impl ReadConfigFile for Reread {
    fn accounts(
        &self,
        path: &Path,
        text: &str,
    ) -> Result<(Vec<AccountConfig>, std::time::Duration), ConfigError> {
        let config = Config::from_file_text(path, text, process_env()?)?;
        Ok((config.accounts, config.store.message_ttl))
    }
}

fn build(
    text: &str,
    file: &str,
    env: Vec<(String, String)>,
    base_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let (mut config, overrides): (Config, _) = smsc_runtime::config::deserialize(text, file, &env)?;
    if config.node_id.is_empty() {
        config.node_id = default_node_id(&env);
    }
    if let Some(accounts_file) = config.accounts_file.take() {
        let resolved = match base_dir {
            Some(dir) if accounts_file.is_relative() => dir.join(&accounts_file),
            _ => accounts_file,
        };
        if !config.accounts.is_empty() {
            return Err(ConfigError::Invalid {
                key: "accounts_file".into(),
                env_var: overrides.env_var_for("accounts_file"),
                reason: "set together with a non-empty `accounts` list: keep accounts in one place"
                    .into(),
            });
        }
        let text = read_text(&resolved)?;
        config.accounts =
            smsc_accounts::config::parse_accounts_file(&resolved, &text, config.store.message_ttl)?;
        config.accounts_file = Some(resolved);
    }
    validate(&config).map_err(|e| overrides.blame(e))?;
    Ok(config)
}

fn default_node_id(env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
    };
    lookup("POD_NAME")
        .or_else(|| lookup("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| format!("smsc-{:08x}", rand::random::<u32>()))
}

/// Each section's own rules, then the ones that span sections.
fn validate(c: &Config) -> Result<(), ConfigError> {
    let node_ok = c.node_id.len() <= 253
        && c.node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !node_ok {
        // The value may come from POD_NAME or the hostname, so show it.
        return Err(invalid(
            "node_id",
            format!("`{}`: use at most 253 of A-Z a-z 0-9 - . _", c.node_id),
        ));
    }

    // The workers' deadline on Edge.Deliver bounds the edge's waits for a deliver_sm.
    c.edge.validate(smsc_proto::EDGE_DELIVER_DEADLINE)?;
    c.store.validate()?;
    if let Some(t) = &c.grpc_tls {
        for (key, path) in
            [("grpc_tls.ca", &t.ca), ("grpc_tls.cert", &t.cert), ("grpc_tls.key", &t.key)]
        {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "must name a PEM file"));
            }
        }
    }
    c.bus.validate()?;
    // The prefixes, and the names they make with the retry tiers.
    smsc_bus::Topics::from_config(&c.bus, &c.retry)?;
    c.routing.validate()?;

    let mut listeners = vec![("admin_listen", c.admin_listen)];
    listeners.extend(c.edge.listeners());
    // Port 0 picks a free port; a wildcard address takes the port on every address.
    for (i, (key, addr)) in listeners.iter().enumerate() {
        let clash = listeners[..i].iter().find(|(_, other)| {
            addr.port() != 0
                && addr.port() == other.port()
                && (addr.ip() == other.ip()
                    || addr.ip().is_unspecified()
                    || other.ip().is_unspecified())
        });
        if let Some((other_key, _)) = clash {
            return Err(invalid(key, format!("{addr} clashes with {other_key}")));
        }
    }

    if let Some(crd) = &c.accounts_crd {
        if c.accounts_file.is_some() || !c.accounts.is_empty() {
            return Err(invalid(
                "accounts_crd",
                "set together with `accounts` or `accounts_file`: keep accounts in one place",
            ));
        }
        crd.validate()?;
    }
    smsc_delivery_worker::config::validate_connectors(&c.connectors)?;
    smsc_accounts::compile(&c.accounts, c.store.message_ttl, "")?;
    Ok(())
}
