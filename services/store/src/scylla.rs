//! The ScyllaDB [`Store`]: the cluster implementation of the store contract.
//!
//! - Schema: versioned CQL files in `services/store/cql/`, embedded at build time and
//!   applied at start-up by [`ScyllaStore::migrate`] (every DDL is `IF NOT EXISTS`;
//!   `schema_migrations` records the versions applied).
//! - Every statement is prepared once in [`ScyllaStore::with_session`] and runs at
//!   LOCAL_QUORUM (LOCAL_SERIAL for the Paxos phase of lightweight transactions) with the
//!   configured request timeout, routed token-aware to the local datacenter.
//! - State transitions are lightweight transactions: `INSERT … IF NOT EXISTS`,
//!   `UPDATE … IF state = …`, `DELETE … IF EXISTS`.
//! - The mapping between our types and CQL rows is a set of pure functions
//!   (`*_to_row` / `*_from_row`), unit-tested offline like the CQL text; the contract
//!   suite runs against a real cluster in `tests/contract_scylla.rs` when `SCYLLA_URI`
//!   is set.
//!
//! Time-to-live: a row's TTL is set by the write (`USING TTL`). A transition writes its
//! cells with the TTL the row has left, read just before, so that they expire with it.
//! TTLs have one-second granularity on the server: an updated cell may outlive the cells
//! of the insert by up to about a second. Such a remnant has no `system_id` and is read as
//! "no row" (see [`message_from_row`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::value::DeserializeValue;
use scylla::errors::{
    DbError, DeserializationError, ExecutionError, IntoRowsResultError, NewSessionError,
    NextPageError, NextRowError, PagerExecutionError, PrepareError, RequestAttemptError,
    RequestError, TypeCheckError,
};
use scylla::frame::response::result::ColumnSpec;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlTimestamp, CqlValue, MaybeUnset};
use smsc_smpp::MessageState;

use super::{
    Applied, BindKind, NotificationKind, Page, PendingNotification, SessionLease, SlotClaim, Store,
    StoreError, StoreResult, StoredAddress, StoredMessage, UnixMillis, Update, UpstreamEntry,
    UpstreamLink,
};
use smsc_runtime::config::ClientTls;

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
const MAX_TTL_SECS: i32 = 630_720_000;

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

/// Failure to set the store up (per-operation failures are [`StoreError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScyllaError {
    #[error("invalid ScyllaDB config: {key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("cannot connect to ScyllaDB")]
    Connect(#[source] Box<NewSessionError>),
    #[error("store.tls: {path}")]
    Tls {
        path: String,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("cannot prepare `{statement}`")]
    Prepare {
        statement: String,
        #[source]
        source: Box<PrepareError>,
    },
    #[error("schema migration {version} ({name}) failed")]
    Migrate {
        version: u32,
        name: &'static str,
        #[source]
        source: StoreError,
    },
}

/// One versioned CQL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Migration {
    version: u32,
    name: &'static str,
    cql: &'static str,
}

/// In version order. The first creates `schema_migrations` and runs at every start.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "001_keyspace", cql: include_str!("../cql/001_keyspace.cql") },
    Migration { version: 2, name: "002_tables", cql: include_str!("../cql/002_tables.cql") },
    Migration { version: 3, name: "003_upstream", cql: include_str!("../cql/003_upstream.cql") },
];

/// The `component` key of our rows in `schema_migrations`.
const MIGRATION_COMPONENT: &str = "store";

impl Migration {
    /// The file's statements with the config substituted, comments dropped.
    fn statements(&self, config: &ScyllaConfig) -> Vec<String> {
        let text: String = self
            .cql
            .lines()
            .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("${keyspace}", &config.keyspace)
            .replace("${local_dc}", &config.local_dc)
            .replace("${replication_factor}", &config.replication_factor.to_string());
        text.split(';')
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Migrations still to apply, in version order; the bootstrap one always.
fn pending_migrations(applied: &BTreeSet<u32>) -> impl Iterator<Item = &'static Migration> + '_ {
    MIGRATIONS
        .iter()
        .enumerate()
        .filter(|(i, m)| *i == 0 || !applied.contains(&m.version))
        .map(|(_, m)| m)
}

const MESSAGE_COLUMNS: [&str; 22] = [
    "message_id",
    "dest_index",
    "system_id",
    "source_ton",
    "source_npi",
    "source_addr",
    "dest_ton",
    "dest_npi",
    "dest_addr",
    "service_type",
    "registered_delivery",
    "data_coding",
    "esm_class",
    "payload",
    "state",
    "error_code",
    "attempts",
    "submitted_at",
    "schedule_at",
    "expire_at",
    "final_at",
    "event",
];
const SESSION_COLUMNS: [&str; 6] =
    ["system_id", "session_id", "edge_id", "endpoint", "bind", "bound_at"];
const PENDING_COLUMNS: [&str; 6] = ["system_id", "id", "kind", "message_id", "pdu", "created_at"];

/// The columns a transition may set, each bound to a marker of its own name.
const UPDATABLE_COLUMNS: [&str; 10] = [
    "state",
    "error_code",
    "attempts",
    "final_at",
    "payload",
    "data_coding",
    "registered_delivery",
    "schedule_at",
    "expire_at",
    "event",
];

/// The CQL of every statement the store prepares, for one keyspace.
#[derive(Debug, Clone)]
struct Cql {
    insert_message: String,
    select_message: String,
    select_message_ttl: String,
    select_message_row: String,
    update_message: String,
    upsert_session: String,
    delete_session: String,
    select_sessions: String,
    upsert_pending: String,
    select_pending: String,
    select_pending_after: String,
    delete_pending: String,
    select_migrations: String,
    insert_migration: String,
    upsert_upstream_link: String,
    park_upstream_receipt: String,
    select_upstream: String,
    insert_slot: String,
    refresh_slot: String,
    delete_slot: String,
}

impl Cql {
    fn new(ks: &str) -> Self {
        let list = |cols: &[&str]| cols.join(", ");
        let marks = |n: usize| vec!["?"; n].join(", ");
        let messages = list(&MESSAGE_COLUMNS);
        let sessions = list(&SESSION_COLUMNS);
        let pending = list(&PENDING_COLUMNS);
        // Named markers: `state` is both set and tested, and `?` would name both "state".
        let set = UPDATABLE_COLUMNS.map(|c| format!("{c} = :{c}")).join(", ");
        Self {
            insert_message: format!(
                "INSERT INTO {ks}.messages ({messages}) VALUES ({}) IF NOT EXISTS USING TTL ?",
                marks(MESSAGE_COLUMNS.len())
            ),
            select_message: format!("SELECT {messages} FROM {ks}.messages WHERE message_id = ?"),
            // system_id is written once, by the insert: its TTL is the row's.
            select_message_ttl: format!(
                "SELECT system_id, TTL(system_id) AS remaining_ttl FROM {ks}.messages \
                 WHERE message_id = ? AND dest_index = ?"
            ),
            select_message_row: format!(
                "SELECT {messages} FROM {ks}.messages WHERE message_id = ? AND dest_index = ?"
            ),
            update_message: format!(
                "UPDATE {ks}.messages USING TTL :ttl SET {set} \
                 WHERE message_id = :message_id AND dest_index = :dest_index \
                 IF state = :expected_state"
            ),
            upsert_session: format!(
                "INSERT INTO {ks}.sessions ({sessions}) VALUES ({}) USING TTL ?",
                marks(SESSION_COLUMNS.len())
            ),
            delete_session: format!(
                "DELETE FROM {ks}.sessions WHERE system_id = ? AND session_id = ?"
            ),
            select_sessions: format!("SELECT {sessions} FROM {ks}.sessions WHERE system_id = ?"),
            upsert_pending: format!(
                "INSERT INTO {ks}.pending_notifications ({pending}) VALUES ({}) USING TTL ?",
                marks(PENDING_COLUMNS.len())
            ),
            select_pending: format!(
                "SELECT {pending} FROM {ks}.pending_notifications WHERE system_id = ? LIMIT ?"
            ),
            select_pending_after: format!(
                "SELECT {pending} FROM {ks}.pending_notifications \
                 WHERE system_id = ? AND id > ? LIMIT ?"
            ),
            delete_pending: format!(
                "DELETE FROM {ks}.pending_notifications WHERE system_id = ? AND id = ? IF EXISTS"
            ),
            select_migrations: format!(
                "SELECT version FROM {ks}.schema_migrations WHERE component = ?"
            ),
            insert_migration: format!(
                "INSERT INTO {ks}.schema_migrations (component, version, name, applied_at) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ),
            // Upserts of their own columns: the link and the parked receipt of one id are
            // written apart and merge in the row.
            upsert_upstream_link: format!(
                "INSERT INTO {ks}.upstream_ids (connector, upstream_id, message_id, dest_index) \
                 VALUES (?, ?, ?, ?) USING TTL ?"
            ),
            park_upstream_receipt: format!(
                "INSERT INTO {ks}.upstream_ids (connector, upstream_id, parked_receipt) \
                 VALUES (?, ?, ?) USING TTL ?"
            ),
            select_upstream: format!(
                "SELECT message_id, dest_index, parked_receipt FROM {ks}.upstream_ids \
                 WHERE connector = ? AND upstream_id = ?"
            ),
            insert_slot: format!(
                "INSERT INTO {ks}.bind_slots (pool, slot, holder) VALUES (?, ?, ?) \
                 IF NOT EXISTS USING TTL ?"
            ),
            // Named markers: `holder` is both set and tested.
            refresh_slot: format!(
                "UPDATE {ks}.bind_slots USING TTL :ttl SET holder = :holder \
                 WHERE pool = :pool AND slot = :slot IF holder = :expected_holder"
            ),
            delete_slot: format!(
                "DELETE FROM {ks}.bind_slots WHERE pool = ? AND slot = ? IF holder = ?"
            ),
        }
    }

    /// Every data-path statement, named (migration bookkeeping is prepared apart).
    #[cfg(test)]
    fn data_path(&self) -> [(&'static str, &str); 18] {
        [
            ("insert_message", &self.insert_message),
            ("select_message", &self.select_message),
            ("select_message_ttl", &self.select_message_ttl),
            ("select_message_row", &self.select_message_row),
            ("update_message", &self.update_message),
            ("upsert_session", &self.upsert_session),
            ("delete_session", &self.delete_session),
            ("select_sessions", &self.select_sessions),
            ("upsert_pending", &self.upsert_pending),
            ("select_pending", &self.select_pending),
            ("select_pending_after", &self.select_pending_after),
            ("delete_pending", &self.delete_pending),
            ("upsert_upstream_link", &self.upsert_upstream_link),
            ("park_upstream_receipt", &self.park_upstream_receipt),
            ("select_upstream", &self.select_upstream),
            ("insert_slot", &self.insert_slot),
            ("refresh_slot", &self.refresh_slot),
            ("delete_slot", &self.delete_slot),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// Row mapping. Writes bind typed structs by marker name (the driver checks every name and
// type against the prepared metadata); reads go through `CqlRow`, looked up by column
// name, so an LWT result (`[applied]` + whatever columns the server adds) maps the same way.

/// Bind values of `insert_message`.
#[derive(Debug, scylla::SerializeRow)]
struct MessageValues<'a> {
    message_id: &'a str,
    dest_index: i64,
    system_id: &'a str,
    source_ton: i16,
    source_npi: i16,
    source_addr: &'a str,
    dest_ton: i16,
    dest_npi: i16,
    dest_addr: &'a str,
    service_type: &'a str,
    registered_delivery: i16,
    data_coding: i16,
    esm_class: i16,
    payload: &'a [u8],
    state: i8,
    error_code: i32,
    attempts: i64,
    submitted_at: CqlTimestamp,
    // Unset, not null, when absent: a null would write a tombstone per insert.
    schedule_at: MaybeUnset<CqlTimestamp>,
    expire_at: CqlTimestamp,
    final_at: MaybeUnset<CqlTimestamp>,
    event: &'a [u8],
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

/// Bind values of `update_message`; `Unset` leaves a column as stored.
#[derive(Debug, scylla::SerializeRow)]
struct UpdateValues<'a> {
    ttl: i32,
    state: MaybeUnset<i8>,
    error_code: MaybeUnset<i32>,
    attempts: MaybeUnset<i64>,
    final_at: MaybeUnset<CqlTimestamp>,
    payload: MaybeUnset<&'a [u8]>,
    data_coding: MaybeUnset<i16>,
    registered_delivery: MaybeUnset<i16>,
    schedule_at: MaybeUnset<Option<CqlTimestamp>>,
    expire_at: MaybeUnset<CqlTimestamp>,
    event: MaybeUnset<&'a [u8]>,
    message_id: &'a str,
    dest_index: i64,
    expected_state: i8,
}

/// Bind values of `upsert_session`.
#[derive(Debug, scylla::SerializeRow)]
struct SessionValues<'a> {
    system_id: &'a str,
    session_id: &'a str,
    edge_id: &'a str,
    endpoint: &'a str,
    bind: &'static str,
    bound_at: CqlTimestamp,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

/// Bind values of `upsert_pending`.
#[derive(Debug, scylla::SerializeRow)]
struct PendingValues<'a> {
    system_id: &'a str,
    id: &'a str,
    kind: &'static str,
    message_id: &'a str,
    pdu: &'a [u8],
    created_at: CqlTimestamp,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

/// Bind values of `upsert_upstream_link`.
#[derive(Debug, scylla::SerializeRow)]
struct UpstreamLinkValues<'a> {
    connector: &'a str,
    upstream_id: &'a str,
    message_id: &'a str,
    dest_index: i64,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

/// Bind values of `park_upstream_receipt`.
#[derive(Debug, scylla::SerializeRow)]
struct ParkValues<'a> {
    connector: &'a str,
    upstream_id: &'a str,
    parked_receipt: &'a [u8],
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

/// Bind values of `insert_slot`.
#[derive(Debug, scylla::SerializeRow)]
struct SlotValues<'a> {
    pool: &'a str,
    slot: i32,
    holder: &'a str,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

/// Bind values of `refresh_slot`.
#[derive(Debug, scylla::SerializeRow)]
struct RefreshSlotValues<'a> {
    ttl: i32,
    holder: &'a str,
    pool: &'a str,
    slot: i32,
    expected_holder: &'a str,
}

/// A result row as (column name, value) pairs.
#[derive(Debug, Clone, PartialEq, Default)]
struct CqlRow {
    columns: Vec<(String, Option<CqlValue>)>,
}

impl CqlRow {
    fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|(name, _)| name == column)
    }

    fn get(&self, column: &str) -> Option<&Option<CqlValue>> {
        self.columns.iter().find(|(name, _)| name == column).map(|(_, v)| v)
    }
}

impl<'frame, 'metadata> DeserializeRow<'frame, 'metadata> for CqlRow {
    fn type_check(_specs: &[ColumnSpec]) -> Result<(), TypeCheckError> {
        // Types are checked per column by the `*_from_row` functions.
        Ok(())
    }

    fn deserialize(row: ColumnIterator<'frame, 'metadata>) -> Result<Self, DeserializationError> {
        let mut columns = Vec::with_capacity(row.size_hint().0);
        for column in row {
            let column = column?;
            let value = <Option<CqlValue>>::deserialize(column.spec.typ(), column.slice)?;
            columns.push((column.spec.name().to_owned(), value));
        }
        Ok(Self { columns })
    }
}

fn corrupt(table: &str, column: &str, problem: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}.{column}: {problem}"))
}

/// Typed, checked access to one row's columns; every error names the column.
struct Columns<'r> {
    table: &'static str,
    row: &'r CqlRow,
}

impl Columns<'_> {
    fn value(&self, column: &str) -> StoreResult<Option<&CqlValue>> {
        match self.row.get(column) {
            Some(value) => Ok(value.as_ref()),
            None => Err(corrupt(self.table, column, "missing from the result")),
        }
    }

