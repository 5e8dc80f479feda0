//! Who sends a request: an HTTP API key of the account (`Authorization: Bearer`), or HTTP
//! Basic with its system_id and password, checked as a bind is (the credential cache, so
//! a client sending many requests pays argon2 about once per
//! `edge.credential_cache.ttl`). Both go through the bind lockout: repeated failures
//! from an address are refused for a while without a check.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use smsc_accounts::{Account, AuthError};
use smsc_smpp::CommandStatus as Status;
use smsc_store::BindKind;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::Problem;
use crate::Edge;
use crate::lockout::Failure;

/// What the lockout counts failed API keys under (a system_id is at most 15 octets).
const API_KEY_LOCKOUT_ID: &[u8] = b"<http-api-key>";

/// The account whose credentials the request carries, if it may submit from `ip`.
pub(super) async fn account(
    edge: &Edge,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Arc<Account>, Problem> {
    let account = match bearer(headers) {
        Some(key) => by_api_key(edge, key, ip)?,
        None => by_password(edge, headers, ip).await?,
    };
    let transmits =
        account.allows_bind(BindKind::Transmitter) || account.allows_bind(BindKind::Transceiver);
    if !transmits || !account.client_allowed(ip) {
        debug!(system_id = %account.system_id, %ip, "HTTP request refused: bind types or client address");
        return Err(Problem::smpp(
            Status::ESME_RBINDFAIL,
            "the account may not submit from this address",
        ));
    }
    Ok(account)
}

fn locked_out() -> Problem {
    Problem::smpp(Status::ESME_RBINDFAIL, "too many failed attempts from this address; try later")
}

/// `Authorization: Bearer <key>`: one of the account's API keys (a SHA-256 lookup: a
/// key is 256 random bits, so no argon2 is needed to make guessing it hopeless).
fn by_api_key(edge: &Edge, key: &str, ip: IpAddr) -> Result<Arc<Account>, Problem> {
    if edge.lockout.is_locked(API_KEY_LOCKOUT_ID, ip, Instant::now()) {
        edge.metrics.connections_refused_total.with_label_values(&["lockout"]).inc();
        return Err(locked_out());
    }
    match edge.accounts.by_api_key(key) {
        Some(a) if a.enabled => {
            edge.lockout.success(API_KEY_LOCKOUT_ID, ip);
            Ok(a)
        }
        Some(_) => Err(Problem::smpp(Status::ESME_RBINDFAIL, "the account is disabled")),
        None => {
            count_failure(edge, "<api key>", API_KEY_LOCKOUT_ID, ip);
            Err(Problem::smpp(Status::ESME_RINVPASWD, "invalid credentials"))
        }
    }
}

/// HTTP Basic with the account's system_id and password, checked as a bind is.
async fn by_password(
    edge: &Edge,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Arc<Account>, Problem> {
    let (system_id, password) = basic(headers).ok_or_else(|| {
        Problem::smpp(
            Status::ESME_RINVSYSID,
            "credentials needed: HTTP Basic (system_id:password) or Bearer (an API key)",
        )
    })?;
    if edge.lockout.is_locked(system_id.as_bytes(), ip, Instant::now()) {
        edge.metrics.connections_refused_total.with_label_values(&["lockout"]).inc();
        return Err(locked_out());
    }
    let checked = edge.credentials.authenticate(&edge.accounts, &system_id, &password).await;
    edge.metrics.bind_password_checks_total.with_label_values(&[checked.via.as_str()]).inc();
    let account = match checked.result {
        Ok(a) => a,
        Err(e) => {
            let status = match e {
                AuthError::UnknownSystemId => Status::ESME_RINVSYSID,
                AuthError::BadPassword => Status::ESME_RINVPASWD,
                AuthError::Unavailable => Status::ESME_RSYSERR,
                _ => Status::ESME_RBINDFAIL,
            };
            if matches!(status, Status::ESME_RINVSYSID | Status::ESME_RINVPASWD) {
                count_failure(edge, &system_id, system_id.as_bytes(), ip);
            }
            // Unknown id and wrong password read alike (as their timing does).
            return Err(match status {
                Status::ESME_RINVSYSID | Status::ESME_RINVPASWD => {
                    Problem::smpp(Status::ESME_RINVPASWD, "invalid credentials")
                }
                s => Problem::smpp(s, "the account cannot be used now"),
            });
        }
    };
    edge.lockout.success(system_id.as_bytes(), ip);
    Ok(account)
}

/// `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case("bearer ").then(|| key.trim())
}

/// `Authorization: Basic base64(system_id:password)`.
fn basic(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, encoded) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let system_id = std::str::from_utf8(&decoded[..colon]).ok()?;
    // A system_id is at most 15 octets in SMPP; the same accounts serve both.
    if system_id.is_empty() || system_id.len() > 15 {
        return None;
    }
    Some((system_id.to_owned(), decoded[colon + 1..].to_vec()))
}

/// A failed attempt counts towards the lockout of `key` (the system_id, or for API keys
/// one key for all) from `ip`.
fn count_failure(edge: &Edge, system_id: &str, key: &[u8], ip: IpAddr) {
    if let Failure::LockedOut { failures } = edge.lockout.failure(key, ip, Instant::now()) {
        edge.metrics.lockouts_total.with_label_values(&["bind_failures"]).inc();
        warn!(%system_id, %ip, failures, "HTTP lockout: too many failed attempts for this system_id from this address");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn basic_credentials_are_read_and_anything_else_is_none() {
        // "demo:se:cret": the password may hold colons, the system_id not.
        let b = basic(&with("Basic ZGVtbzpzZTpjcmV0")).expect("read");
        assert_eq!((b.0.as_str(), &b.1[..]), ("demo", &b"se:cret"[..]));
        assert!(basic(&with("bAsIc   ZGVtbzpzZTpjcmV0  ")).is_some(), "scheme case, spaces");
        for bad in ["Bearer ZGVtbzpkZW1v", "Basic", "Basic !!!", "Basic ZGVtbw==", "Basic OmRlbW8="]
        {
            assert!(basic(&with(bad)).is_none(), "{bad}");
        }
        // A system_id longer than SMPP allows.
        let long = base64::engine::general_purpose::STANDARD.encode("a_sixteen_octets:pw");
        assert!(basic(&with(&format!("Basic {long}"))).is_none());
        assert!(basic(&HeaderMap::new()).is_none());
    }
}
