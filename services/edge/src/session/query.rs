//! query_sm, cancel_sm and replace_sm: they do not touch the bus; the session reads
//! and updates the store.

use smsc_accounts::Account;
use smsc_smpp::pdu::{CancelSm, QuerySm, QuerySmResp, ReplaceSm, TimeString};
use smsc_smpp::{Body, CommandId, Pdu};
use smsc_store::DeliveryState;
use smsc_store::{Applied, Update};
use tracing::warn;

use super::Status;
use super::state::{Done, Session};
use crate::submit;

impl Session {
    pub(super) fn on_query(&mut self, seq: u32, q: QuerySm) {
        let Some(account) = self.admit(seq, CommandId::QuerySm, false) else { return };
        let version = self.interface_version();
        let store = self.edge.store.clone();
        self.inflight.push(Box::pin(async move {
            let resp = match store
                .get_message(&String::from_utf8_lossy(q.message_id.as_bytes()))
                .await
            {
                Ok(rows) => match rows.into_iter().find(|m| owned(m, &account, q.source.addr.as_bytes())) {
                    Some(m) => Pdu::new(
                        seq,
                        Body::QuerySmResp(QuerySmResp {
                            message_id: q.message_id,
                            final_date: m.final_at.map(final_date).unwrap_or_default(),
                            // Being handed to the network, or handed to an upstream
                            // that has not reported yet: still en route.
                            message_state: m.state.to_smpp().for_version(version),
                            error_code: m.error_code.min(255) as u8,
                        }),
                    ),
                    None => {
                        Pdu::error_response(CommandId::QuerySmResp, seq, Status::ESME_RQUERYFAIL)
                    }
                },
                Err(e) => {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), "query_sm: store unavailable");
                    Pdu::error_response(CommandId::QuerySmResp, seq, Status::ESME_RSYSERR)
                }
            };
            Done::Responses(vec![resp])
        }));
    }

    pub(super) fn on_cancel(&mut self, seq: u32, c: CancelSm) {
        let Some(account) = self.admit(seq, CommandId::CancelSm, false) else { return };
        let store = self.edge.store.clone();
        let now = self.edge.clock.now_ms();
        self.inflight.push(Box::pin(async move {
            let status = match c.message_id.is_empty() {
                // Cancel-by-address needs an index the store does not keep.
                true => Status::ESME_RCANCELFAIL,
                false => {
                    let id = String::from_utf8_lossy(c.message_id.as_bytes());
                    let (source, dest) = (c.source.addr.as_bytes(), c.dest.addr.as_bytes());
                    cancel(&*store, &account, &id, source, dest, now).await
                }
            };
            let pdu = if status.is_ok() {
                Pdu::new(seq, Body::CancelSmResp)
            } else {
                Pdu::error_response(CommandId::CancelSmResp, seq, status)
            };
            Done::Responses(vec![pdu])
        }));
    }

    pub(super) fn on_replace(&mut self, seq: u32, r: ReplaceSm) {
        let Some(account) = self.admit(seq, CommandId::ReplaceSm, false) else { return };
        let store = self.edge.store.clone();
        let now = self.edge.clock.now_ms();
        self.inflight.push(Box::pin(async move {
            let status = replace(&*store, &account, &r, now).await;
            let pdu = if status.is_ok() {
                Pdu::new(seq, Body::ReplaceSmResp)
            } else {
                Pdu::error_response(CommandId::ReplaceSmResp, seq, status)
            };
            Done::Responses(vec![pdu])
        }));
    }
}

/// A stored message belongs to the asking account and, when one is given, source
/// (query/cancel/replace, the HTTP API). Anything else looks exactly like "no such
/// message", so ids do not leak.
pub(crate) fn owned(m: &smsc_store::StoredMessage, account: &Account, source: &[u8]) -> bool {
    m.system_id == account.system_id && (source.is_empty() || m.source.addr.as_bytes() == source)
}