    fn required(&self, column: &str) -> StoreResult<&CqlValue> {
        self.value(column)?.ok_or_else(|| corrupt(self.table, column, "null"))
    }

    fn wrong_type(&self, column: &str, value: &CqlValue) -> StoreError {
        corrupt(self.table, column, format_args!("unexpected value {value:?}"))
    }

    fn text(&self, column: &str) -> StoreResult<String> {
        match self.required(column)? {
            CqlValue::Text(s) | CqlValue::Ascii(s) => Ok(s.clone()),
            other => Err(self.wrong_type(column, other)),
        }
    }

    fn blob(&self, column: &str) -> StoreResult<Bytes> {
        match self.required(column)? {
            CqlValue::Blob(b) => Ok(Bytes::copy_from_slice(b)),
            other => Err(self.wrong_type(column, other)),
        }
    }

    fn u8(&self, column: &str) -> StoreResult<u8> {
        match self.required(column)? {
            CqlValue::SmallInt(v) => u8::try_from(*v)
                .map_err(|_| corrupt(self.table, column, format_args!("{v} is not 0..=255"))),
            other => Err(self.wrong_type(column, other)),
        }
    }

    fn u16(&self, column: &str) -> StoreResult<u16> {
        match self.required(column)? {
            CqlValue::Int(v) => u16::try_from(*v)
                .map_err(|_| corrupt(self.table, column, format_args!("{v} is not 0..=65535"))),
            other => Err(self.wrong_type(column, other)),
        }
    }

    fn u32(&self, column: &str) -> StoreResult<u32> {
        match self.required(column)? {
            CqlValue::BigInt(v) => u32::try_from(*v)
                .map_err(|_| corrupt(self.table, column, format_args!("{v} is not a u32"))),
            other => Err(self.wrong_type(column, other)),
        }
    }

    fn state(&self, column: &str) -> StoreResult<MessageState> {
        match self.required(column)? {
            CqlValue::TinyInt(v) => state_from_cql(*v).ok_or_else(|| {
                corrupt(self.table, column, format_args!("unknown message state {v}"))
            }),
            other => Err(self.wrong_type(column, other)),
        }
    }

    fn timestamp(&self, column: &str) -> StoreResult<UnixMillis> {
        self.opt_timestamp(column)?.ok_or_else(|| corrupt(self.table, column, "null"))
    }

    fn opt_timestamp(&self, column: &str) -> StoreResult<Option<UnixMillis>> {
        match self.value(column)? {
            None => Ok(None),
            Some(CqlValue::Timestamp(CqlTimestamp(ms))) => Ok(Some(*ms)),
            Some(other) => Err(self.wrong_type(column, other)),
        }
    }
}

/// Only the states SMPP names and our internal ones (`IN_DELIVERY`, `AT_UPSTREAM`) are
/// stored: anything else is a bug upstream.
fn state_to_cql(state: MessageState) -> StoreResult<i8> {
    let known = state.name().is_some() || super::is_internal(state);
    match (known, i8::try_from(state.0)) {
        (true, Ok(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!("messages.state: unknown message state {}", state.0))),
    }
}

fn state_from_cql(v: i8) -> Option<MessageState> {
    let state = MessageState(u8::try_from(v).ok()?);
    (state.name().is_some() || super::is_internal(state)).then_some(state)
}

fn bind_to_cql(bind: BindKind) -> &'static str {
    bind.as_str()
}

fn bind_from_cql(s: &str) -> Option<BindKind> {
    [BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver]
        .into_iter()
        .find(|b| b.as_str() == s)
}

fn kind_to_cql(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Receipt => "receipt",
        NotificationKind::Mo => "mo",
    }
}

fn kind_from_cql(s: &str) -> Option<NotificationKind> {
    match s {
        "receipt" => Some(NotificationKind::Receipt),
        "mo" => Some(NotificationKind::Mo),
        _ => None,
    }
}

/// A TTL as CQL takes it: whole seconds, rounded up, at least 1 (0 would mean "forever").
fn ttl_secs(ttl: Duration) -> i32 {
    let secs = ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i32::try_from(secs).unwrap_or(MAX_TTL_SECS).clamp(1, MAX_TTL_SECS)
}

fn message_to_row(m: &StoredMessage, ttl: i32) -> StoreResult<MessageValues<'_>> {
    Ok(MessageValues {
        message_id: &m.message_id,
        dest_index: i64::from(m.dest_index),
        system_id: &m.system_id,
        source_ton: i16::from(m.source.ton),
        source_npi: i16::from(m.source.npi),
        source_addr: &m.source.addr,
        dest_ton: i16::from(m.dest.ton),
        dest_npi: i16::from(m.dest.npi),
        dest_addr: &m.dest.addr,
        service_type: &m.service_type,
        registered_delivery: i16::from(m.registered_delivery),
        data_coding: i16::from(m.data_coding),
        esm_class: i16::from(m.esm_class),
        payload: &m.payload,
        state: state_to_cql(m.state)?,
        error_code: i32::from(m.error_code),
        attempts: i64::from(m.attempts),
        submitted_at: CqlTimestamp(m.submitted_at),
        schedule_at: m.schedule_at.map_or(MaybeUnset::Unset, |t| MaybeUnset::Set(CqlTimestamp(t))),
        expire_at: CqlTimestamp(m.expire_at),
        final_at: m.final_at.map_or(MaybeUnset::Unset, |t| MaybeUnset::Set(CqlTimestamp(t))),
        event: &m.event,
        ttl,
    })
}

