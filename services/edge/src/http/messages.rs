//! `GET /v1/messages/{id}` (query_sm's answer, for every destination) and
//! `DELETE /v1/messages/{id}` (cancel_sm), from the store. A message of another account
//! is "not found", as query_sm has it, so ids do not leak.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};
use smsc_accounts::Account;
use smsc_smpp::CommandStatus as Status;
use smsc_store::{StoredMessage, UnixMillis};
use tracing::warn;

use super::{Api, Client, Problem, auth};
use crate::session::query::{cancel_rows, owned};

/// The account's rows of message `id`, or why there are none.
async fn rows(api: &Api, account: &Account, id: &str) -> Result<Vec<StoredMessage>, Problem> {
    let not_found = || Problem::smpp(Status::ESME_RQUERYFAIL, "no such message");
    // Ids are 32 hex digits here; an upstream's can be up to 64 octets.
    if id.is_empty() || id.len() > 64 {
        return Err(not_found());
    }
    let rows = api.edge.store.get_message(id).await.map_err(|e| {
        warn!(error = %smsc_runtime::telemetry::error_chain(&e), "HTTP message lookup: store unavailable");
        Problem::smpp(Status::ESME_RSYSERR, "the store is unavailable")
    })?;
    let mine: Vec<_> = rows.into_iter().filter(|m| owned(m, account, b"")).collect();
    if mine.is_empty() { Err(not_found()) } else { Ok(mine) }
}

pub(super) async fn get(
    State(api): State<Arc<Api>>,
    ConnectInfo(Client(peer)): ConnectInfo<Client>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let answer = async {
        let account = auth::account(&api.edge, &headers, peer.ip()).await?;
        let mut rows = rows(&api, &account, &id).await?;
        rows.sort_by_key(|m| m.dest_index);
        Ok(describe(&id, &rows))
    };
    api.answer("get", answer.await.map(|v| (StatusCode::OK, axum::Json(v))))
}

pub(super) async fn delete(
    State(api): State<Arc<Api>>,
    ConnectInfo(Client(peer)): ConnectInfo<Client>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let answer = async {
        let account = auth::account(&api.edge, &headers, peer.ip()).await?;
        let rows = rows(&api, &account, &id).await?;
        let now = api.edge.clock.now_ms();
        match cancel_rows(&*api.edge.store, &account, &rows, b"", b"", now).await {
            Status::ESME_ROK => Ok(StatusCode::NO_CONTENT),
            Status::ESME_RCANCELFAIL => Err(Problem::smpp(
                Status::ESME_RCANCELFAIL,
                "the message is no longer pending (delivered, handed on, or final)",
            )),
            s => Err(Problem::smpp(s, "the store is unavailable")),
        }
    };
    api.answer("delete", answer.await)
}

fn time(ms: UnixMillis) -> Value {
    DateTime::from_timestamp_millis(ms)
        .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
}

/// The message as the API shows it: what all its destinations share, then each one's
/// state, SMPP's message_state name (the SMSC's own in-flight states are ENROUTE).
fn describe(id: &str, rows: &[StoredMessage]) -> Value {
    let first = &rows[0];
    let destinations: Vec<Value> = rows
        .iter()
        .map(|m| {
            let state = m.state.to_smpp().for_version(0x50);
            json!({
                "to": String::from_utf8_lossy(m.dest.addr.as_bytes()),
                "state": state.name().unwrap_or("UNKNOWN"),
                "final": state.is_final(),
                "final_at": m.final_at.map_or(Value::Null, time),
                "error_code": m.error_code,
                "attempts": m.attempts,
            })
        })
        .collect();
    json!({
        "message_id": id,
        "from": String::from_utf8_lossy(first.source.addr.as_bytes()),
        "data_coding": first.data_coding,
        "submitted_at": time(first.submitted_at),
        "schedule_at": first.schedule_at.map_or(Value::Null, time),
        "expire_at": time(first.expire_at),
        "destinations": destinations,
    })
}
