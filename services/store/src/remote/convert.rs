//! Conversions between the store's types and the generated ones (`*_to_proto` /
//! `*_from_proto`), checking every narrowing (a `uint32` that must fit a `u8`), and store
//! errors as gRPC statuses and back.

use std::time::Duration;

use bytes::Bytes;
use smsc_proto as pb;
use smsc_smpp::{Npi, Ton};
use tonic::{Code, Status};

use crate::{
    Address, Applied, BindKind, DeliveryState, NotificationKind, Page, PendingNotification,
    SessionLease, SlotClaim, StoreError, StoredMessage, Update, UpstreamEntry, UpstreamLink,
};

/// A field of a gRPC message that does not convert to the store's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    #[error("{field}: {value} is out of range")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("{field}: missing")]
    Missing { field: &'static str },
    #[error("{field}: unknown value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("applied, yet with a current row")]
    AppliedWithRow,
}

fn narrow<T: TryFrom<u32>>(field: &'static str, value: u32) -> Result<T, ConvertError> {
    T::try_from(value).map_err(|_| ConvertError::OutOfRange { field, value: value.into() })
}

pub(super) fn required<T>(field: &'static str, value: Option<T>) -> Result<T, ConvertError> {
    value.ok_or(ConvertError::Missing { field })
}

pub(super) fn state_from_proto(
    field: &'static str,
    value: u32,
) -> Result<DeliveryState, ConvertError> {
    let code: u8 = narrow(field, value)?;
    DeliveryState::from_code(code).ok_or(ConvertError::OutOfRange { field, value: value.into() })
}

// ---- conversions -------------------------------------------------------------------

pub fn address_to_proto(a: Address) -> pb::StoredAddress {
    let addr = String::from_utf8_lossy(a.addr.as_bytes()).into_owned();
    pb::StoredAddress { ton: a.ton.0.into(), npi: a.npi.0.into(), addr }
}

pub fn address_from_proto(a: pb::StoredAddress) -> Result<Address, ConvertError> {
    let (ton, npi) = (Ton(narrow("ton", a.ton)?), Npi(narrow("npi", a.npi)?));
    Address::new(ton, npi, &a.addr)
        .map_err(|_| ConvertError::OutOfRange { field: "addr", value: a.addr.len() as u64 })
}

pub fn message_to_proto(m: StoredMessage) -> pb::StoredMessage {
    pb::StoredMessage {
        message_id: m.message_id,
        dest_index: m.dest_index,
        system_id: m.system_id,
        source: Some(address_to_proto(m.source)),
        dest: Some(address_to_proto(m.dest)),
        service_type: m.service_type,
        registered_delivery: m.registered_delivery.into(),
        data_coding: m.data_coding.into(),
        esm_class: m.esm_class.into(),
        payload: m.payload.into(),
        state: m.state.code().into(),
        error_code: m.error_code.into(),
        attempts: m.attempts,
        submitted_at: m.submitted_at,
        schedule_at: m.schedule_at,
        expire_at: m.expire_at,
        final_at: m.final_at,
        event: m.event.into(),
        first_attempt_at: m.first_attempt_at,
        connector: m.connector,
        route: m.route,
    }
}

pub fn message_from_proto(m: pb::StoredMessage) -> Result<StoredMessage, ConvertError> {
    Ok(StoredMessage {
        message_id: m.message_id,
        dest_index: m.dest_index,
        system_id: m.system_id,
        source: address_from_proto(required("source", m.source)?)?,
        dest: address_from_proto(required("dest", m.dest)?)?,
        service_type: m.service_type,
        registered_delivery: narrow("registered_delivery", m.registered_delivery)?,
        data_coding: narrow("data_coding", m.data_coding)?,
        esm_class: narrow("esm_class", m.esm_class)?,
        payload: Bytes::from(m.payload),
        state: state_from_proto("state", m.state)?,
        error_code: narrow("error_code", m.error_code)?,
        attempts: m.attempts,
        submitted_at: m.submitted_at,
        schedule_at: m.schedule_at,
        expire_at: m.expire_at,
        final_at: m.final_at,
        event: Bytes::from(m.event),
        first_attempt_at: m.first_attempt_at,
        connector: m.connector,
        route: m.route,
    })
}