/// A `messages` row; `Ok(None)` for an expiring remnant (cells of a transition that
/// outlive the insert's by the TTL rounding), recognised by its null `system_id`.
fn message_from_row(row: &CqlRow) -> StoreResult<Option<StoredMessage>> {
    let c = Columns { table: "messages", row };
    if c.value("system_id")?.is_none() {
        return Ok(None);
    }
    Ok(Some(StoredMessage {
        message_id: c.text("message_id")?,
        dest_index: c.u32("dest_index")?,
        system_id: c.text("system_id")?,
        source: StoredAddress {
            ton: c.u8("source_ton")?,
            npi: c.u8("source_npi")?,
            addr: c.text("source_addr")?,
        },
        dest: StoredAddress {
            ton: c.u8("dest_ton")?,
            npi: c.u8("dest_npi")?,
            addr: c.text("dest_addr")?,
        },
        service_type: c.text("service_type")?,
        registered_delivery: c.u8("registered_delivery")?,
        data_coding: c.u8("data_coding")?,
        esm_class: c.u8("esm_class")?,
        payload: c.blob("payload")?,
        state: c.state("state")?,
        error_code: c.u16("error_code")?,
        attempts: c.u32("attempts")?,
        submitted_at: c.timestamp("submitted_at")?,
        schedule_at: c.opt_timestamp("schedule_at")?,
        expire_at: c.timestamp("expire_at")?,
        final_at: c.opt_timestamp("final_at")?,
        event: c.blob("event")?,
    }))
}

fn update_to_row<'a>(
    message_id: &'a str,
    dest_index: u32,
    from: MessageState,
    update: &'a Update,
    ttl: i32,
) -> StoreResult<UpdateValues<'a>> {
    fn set<T, U>(v: Option<T>, f: impl FnOnce(T) -> U) -> MaybeUnset<U> {
        v.map_or(MaybeUnset::Unset, |v| MaybeUnset::Set(f(v)))
    }
    let state = match update.state {
        Some(s) => MaybeUnset::Set(state_to_cql(s)?),
        None => MaybeUnset::Unset,
    };
    Ok(UpdateValues {
        ttl,
        state,
        error_code: set(update.error_code, i32::from),
        attempts: set(update.attempts, i64::from),
        final_at: set(update.final_at, CqlTimestamp),
        payload: set(update.payload.as_ref(), |b| &b[..]),
        data_coding: set(update.data_coding, i16::from),
        registered_delivery: set(update.registered_delivery, i16::from),
        schedule_at: set(update.schedule_at, |t| t.map(CqlTimestamp)),
        expire_at: set(update.expire_at, CqlTimestamp),
        event: set(update.event.as_ref(), |b| &b[..]),
        message_id,
        dest_index: i64::from(dest_index),
        expected_state: state_to_cql(from)?,
    })
}

fn lease_to_row(lease: &SessionLease, ttl: i32) -> SessionValues<'_> {
    SessionValues {
        system_id: &lease.system_id,
        session_id: &lease.session_id,
        edge_id: &lease.edge_id,
        endpoint: &lease.endpoint,
        bind: bind_to_cql(lease.bind),
        bound_at: CqlTimestamp(lease.bound_at),
        ttl,
    }
}

fn lease_from_row(row: &CqlRow) -> StoreResult<SessionLease> {
    let c = Columns { table: "sessions", row };
    let bind = c.text("bind")?;
    Ok(SessionLease {
        system_id: c.text("system_id")?,
        session_id: c.text("session_id")?,
        edge_id: c.text("edge_id")?,
        endpoint: c.text("endpoint")?,
        bind: bind_from_cql(&bind)
            .ok_or_else(|| corrupt("sessions", "bind", format_args!("unknown bind {bind:?}")))?,
        bound_at: c.timestamp("bound_at")?,
    })
}

fn notification_to_row<'a>(
    system_id: &'a str,
    n: &'a PendingNotification,
    ttl: i32,
) -> PendingValues<'a> {
    PendingValues {
        system_id,
        id: &n.id,
        kind: kind_to_cql(n.kind),
        message_id: &n.message_id,
        pdu: &n.pdu,
        created_at: CqlTimestamp(n.created_at),
        ttl,
    }
}

fn notification_from_row(row: &CqlRow) -> StoreResult<PendingNotification> {
    let c = Columns { table: "pending_notifications", row };
    let kind = c.text("kind")?;
    Ok(PendingNotification {
        id: c.text("id")?,
        kind: kind_from_cql(&kind).ok_or_else(|| {
            corrupt("pending_notifications", "kind", format_args!("unknown kind {kind:?}"))
        })?,
        message_id: c.text("message_id")?,
        pdu: c.blob("pdu")?,
        created_at: c.timestamp("created_at")?,
    })
}

/// An `upstream_ids` row; `Ok(None)` when neither part is live.
fn upstream_entry_from_row(row: &CqlRow) -> StoreResult<Option<UpstreamEntry>> {
    let c = Columns { table: "upstream_ids", row };
    let link = match (c.value("message_id")?, c.value("dest_index")?) {
        (None, None) => None,
        (Some(_), Some(_)) => Some(UpstreamLink {
            message_id: c.text("message_id")?,
            dest_index: c.u32("dest_index")?,
        }),
        // Written by one statement, they live and die together.
        (Some(_), None) => return Err(corrupt("upstream_ids", "dest_index", "null")),
        (None, Some(_)) => return Err(corrupt("upstream_ids", "message_id", "null")),
    };
    let parked_receipt = match c.value("parked_receipt")? {
        None => None,
        Some(_) => Some(c.blob("parked_receipt")?),
    };
    Ok((link.is_some() || parked_receipt.is_some())
        .then_some(UpstreamEntry { link, parked_receipt }))
}

/// What a conditional write on `bind_slots` found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SlotLwt {
    Applied,
    /// Not applied: the slot is held by this holder.
    HeldBy(String),
    /// Not applied, and no live holder (the lease expired in between): try again.
    Gone,
}

fn slot_lwt(row: &CqlRow) -> StoreResult<SlotLwt> {
    if applied(row)? {
        return Ok(SlotLwt::Applied);
    }
    match row.get("holder") {
        None | Some(None) => Ok(SlotLwt::Gone),
        Some(Some(CqlValue::Text(h) | CqlValue::Ascii(h))) => Ok(SlotLwt::HeldBy(h.clone())),
        Some(Some(other)) => {
            Err(corrupt("bind_slots", "holder", format_args!("unexpected value {other:?}")))
        }
    }
}

/// Rounds of insert-then-refresh a claim may take while leases change under it.
const SLOT_CLAIM_ROUNDS: usize = 3;

/// `[applied]` of an LWT result row.
fn applied(row: &CqlRow) -> StoreResult<bool> {
    match row.get("[applied]") {
        Some(Some(CqlValue::Boolean(b))) => Ok(*b),
        other => Err(StoreError::Corrupt(format!("LWT result: [applied] is {other:?}"))),
    }
}

/// The outcome of a conditional write on `messages`, from its result row: applied, or
/// the current row when the server returned all of it; `None` when it returned only some
/// columns (Cassandra returns just the tested ones for `IF state = ?`) and the row must
/// be read.
fn message_lwt_outcome(row: &CqlRow) -> StoreResult<Option<Applied>> {
    if applied(row)? {
        return Ok(Some(Applied::Yes));
    }
    if MESSAGE_COLUMNS.iter().all(|c| row.has(c)) {
        return Ok(Some(Applied::No(message_from_row(row)?)));
    }
    Ok(None)
}

