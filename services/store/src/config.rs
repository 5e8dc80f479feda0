//! `store:`: the store, as written.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use smsc_runtime::config::{ClientTls, ConfigError, duration, invalid};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// How long a message is kept; an account's `max_validity` may not exceed it.
    #[serde(deserialize_with = "duration")]
    pub message_ttl: Duration,
    /// How long the embedded store keeps a message once final (query_sm after delivery);
    /// it is what bounds `smsc all`'s memory under sustained load.
    #[serde(deserialize_with = "duration")]
    pub final_ttl: Duration,
    /// ScyllaDB contact points (`host:port`).
    pub uris: Vec<String>,
    pub keyspace: String,
    /// The datacenter this process runs in (token-aware, DC-local routing).
    pub local_dc: String,
    pub replication_factor: u16,
    /// ScyllaDB: whether the roles apply the schema at start-up (needs CREATE and ALTER on
    /// the keyspace). Off, they only check it is there and `smsc migrate` applies it (the
    /// chart's migration Job, with credentials of its own).
    pub migrate: bool,
    /// ScyllaDB: password authentication; absent: none.
    pub auth: Option<StoreAuth>,
    /// ScyllaDB: TLS to the nodes (their certificates must chain to `ca`; no host name
    /// is checked, as the driver dials the addresses the cluster reports); absent:
    /// plaintext.
    pub tls: Option<ClientTls>,
    /// `kind: remote`: `host:port` of the development store server (`smsc store-server`).
    pub endpoint: String,
    /// `kind: remote`: bound on each store call.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            message_ttl: Duration::from_secs(72 * 3600),
            final_ttl: Duration::from_secs(600),
            uris: vec!["127.0.0.1:9042".into()],
            keyspace: "smsc".into(),
            local_dc: "datacenter1".into(),
            replication_factor: 3,
            migrate: true,
            auth: None,
            tls: None,
            endpoint: "127.0.0.1:50060".into(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// `store.auth`: ScyllaDB's PasswordAuthenticator. The password is read from a file
/// (a mounted Secret) at start-up, so it is in no config file, variable or log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreAuth {
    pub username: String,
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In-process, for `smsc all`.
    Embedded,
    /// ScyllaDB; needs the `scylla` build feature.
    Scylla,
    /// The development store server at `store.endpoint` (`smsc store-server`): one
    /// in-memory store shared by the processes of a local cluster. Not for production.
    Remote,
}

impl StoreConfig {
    /// The rules of `store.*` that deserialising does not check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.message_ttl.is_zero() {
            return Err(invalid("store.message_ttl", "must be longer than 0s"));
        }
        if let Some(tls) = &self.tls {
            tls.validate("store.tls")?;
        }
        if let Some(auth) = &self.auth {
            if auth.username.is_empty() {
                return Err(invalid("store.auth.username", "must not be empty"));
            }
            if auth.password_file.as_os_str().is_empty() {
                return Err(invalid("store.auth.password_file", "must name a file"));
            }
        }
        Ok(())
    }
}