/// `schedule_at: Option<Option<_>>` becomes a present-or-absent [`pb::ScheduleChange`]
/// whose own `at` is optional, so "leave it", "clear it" and "set it" all survive.
pub fn update_to_proto(u: Update) -> pb::Update {
    pb::Update {
        state: u.state.map(|s| s.code().into()),
        error_code: u.error_code.map(Into::into),
        attempts: u.attempts,
        final_at: u.final_at,
        payload: u.payload.map(Into::into),
        data_coding: u.data_coding.map(Into::into),
        registered_delivery: u.registered_delivery.map(Into::into),
        schedule_at: u.schedule_at.map(|at| pb::ScheduleChange { at }),
        expire_at: u.expire_at,
        event: u.event.map(Into::into),
        first_attempt_at: u.first_attempt_at,
        connector: u.connector,
    }
}

pub fn update_from_proto(u: pb::Update) -> Result<Update, ConvertError> {
    Ok(Update {
        state: u.state.map(|s| state_from_proto("update.state", s)).transpose()?,
        error_code: u.error_code.map(|v| narrow("update.error_code", v)).transpose()?,
        attempts: u.attempts,
        final_at: u.final_at,
        payload: u.payload.map(Bytes::from),
        data_coding: u.data_coding.map(|v| narrow("update.data_coding", v)).transpose()?,
        registered_delivery: u
            .registered_delivery
            .map(|v| narrow("update.registered_delivery", v))
            .transpose()?,
        schedule_at: u.schedule_at.map(|change| change.at),
        expire_at: u.expire_at,
        event: u.event.map(Bytes::from),
        first_attempt_at: u.first_attempt_at,
        connector: u.connector,
    })
}

pub fn applied_to_proto(a: Applied) -> pb::Applied {
    match a {
        Applied::Yes => pb::Applied { applied: true, current: None },
        Applied::No(current) => {
            pb::Applied { applied: false, current: current.map(message_to_proto) }
        }
    }
}

pub fn applied_from_proto(a: pb::Applied) -> Result<Applied, ConvertError> {
    match (a.applied, a.current) {
        (true, None) => Ok(Applied::Yes),
        (true, Some(_)) => Err(ConvertError::AppliedWithRow),
        (false, current) => Ok(Applied::No(current.map(message_from_proto).transpose()?)),
    }
}

pub fn bind_to_proto(b: BindKind) -> pb::BindKind {
    match b {
        BindKind::Transmitter => pb::BindKind::Transmitter,
        BindKind::Receiver => pb::BindKind::Receiver,
        BindKind::Transceiver => pb::BindKind::Transceiver,
    }
}

pub fn bind_from_proto(value: i32) -> Result<BindKind, ConvertError> {
    match pb::BindKind::try_from(value) {
        Ok(pb::BindKind::Transmitter) => Ok(BindKind::Transmitter),
        Ok(pb::BindKind::Receiver) => Ok(BindKind::Receiver),
        Ok(pb::BindKind::Transceiver) => Ok(BindKind::Transceiver),
        Ok(pb::BindKind::Unspecified) | Err(_) => {
            Err(ConvertError::UnknownEnum { field: "bind", value })
        }
    }
}

pub fn lease_to_proto(l: SessionLease) -> pb::SessionLease {
    pb::SessionLease {
        system_id: l.system_id,
        session_id: l.session_id,
        edge_id: l.edge_id,
        endpoint: l.endpoint,
        bind: bind_to_proto(l.bind).into(),
        bound_at: l.bound_at,
    }
}

pub fn lease_from_proto(l: pb::SessionLease) -> Result<SessionLease, ConvertError> {
    Ok(SessionLease {
        bind: bind_from_proto(l.bind)?,
        system_id: l.system_id,
        session_id: l.session_id,
        edge_id: l.edge_id,
        endpoint: l.endpoint,
        bound_at: l.bound_at,
    })
}

pub fn notification_to_proto(n: PendingNotification) -> pb::PendingNotification {
    let kind = match n.kind {
        NotificationKind::Receipt => pb::NotificationKind::Receipt,
        NotificationKind::Mo => pb::NotificationKind::Mo,
        NotificationKind::WebhookReceipt => pb::NotificationKind::WebhookReceipt,
    };
    pb::PendingNotification {
        id: n.id,
        kind: kind.into(),
        message_id: n.message_id,
        pdu: n.pdu.into(),
        created_at: n.created_at,
    }
}

pub fn notification_from_proto(
    n: pb::PendingNotification,
) -> Result<PendingNotification, ConvertError> {
    let kind = match pb::NotificationKind::try_from(n.kind) {
        Ok(pb::NotificationKind::Receipt) => NotificationKind::Receipt,
        Ok(pb::NotificationKind::Mo) => NotificationKind::Mo,
        Ok(pb::NotificationKind::WebhookReceipt) => NotificationKind::WebhookReceipt,
        Ok(pb::NotificationKind::Unspecified) | Err(_) => {
            return Err(ConvertError::UnknownEnum { field: "kind", value: n.kind });
        }
    };
    Ok(PendingNotification {
        id: n.id,
        kind,
        message_id: n.message_id,
        pdu: Bytes::from(n.pdu),
        created_at: n.created_at,
    })
}