/// The TTL a transition writes its cells with: what the row has left, from
/// `select_message_ttl`. `None`: an expiring remnant, no row to update.
fn transition_ttl(row: &CqlRow) -> StoreResult<Option<i32>> {
    match (row.get("system_id"), row.get("remaining_ttl")) {
        (Some(None), _) => Ok(None),
        (_, Some(Some(CqlValue::Int(left)))) => Ok(Some((*left).clamp(1, MAX_TTL_SECS))),
        // No TTL on the row (written by hand or by an older version): keep none.
        (_, Some(None)) => Ok(Some(0)),
        (_, other) => Err(corrupt("messages", "ttl(system_id)", format_args!("{other:?}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Driver errors.

/// A driver error as the store reports it: timeouts (client-side, or the coordinator's
/// read/write timeout) are `Timeout`; for a conditional write the outcome is then
/// unknown and the caller re-reads. Everything else is `Unavailable`.
fn execution_error(e: ExecutionError) -> StoreError {
    match e {
        ExecutionError::RequestTimeout(_) => StoreError::Timeout,
        ExecutionError::LastAttemptError(e) => attempt_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn attempt_error(e: RequestAttemptError) -> StoreError {
    match e {
        RequestAttemptError::DbError(db, reason) => db_error(db, &reason),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn db_error(db: DbError, reason: &str) -> StoreError {
    match db {
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => StoreError::Timeout,
        other => StoreError::Unavailable(format!("{other}: {reason}")),
    }
}

fn request_error(e: RequestError) -> StoreError {
    match e {
        RequestError::RequestTimeout(_) => StoreError::Timeout,
        RequestError::LastAttemptError(e) => attempt_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn pager_error(e: PagerExecutionError) -> StoreError {
    match e {
        PagerExecutionError::NextPageError(e) => next_page_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn next_page_error(e: NextPageError) -> StoreError {
    match e {
        NextPageError::RequestFailure(e) => request_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn next_row_error(e: NextRowError) -> StoreError {
    match e {
        NextRowError::NextPageError(e) => next_page_error(e),
        NextRowError::RowDeserializationError(e) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn rows_error(e: IntoRowsResultError) -> StoreError {
    StoreError::Unavailable(format!("unexpected result: {e}"))
}

// ---------------------------------------------------------------------------------------
// The store.

/// Rows per page of every paged read.
const PAGE_SIZE: i32 = 500;

#[derive(Debug)]
struct Prepared {
    insert_message: PreparedStatement,
    select_message: PreparedStatement,
    select_message_ttl: PreparedStatement,
    /// At LOCAL_SERIAL: the row as the last Paxos round left it.
    select_message_row: PreparedStatement,
    update_message: PreparedStatement,
    upsert_session: PreparedStatement,
    delete_session: PreparedStatement,
    select_sessions: PreparedStatement,
    upsert_pending: PreparedStatement,
    select_pending: PreparedStatement,
    select_pending_after: PreparedStatement,
    delete_pending: PreparedStatement,
    upsert_upstream_link: PreparedStatement,
    park_upstream_receipt: PreparedStatement,
    select_upstream: PreparedStatement,
    insert_slot: PreparedStatement,
    refresh_slot: PreparedStatement,
    delete_slot: PreparedStatement,
}

#[derive(Debug)]
pub struct ScyllaStore {
    session: Arc<Session>,
    statements: Prepared,
    config: ScyllaConfig,
}

/// A session with the store's routing and defaults.
pub async fn connect_session(config: &ScyllaConfig) -> Result<Session, ScyllaError> {
    config.validate()?;
    let policy = DefaultPolicy::builder()
        .prefer_datacenter(config.local_dc.clone())
        .token_aware(true)
        .build();
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(config.request_timeout))
        .load_balancing_policy(policy)
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.uris)
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(user, password);
    }
    if let Some(tls) = &config.tls {
        builder = builder.tls_context(Some(tls_connector(tls)?));
    }
    builder.build().await.map_err(|e| ScyllaError::Connect(Box::new(e)))
}

/// OpenSSL (the driver's TLS backend that shares librdkafka's library; its rustls one
/// would bring a second crypto provider) trusting `ca` only, with the client
/// certificate when one is configured.
fn tls_connector(tls: &ClientTls) -> Result<SslConnectorBuilder, ScyllaError> {
    let at = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| ScyllaError::Tls { path, source }
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(at(&tls.ca))?;
    let pem = std::fs::read(&tls.ca).map_err(|e| ScyllaError::Config {
        key: "tls.ca",
        reason: format!("{}: {e}", tls.ca.display()),
    })?;
    let certs = X509::stack_from_pem(&pem).map_err(at(&tls.ca))?;
    if certs.is_empty() {
        let reason = format!("{} holds no PEM certificate", tls.ca.display());
        return Err(ScyllaError::Config { key: "tls.ca", reason });
    }
    let mut store = X509StoreBuilder::new().map_err(at(&tls.ca))?;
    for cert in certs {
        store.add_cert(cert).map_err(at(&tls.ca))?;
    }
    builder.set_cert_store(store.build());
    builder.set_verify(SslVerifyMode::PEER);
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        builder.set_certificate_chain_file(cert).map_err(at(cert))?;
        builder.set_private_key_file(key, SslFiletype::PEM).map_err(at(key))?;
        builder.check_private_key().map_err(at(key))?;
    }
    Ok(builder)
}

/// Applies the schema (for `smsc migrate`): connects, migrates, disconnects.
pub async fn migrate(config: &ScyllaConfig) -> Result<Vec<u32>, ScyllaError> {
    let session = connect_session(config).await?;
    ScyllaStore::migrate(&session, config).await
}

async fn prepare(
    session: &Session,
    cql: &str,
    config: &ScyllaConfig,
    idempotent: bool,
) -> Result<PreparedStatement, ScyllaError> {
    let mut statement = session
        .prepare(cql)
        .await
        .map_err(|e| ScyllaError::Prepare { statement: cql.to_owned(), source: Box::new(e) })?;
    // Set on the statement, not only the session profile, so that a session passed to
    // `with_session` cannot weaken them.
    statement.set_consistency(Consistency::LocalQuorum);
    statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    statement.set_request_timeout(Some(config.request_timeout));
    statement.set_page_size(PAGE_SIZE);
    // Lets the driver retry reads and plain upserts; never a conditional write.
    statement.set_is_idempotent(idempotent);
    Ok(statement)
}

impl ScyllaStore {
    /// Connects, applies the schema and prepares every statement.
    pub async fn connect(config: ScyllaConfig) -> Result<Self, ScyllaError> {
        let session = connect_session(&config).await?;
        Self::migrate(&session, &config).await?;
        Self::with_session(Arc::new(session), config).await
    }

    /// Prepares every statement on an existing session; the schema must exist.
    pub async fn with_session(
        session: Arc<Session>,
        config: ScyllaConfig,
    ) -> Result<Self, ScyllaError> {
        config.validate()?;
        let cql = Cql::new(&config.keyspace);
        let s = &*session;
        let c = &config;
        let mut select_message_row = prepare(s, &cql.select_message_row, c, true).await?;
        select_message_row.set_consistency(Consistency::LocalSerial);
        let statements = Prepared {
            insert_message: prepare(s, &cql.insert_message, c, false).await?,
            select_message: prepare(s, &cql.select_message, c, true).await?,
            select_message_ttl: prepare(s, &cql.select_message_ttl, c, true).await?,
            select_message_row,
            update_message: prepare(s, &cql.update_message, c, false).await?,
            upsert_session: prepare(s, &cql.upsert_session, c, true).await?,
            delete_session: prepare(s, &cql.delete_session, c, true).await?,
            select_sessions: prepare(s, &cql.select_sessions, c, true).await?,
            upsert_pending: prepare(s, &cql.upsert_pending, c, true).await?,
            select_pending: prepare(s, &cql.select_pending, c, true).await?,
            select_pending_after: prepare(s, &cql.select_pending_after, c, true).await?,
            delete_pending: prepare(s, &cql.delete_pending, c, false).await?,
            upsert_upstream_link: prepare(s, &cql.upsert_upstream_link, c, true).await?,
            park_upstream_receipt: prepare(s, &cql.park_upstream_receipt, c, true).await?,
            select_upstream: prepare(s, &cql.select_upstream, c, true).await?,
            insert_slot: prepare(s, &cql.insert_slot, c, false).await?,
            refresh_slot: prepare(s, &cql.refresh_slot, c, false).await?,
            delete_slot: prepare(s, &cql.delete_slot, c, false).await?,
        };
        Ok(Self { session, statements, config })
    }

    /// Applies the migrations not yet recorded in `schema_migrations`, in version order,
    /// and records them. Returns the versions applied now.
    pub async fn migrate(
        session: &Session,
        config: &ScyllaConfig,
    ) -> Result<Vec<u32>, ScyllaError> {
        config.validate()?;
        let cql = Cql::new(&config.keyspace);
        let failed = |m: &Migration| {
            let (version, name) = (m.version, m.name);
            move |source| ScyllaError::Migrate { version, name, source }
        };
        let run_file = |m: &'static Migration| async move {
            for statement in m.statements(config) {
                let mut statement = Statement::new(statement);
                statement.set_request_timeout(Some(config.request_timeout.max(DDL_TIMEOUT)));
                session
                    .query_unpaged(statement, ())
                    .await
                    .map_err(execution_error)
                    .map_err(failed(m))?;
            }
            Ok::<_, ScyllaError>(())
        };

        let bootstrap = &MIGRATIONS[0];
        run_file(bootstrap).await?;
        let select = prepare(session, &cql.select_migrations, config, true).await?;
        let record = prepare(session, &cql.insert_migration, config, false).await?;
        let mut applied = BTreeSet::new();
        let rows = select_all(session, &select, (MIGRATION_COMPONENT,))
            .await
            .map_err(failed(bootstrap))?;
        for row in rows {
            match row.get("version") {
                Some(Some(CqlValue::Int(v))) if *v >= 0 => applied.insert(v.unsigned_abs()),
                other => {
                    let e = corrupt("schema_migrations", "version", format_args!("{other:?}"));
                    return Err(failed(bootstrap)(e));
                }
            };
        }

        let mut done = Vec::new();
        for m in pending_migrations(&applied) {
            if m.version != bootstrap.version {
                run_file(m).await?;
            }
            if !applied.contains(&m.version) {
                let version = i32::try_from(m.version).unwrap_or(i32::MAX);
                let now = CqlTimestamp(super::Clock::now_ms(&super::SystemClock));
                let values = (MIGRATION_COMPONENT, version, m.name, now);
                session
                    .execute_unpaged(&record, values)
                    .await
                    .map_err(execution_error)
                    .map_err(failed(m))?;
                done.push(m.version);
            }
        }
        Ok(done)
    }

    pub fn config(&self) -> &ScyllaConfig {
        &self.config
    }

    /// The one result row of an LWT.
    async fn lwt(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<CqlRow> {
        let result =
            self.session.execute_unpaged(statement, values).await.map_err(execution_error)?;
        first_row(result)?.ok_or_else(|| StoreError::Corrupt("LWT result: no row".to_owned()))
    }

    /// The row as of the last Paxos round (a linearizable read).
    async fn current_row(
        &self,
        message_id: &str,
        dest_index: i64,
    ) -> StoreResult<Option<StoredMessage>> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_message_row, (message_id, dest_index))
            .await
            .map_err(execution_error)?;
        match first_row(result)? {
            Some(row) => message_from_row(&row),
            None => Ok(None),
        }
    }

    async fn message_outcome(
        &self,
        row: &CqlRow,
        message_id: &str,
        dest_index: u32,
    ) -> StoreResult<Applied> {
        match message_lwt_outcome(row)? {
            Some(outcome) => Ok(outcome),
            None => Ok(Applied::No(self.current_row(message_id, i64::from(dest_index)).await?)),
        }
    }

    async fn transition_inner(
        &self,
        message_id: &str,
        dest_index: u32,
        from: MessageState,
        update: &Update,
    ) -> StoreResult<Applied> {
        let dest = i64::from(dest_index);
        let result = self
            .session
            .execute_unpaged(&self.statements.select_message_ttl, (message_id, dest))
            .await
            .map_err(execution_error)?;
        let Some(row) = first_row(result)? else { return Ok(Applied::No(None)) };
        let Some(ttl) = transition_ttl(&row)? else { return Ok(Applied::No(None)) };
        let values = update_to_row(message_id, dest_index, from, update, ttl)?;
        let row = self.lwt(&self.statements.update_message, values).await?;
        self.message_outcome(&row, message_id, dest_index).await
    }
}

/// Timeout for schema changes, which wait for schema agreement across the cluster.
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

fn first_row(result: QueryResult) -> StoreResult<Option<CqlRow>> {
    let rows = result.into_rows_result().map_err(rows_error)?;
    let mut rows = rows.rows::<CqlRow>().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    rows.next().transpose().map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Every row of a paged read, mapped as they arrive; at most `limit` of them.
async fn select_mapped<T>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    limit: usize,
    mut map: impl FnMut(&CqlRow) -> StoreResult<Option<T>>,
) -> StoreResult<Vec<T>> {
    let pager = session.execute_iter(statement.clone(), values).await.map_err(pager_error)?;
    let mut rows = pager.rows_stream::<CqlRow>().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(row) = rows.next().await
    {
        if let Some(item) = map(&row.map_err(next_row_error)?)? {
            out.push(item);
        }
    }
    Ok(out)
}

async fn select_all(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> StoreResult<Vec<CqlRow>> {
    select_mapped(session, statement, values, usize::MAX, |row| Ok(Some(row.clone()))).await
}

impl Store for ScyllaStore {
    fn insert_message(&self, message: StoredMessage) -> BoxFuture<'_, StoreResult<Applied>> {
        Box::pin(async move {
            let values = message_to_row(&message, ttl_secs(self.config.message_ttl))?;
            let row = self.lwt(&self.statements.insert_message, values).await?;
            self.message_outcome(&row, &message.message_id, message.dest_index).await
        })
    }

    fn get_message(&self, message_id: &str) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>> {
        let message_id = message_id.to_owned();
        Box::pin(async move {
            let statement = &self.statements.select_message;
            select_mapped(&self.session, statement, (&message_id,), usize::MAX, message_from_row)
                .await
        })
    }

    fn transition(
        &self,
        message_id: &str,
        dest_index: u32,
        from: MessageState,
        update: Update,
    ) -> BoxFuture<'_, StoreResult<Applied>> {
        let message_id = message_id.to_owned();
        Box::pin(async move { self.transition_inner(&message_id, dest_index, from, &update).await })
    }

    fn put_session(&self, lease: SessionLease, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let values = lease_to_row(&lease, ttl_secs(ttl));
            self.session
                .execute_unpaged(&self.statements.upsert_session, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    fn remove_session(&self, system_id: &str, session_id: &str) -> BoxFuture<'_, StoreResult<()>> {
        let (system_id, session_id) = (system_id.to_owned(), session_id.to_owned());
        Box::pin(async move {
            self.session
                .execute_unpaged(&self.statements.delete_session, (&system_id, &session_id))
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    /// Ordered by session_id.
    fn sessions(&self, system_id: &str) -> BoxFuture<'_, StoreResult<Vec<SessionLease>>> {
        let system_id = system_id.to_owned();
        Box::pin(async move {
            let statement = &self.statements.select_sessions;
            select_mapped(&self.session, statement, (&system_id,), usize::MAX, |row| {
                lease_from_row(row).map(Some)
            })
            .await
        })
    }

    /// An upsert, like the embedded store: pushing an id again replaces it.
    fn push_pending(
        &self,
        system_id: &str,
        notification: PendingNotification,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let system_id = system_id.to_owned();
        Box::pin(async move {
            let ttl = ttl_secs(self.config.message_ttl);
            let values = notification_to_row(&system_id, &notification, ttl);
            self.session
                .execute_unpaged(&self.statements.upsert_pending, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    /// Reads one row past `limit` to tell whether the page ends the list.
    fn pending(
        &self,
        system_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        let system_id = system_id.to_owned();
        let after = after.map(str::to_owned);
        Box::pin(async move {
            if limit == 0 {
                return Ok(Page { items: Vec::new(), next: after });
            }
            let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
            let wanted = usize::try_from(fetch).unwrap_or(usize::MAX);
            let map = |row: &CqlRow| notification_from_row(row).map(Some);
            let st = &self.statements;
            let mut items = match &after {
                None => {
                    let values = (&system_id, fetch);
                    select_mapped(&self.session, &st.select_pending, values, wanted, map).await?
                }
                Some(after) => {
                    let values = (&system_id, after, fetch);
                    select_mapped(&self.session, &st.select_pending_after, values, wanted, map)
                        .await?
                }
            };
            let more = items.len() > limit;
            items.truncate(limit);
            let next = if more { items.last().map(|n| n.id.clone()) } else { None };
            Ok(Page { items, next })
        })
    }

    fn delete_pending(&self, system_id: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (system_id, id) = (system_id.to_owned(), id.to_owned());
        Box::pin(async move {
            let row = self.lwt(&self.statements.delete_pending, (&system_id, &id)).await?;
            applied(&row)
        })
    }

    fn put_upstream_link(
        &self,
        connector: &str,
        upstream_id: &str,
        link: UpstreamLink,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (connector, upstream_id) = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            let values = UpstreamLinkValues {
                connector: &connector,
                upstream_id: &upstream_id,
                message_id: &link.message_id,
                dest_index: i64::from(link.dest_index),
                ttl: ttl_secs(ttl),
            };
            self.session
                .execute_unpaged(&self.statements.upsert_upstream_link, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    fn park_upstream_receipt(
        &self,
        connector: &str,
        upstream_id: &str,
        deliver_sm: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (connector, upstream_id) = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            let values = ParkValues {
                connector: &connector,
                upstream_id: &upstream_id,
                parked_receipt: &deliver_sm,
                ttl: ttl_secs(ttl),
            };
            self.session
                .execute_unpaged(&self.statements.park_upstream_receipt, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    fn upstream_entry(
        &self,
        connector: &str,
        upstream_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<UpstreamEntry>>> {
        let (connector, upstream_id) = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            let result = self
                .session
                .execute_unpaged(&self.statements.select_upstream, (&connector, &upstream_id))
                .await
                .map_err(execution_error)?;
            match first_row(result)? {
                Some(row) => upstream_entry_from_row(&row),
                None => Ok(None),
            }
        })
    }

    fn claim_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<SlotClaim>> {
        let (pool, holder) = (pool.to_owned(), holder.to_owned());
        Box::pin(async move {
            let slot = i32::try_from(slot)
                .map_err(|_| corrupt("bind_slots", "slot", format_args!("{slot} is not an int")))?;
            let ttl = ttl_secs(ttl);
            for _ in 0..SLOT_CLAIM_ROUNDS {
                let values = SlotValues { pool: &pool, slot, holder: &holder, ttl };
                match slot_lwt(&self.lwt(&self.statements.insert_slot, values).await?)? {
                    SlotLwt::Applied => return Ok(SlotClaim::Held),
                    SlotLwt::Gone => continue,
                    SlotLwt::HeldBy(h) if h != holder => return Ok(SlotClaim::Busy { holder: h }),
                    SlotLwt::HeldBy(_) => {}
                }
                let values = RefreshSlotValues {
                    ttl,
                    holder: &holder,
                    pool: &pool,
                    slot,
                    expected_holder: &holder,
                };
                match slot_lwt(&self.lwt(&self.statements.refresh_slot, values).await?)? {
                    SlotLwt::Applied => return Ok(SlotClaim::Held),
                    SlotLwt::HeldBy(h) if h != holder => return Ok(SlotClaim::Busy { holder: h }),
                    SlotLwt::HeldBy(_) | SlotLwt::Gone => continue,
                }
            }
            Err(StoreError::Unavailable(format!(
                "bind_slots: the lease of {pool}/{slot} kept changing"
            )))
        })
    }

    fn release_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (pool, holder) = (pool.to_owned(), holder.to_owned());
        Box::pin(async move {
            let Ok(slot) = i32::try_from(slot) else { return Ok(false) };
            let row = self.lwt(&self.statements.delete_slot, (&pool, slot, &holder)).await?;
            applied(&row)
        })
    }
}

#[cfg(test)]
mod tests {
    use scylla::deserialize::FrameSlice;
    use scylla::errors::WriteType;
    use scylla::frame::response::result::{ColumnType, NativeType, TableSpec};
    use scylla::serialize::row::RowSerializationContext;
    use scylla::serialize::writers::RowWriter;

    use super::*;
    use crate::contract::{sample_lease, sample_message};

    const KS: &str = "smsc_test";

    fn config() -> ScyllaConfig {
        ScyllaConfig {
            keyspace: KS.to_owned(),
            local_dc: "dc-east".to_owned(),
            ..ScyllaConfig::default()
        }
    }

    #[test]
    fn from_config_reads_the_password_file_and_debug_hides_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret \n").expect("write");
        let yaml = format!(
            "{{ kind: scylla, uris: ['10.0.0.1:9042'], keyspace: ks, local_dc: eu, \
               auth: {{ username: smsc, password_file: {} }}, tls: {{ ca: /s/ca.crt }} }}",
            file.display()
        );
        let store: StoreConfig = serde_yaml::from_str(&yaml).expect("store section");
        let c = ScyllaConfig::from_config(&store).expect("config");
        assert_eq!(c.username.as_deref(), Some("smsc"));
        assert_eq!(c.password.as_deref(), Some("s3cret "), "only the final newline goes");
        assert_eq!(c.tls.as_ref().map(|t| t.ca.as_path()), Some(std::path::Path::new("/s/ca.crt")));
        assert_eq!(
            (c.uris.as_slice(), c.keyspace.as_str(), c.local_dc.as_str()),
            (&["10.0.0.1:9042".to_owned()][..], "ks", "eu")
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret") && debug.contains("<redacted>"), "{debug}");

        std::fs::remove_file(&file).expect("remove");
        let e = ScyllaConfig::from_config(&store).expect_err("missing password file");
        assert!(matches!(e, ScyllaError::Config { key: "auth.password_file", .. }), "{e:?}");
        let none = ScyllaConfig::from_config(&StoreConfig::default()).expect("config");
        assert_eq!((none.username, none.password, none.tls), (None, None, None));
    }

    #[test]
    fn a_bad_tls_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let not_pem = dir.path().join("garbage.pem");
        std::fs::write(&not_pem, "not a certificate").expect("write");
        let ca = dir.path().join("ca.crt");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["ca".to_owned()]).expect("params");
        std::fs::write(&ca, cert.self_signed(&key).expect("cert").pem()).expect("write");
        let tls = |ca: &std::path::Path, cert: Option<&std::path::Path>| ClientTls {
            ca: ca.to_owned(),
            cert: cert.map(ToOwned::to_owned),
            key: cert.map(ToOwned::to_owned),
        };
        for bad_ca in [not_pem.clone(), dir.path().join("missing.crt")] {
            let e = tls_connector(&tls(&bad_ca, None)).err().expect("a bad CA is an error");
            assert!(matches!(e, ScyllaError::Config { key: "tls.ca", .. }), "{e:?}");
        }
        assert!(tls_connector(&tls(&ca, None)).is_ok(), "a CA alone is enough");
        let e = tls_connector(&tls(&ca, Some(&not_pem))).err().expect("a bad client certificate");
        assert!(
            matches!(&e, ScyllaError::Tls { path, .. } if path.ends_with("garbage.pem")),
            "{e:?}"
        );
    }

    /// Every statement of every migration file, rendered for `config()`.
    fn ddl() -> Vec<String> {
        MIGRATIONS.iter().flat_map(|m| m.statements(&config())).collect()
    }

    /// (name, CQL type) of each column of `table`, from its CREATE TABLE.
    fn schema(table: &str) -> Vec<(String, String)> {
        let head = format!("CREATE TABLE IF NOT EXISTS {KS}.{table} (");
        let ddl = ddl().into_iter().find(|s| s.starts_with(&head)).expect("table in the DDL");
        let body = &ddl[head.len()..ddl.find("PRIMARY KEY").expect("primary key")];
        body.split(',')
            .filter_map(|col| {
                let mut words = col.split_whitespace();
                Some((words.next()?.to_owned(), words.next()?.to_owned()))
            })
            .collect()
    }

    fn native(cql_type: &str) -> ColumnType<'static> {
        ColumnType::Native(match cql_type {
            "text" => NativeType::Text,
            "bigint" => NativeType::BigInt,
            "int" => NativeType::Int,
            "smallint" => NativeType::SmallInt,
            "tinyint" => NativeType::TinyInt,
            "blob" => NativeType::Blob,
            "timestamp" => NativeType::Timestamp,
            "boolean" => NativeType::Boolean,
            other => panic!("type {other} not in the test's table"),
        })
    }

    fn spec(table: &str, name: &str, cql_type: &str) -> ColumnSpec<'static> {
        ColumnSpec::owned(
            name.to_owned(),
            native(cql_type),
            TableSpec::owned(KS.to_owned(), table.to_owned()),
        )
    }

    /// The bind markers of an INSERT as the server would describe them: its column list
    /// typed from the schema, then `[ttl]`.
    fn insert_specs(table: &str, statement: &str) -> Vec<ColumnSpec<'static>> {
        let types = schema(table);
        let cols = &statement[statement.find('(').expect("(") + 1..statement.find(')').expect(")")];
        let mut specs: Vec<_> = cols
            .split(',')
            .map(|c| c.trim())
            .map(|c| {
                let (_, t) =
                    types.iter().find(|(n, _)| n == c).expect("inserted column in the schema");
                spec(table, c, t)
            })
            .collect();
        assert!(statement.ends_with("USING TTL ?"), "{statement}");
        specs.push(spec(table, "[ttl]", "int"));
        specs
    }

    /// The raw cells a row serializes to: `None` null, `Some(None)` unset.
    fn serialize(
        values: &impl SerializeRow,
        specs: &[ColumnSpec<'_>],
    ) -> Vec<Option<Option<Vec<u8>>>> {
        let mut buf = Vec::new();
        let ctx = RowSerializationContext::from_specs(specs);
        values
            .serialize(&ctx, &mut RowWriter::new(&mut buf))
            .expect("values match the markers by name and type");
        let mut cells = Vec::new();
        let mut rest = &buf[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = i32::from_be_bytes(*len);
            rest = tail;
            cells.push(match len {
                -1 => None,
                -2 => Some(None),
                n => {
                    let (cell, tail) = rest.split_at(usize::try_from(n).expect("length"));
                    rest = tail;
                    Some(Some(cell.to_vec()))
                }
            });
        }
        assert_eq!(cells.len(), specs.len(), "one cell per marker");
        cells
    }

    /// Serialized bind values read back as the result row a SELECT of those columns
    /// returns (an unset cell reads as null), without the `[ttl]` marker.
    fn as_result_row(values: &impl SerializeRow, specs: &[ColumnSpec<'_>]) -> CqlRow {
        let cells = serialize(values, specs);
        let columns = specs
            .iter()
            .zip(cells)
            .filter(|(s, _)| s.name() != "[ttl]")
            .map(|(s, cell)| {
                let bytes = cell.flatten();
                let slice = bytes.as_deref().map(FrameSlice::new_borrowed);
                let value = <Option<CqlValue>>::deserialize(s.typ(), slice).expect("deserialize");
                (s.name().to_owned(), value)
            })
            .collect();
        CqlRow { columns }
    }

    fn full_message() -> StoredMessage {
        StoredMessage {
            dest_index: 254,
            source: StoredAddress { ton: 255, npi: 18, addr: "SHOP".to_owned() },
            dest: StoredAddress { ton: 1, npi: 1, addr: "447946000001".to_owned() },
            service_type: "CMT".to_owned(),
            registered_delivery: 0x11,
            data_coding: 0xf0,
            esm_class: 0x40,
            payload: Bytes::from_static(&[0, 1, 0xff, 0x80]),
            state: MessageState::UNDELIVERABLE,
            error_code: u16::MAX,
            attempts: u32::MAX,
            submitted_at: -1,
            schedule_at: Some(1_700_000_000_123),
            final_at: Some(1_700_000_001_000),
            ..sample_message("m-1", 0, "acct")
        }
    }

    fn message_row(m: &StoredMessage) -> CqlRow {
        let cql = Cql::new(KS);
        let values = message_to_row(m, 60).expect("to_row");
        as_result_row(&values, &insert_specs("messages", &cql.insert_message))
    }

    fn with(row: &CqlRow, column: &str, value: Option<CqlValue>) -> CqlRow {
        let mut row = row.clone();
        let slot = row.columns.iter_mut().find(|(n, _)| n == column).expect("column");
        slot.1 = value;
        row
    }

    fn without(row: &CqlRow, column: &str) -> CqlRow {
        CqlRow { columns: row.columns.iter().filter(|(n, _)| n != column).cloned().collect() }
    }

    fn corrupt_column(result: StoreResult<impl std::fmt::Debug>) -> String {
        match result {
            Err(StoreError::Corrupt(what)) => what,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    // --- CQL text -------------------------------------------------------------------

    #[test]
    fn insert_is_conditional_with_a_ttl_and_binds_every_column() {
        let insert = Cql::new(KS).insert_message;
        assert!(insert.starts_with(&format!("INSERT INTO {KS}.messages (")), "{insert}");
        assert!(insert.ends_with(") IF NOT EXISTS USING TTL ?"), "{insert}");
        let schema: Vec<String> = schema("messages").into_iter().map(|(n, _)| n).collect();
        assert_eq!(schema, MESSAGE_COLUMNS, "the insert writes every column of the table");
        assert_eq!(
            insert.matches('?').count(),
            MESSAGE_COLUMNS.len() + 1,
            "a marker each, and the TTL"
        );
    }

    #[test]
    fn every_update_is_conditional_on_the_state_and_keeps_the_ttl() {
        let cql = Cql::new(KS);
        let updates: Vec<_> = cql
            .data_path()
            .into_iter()
            .filter(|(_, s)| s.starts_with(&format!("UPDATE {KS}.messages ")))
            .collect();
        assert_eq!(updates.len(), 1);
        for (name, update) in updates {
            assert!(update.ends_with(" IF state = :expected_state"), "{name}: {update}");
            assert!(update.contains(" USING TTL :ttl SET "), "{name}: {update}");
            assert!(
                update.contains(" WHERE message_id = :message_id AND dest_index = :dest_index ")
            );
        }
        // Only the insert writes messages otherwise, conditionally.
        for (name, s) in cql.data_path() {
            if s.contains(".messages") && !s.starts_with("SELECT") {
                assert!(s.contains(" IF "), "{name} writes messages unconditionally: {s}");
            }
        }
    }

    #[test]
    fn delete_pending_is_if_exists_and_no_statement_filters() {
        let cql = Cql::new(KS);
        assert!(cql.delete_pending.ends_with("WHERE system_id = ? AND id = ? IF EXISTS"));
        let all = cql.data_path().into_iter().map(|(_, s)| s.to_owned()).chain(ddl());
        for s in all.chain([cql.select_migrations.clone(), cql.insert_migration.clone()]) {
            assert!(!s.to_ascii_uppercase().contains("ALLOW FILTERING"), "{s}");
        }
    }

    /// No statement scans the cluster: each restricts its table's partition key.
    #[test]
    fn every_statement_names_its_partition() {
        let cql = Cql::new(KS);
        for (name, s) in cql.data_path() {
            let key = if s.contains(".messages") {
                "message_id"
            } else if s.contains(".upstream_ids") {
                "connector"
            } else if s.contains(".bind_slots") {
                "pool"
            } else {
                "system_id"
            };
            if s.starts_with("INSERT") {
                assert!(s.contains(&format!("({key}, ")), "{name}: {s}");
            } else {
                assert!(s.contains(&format!("WHERE {key} = ")), "{name}: {s}");
            }
            if s.contains(".upstream_ids") && !s.starts_with("INSERT") {
                assert!(s.contains("connector = ? AND upstream_id = ?"), "{name}: {s}");
            }
            assert!(s.contains(&format!(" {KS}.")), "{name} is qualified with the keyspace: {s}");
        }
    }

    #[test]
    fn pending_pages_by_clustering_order_with_a_bound_limit() {
        let cql = Cql::new(KS);
        assert!(cql.select_pending.ends_with("WHERE system_id = ? LIMIT ?"));
        assert!(cql.select_pending_after.ends_with("WHERE system_id = ? AND id > ? LIMIT ?"));
        let ddl =
            ddl().into_iter().find(|s| s.contains(".pending_notifications (")).expect("table");
        assert!(
            ddl.contains("PRIMARY KEY ((system_id), id) ) WITH CLUSTERING ORDER BY (id ASC)"),
            "{ddl}"
        );
    }

    #[test]
    fn tables_have_the_designed_keys() {
        let ddl = ddl().join("\n");
        assert!(ddl.contains("PRIMARY KEY ((message_id), dest_index)"));
        assert!(ddl.contains("PRIMARY KEY ((system_id), session_id)"));
        assert!(ddl.contains("PRIMARY KEY ((component), version)"));
        assert!(ddl.contains("PRIMARY KEY ((connector, upstream_id))"));
        assert!(ddl.contains("PRIMARY KEY ((pool), slot)"));
        for s in [Cql::new(KS).upsert_session, Cql::new(KS).upsert_pending] {
            assert!(s.ends_with(") USING TTL ?"), "{s}");
        }
    }

    // --- migrations -----------------------------------------------------------------

    #[test]
    fn migrations_are_every_file_in_version_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("cql dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let names: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.cql", m.name)).collect();
        assert_eq!(names, files, "every file embedded, in file-name order");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, u32::try_from(i + 1).expect("small"), "versions are 1, 2, …");
            assert!(m.name.starts_with(&format!("{:03}_", m.version)), "{} numbered", m.name);
        }
    }

    #[test]
    fn every_ddl_is_if_not_exists_and_fully_substituted() {
        let statements = ddl();
        assert!(statements.len() >= 5);
        for s in &statements {
            let create = s.starts_with("CREATE KEYSPACE IF NOT EXISTS ")
                || s.starts_with("CREATE TABLE IF NOT EXISTS ");
            assert!(create, "not an idempotent CREATE: {s}");
            assert!(!s.contains("${"), "unsubstituted: {s}");
            assert!(!s.contains("--"), "comment left in: {s}");
        }
        let keyspace = &statements[0];
        assert_eq!(
            keyspace,
            "CREATE KEYSPACE IF NOT EXISTS smsc_test WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'dc-east': 3} AND durable_writes = true"
        );
        let rf5 = ScyllaConfig { replication_factor: 5, ..config() };
        assert!(MIGRATIONS[0].statements(&rf5)[0].contains("'dc-east': 5}"));
    }

    #[test]
    fn pending_migrations_skip_recorded_versions_but_not_the_bootstrap() {
        let plan = |applied: &[u32]| -> Vec<u32> {
            let applied: BTreeSet<u32> = applied.iter().copied().collect();
            pending_migrations(&applied).map(|m| m.version).collect()
        };
        assert_eq!(plan(&[]), [1, 2, 3]);
        assert_eq!(plan(&[1]), [1, 2, 3]);
        assert_eq!(plan(&[1, 2]), [1, 3]);
        assert_eq!(plan(&[1, 2, 3]), [1]);
        assert_eq!(plan(&[2]), [1, 3], "an out-of-order record still skips its version");
    }

    // --- config ---------------------------------------------------------------------

    #[test]
    fn config_is_checked_before_it_reaches_cql() {
        assert!(ScyllaConfig::default().validate().is_ok());
        assert_eq!(ScyllaConfig::default().keyspace, "smsc");
        let key = |c: ScyllaConfig| match c.validate() {
            Err(ScyllaError::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        };
        let base = ScyllaConfig::default;
        assert_eq!(key(ScyllaConfig { uris: vec![], ..base() }), "uris");
        assert_eq!(
            key(ScyllaConfig { keyspace: "smsc; DROP KEYSPACE x".to_owned(), ..base() }),
            "keyspace"
        );
        assert_eq!(key(ScyllaConfig { keyspace: "Smsc".to_owned(), ..base() }), "keyspace");
        assert_eq!(key(ScyllaConfig { keyspace: "a".repeat(49), ..base() }), "keyspace");
        assert_eq!(key(ScyllaConfig { local_dc: "dc1': 1, 'x".to_owned(), ..base() }), "local_dc");
        assert_eq!(key(ScyllaConfig { replication_factor: 0, ..base() }), "replication_factor");
        assert_eq!(
            key(ScyllaConfig { message_ttl: Duration::from_millis(999), ..base() }),
            "message_ttl"
        );
        assert_eq!(
            key(ScyllaConfig { request_timeout: Duration::ZERO, ..base() }),
            "request_timeout"
        );
        assert_eq!(key(ScyllaConfig { username: Some("u".to_owned()), ..base() }), "password");
        let secret = ScyllaConfig {
            username: Some("u".to_owned()),
            password: Some("hunter2".to_owned()),
            ..base()
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn ttls_are_whole_seconds_never_zero() {
        assert_eq!(ttl_secs(Duration::ZERO), 1, "0 would mean no expiry");
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(4)), 4);
        assert_eq!(ttl_secs(Duration::from_secs(u64::MAX)), MAX_TTL_SECS);
    }

    // --- row mapping ----------------------------------------------------------------

    #[test]
    fn a_message_round_trips_through_its_row() {
        let plain = sample_message("m-0", 0, "acct");
        assert_eq!(plain.schedule_at, None);
        for m in [plain, full_message()] {
            assert_eq!(message_from_row(&message_row(&m)).expect("from_row"), Some(m));
        }
    }

    #[test]
    fn an_absent_schedule_is_left_unset_not_written_as_null() {
        let cql = Cql::new(KS);
        let specs = insert_specs("messages", &cql.insert_message);
        let at = |name: &str| specs.iter().position(|s| s.name() == name).expect("marker");
        let m = sample_message("m", 0, "acct");
        let cells = serialize(&message_to_row(&m, 60).expect("to_row"), &specs);
        assert_eq!(cells[at("schedule_at")], Some(None), "unset: no tombstone");
        assert_eq!(cells[at("final_at")], Some(None));
        assert_eq!(cells[at("[ttl]")], Some(Some(60_i32.to_be_bytes().to_vec())));
    }

    #[test]
    fn every_state_the_spec_names_round_trips_and_no_other_is_written() {
        let internal = [crate::IN_DELIVERY, crate::AT_UPSTREAM];
        for state in (0..=9).map(MessageState).chain(internal) {
            let m = StoredMessage { state, ..sample_message("m", 0, "a") };
            assert_eq!(message_from_row(&message_row(&m)).expect("from_row"), Some(m));
        }
        assert_eq!(state_to_cql(crate::IN_DELIVERY).expect("internal"), 64);
        assert!(state_to_cql(MessageState(66)).is_err());
        assert!(state_to_cql(MessageState(10)).is_err());
        assert!(state_to_cql(MessageState(200)).is_err());
        let m = StoredMessage { state: MessageState(42), ..sample_message("m", 0, "a") };
        assert!(corrupt_column(message_to_row(&m, 1)).starts_with("messages.state"));
    }

    #[test]
    fn a_malformed_message_row_is_corrupt_naming_the_column() {
        let row = message_row(&full_message());
        let cases = [
            (with(&row, "state", Some(CqlValue::TinyInt(42))), "messages.state"),
            (with(&row, "state", Some(CqlValue::TinyInt(-1))), "messages.state"),
            (with(&row, "dest_index", Some(CqlValue::BigInt(-1))), "messages.dest_index"),
            (with(&row, "attempts", Some(CqlValue::BigInt(1 << 32))), "messages.attempts"),
            (with(&row, "source_ton", Some(CqlValue::SmallInt(256))), "messages.source_ton"),
            (with(&row, "esm_class", Some(CqlValue::SmallInt(-1))), "messages.esm_class"),
            (with(&row, "error_code", Some(CqlValue::Int(65_536))), "messages.error_code"),
            (with(&row, "payload", Some(CqlValue::Text("x".to_owned()))), "messages.payload"),
            (with(&row, "expire_at", None), "messages.expire_at"),
            (with(&row, "message_id", None), "messages.message_id"),
            (without(&row, "event"), "messages.event"),
        ];
        for (row, column) in cases {
            let what = corrupt_column(message_from_row(&row));
            assert!(what.starts_with(&format!("{column}: ")), "{what}");
        }
    }

    #[test]
    fn a_row_without_system_id_is_an_expiring_remnant() {
        let row = with(&message_row(&full_message()), "system_id", None);
        let remnant = CqlRow {
            columns: row
                .columns
                .into_iter()
                .map(|(n, v)| if n == "state" { (n, v) } else { (n, None) })
                .collect(),
        };
        assert_eq!(message_from_row(&remnant).expect("from_row"), None);
    }

    #[test]
    fn a_lease_round_trips_and_an_unknown_bind_is_corrupt() {
        let cql = Cql::new(KS);
        let specs = insert_specs("sessions", &cql.upsert_session);
        for bind in [BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver] {
            let lease = SessionLease { bind, ..sample_lease("acct", "edge-0/7") };
            let row = as_result_row(&lease_to_row(&lease, 30), &specs);
            assert_eq!(lease_from_row(&row).expect("from_row"), lease);
        }
        let row = as_result_row(&lease_to_row(&sample_lease("a", "s"), 30), &specs);
        let bad = with(&row, "bind", Some(CqlValue::Text("admin".to_owned())));
        assert!(corrupt_column(lease_from_row(&bad)).starts_with("sessions.bind: "));
        let bad = with(&row, "bound_at", Some(CqlValue::BigInt(1)));
        assert!(corrupt_column(lease_from_row(&bad)).starts_with("sessions.bound_at: "));
    }

    #[test]
    fn a_notification_round_trips_and_an_unknown_kind_is_corrupt() {
        let cql = Cql::new(KS);
        let specs = insert_specs("pending_notifications", &cql.upsert_pending);
        for kind in [NotificationKind::Receipt, NotificationKind::Mo] {
            let n = PendingNotification {
                id: "0001-edge-0".to_owned(),
                kind,
                message_id: "m-1".to_owned(),
                pdu: Bytes::from_static(b"\x00\x00\x00\x10deliver_sm"),
                created_at: 1_700_000_000_000,
            };
            let row = as_result_row(&notification_to_row("acct", &n, 60), &specs);
            assert_eq!(row.get("system_id"), Some(&Some(CqlValue::Text("acct".to_owned()))));
            assert_eq!(notification_from_row(&row).expect("from_row"), n);
            let bad = with(&row, "kind", Some(CqlValue::Text("sms".to_owned())));
            let what = corrupt_column(notification_from_row(&bad));
            assert!(what.starts_with("pending_notifications.kind: "), "{what}");
        }
    }

    /// The UPDATE's named markers, typed from the schema.
    fn update_specs() -> Vec<ColumnSpec<'static>> {
        let update = Cql::new(KS).update_message;
        let types = schema("messages");
        let type_of =
            |c: &str| types.iter().find(|(n, _)| n == c).map(|(_, t)| t.clone()).expect("column");
        let mut specs = vec![spec("messages", "ttl", "int")];
        for (column, marker) in
            update.split(' ').zip(update.split(' ').skip(2)).filter_map(|(c, m)| {
                let m = m.trim_end_matches(',').strip_prefix(':')?;
                (m != "ttl").then_some((c, m))
            })
        {
            specs.push(spec("messages", marker, &type_of(column)));
        }
        let names: Vec<&str> = specs.iter().map(|s| s.name()).collect();
        let mut expected = vec!["ttl"];
        expected.extend(UPDATABLE_COLUMNS);
        expected.extend(["message_id", "dest_index", "expected_state"]);
        assert_eq!(names, expected, "{update}");
        specs
    }

    #[test]
    fn an_update_sets_exactly_its_fields() {
        let specs = update_specs();
        let at = |name: &str| specs.iter().position(|s| s.name() == name).expect("marker");
        let empty = Update::default();
        let cells = serialize(
            &update_to_row("m", 3, MessageState::ENROUTE, &empty, 10).expect("row"),
            &specs,
        );
        for column in UPDATABLE_COLUMNS {
            assert_eq!(cells[at(column)], Some(None), "{column} unset");
        }
        assert_eq!(cells[at("expected_state")], Some(Some(vec![1])));
        assert_eq!(cells[at("dest_index")], Some(Some(3_i64.to_be_bytes().to_vec())));

        let update = Update {
            state: Some(MessageState::DELIVERED),
            final_at: Some(7),
            schedule_at: Some(None),
            payload: Some(Bytes::new()),
            ..Update::default()
        };
        let cells = serialize(
            &update_to_row("m", 0, MessageState::ENROUTE, &update, 10).expect("row"),
            &specs,
        );
        assert_eq!(cells[at("state")], Some(Some(vec![2])));
        assert_eq!(cells[at("final_at")], Some(Some(7_i64.to_be_bytes().to_vec())));
        assert_eq!(cells[at("schedule_at")], None, "Some(None) clears the schedule");
        assert_eq!(cells[at("payload")], Some(Some(Vec::new())), "an empty payload is a value");
        assert_eq!(cells[at("attempts")], Some(None));
        let bad = Update { state: Some(MessageState(99)), ..Update::default() };
        assert!(update_to_row("m", 0, MessageState::ENROUTE, &bad, 1).is_err());
    }

    #[test]
    fn upstream_writes_touch_only_their_own_columns() {
        let cql = Cql::new(KS);
        let link_specs = insert_specs("upstream_ids", &cql.upsert_upstream_link);
        let names: Vec<&str> = link_specs.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["connector", "upstream_id", "message_id", "dest_index", "[ttl]"]);
        let values = UpstreamLinkValues {
            connector: "up",
            upstream_id: "3B9ACA01",
            message_id: "m-1",
            dest_index: 2,
            ttl: 60,
        };
        let row = as_result_row(&values, &link_specs);
        let mut row_with_receipt = row.clone();
        row_with_receipt.columns.push(("parked_receipt".to_owned(), None));
        let link = UpstreamLink { message_id: "m-1".to_owned(), dest_index: 2 };
        let entry = upstream_entry_from_row(&row_with_receipt).expect("from_row");
        assert_eq!(entry, Some(UpstreamEntry { link: Some(link.clone()), parked_receipt: None }));

        let park_specs = insert_specs("upstream_ids", &cql.park_upstream_receipt);
        let names: Vec<&str> = park_specs.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["connector", "upstream_id", "parked_receipt", "[ttl]"]);
        let values =
            ParkValues { connector: "up", upstream_id: "1", parked_receipt: b"pdu", ttl: 600 };
        let parked = as_result_row(&values, &park_specs);
        let mut only_parked = parked.clone();
        only_parked.columns.push(("message_id".to_owned(), None));
        only_parked.columns.push(("dest_index".to_owned(), None));
        let entry = upstream_entry_from_row(&only_parked).expect("from_row");
        let receipt = Bytes::from_static(b"pdu");
        assert_eq!(entry, Some(UpstreamEntry { link: None, parked_receipt: Some(receipt) }));

        let nothing = with(&with(&only_parked, "parked_receipt", None), "message_id", None);
        assert_eq!(upstream_entry_from_row(&nothing).expect("from_row"), None, "a remnant");
        let half = with(&row_with_receipt, "dest_index", None);
        assert!(corrupt_column(upstream_entry_from_row(&half)).starts_with("upstream_ids."));
        assert!(cql.select_upstream.starts_with("SELECT message_id, dest_index, parked_receipt "));
    }

    #[test]
    fn slot_leases_are_lightweight_transactions_on_the_holder() {
        let cql = Cql::new(KS);
        assert!(cql.insert_slot.ends_with(") IF NOT EXISTS USING TTL ?"), "{}", cql.insert_slot);
        let specs = insert_specs("bind_slots", &cql.insert_slot);
        let values = SlotValues { pool: "up", slot: 3, holder: "w-1/0", ttl: 30 };
        let row = as_result_row(&values, &specs);
        assert_eq!(row.get("holder"), Some(&Some(CqlValue::Text("w-1/0".to_owned()))));
        assert_eq!(row.get("slot"), Some(&Some(CqlValue::Int(3))));
        assert_eq!(
            cql.refresh_slot,
            format!(
                "UPDATE {KS}.bind_slots USING TTL :ttl SET holder = :holder \
                 WHERE pool = :pool AND slot = :slot IF holder = :expected_holder"
            )
        );
        let refresh_specs = vec![
            spec("bind_slots", "ttl", "int"),
            spec("bind_slots", "holder", "text"),
            spec("bind_slots", "pool", "text"),
            spec("bind_slots", "slot", "int"),
            spec("bind_slots", "expected_holder", "text"),
        ];
        let values =
            RefreshSlotValues { ttl: 30, holder: "w", pool: "up", slot: 0, expected_holder: "w" };
        let cells = serialize(&values, &refresh_specs);
        assert_eq!(cells[4], Some(Some(b"w".to_vec())));
        assert!(cql.delete_slot.ends_with("WHERE pool = ? AND slot = ? IF holder = ?"));

        let applied_col = |b: bool| ("[applied]".to_owned(), Some(CqlValue::Boolean(b)));
        let lwt = |cols: Vec<(String, Option<CqlValue>)>| slot_lwt(&CqlRow { columns: cols });
        assert_eq!(lwt(vec![applied_col(true)]).expect("lwt"), SlotLwt::Applied);
        let held =
            vec![applied_col(false), ("holder".to_owned(), Some(CqlValue::Text("x".into())))];
        assert_eq!(lwt(held).expect("lwt"), SlotLwt::HeldBy("x".to_owned()));
        let gone = vec![applied_col(false), ("holder".to_owned(), None)];
        assert_eq!(lwt(gone).expect("lwt"), SlotLwt::Gone);
        assert_eq!(lwt(vec![applied_col(false)]).expect("lwt"), SlotLwt::Gone);
        let bad = vec![applied_col(false), ("holder".to_owned(), Some(CqlValue::Int(1)))];
        assert!(corrupt_column(lwt(bad)).starts_with("bind_slots.holder: "));
    }

    #[test]
    fn lwt_results_map_to_applied() {
        let applied_col = |b: bool| ("[applied]".to_owned(), Some(CqlValue::Boolean(b)));
        let yes = CqlRow { columns: vec![applied_col(true)] };
        assert_eq!(message_lwt_outcome(&yes).expect("outcome"), Some(Applied::Yes));

        let m = full_message();
        let mut full = message_row(&m);
        full.columns.insert(0, applied_col(false));
        assert_eq!(message_lwt_outcome(&full).expect("outcome"), Some(Applied::No(Some(m))));

        // Only the tested column (Cassandra's IF state = ?), or nothing (no row): read it.
        let partial = CqlRow {
            columns: vec![applied_col(false), ("state".to_owned(), Some(CqlValue::TinyInt(2)))],
        };
        assert_eq!(message_lwt_outcome(&partial).expect("outcome"), None);
        assert_eq!(
            message_lwt_outcome(&CqlRow { columns: vec![applied_col(false)] }).expect("outcome"),
            None
        );

        let bad = CqlRow { columns: vec![("[applied]".to_owned(), None)] };
        assert!(matches!(message_lwt_outcome(&bad), Err(StoreError::Corrupt(_))));
        assert!(matches!(applied(&CqlRow::default()), Err(StoreError::Corrupt(_))));
        assert!(!applied(&CqlRow { columns: vec![applied_col(false)] }).expect("applied"));
    }

    #[test]
    fn a_transition_keeps_the_ttl_the_row_has_left() {
        let row = |system_id: Option<&str>, ttl: Option<i32>| CqlRow {
            columns: vec![
                ("system_id".to_owned(), system_id.map(|s| CqlValue::Text(s.to_owned()))),
                ("remaining_ttl".to_owned(), ttl.map(CqlValue::Int)),
            ],
        };
        assert_eq!(transition_ttl(&row(Some("a"), Some(17))).expect("ttl"), Some(17));
        assert_eq!(transition_ttl(&row(Some("a"), Some(0))).expect("ttl"), Some(1), "never 0");
        assert_eq!(transition_ttl(&row(Some("a"), None)).expect("ttl"), Some(0), "none stays none");
        assert_eq!(transition_ttl(&row(None, Some(1))).expect("ttl"), None, "a remnant");
        let bad = CqlRow {
            columns: vec![("system_id".to_owned(), Some(CqlValue::Text("a".to_owned())))],
        };
        assert!(corrupt_column(transition_ttl(&bad)).starts_with("messages.ttl(system_id): "));
    }

    // --- driver errors --------------------------------------------------------------

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "reason".to_owned()))
    }

    #[test]
    fn driver_errors_map_to_timeout_or_unavailable() {
        let timeout = |e| matches!(e, StoreError::Timeout);
        let unavailable = |e| matches!(e, StoreError::Unavailable(_));
        assert!(timeout(execution_error(ExecutionError::RequestTimeout(Duration::from_secs(1)))));
        let write_timeout = DbError::WriteTimeout {
            consistency: Consistency::LocalSerial,
            received: 1,
            required: 2,
            write_type: WriteType::Cas,
        };
        assert!(timeout(execution_error(db(write_timeout))));
        let read_timeout = DbError::ReadTimeout {
            consistency: Consistency::LocalQuorum,
            received: 1,
            required: 2,
            data_present: false,
        };
        assert!(timeout(execution_error(db(read_timeout))));
        let down =
            DbError::Unavailable { consistency: Consistency::LocalQuorum, required: 2, alive: 1 };
        match execution_error(db(down)) {
            StoreError::Unavailable(what) => {
                assert!(what.contains("alive: 1") && what.contains("reason"), "{what}")
            }
            other => panic!("{other:?}"),
        }
        assert!(unavailable(execution_error(db(DbError::Overloaded))));
        assert!(unavailable(execution_error(db(DbError::Invalid))));
        assert!(unavailable(execution_error(ExecutionError::EmptyPlan)));
        let broken = RequestAttemptError::UnableToAllocStreamId;
        assert!(unavailable(execution_error(ExecutionError::LastAttemptError(broken))));

        let page_timeout = NextRowError::NextPageError(NextPageError::RequestFailure(
            RequestError::RequestTimeout(Duration::from_secs(1)),
        ));
        assert!(timeout(next_row_error(page_timeout)));
        let page_down =
            NextRowError::NextPageError(NextPageError::RequestFailure(RequestError::EmptyPlan));
        assert!(unavailable(next_row_error(page_down)));
        let bad_row =
            NextRowError::RowDeserializationError(DeserializationError::new(std::fmt::Error));
        assert!(matches!(next_row_error(bad_row), StoreError::Corrupt(_)));
    }
}
