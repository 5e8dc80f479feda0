//! Row mapping between the store's types and CQL rows, as pure functions unit-tested
//! offline. Writes bind typed structs by marker name (the driver checks every name and
//! type against the prepared metadata); reads go through `CqlRow`, looked up by column
//! name, so an LWT result (`[applied]` + whatever columns the server adds) maps the same way.

use std::time::Duration;

use crate::DeliveryState;
use bytes::Bytes;
use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::value::DeserializeValue;
use scylla::errors::{DeserializationError, TypeCheckError};
use scylla::frame::response::result::ColumnSpec;
use scylla::value::{CqlTimestamp, CqlValue, MaybeUnset};
use smsc_smpp::{Npi, Ton};

use super::config::MAX_TTL_SECS;
use super::cql::MESSAGE_COLUMNS;
use crate::{
    Address, Applied, BindKind, NotificationKind, PendingNotification, SessionLease, StoreError,
    StoreResult, StoredMessage, UnixMillis, Update, UpstreamEntry, UpstreamLink,
};

/// Bind values of `insert_message`.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct MessageValues<'a> {
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
    first_attempt_at: MaybeUnset<CqlTimestamp>,
    connector: &'a str,
    route: &'a str,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

/// Bind values of `update_message`; `Unset` leaves a column as stored.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct UpdateValues<'a> {
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
    first_attempt_at: MaybeUnset<CqlTimestamp>,
    connector: MaybeUnset<&'a str>,
    message_id: &'a str,
    dest_index: i64,
    expected_state: i8,
}

/// Bind values of `upsert_session`.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct SessionValues<'a> {
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
pub(super) struct PendingValues<'a> {
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
pub(super) struct UpstreamLinkValues<'a> {
    pub(super) connector: &'a str,
    pub(super) upstream_id: &'a str,
    pub(super) message_id: &'a str,
    pub(super) dest_index: i64,
    #[scylla(rename = "[ttl]")]
    pub(super) ttl: i32,
}

/// Bind values of `park_upstream_receipt`.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct ParkValues<'a> {
    pub(super) connector: &'a str,
    pub(super) upstream_id: &'a str,
    pub(super) parked_receipt: &'a [u8],
    #[scylla(rename = "[ttl]")]
    pub(super) ttl: i32,
}

/// Bind values of `insert_slot`.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct SlotValues<'a> {
    pub(super) pool: &'a str,
    pub(super) slot: i32,
    pub(super) holder: &'a str,
    #[scylla(rename = "[ttl]")]
    pub(super) ttl: i32,
}

/// Bind values of `refresh_slot`.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct RefreshSlotValues<'a> {
    pub(super) ttl: i32,
    pub(super) holder: &'a str,
    pub(super) pool: &'a str,
    pub(super) slot: i32,
    pub(super) expected_holder: &'a str,
}

/// Bind values of `insert_quota`.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct QuotaInsertValues<'a> {
    pub(super) system_id: &'a str,
    pub(super) period: &'a str,
    pub(super) used: i64,
    #[scylla(rename = "[ttl]")]
    pub(super) ttl: i32,
}

/// Bind values of `update_quota`.
#[derive(Debug, scylla::SerializeRow)]
pub(super) struct QuotaUpdateValues<'a> {
    pub(super) ttl: i32,
    pub(super) used: i64,
    pub(super) system_id: &'a str,
    pub(super) period: &'a str,
    pub(super) expected: i64,
}

/// A result row as (column name, value) pairs.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct CqlRow {
    pub(super) columns: Vec<(String, Option<CqlValue>)>,
}