pub fn page_to_proto(p: Page) -> pb::Page {
    pb::Page { items: p.items.into_iter().map(notification_to_proto).collect(), next: p.next }
}

pub fn page_from_proto(p: pb::Page) -> Result<Page, ConvertError> {
    let items = p.items.into_iter().map(notification_from_proto).collect::<Result<_, _>>()?;
    Ok(Page { items, next: p.next })
}

pub fn upstream_link_to_proto(l: UpstreamLink) -> pb::UpstreamLink {
    pb::UpstreamLink { message_id: l.message_id, dest_index: l.dest_index }
}

pub fn upstream_link_from_proto(l: pb::UpstreamLink) -> UpstreamLink {
    UpstreamLink { message_id: l.message_id, dest_index: l.dest_index }
}

pub fn upstream_entry_to_proto(e: Option<UpstreamEntry>) -> pb::GetUpstreamEntryResponse {
    match e {
        None => pb::GetUpstreamEntryResponse::default(),
        Some(e) => pb::GetUpstreamEntryResponse {
            found: true,
            link: e.link.map(upstream_link_to_proto),
            parked_receipt: e.parked_receipt.map(Into::into),
        },
    }
}

/// `found` without either part, or a part without `found`, is malformed.
pub fn upstream_entry_from_proto(
    r: pb::GetUpstreamEntryResponse,
) -> Result<Option<UpstreamEntry>, ConvertError> {
    let entry = UpstreamEntry {
        link: r.link.map(upstream_link_from_proto),
        parked_receipt: r.parked_receipt.map(Bytes::from),
    };
    let empty = entry.link.is_none() && entry.parked_receipt.is_none();
    match (r.found, empty) {
        (true, false) => Ok(Some(entry)),
        (false, true) => Ok(None),
        (true, true) => Err(ConvertError::Missing { field: "link or parked_receipt" }),
        (false, false) => Err(ConvertError::Missing { field: "found" }),
    }
}

pub fn slot_claim_to_proto(c: SlotClaim) -> pb::ClaimSlotResponse {
    match c {
        SlotClaim::Held => pb::ClaimSlotResponse { held: true, holder: String::new() },
        SlotClaim::Busy { holder } => pb::ClaimSlotResponse { held: false, holder },
    }
}

pub fn slot_claim_from_proto(r: pb::ClaimSlotResponse) -> SlotClaim {
    if r.held { SlotClaim::Held } else { SlotClaim::Busy { holder: r.holder } }
}

pub(super) fn ttl_to_proto(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

// ---- errors on the wire --------------------------------------------------------------

/// The status a server answers for a store error; [`error_from_status`] undoes it.
pub fn error_to_status(e: &StoreError) -> Status {
    match e {
        StoreError::Unavailable { what, source } => Status::unavailable(detail(what, source)),
        StoreError::Timeout => Status::deadline_exceeded("store operation timed out"),
        StoreError::Corrupt { what, source } => Status::data_loss(detail(what, source)),
    }
}

/// What a store error says beyond its kind, its causes included: only text crosses the
/// wire.
fn detail(what: &str, source: &Option<crate::Cause>) -> String {
    match source {
        Some(cause) => format!("{what}: {}", smsc_runtime::telemetry::error_chain(&**cause)),
        None => what.to_owned(),
    }
}

/// A failed call as the client sees it. A request the server could not convert is a
/// malformed message too ([`StoreError::Corrupt`]); whatever else went wrong between
/// the two (connection refused, reset, server stopping) is [`StoreError::Unavailable`].
pub fn error_from_status(s: &Status) -> StoreError {
    match s.code() {
        Code::DeadlineExceeded => StoreError::Timeout,
        // tonic's own client-side timeout.
        Code::Cancelled if s.message().contains("Timeout expired") => StoreError::Timeout,
        Code::DataLoss => StoreError::corrupt(s.message()),
        Code::InvalidArgument => {
            StoreError::corrupt(format!("the store server rejected the request: {}", s.message()))
        }
        Code::Unavailable => StoreError::unavailable(s.message()),
        code => StoreError::unavailable(format!("{code:?}: {}", s.message())),
    }
}

pub(super) fn corrupt(e: ConvertError) -> StoreError {
    StoreError::corrupt_by("store server reply", e)
}

pub(super) fn invalid(e: ConvertError) -> Status {
    Status::invalid_argument(e.to_string())
}
