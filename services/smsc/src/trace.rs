//! `smsc trace MESSAGE_ID`: a message's life as the store keeps it, for "where is my
//! message?": each destination's state with its times, attempts, route and connector,
//! what the receipt was asked for, and the key of its CDR once final. It reads the
//! configured store (ScyllaDB, or the store server): `smsc all`'s embedded store lives
//! inside that process, where `GET /v1/messages/{id}` reads it.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat};
use prost::Message as _;
use smsc_proto::SubmitEvent;
use smsc_smpp::RegisteredDelivery;
use smsc_store::config::StoreKind;
use smsc_store::{Clock, StoredMessage, SystemClock};

use crate::config::Config;

/// The life of `message_id`, one block per destination.
pub async fn trace(config: &Config, message_id: &str) -> anyhow::Result<String> {
    if config.store.kind == StoreKind::Embedded {
        anyhow::bail!(
            "store.kind is embedded: the store lives inside the `smsc all` process \
             (ask it: GET /v1/messages/{message_id}); point --config at the cluster's store"
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut connect = crate::engines::store(config, &clock, None)?;
    let store = connect().await?;
    let mut rows = store.get_message(message_id).await.context("reading the message")?;
    if rows.is_empty() {
        anyhow::bail!(
            "no message {message_id} in the store (never accepted, not stored yet, or its \
             final state older than store.final_ttl)"
        );
    }
    rows.sort_by_key(|m| m.dest_index);
    Ok(describe(&rows))
}

fn time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn addr(a: &smsc_store::Address) -> String {
    String::from_utf8_lossy(a.addr.as_bytes()).into_owned()
}

/// The text `smsc trace` prints for the rows of one message.
pub(crate) fn describe(rows: &[StoredMessage]) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else { return out };
    let origin = SubmitEvent::decode(first.event.clone()).map(|e| e.command).unwrap_or_default();
    let _ = writeln!(
        out,
        "message {} of account {}, from {}, accepted {} ({})",
        first.message_id,
        first.system_id,
        addr(&first.source),
        time(first.submitted_at),
        if origin.is_empty() { "submit" } else { origin.as_str() },
    );
    for m in rows {
        let state = m.state.to_smpp().name().unwrap_or("UNKNOWN");
        let _ = writeln!(out, "  to {} (destination {}): {state}", addr(&m.dest), m.dest_index);
        if let Some(at) = m.schedule_at {
            let _ = writeln!(out, "    scheduled for {}", time(at));
        }
        match m.first_attempt_at {
            Some(at) => {
                let _ = writeln!(
                    out,
                    "    {} attempt(s), the first at {}, the latest through connector {}",
                    m.attempts,
                    time(at),
                    if m.connector.is_empty() { "-" } else { m.connector.as_str() },
                );
            }
            None => {
                let _ = writeln!(out, "    not handed to a connector");
            }
        }
        let route = if m.route.is_empty() { "(none matched)" } else { m.route.as_str() };
        let _ = writeln!(out, "    route {route}; valid until {}", time(m.expire_at));
        if m.error_code != 0 {
            let _ = writeln!(out, "    network error code {}", m.error_code);
        }
        let wanted = RegisteredDelivery(m.registered_delivery);
        let receipt = match (wanted.wants_receipt(true), wanted.wants_receipt(false)) {
            (true, true) => "on the final state",
            (true, false) => "on delivery",
            (false, true) => "on failure",
            (false, false) => "not asked for",
        };
        let _ = writeln!(out, "    receipt: {receipt}");
        if let Some(at) = m.final_at.filter(|_| m.state.is_final()) {
            let _ = writeln!(
                out,
                "    final at {}; CDR {}:{}:{state}:{at}",
                time(at),
                m.message_id,
                m.dest_index
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsc_store::DeliveryState;

    #[test]
    fn a_trace_tells_each_destinations_life() {
        let event = SubmitEvent { command: "http".into(), ..Default::default() };
        let mut delivered = smsc_store::contract::sample_message("m-9", 0, "shop");
        delivered.event = event.encode_to_vec().into();
        delivered.state = DeliveryState::Delivered;
        delivered.attempts = 2;
        delivered.first_attempt_at = Some(1_700_000_000_100);
        delivered.final_at = Some(1_700_000_000_900);
        delivered.connector = "sim".into();
        let mut waiting = smsc_store::contract::sample_message("m-9", 1, "shop");
        waiting.schedule_at = Some(1_700_003_600_000);
        waiting.state = DeliveryState::Scheduled;
        waiting.registered_delivery = 0;
        let text = describe(&[delivered, waiting]);
        for line in [
            "message m-9 of account shop, from SHOP, accepted 2023-11-14T22:13:20.000Z (http)",
            "  to 447946000000 (destination 0): DELIVERED",
            "    2 attempt(s), the first at 2023-11-14T22:13:20.100Z, the latest through connector sim",
            "    route uk-mobile; valid until 2023-11-15T22:13:20.000Z",
            "    receipt: on the final state",
            "    final at 2023-11-14T22:13:20.900Z; CDR m-9:0:DELIVERED:1700000000900",
            "  to 447946000001 (destination 1): SCHEDULED",
            "    scheduled for 2023-11-14T23:13:20.000Z",
            "    not handed to a connector",
            "    receipt: not asked for",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
    }
}
