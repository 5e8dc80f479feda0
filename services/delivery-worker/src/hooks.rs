//! Account webhooks: the receipts of HTTP API submits, and MO while the account has no
//! SMPP receiver bound, `POST`ed as JSON to the account's `webhook.url`, signed with its
//! secret. A 2xx delivers; a 4xx other than 408 and 429 is a refusal for good (dropped,
//! as an ESME's ESME_RX_P_APPN); anything else leaves the event pending, and the account's
//! endpoint is not called again before a backoff (doubling per failure, from
//! [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]) has passed.
//!
//! Signature (docs/http-api.md): `smsc-signature: v1=<hex HMAC-SHA256(secret,
//! "<smsc-timestamp>.<body>")>`, with `smsc-timestamp` the Unix seconds of the request;
//! `smsc-event-id` is the same for every copy of one event (delivery is at least once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat};
use prometheus::IntCounterVec;
use serde_json::{Value, json};
use smsc_accounts::Webhook;
use smsc_proto::NotificationKind;
use smsc_smpp::{Body, Pdu};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::dispatch::Sent;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The wait after a first failure, doubled by each next one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
>;

#[derive(Debug)]
pub struct Hooks {
    client: Client,
    /// Per account: failures in a row, and when its endpoint may be called again.
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
    /// `smsc_worker_webhook_requests_total`.
    requests: IntCounterVec,
}

impl Hooks {
    pub fn new(requests: IntCounterVec) -> Self {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Self { client, backoff: Mutex::new(HashMap::new()), requests }
    }

    /// Whether the account's endpoint is resting after failures.
    pub fn resting(&self, system_id: &str) -> bool {
        let b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        b.get(system_id).is_some_and(|(_, until)| Instant::now() < *until)
    }

    fn outcome(&self, system_id: &str, ok: bool) {
        self.requests.with_label_values(&[if ok { "delivered" } else { "failed" }]).inc();
        let mut b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            b.remove(system_id);
            return;
        }
        let now = Instant::now();
        let (failures, until) = b.entry(system_id.to_owned()).or_insert((0, now));
        if *until > now {
            // A request sent before this rest began, failing during it: the same outage.
            return;
        }
        let wait = FIRST_BACKOFF.saturating_mul(1 << (*failures).min(16)).min(MAX_BACKOFF);
        *failures += 1;
        *until = now + wait;
    }

    /// Posts one event (the receipt or MO in `pdu`, made at `created_at`) to `hook`, at
    /// `now` (Unix ms).
    #[allow(clippy::too_many_arguments)]
    pub async fn post(
        &self,
        system_id: &str,
        hook: &Webhook,
        kind: NotificationKind,
        message_id: &str,
        pdu: &Bytes,
        created_at: i64,
        now: i64,
    ) -> Sent {
        if self.resting(system_id) {
            return Sent::NotNow;
        }
        let Some(event) = event(system_id, kind, message_id, pdu, created_at) else {
            warn!(system_id, message_id, "an undecodable notification dropped");
            return Sent::Refused;
        };
        let body = event.to_string();
        let timestamp = (now / 1000).to_string();
        // A receipt per number of a message to several: the number makes it one event.
        let event_id = match kind {
            NotificationKind::Mo => format!("mo:{message_id}"),
            _ => format!("receipt:{message_id}:{}", event["to"].as_str().unwrap_or_default()),
        };
        let request = hyper::Request::post(hook.url.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("smsc-event-id", event_id)
            .header("smsc-timestamp", &timestamp)
            .header("smsc-signature", signature(hook.secret(), &timestamp, body.as_bytes()))
            .body(http_body_util::Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                warn!(system_id, error = %e, "the account's webhook URL cannot be requested");
                self.outcome(system_id, false);
                return Sent::NotNow;
            }
        };
        let status = match tokio::time::timeout(TIMEOUT, self.client.request(request)).await {
            Ok(Ok(r)) => r.status(),
            Ok(Err(e)) => {
                debug!(system_id, error = %e, "webhook unreachable");
                self.outcome(system_id, false);
                return Sent::NotNow;
            }
            Err(_) => {
                debug!(system_id, "webhook timed out");
                self.outcome(system_id, false);
                return Sent::NotNow;
            }
        };
        let retry = matches!(status.as_u16(), 408 | 429);
        if status.is_success() {
            self.outcome(system_id, true);
            Sent::Delivered
        } else if status.is_client_error() && !retry {
            warn!(system_id, message_id, %status, "the account's webhook refused an event for good");
            self.requests.with_label_values(&["refused"]).inc();
            self.backoff.lock().unwrap_or_else(|e| e.into_inner()).remove(system_id);
            Sent::Refused
        } else {
            debug!(system_id, %status, "webhook failed");
            self.outcome(system_id, false);
            Sent::NotNow
        }
    }
}

