//! [`ScyllaConfig`]: connection and schema settings, checked before they reach CQL.

use std::time::Duration;

use smsc_runtime::config::ClientTls;

use super::ScyllaError;
use crate::config::StoreConfig;

/// Connection and schema settings.
#[derive(Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub uris: Vec<String>,
    /// `[a-z_][a-z0-9_]*`, at most 48 characters (substituted into CQL, so checked).
    pub keyspace: String,
    /// The datacenter this process runs in: requests go to its replicas, the keyspace
    /// is replicated there with `replication_factor`.
    pub local_dc: String,
    pub replication_factor: u16,
    /// How long message rows and pending notifications live after their write.
    pub message_ttl: Duration,
    /// Client-side limit for one request, Paxos rounds included.
    pub request_timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS to the nodes: their certificates must chain to `ca` (and nothing else: the
    /// system's CAs are not trusted). The driver dials nodes by the addresses the
    /// cluster reports and checks no host name, as ScyllaDB node certificates rarely
    /// name those addresses; a CA of the database's own is what makes this safe.
    pub tls: Option<ClientTls>,
    /// Whether [`ScyllaStore::connect`](super::ScyllaStore::connect) applies the schema
    /// (needs CREATE and ALTER); off, it only checks that the schema is there.
    pub migrate: bool,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            uris: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "smsc".to_owned(),
            local_dc: "datacenter1".to_owned(),
            replication_factor: 3,
            message_ttl: Duration::from_secs(72 * 3600),
            request_timeout: Duration::from_secs(5),
            username: None,
            password: None,
            tls: None,
            migrate: true,
        }
    }
}

// The password stays out of logs.
impl std::fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("uris", &self.uris)
            .field("keyspace", &self.keyspace)
            .field("local_dc", &self.local_dc)
            .field("replication_factor", &self.replication_factor)
            .field("message_ttl", &self.message_ttl)
            .field("request_timeout", &self.request_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// The largest TTL CQL accepts (20 years).
pub(super) const MAX_TTL_SECS: i32 = 630_720_000;

impl ScyllaConfig {
    /// From the config file's `store` section; reads the password file.
    pub fn from_config(store: &StoreConfig) -> Result<Self, ScyllaError> {
        let (username, password) = match &store.auth {
            Some(auth) => {
                let password = std::fs::read_to_string(&auth.password_file).map_err(|e| {
                    ScyllaError::Config {
                        key: "auth.password_file",
                        reason: format!("{}: {e}", auth.password_file.display()),
                    }
                })?;
                // A Secret written with `echo` ends in a newline that is not the password's.
                let password = password.strip_suffix('\n').unwrap_or(&password).to_owned();
                (Some(auth.username.clone()), Some(password))
            }
            None => (None, None),
        };
        Ok(Self {
            uris: store.uris.clone(),
            keyspace: store.keyspace.clone(),
            local_dc: store.local_dc.clone(),
            replication_factor: store.replication_factor,
            message_ttl: store.message_ttl,
            username,
            password,
            tls: store.tls.clone(),
            migrate: store.migrate,
            ..Self::default()
        })
    }

    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ScyllaError> {
        let bad = |key: &'static str, reason: String| Err(ScyllaError::Config { key, reason });
        if self.uris.is_empty() || self.uris.iter().any(|u| u.trim().is_empty()) {
            return bad("uris", "at least one non-empty host:port is needed".to_owned());
        }
        let ks = &self.keyspace;
        let ident = ks.len() <= 48
            && ks.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && ks.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ident {
            return bad("keyspace", format!("{ks:?} is not [a-z_][a-z0-9_]* of at most 48"));
        }
        let dc_ok = !self.local_dc.is_empty()
            && self.local_dc.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !dc_ok {
            return bad("local_dc", format!("{:?} is not a datacenter name", self.local_dc));
        }
        if self.replication_factor == 0 {
            return bad("replication_factor", "must be at least 1".to_owned());
        }
        if self.message_ttl < Duration::from_secs(1)
            || self.message_ttl > Duration::from_secs(MAX_TTL_SECS as u64)
        {
            return bad(
                "message_ttl",
                format!("{:?} is not within 1s..20 years", self.message_ttl),
            );
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive".to_owned());
        }
        if self.username.is_some() != self.password.is_some() {
            return bad("password", "username and password go together".to_owned());
        }
        Ok(())
    }
}
