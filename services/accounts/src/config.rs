//! `accounts:`, `accounts_file`, `accounts_crd`: the accounts and where they come from,
//! as written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use smsc_bus::Class;
use smsc_runtime::config::{ConfigError, duration, invalid, yaml_tree};
use smsc_store::BindKind;

/// `accounts_crd`: accounts from `SmppAccount` resources and the Secrets holding their
/// password hashes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsCrdConfig {
    /// Namespace of the resources and of their Secrets; absent: the pod's own.
    pub namespace: Option<String>,
    /// Label selector for the Secrets watched (`smsc.io/account-password=true`); absent:
    /// every Secret of the namespace.
    pub secret_selector: Option<String>,
    /// Each pod writes an account's status (its bound sessions) at most this often, and
    /// only when it changed.
    #[serde(deserialize_with = "duration")]
    pub status_interval: Duration,
}

impl AccountsCrdConfig {
    /// The rules of `accounts_crd.*` that deserialising does not check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.status_interval.is_zero() {
            return Err(invalid("accounts_crd.status_interval", "must be longer than 0s"));
        }
        if self.namespace.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("accounts_crd.namespace", "empty: leave it out for the pod's own"));
        }
        Ok(())
    }
}

impl Default for AccountsCrdConfig {
    fn default() -> Self {
        Self { namespace: None, secret_selector: None, status_interval: Duration::from_secs(10) }
    }
}

/// One `accounts:` entry as written. [`crate::Account`] is its checked form.
///
/// `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub system_id: String,
    /// Argon2 PHC string (`$argon2id$v=19$...`), from `smsc hash-password`.
    pub password_hash: String,
    #[serde(default = "all_bind_kinds", deserialize_with = "bind_kinds")]
    pub bind_types: Vec<BindKind>,
    #[serde(default = "default_max_binds")]
    pub max_binds: u32,
    /// Requests in process per session.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Messages per second for the account on one pod; 0 = unlimited.
    #[serde(default)]
    pub max_submit_rate: u32,
    /// Glob patterns on source_addr: `*` any run of characters, `?` one character.
    #[serde(default = "any_source")]
    pub source_addresses: Vec<String>,
    /// Client networks; a bare address means that one host.
    #[serde(default = "any_network", deserialize_with = "networks")]
    pub allowed_cidrs: Vec<IpNet>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Applied when a submit has no validity_period.
    #[serde(default = "default_validity", deserialize_with = "duration")]
    pub default_validity: Duration,
    /// Longer requested validity periods are cut to this.
    #[serde(default = "max_validity", deserialize_with = "duration")]
    pub max_validity: Duration,
    /// Traffic class of the account's messages: `interactive`, `standard` or `bulk`.
    #[serde(default)]
    pub class: Class,
    /// The highest class a submit's priority_flag may lift a message to (each step of
    /// the flag one class up); absent: the account's class, whatever the flag.
    #[serde(default)]
    pub max_class: Option<Class>,
    /// Messages the account may submit per UTC day and per UTC month, across the cluster.
    #[serde(default)]
    pub quota: Quota,
    /// Where the receipts of its HTTP API submits go, and its MO while no SMPP receiver
    /// is bound; absent: HTTP submits cannot ask for a receipt.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// SHA-256 digests (64 hex digits) of the account's HTTP API keys, from
    /// `smsc api-key`; the keys themselves are never stored.
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
}

/// `webhook:` of an account: `POST url` with a JSON event, signed with `secret`
/// (HMAC-SHA256, docs/http-api.md). `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host[:port]/path`.
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `quota:` of an account: how many messages it may submit per calendar day and per
/// calendar month (UTC), each destination of a submit one message; a limit left out is
/// no limit. Past one, the edge answers submits 0x00000400 (from the range SMPP leaves to
/// SMSC vendors; docs/architecture.md, section 10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    #[serde(default)]
    pub daily: Option<u64>,
    #[serde(default)]
    pub monthly: Option<u64>,
}