impl CqlRow {
    fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|(name, _)| name == column)
    }

    pub(super) fn get(&self, column: &str) -> Option<&Option<CqlValue>> {
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

pub(super) fn corrupt(table: &str, column: &str, problem: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(format!("{table}.{column}: {problem}"))
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
        self.opt_text(column)?.ok_or_else(|| corrupt(self.table, column, "null"))
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        match self.value(column)? {
            None => Ok(None),
            Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong_type(column, other)),
        }
    }

    fn blob(&self, column: &str) -> StoreResult<Bytes> {
        match self.required(column)? {
            CqlValue::Blob(b) => Ok(Bytes::copy_from_slice(b)),
            other => Err(self.wrong_type(column, other)),
        }
    }

    /// The address in `<prefix>_ton`, `<prefix>_npi` and `<prefix>_addr`.
    fn address(&self, prefix: &str) -> StoreResult<Address> {
        let (ton, npi) = (self.u8(&format!("{prefix}_ton"))?, self.u8(&format!("{prefix}_npi"))?);
        let column = format!("{prefix}_addr");
        let text = self.text(&column)?;
        Address::new(Ton(ton), Npi(npi), &text)
            .map_err(|e| corrupt(self.table, &column, format_args!("{e}")))
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

    fn state(&self, column: &str) -> StoreResult<DeliveryState> {
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

/// An address's text column: every address stored came from text, so it is UTF-8.
fn addr_text<'a>(column: &str, a: &'a Address) -> StoreResult<&'a str> {
    a.addr.as_str().ok_or_else(|| corrupt("messages", column, "not UTF-8"))
}

/// `messages.state` is a tinyint: every state's code (at most 65) fits.
pub(super) fn state_to_cql(state: DeliveryState) -> i8 {
    state.code() as i8
}

fn state_from_cql(v: i8) -> Option<DeliveryState> {
    DeliveryState::from_code(u8::try_from(v).ok()?)
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
        NotificationKind::WebhookReceipt => "webhook_receipt",
    }
}

fn kind_from_cql(s: &str) -> Option<NotificationKind> {
    match s {
        "receipt" => Some(NotificationKind::Receipt),
        "mo" => Some(NotificationKind::Mo),
        "webhook_receipt" => Some(NotificationKind::WebhookReceipt),
        _ => None,
    }
}

/// A TTL as CQL takes it: whole seconds, rounded up, at least 1 (0 would mean "forever").
pub(super) fn ttl_secs(ttl: Duration) -> i32 {
    let secs = ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i32::try_from(secs).unwrap_or(MAX_TTL_SECS).clamp(1, MAX_TTL_SECS)
}

pub(super) fn message_to_row(m: &StoredMessage, ttl: i32) -> StoreResult<MessageValues<'_>> {
    Ok(MessageValues {
        message_id: &m.message_id,
        dest_index: i64::from(m.dest_index),
        system_id: &m.system_id,
        source_ton: i16::from(m.source.ton.0),
        source_npi: i16::from(m.source.npi.0),
        source_addr: addr_text("source_addr", &m.source)?,
        dest_ton: i16::from(m.dest.ton.0),
        dest_npi: i16::from(m.dest.npi.0),
        dest_addr: addr_text("dest_addr", &m.dest)?,
        service_type: &m.service_type,
        registered_delivery: i16::from(m.registered_delivery),
        data_coding: i16::from(m.data_coding),
        esm_class: i16::from(m.esm_class),
        payload: &m.payload,
        state: state_to_cql(m.state),
        error_code: i32::from(m.error_code),
        attempts: i64::from(m.attempts),
        submitted_at: CqlTimestamp(m.submitted_at),
        schedule_at: m.schedule_at.map_or(MaybeUnset::Unset, |t| MaybeUnset::Set(CqlTimestamp(t))),
        expire_at: CqlTimestamp(m.expire_at),
        final_at: m.final_at.map_or(MaybeUnset::Unset, |t| MaybeUnset::Set(CqlTimestamp(t))),
        event: &m.event,
        first_attempt_at: m
            .first_attempt_at
            .map_or(MaybeUnset::Unset, |t| MaybeUnset::Set(CqlTimestamp(t))),
        connector: &m.connector,
        route: &m.route,
        ttl,
    })
}

/// A `messages` row; `Ok(None)` for an expiring remnant (cells of a transition that
/// outlive the insert's by the TTL rounding), recognised by its null `system_id`.
pub(super) fn message_from_row(row: &CqlRow) -> StoreResult<Option<StoredMessage>> {
    let c = Columns { table: "messages", row };
    if c.value("system_id")?.is_none() {
        return Ok(None);
    }
    Ok(Some(StoredMessage {
        message_id: c.text("message_id")?,
        dest_index: c.u32("dest_index")?,
        system_id: c.text("system_id")?,
        source: c.address("source")?,
        dest: c.address("dest")?,
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
        first_attempt_at: c.opt_timestamp("first_attempt_at")?,
        // Null in rows written before migration 005.
        connector: c.opt_text("connector")?.unwrap_or_default(),
        route: c.opt_text("route")?.unwrap_or_default(),
    }))
}