/// `v1=` and the hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign()))
}

fn time(ms: i64) -> Value {
    DateTime::from_timestamp_millis(ms)
        .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
}

/// The JSON of a receipt or MO, from the deliver_sm the SMSC built for it.
pub fn event(
    system_id: &str,
    kind: NotificationKind,
    message_id: &str,
    pdu: &Bytes,
    created_at: i64,
) -> Option<Value> {
    let Ok(Pdu { body: Body::DeliverSm(d), .. }) = smsc_smpp::decode(pdu.clone()) else {
        return None;
    };
    let addr = |a: &smsc_smpp::Address<21>| String::from_utf8_lossy(a.addr.as_bytes()).into_owned();
    if kind == NotificationKind::Mo {
        let alphabet = d.data_coding.alphabet();
        let body =
            d.tlvs.message_payload().cloned().unwrap_or_else(|| d.short_message.as_bytes().clone());
        let udh = d.esm_class.0 & smsc_smpp::EsmClass::UDHI != 0;
        let text = (!udh).then(|| smsc_smpp::text::decode(&body, alphabet).ok()).flatten();
        return Some(json!({
            "type": "mo",
            "id": message_id,
            "account": system_id,
            "from": addr(&d.source),
            "to": addr(&d.dest),
            "data_coding": d.data_coding.0,
            "text": text,
            "data": hex::encode(&body),
            "received_at": time(created_at),
        }));
    }
    let state = d.tlvs.message_state().and_then(|s| s.name()).unwrap_or("UNKNOWN");
    let error = d.tlvs.network_error_code().map_or(0, |e| e.error_code);
    Some(json!({
        "type": "receipt",
        "message_id": message_id,
        "account": system_id,
        // The receipt goes from the handset to the sender.
        "to": addr(&d.source),
        "from": addr(&d.dest),
        "state": state,
        "error_code": error,
        "final_at": time(created_at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // As Python computes it: hmac.new(secret, b"1700000000." + body, sha256).
        let s = signature(b"0123456789abcdef", "1700000000", br#"{"type":"receipt"}"#);
        assert_eq!(s, "v1=83332141a457a1eb20d46dc63302d723359ba9f1702a2c90fc708e4bee5e9507");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_rest_the_endpoint_doubling_and_a_success_clears_it() {
        let requests =
            prometheus::IntCounterVec::new(prometheus::Opts::new("requests", "test"), &["result"])
                .expect("metric");
        let hooks = Hooks::new(requests.clone());
        assert!(!hooks.resting("a"));
        hooks.outcome("a", false);
        assert!(hooks.resting("a") && !hooks.resting("b"));
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(!hooks.resting("a"));
        hooks.outcome("a", false);
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(hooks.resting("a"), "the second wait is twice the first");
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(!hooks.resting("a"));
        // Requests under way when the rest began fail during it: still 4 s, not more.
        hooks.outcome("a", false);
        hooks.outcome("a", false);
        hooks.outcome("a", false);
        tokio::time::advance(FIRST_BACKOFF * 4).await;
        assert!(!hooks.resting("a"), "one failure period, one doubling");
        for _ in 0..40 {
            hooks.outcome("a", false);
            tokio::time::advance(MAX_BACKOFF).await;
        }
        hooks.outcome("a", false);
        tokio::time::advance(MAX_BACKOFF).await;
        assert!(!hooks.resting("a"), "never longer than the maximum");
        hooks.outcome("a", true);
        assert!(!hooks.resting("a"));
        assert_eq!(requests.with_label_values(&["failed"]).get(), 46);
        assert_eq!(requests.with_label_values(&["delivered"]).get(), 1);
    }
}