impl Quota {
    /// No limit at all: the edge skips the bookkeeping.
    pub fn is_unlimited(&self) -> bool {
        self.daily.is_none() && self.monthly.is_none()
    }
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("system_id", &self.system_id)
            .field("password_hash", &"<redacted>")
            .field("bind_types", &self.bind_types)
            .field("max_binds", &self.max_binds)
            .field("window", &self.window)
            .field("max_submit_rate", &self.max_submit_rate)
            .field("source_addresses", &self.source_addresses)
            .field("allowed_cidrs", &self.allowed_cidrs)
            .field("enabled", &self.enabled)
            .field("default_validity", &self.default_validity)
            .field("max_validity", &self.max_validity)
            .field("class", &self.class)
            .field("max_class", &self.max_class)
            .field("quota", &self.quota)
            .field("webhook", &self.webhook)
            .field("api_key_sha256", &self.api_key_sha256.len())
            .finish()
    }
}

fn all_bind_kinds() -> Vec<BindKind> {
    vec![BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver]
}
fn default_max_binds() -> u32 {
    8
}
fn default_window() -> u32 {
    64
}
fn any_source() -> Vec<String> {
    vec!["*".to_owned()]
}
fn any_network() -> Vec<IpNet> {
    vec![IpNet::V4(ipnet::Ipv4Net::default()), IpNet::V6(ipnet::Ipv6Net::default())]
}
fn yes() -> bool {
    true
}
fn default_validity() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn max_validity() -> Duration {
    Duration::from_secs(72 * 3600)
}

/// `BindKind` lives in the store, which has no serde; this is its spelling in YAML.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum BindTypeName {
    Transmitter,
    Receiver,
    Transceiver,
}

fn bind_kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BindKind>, D::Error> {
    let names = Vec::<BindTypeName>::deserialize(d)?;
    Ok(names
        .into_iter()
        .map(|n| match n {
            BindTypeName::Transmitter => BindKind::Transmitter,
            BindTypeName::Receiver => BindKind::Receiver,
            BindTypeName::Transceiver => BindKind::Transceiver,
        })
        .collect())
}

fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            let t = t.trim();
            t.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("`{t}` is neither a CIDR nor an IP address"))
                })
        })
        .collect()
}

/// A file holding only the accounts list (`accounts_file`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    accounts: Vec<AccountConfig>,
}

/// Where the accounts are (re)loaded from at run time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AccountsSource {
    /// The main config file: reloaded whole by `read` (the binary's loader, with the
    /// process's env overrides), and only its `accounts` taken (other changed keys wait
    /// for a restart).
    ConfigFile { path: PathBuf, read: Arc<dyn ReadConfigFile> },
    /// A file holding only `accounts:`; `max_validity_cap` is the config's
    /// `store.message_ttl`.
    AccountsFile { path: PathBuf, max_validity_cap: Duration },
}

impl AccountsSource {
    pub fn path(&self) -> &Path {
        match self {
            Self::ConfigFile { path, .. } | Self::AccountsFile { path, .. } => path,
        }
    }
}

/// The accounts list of an `accounts_file` at `path`, already read as `text`, checked
/// as [`Config::load`] checks the `accounts` key.
pub fn parse_accounts_file(
    path: &Path,
    text: &str,
    max_validity_cap: Duration,
) -> Result<Vec<AccountConfig>, ConfigError> {
    let file = path.display().to_string();
    let tree = yaml_tree(text, &file)?;
    let parsed: AccountsFile =
        serde_path_to_error::deserialize(&tree).map_err(|e| ConfigError::Value {
            key: format!("{file}: {}", e.path()),
            env_var: None,
            source: e.into_inner(),
        })?;
    crate::compile(&parsed.accounts, max_validity_cap, &format!("{file}: "))?;
    Ok(parsed.accounts)
}

/// Reads the whole config file from its text and returns its accounts and its
/// `store.message_ttl` (the cap on their `max_validity`). The binary, which owns the whole
/// file, implements it.
pub trait ReadConfigFile: Send + Sync + std::fmt::Debug {
    fn accounts(
        &self,
        path: &Path,
        text: &str,
    ) -> Result<(Vec<AccountConfig>, Duration), ConfigError>;
}