pub(super) fn update_to_row<'a>(
    message_id: &'a str,
    dest_index: u32,
    from: DeliveryState,
    update: &'a Update,
    ttl: i32,
) -> StoreResult<UpdateValues<'a>> {
    fn set<T, U>(v: Option<T>, f: impl FnOnce(T) -> U) -> MaybeUnset<U> {
        v.map_or(MaybeUnset::Unset, |v| MaybeUnset::Set(f(v)))
    }
    let state = match update.state {
        Some(s) => MaybeUnset::Set(state_to_cql(s)),
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
        first_attempt_at: set(update.first_attempt_at, CqlTimestamp),
        connector: set(update.connector.as_deref(), |c| c),
        message_id,
        dest_index: i64::from(dest_index),
        expected_state: state_to_cql(from),
    })
}

pub(super) fn lease_to_row(lease: &SessionLease, ttl: i32) -> SessionValues<'_> {
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

pub(super) fn lease_from_row(row: &CqlRow) -> StoreResult<SessionLease> {
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

pub(super) fn notification_to_row<'a>(
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

pub(super) fn notification_from_row(row: &CqlRow) -> StoreResult<PendingNotification> {
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
pub(super) fn upstream_entry_from_row(row: &CqlRow) -> StoreResult<Option<UpstreamEntry>> {
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
pub(super) enum SlotLwt {
    Applied,
    /// Not applied: the slot is held by this holder.
    HeldBy(String),
    /// Not applied, and no live holder (the lease expired in between): try again.
    Gone,
}

pub(super) fn slot_lwt(row: &CqlRow) -> StoreResult<SlotLwt> {
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

/// The outcome of a compare-and-set on `quota_usage`: applied, or not, with the counter
/// as it is now (`None`: no live row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuotaLwt {
    Applied,
    Saw(Option<u64>),
}

pub(super) fn quota_lwt(row: &CqlRow) -> StoreResult<QuotaLwt> {
    if applied(row)? {
        return Ok(QuotaLwt::Applied);
    }
    quota_used(row).map(QuotaLwt::Saw)
}

/// The `used` column of a `quota_usage` row (`None`: absent or null).
pub(super) fn quota_used(row: &CqlRow) -> StoreResult<Option<u64>> {
    match row.get("used") {
        None | Some(None) => Ok(None),
        Some(Some(CqlValue::BigInt(n))) if *n >= 0 => Ok(Some(n.unsigned_abs())),
        Some(Some(other)) => {
            Err(corrupt("quota_usage", "used", format_args!("unexpected value {other:?}")))
        }
    }
}

/// Rounds of compare-and-set a quota change may take while other edges change it.
pub(super) const QUOTA_CAS_ROUNDS: usize = 32;

/// Rounds of insert-then-refresh a claim may take while leases change under it.
pub(super) const SLOT_CLAIM_ROUNDS: usize = 3;

/// `[applied]` of an LWT result row.
pub(super) fn applied(row: &CqlRow) -> StoreResult<bool> {
    match row.get("[applied]") {
        Some(Some(CqlValue::Boolean(b))) => Ok(*b),
        other => Err(StoreError::corrupt(format!("LWT result: [applied] is {other:?}"))),
    }
}

/// The outcome of a conditional write on `messages`, from its result row: applied, or
/// the current row when the server returned all of it; `None` when it returned only some
/// columns (Cassandra returns just the tested ones for `IF state = ?`) and the row must
/// be read.
pub(super) fn message_lwt_outcome(row: &CqlRow) -> StoreResult<Option<Applied>> {
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
pub(super) fn transition_ttl(row: &CqlRow) -> StoreResult<Option<i32>> {
    match (row.get("system_id"), row.get("remaining_ttl")) {
        (Some(None), _) => Ok(None),
        (_, Some(Some(CqlValue::Int(left)))) => Ok(Some((*left).clamp(1, MAX_TTL_SECS))),
        // No TTL on the row (written by hand or by an older version): keep none.
        (_, Some(None)) => Ok(Some(0)),
        (_, other) => Err(corrupt("messages", "ttl(system_id)", format_args!("{other:?}"))),
    }
}