fn final_date(ms: i64) -> TimeString {
    match chrono::DateTime::from_timestamp_millis(ms)
        .and_then(|t| smsc_smpp::time::SmppTime::absolute(t.fixed_offset()).ok())
    {
        Some(t) => TimeString::from_time(&t),
        None => TimeString::EMPTY,
    }
}

/// Not yet handed to the network: what cancel and replace may still change.
pub(crate) fn pending(state: DeliveryState) -> bool {
    matches!(state, DeliveryState::Enroute | DeliveryState::Scheduled | DeliveryState::Accepted)
}

/// Cancels the destinations of message `id` (those of `dest` when not empty) that are
/// still pending: OK when one was, ESME_RCANCELFAIL when none (or no such message).
pub(crate) async fn cancel(
    store: &dyn smsc_store::Store,
    account: &Account,
    id: &str,
    source: &[u8],
    dest: &[u8],
    now: i64,
) -> Status {
    match store.get_message(id).await {
        Ok(rows) => cancel_rows(store, account, &rows, source, dest, now).await,
        Err(_) => Status::ESME_RSYSERR,
    }
}

/// [`cancel`] of the rows of a message already read.
pub(crate) async fn cancel_rows(
    store: &dyn smsc_store::Store,
    account: &Account,
    rows: &[smsc_store::StoredMessage],
    source: &[u8],
    dest: &[u8],
    now: i64,
) -> Status {
    let mut cancelled = 0;
    for m in rows.iter().filter(|m| owned(m, account, source) && pending(m.state)) {
        if !dest.is_empty() && m.dest.addr.as_bytes() != dest {
            continue;
        }
        let update = Update {
            state: Some(DeliveryState::Deleted),
            final_at: Some(now),
            ..Update::default()
        };
        // Conditional on the state read: a delivery that got there first wins.
        match store.transition(&m.message_id, m.dest_index, m.state, update).await {
            Ok(Applied::Yes) => cancelled += 1,
            Ok(Applied::No(_)) => {}
            Err(_) => return Status::ESME_RSYSERR,
        }
    }
    if cancelled > 0 { Status::ESME_ROK } else { Status::ESME_RCANCELFAIL }
}

async fn replace(
    store: &dyn smsc_store::Store,
    account: &Account,
    r: &ReplaceSm,
    now: i64,
) -> Status {
    let id = String::from_utf8_lossy(r.message_id.as_bytes());
    let rows = match store.get_message(&id).await {
        Ok(rows) => rows,
        Err(_) => return Status::ESME_RSYSERR,
    };
    let Some(m) = rows.iter().find(|m| owned(m, account, r.source.addr.as_bytes())) else {
        return Status::ESME_RREPLACEFAIL;
    };
    if !pending(m.state) {
        return Status::ESME_RREPLACEFAIL;
    }
    let payload = match submit::payload(&r.short_message, &r.tlvs) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if !r.registered_delivery.is_valid() {
        return Status::ESME_RINVREGDLVFLG;
    }
    let (schedule_at, expire_at) =
        match (r.schedule_delivery_time.is_empty(), r.validity_period.is_empty()) {
            (true, true) => (m.schedule_at, m.expire_at),
            _ => match submit::times(account, &r.schedule_delivery_time, &r.validity_period, now) {
                Ok((s, e)) => (
                    s.or(m.schedule_at),
                    if r.validity_period.is_empty() { m.expire_at } else { e },
                ),
                Err(s) => return s,
            },
        };
    let update = Update {
        payload: Some(payload),
        registered_delivery: Some(r.registered_delivery.0),
        schedule_at: Some(schedule_at),
        expire_at: Some(expire_at),
        ..Update::default()
    };
    let mut replaced = 0;
    for m in rows.iter().filter(|m| owned(m, account, r.source.addr.as_bytes()) && pending(m.state))
    {
        match store.transition(&m.message_id, m.dest_index, m.state, update.clone()).await {
            Ok(Applied::Yes) => replaced += 1,
            Ok(Applied::No(_)) => {}
            Err(_) => return Status::ESME_RSYSERR,
        }
    }
    if replaced > 0 { Status::ESME_ROK } else { Status::ESME_RREPLACEFAIL }
}
