//! `POST /v1/messages` and `POST /v1/messages/batch`: a JSON message becomes the submit
//! SMPP would have carried (one per part of a long text, each part with its own message
//! id and every destination under it, as submit_multi), goes through the SMPP checks,
//! and is published; 202 once every record is on the bus.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::BytesMut;
use chrono::{DateTime, TimeDelta};
use serde::Deserialize;
use serde_json::{Value, json};
use smsc_accounts::Account;
use smsc_smpp::pdu::{ShortMessage, TimeString};
use smsc_smpp::text::{self, Alphabet};
use smsc_smpp::time::SmppTime;
use smsc_smpp::{CommandId, CommandStatus as Status, DataCoding, EsmClass, Tlvs, concat};
use smsc_store::{Address, UnixMillis};
use tokio::sync::OwnedSemaphorePermit;

use super::{Api, Client, Problem, auth};
use crate::quota::Verdict;
use crate::session::publish_status;
use crate::submit::{self, Accepted, Message, Submit};

/// One message of a request, as its JSON says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewMessage {
    from: String,
    to: To,
    #[serde(default, deserialize_with = "present")]
    text: Option<String>,
    /// Hex: a binary body, sent with `data_coding`.
    #[serde(default, deserialize_with = "present")]
    data: Option<String>,
    #[serde(default, deserialize_with = "whole")]
    data_coding: Option<u8>,
    /// Seconds from now (or from `schedule`); absent: the account's default validity.
    #[serde(default, deserialize_with = "whole")]
    validity: Option<u32>,
    /// RFC 3339; absent or past: now.
    #[serde(default, deserialize_with = "present")]
    schedule: Option<String>,
    /// 0-3, SMPP's priority_flag (which raises the class up to the account's maximum).
    #[serde(default, deserialize_with = "whole")]
    priority: Option<u8>,
    /// A receipt of the final state to the account's webhook (SMPP's registered_delivery 1).
    #[serde(default, deserialize_with = "present")]
    receipt: Option<bool>,
}

/// An optional member may be left out, not given as `null` (as the schema says).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An optional integer member: JSON Schema's integers include `456.0`.
fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error as _;
    let n = serde_json::Number::deserialize(d)?;
    let v = match (n.as_u64(), n.as_f64()) {
        (Some(v), _) => Some(v),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Some(f as u64),
        _ => None,
    };
    v.and_then(|v| T::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not an integer in range")))
}

/// The longest `text`: 8000 UCS2 characters are 120 parts, a GSM text of 8000
/// characters at most 105; both well within the 255 parts a reference allows.
const MAX_TEXT_CHARS: usize = 8_000;

/// The `data_coding` values `data` may have: SMPP's GSM 7-bit (unpacked septets),
/// IA5, binary (2 and 4), Latin-1 and UCS2.
const DATA_CODINGS: [u8; 6] = [0, 1, 2, 3, 4, 8];

/// The longest `data`: 16000 octets are at most 120 parts.
const MAX_DATA_OCTETS: usize = 16_000;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum To {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Batch {
    messages: Vec<NewMessage>,
}

/// A message that passed the checks: one checked submit per part, and its destinations.
struct Planned {
    to: Vec<String>,
    dests: Vec<Address>,
    data_coding: DataCoding,
    parts: Vec<Message<'static>>,
}

const NO_TLVS: &Tlvs = &Tlvs::new();

pub(super) async fn single(
    State(api): State<Arc<Api>>,
    ConnectInfo(Client(peer)): ConnectInfo<Client>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let account = auth::account(&api.edge, &headers, peer.ip()).await?;
        backlog(&api, &account).await?;
        let message: NewMessage = parse(&api, &headers, body).await?;
        let planned = plan(&api, &account, &message)?;
        let mut results = submit_all(&api, &account, vec![planned]).await?;
        Ok::<_, Problem>(results.pop().unwrap_or(Value::Null))
    };
    api.answer("submit", answer.await.map(|v| (StatusCode::ACCEPTED, axum::Json(v))))
}

pub(super) async fn batch(
    State(api): State<Arc<Api>>,
    ConnectInfo(Client(peer)): ConnectInfo<Client>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let account = auth::account(&api.edge, &headers, peer.ip()).await?;
        backlog(&api, &account).await?;
        let batch: Batch = parse(&api, &headers, body).await?;
        if batch.messages.is_empty() {
            return Err(Problem::new(StatusCode::BAD_REQUEST, "`messages` is empty"));
        }
        let mut planned = Vec::with_capacity(batch.messages.len());
        for (i, m) in batch.messages.iter().enumerate() {
            planned.push(plan(&api, &account, m).map_err(|p| p.with("index", json!(i)))?);
        }
        let results = submit_all(&api, &account, planned).await?;
        Ok(json!({ "results": results }))
    };
    api.answer("batch", answer.await.map(|v| (StatusCode::ACCEPTED, axum::Json(v))))
}

/// The body as JSON of `T`, read only now (after the credentials and the backlog were
/// checked) and only up to `edge.http.max_body_bytes`; a refusal names where it went
/// wrong.
async fn parse<T: for<'de> Deserialize<'de>>(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Problem> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ));
    }
    let limit = api.config.max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        match over {
            true => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {limit} bytes (edge.http.max_body_bytes)"),
            ),
            false => Problem::new(StatusCode::BAD_REQUEST, "the body could not be read"),
        }
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        Problem::new(StatusCode::BAD_REQUEST, format!("invalid JSON at `{at}`: {}", e.inner()))
    })
}

/// `from` as SMPP would carry it: up to 20 digits (with or without `+`) an international
/// number, or a short code when 6 digits or fewer without `+`; else an alphanumeric
/// sender of up to 11 letters, digits, spaces, `.`, `_` and `-` (the schema's pattern).
fn source(from: &str) -> Result<Address, Problem> {
    use smsc_smpp::{Npi, Ton};
    let digits = from.strip_prefix('+').unwrap_or(from);
    let numeric = (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    let alphanumeric = (1..=11).contains(&from.len())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b" ._-".contains(&b));
    let (ton, npi, addr) = match (numeric, alphanumeric) {
        (true, _) if from.starts_with('+') || digits.len() > 6 => {
            (Ton::INTERNATIONAL, Npi::ISDN, digits)
        }
        (true, _) => (Ton::NETWORK_SPECIFIC, Npi::UNKNOWN, digits),
        (false, true) => (Ton::ALPHANUMERIC, Npi::UNKNOWN, from),
        (false, false) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "`from`: up to 20 digits, or up to 11 letters, digits, spaces, `.`, `_`, `-`",
            ));
        }
    };
    Address::new(ton, npi, addr).map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "`from`"))
}

/// A destination: an international number, with or without `+`.
fn destination(to: &str) -> Result<Address, Problem> {
    use smsc_smpp::{Npi, Ton};
    let digits = to.strip_prefix('+').unwrap_or(to);
    let refused = || Problem::new(StatusCode::BAD_REQUEST, "`to`: numbers of 1 to 20 digits");
    if !(1..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused());
    }
    Address::new(Ton::INTERNATIONAL, Npi::ISDN, digits).map_err(|_| refused())
}

/// An absolute SMPP time for `ms` (UTC).
fn smpp_time(ms: UnixMillis, status: Status) -> Result<TimeString, Problem> {
    DateTime::from_timestamp_millis(ms)
        .and_then(|t| SmppTime::absolute(t.fixed_offset()).ok())
        .map(|t| TimeString::from_time(&t))
        .ok_or_else(|| Problem::smpp(status, "time out of range"))
}

/// Checks a message of `account` into its parts, with SMPP's checks and statuses.
fn plan(api: &Api, account: &Account, m: &NewMessage) -> Result<Planned, Problem> {
    let now = api.edge.clock.now_ms();
    let to = match &m.to {
        To::One(one) => vec![one.clone()],
        To::Many(many) => many.clone(),
    };
    if to.is_empty() || to.len() > 255 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "`to`: 1 to 255 numbers"));
    }
    let dests = to.iter().map(|t| destination(t)).collect::<Result<Vec<_>, _>>()?;
    for d in &dests {
        submit::check_dest(d).map_err(|s| Problem::smpp(s, refusal(s)))?;
    }
    let source = source(&m.from)?;
    let priority_flag = m.priority.unwrap_or(0);
    if priority_flag > 3 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "`priority`: 0 to 3"));
    }
    let (data_coding, bodies) = body(m)?;
    let receipt = m.receipt.unwrap_or(false);
    if receipt && account.webhook.is_none() {
        return Err(Problem::smpp(
            Status::ESME_RINVREGDLVFLG,
            "a receipt goes to the account's webhook, and the account has none",
        ));
    }
    let schedule_at = match &m.schedule {
        None => None,
        Some(s) => {
            let at = DateTime::parse_from_rfc3339(s)
                .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("`schedule`: {e}")))?
                .timestamp_millis();
            // A time in the past means now (as SMPP has it).
            (at > now).then_some(at)
        }
    };
    let schedule = match schedule_at {
        Some(at) => smpp_time(at, Status::ESME_RINVSCHED)?,
        None => TimeString::EMPTY,
    };
    let validity = match m.validity {
        Some(0) => return Err(Problem::smpp(Status::ESME_RINVEXPIRY, "`validity`: at least 1")),
        Some(secs) => {
            // Past the account's maximum it is clamped anyway (as SMPP's is).
            let secs = u64::from(secs).min(account.max_validity.as_secs()) as i64;
            let from = schedule_at.unwrap_or(now).max(now);
            let at = from.saturating_add(TimeDelta::seconds(secs).num_milliseconds());
            smpp_time(at, Status::ESME_RINVEXPIRY)?
        }
        None => TimeString::EMPTY,
    };
    let mut parts = Vec::with_capacity(bodies.len());
    for part in bodies {
        let esm_class = EsmClass(part.esm_class_bits());
        let short_message = ShortMessage::new(part.short_message)
            .map_err(|_| Problem::smpp(Status::ESME_RINVMSGLEN, "a part too long"))?;
        let submit = Submit {
            command: CommandId::SubmitSm,
            service_type: b"",
            source,
            esm_class,
            protocol_id: 0,
            priority_flag,
            registered_delivery: smsc_smpp::RegisteredDelivery(u8::from(receipt)),
            replace_if_present_flag: 0,
            data_coding,
            short_message: Some(&short_message),
            tlvs: NO_TLVS,
            schedule_delivery_time: &schedule,
            validity_period: &validity,
        };
        // The SMPP checks; the destinations were checked above, as submit_multi does.
        let m =
            submit::check(submit, None, account, now).map_err(|s| Problem::smpp(s, refusal(s)))?;
        // What the message borrows here it has in its payload: none of it outlives this.
        parts.push(Message {
            command: "http",
            service_type: b"",
            source: m.source,
            esm_class: m.esm_class,
            protocol_id: m.protocol_id,
            priority_flag: m.priority_flag,
            registered_delivery: m.registered_delivery,
            data_coding: m.data_coding,
            payload: m.payload,
            tlvs: NO_TLVS,
            schedule_at: m.schedule_at,
            expire_at: m.expire_at,
        });
    }
    Ok(Planned { to, dests, data_coding, parts })
}

/// The text of a refusal whose SMPP status says it all.
fn refusal(s: Status) -> String {
    format!("refused as SMPP refuses it: {}", crate::session::status_name(s))
}

/// `text` in the smallest encoding that holds it (GSM 7-bit, else UCS2), or `data` in
/// `data_coding`; split into concatenated parts when one message does not hold it.
fn body(m: &NewMessage) -> Result<(DataCoding, Vec<concat::Part>), Problem> {
    // Any reference: what matters is that parts of one message share it.
    let reference = u16::from(rand_byte());
    let too_long = |e: text::TextError| Problem::smpp(Status::ESME_RINVMSGLEN, e.to_string());
    match (&m.text, &m.data, m.data_coding) {
        (Some(t), None, None) => {
            if t.chars().count() > MAX_TEXT_CHARS {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("`text`: at most {MAX_TEXT_CHARS} characters"),
                ));
            }
            let (coding, encoded) = text::choose_with(t, false);
            let parts = concat::split_encoded(&encoded, coding.alphabet(), reference, false)
                .map_err(too_long)?;
            Ok((coding, parts))
        }
        (None, Some(hex), Some(dc)) => {
            let bad = |what: &str| Problem::new(StatusCode::BAD_REQUEST, what.to_owned());
            if !DATA_CODINGS.contains(&dc) {
                return Err(bad("`data_coding`: one of 0, 1, 2, 3, 4, 8"));
            }
            if hex.len() > 2 * MAX_DATA_OCTETS {
                return Err(bad("`data`: at most 16000 octets"));
            }
            let data = hex::decode(hex).map_err(|_| bad("`data`: pairs of hex digits"))?;
            let coding = DataCoding(dc);
            let alphabet = coding.alphabet();
            if alphabet == Alphabet::Ucs2 && !data.len().is_multiple_of(2) {
                return Err(bad("`data`: UCS2 is whole 2-octet characters"));
            }
            let parts =
                concat::split_encoded(&data, alphabet, reference, false).map_err(too_long)?;
            Ok((coding, parts))
        }
        (None, Some(_), None) => {
            Err(Problem::new(StatusCode::BAD_REQUEST, "`data` needs `data_coding`"))
        }
        (Some(_), None, Some(_)) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "`text` is encoded by the SMSC; `data_coding` goes with `data`",
        )),
        _ => Err(Problem::new(StatusCode::BAD_REQUEST, "give one of `text` and `data`")),
    }
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u8
}

/// Admits and publishes the messages of one request: all of them or none. Each comes
/// back as `{ message_ids, to, parts, data_coding }`.
async fn submit_all(
    api: &Api,
    account: &Arc<Account>,
    planned: Vec<Planned>,
) -> Result<Vec<Value>, Problem> {
    let records: usize = planned.iter().map(|p| p.parts.len() * p.dests.len()).sum();
    let max = api.config.max_messages as usize;
    if records > max {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{records} messages (destinations times parts); at most {max} a request"),
        ));
    }
    let _permit = admit(api, account, records)?;
    let edge = &api.edge;
    let now = edge.clock.now_ms();
    let mut arena = BytesMut::with_capacity(records * 256);
    let (mut all, mut topics, mut answers) = (Vec::new(), Vec::new(), Vec::new());
    for p in &planned {
        let mut ids = Vec::with_capacity(p.parts.len());
        for msg in &p.parts {
            let mut hex = [0u8; 32];
            edge.ids.next_at(now).write_hex(&mut hex);
            for (i, dest) in p.dests.iter().enumerate() {
                let at = Accepted { id: &hex, dest_index: i as u32, dest, account, now };
                let (record, topic) = at.record(edge, &mut arena, msg);
                all.push(record);
                topics.push(topic);
            }
            ids.push(String::from_utf8_lossy(&hex).into_owned());
        }
        answers.push((ids, p));
    }
    let results = smsc_bus::publish_each_to(&*edge.bus, &topics, all).await;
    let failed: Vec<Status> =
        results.iter().filter_map(|r| r.as_ref().err()).map(publish_status).collect();
    let count = |status: Status, n: usize| {
        let name = crate::session::status_name(status);
        edge.metrics.submit_total.with_label_values(&["http", name]).inc_by(n as u64);
    };
    count(Status::ESME_ROK, records - failed.len());
    let body = |(ids, p): &(Vec<String>, &Planned)| {
        json!({
            "message_ids": ids,
            "to": p.to,
            "parts": ids.len(),
            "data_coding": p.data_coding.0,
        })
    };
    let Some(&first) = failed.first() else {
        return Ok(answers.iter().map(body).collect());
    };
    count(first, failed.len());
    edge.quotas.refund(account, failed.len() as u64, now);
    // Some records may be on the bus: they are accepted and will be delivered, so the
    // refusal lists them, and which ones were not.
    let mut results = results.iter();
    let mut outcome = Vec::new();
    for (ids, p) in &answers {
        let mut published = Vec::new();
        for id in ids {
            for to in &p.to {
                if results.next().is_some_and(Result::is_ok) {
                    published.push(json!({ "message_id": id, "to": to }));
                }
            }
        }
        outcome.extend(published);
    }
    let mut refused =
        Problem::smpp(first, "the bus did not take every message; those listed were accepted");
    if !outcome.is_empty() {
        // The same request again would send the accepted ones twice.
        refused.retry_after = None;
    }
    Err(refused.with("accepted", Value::Array(outcome)))
}

/// How long a refusal for the account's backlog is held: a client that resubmits at once
/// would otherwise spin, taking CPU (JSON parsing, here) from the very hops it waits for.
/// SMPP holds its ESME_RTHROTTLED as long.
const THROTTLE_HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// Refuses, before its body is read, a request of an account crowding a hop that falls
/// behind.
async fn backlog(api: &Api, account: &Account) -> Result<(), Problem> {
    let edge = &api.edge;
    if !edge.pressure.is_over(account.system_id.as_bytes()) {
        return Ok(());
    }
    edge.metrics.throttled_total.inc();
    edge.metrics.backlog_throttled_total.inc();
    tokio::time::sleep(THROTTLE_HOLD).await;
    Err(Problem::smpp(Status::ESME_RTHROTTLED, "the account's backlog is over its share"))
}

/// The window, rate, backlog and quota admission of `records` messages of `account`,
/// SMPP's own; the permit holds the request's place in the account's window.
fn admit(api: &Api, account: &Account, records: usize) -> Result<OwnedSemaphorePermit, Problem> {
    let edge = &api.edge;
    let throttled = |why: &str| {
        edge.metrics.throttled_total.inc();
        Problem::smpp(Status::ESME_RTHROTTLED, why.to_owned())
    };
    let permit = api
        .window(&account.system_id, account.window)
        .try_acquire_owned()
        .map_err(|_| throttled("the account's window is full on this edge"))?;
    let n = u32::try_from(records).unwrap_or(u32::MAX);
    if !edge.limiter(&account.system_id, account.max_submit_rate).take_all(n) {
        return Err(throttled("over the account's submit rate"));
    }
    if edge.pressure.is_over(account.system_id.as_bytes()) {
        edge.metrics.backlog_throttled_total.inc();
        return Err(throttled("the account's backlog is over its share"));
    }
    match edge.quotas.take(account, records as u64) {
        Verdict::Granted => Ok(permit),
        Verdict::Pending => Err(throttled("the account's quota lease is on its way")),
        Verdict::Exhausted(period) => {
            edge.metrics.quota_refused_total.with_label_values(&[period.name()]).inc();
            Err(Problem::smpp(
                crate::QUOTA_EXCEEDED,
                format!("the account's {} quota is spent", period.name()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsc_smpp::{Npi, Ton};

    #[test]
    fn from_is_a_number_a_short_code_or_an_alphanumeric_sender() {
        let a =
            |from: &str| source(from).map(|a| (a.ton, a.npi, a.addr.as_str().map(str::to_owned)));
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            a("+447700900123").ok(),
            Some((Ton::INTERNATIONAL, Npi::ISDN, s("447700900123")))
        );
        assert_eq!(
            a("447700900123").ok(),
            Some((Ton::INTERNATIONAL, Npi::ISDN, s("447700900123")))
        );
        assert_eq!(a("12345").ok(), Some((Ton::NETWORK_SPECIFIC, Npi::UNKNOWN, s("12345"))));
        assert_eq!(a("+12345").ok(), Some((Ton::INTERNATIONAL, Npi::ISDN, s("12345"))));
        assert_eq!(
            a("My Bank_2.0").ok(),
            Some((Ton::ALPHANUMERIC, Npi::UNKNOWN, s("My Bank_2.0")))
        );
        for bad in ["", "+", "Twelve chars", "Bänk", "a@b", "123456789012345678901"] {
            assert_eq!(
                source(bad).map(|_| ()).map_err(|p| p.status),
                Err(StatusCode::BAD_REQUEST),
                "{bad}"
            );
        }
    }

    #[test]
    fn to_is_an_international_number_of_up_to_20_digits() {
        assert_eq!(
            destination("+447700900123")
                .ok()
                .and_then(|a| a.addr.as_str().map(str::to_owned))
                .as_deref(),
            Some("447700900123")
        );
        for bad in ["", "+", "44 77", "4477a", "123456789012345678901"] {
            assert!(destination(bad).is_err(), "{bad}");
        }
    }

    fn message(json: &str) -> Result<NewMessage, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn members_are_typed_as_the_schema_says() {
        let m = message(r#"{"from":"a","to":"1","text":"x","validity":60.0,"priority":2}"#)
            .expect("whole floats");
        assert_eq!((m.validity, m.priority), (Some(60), Some(2)));
        for bad in [
            r#"{"from":"a","to":"1","text":null}"#,
            r#"{"from":"a","to":"1","text":"x","validity":1.5}"#,
            r#"{"from":"a","to":"1","text":"x","validity":-1}"#,
            r#"{"from":"a","to":"1","text":"x","priority":256}"#,
            r#"{"from":"a","to":"1","text":"x","extra":1}"#,
            r#"{"from":"a","to":1,"text":"x"}"#,
        ] {
            assert!(message(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_body_is_text_or_data_with_its_coding_and_long_ones_are_split() {
        let body_of = |json: &str| body(&message(json).expect("parses"));
        let (dc, parts) = body_of(r#"{"from":"a","to":"1","text":"hello"}"#).expect("text");
        assert_eq!((dc, parts.len()), (DataCoding::DEFAULT, 1));
        let long = format!(r#"{{"from":"a","to":"1","text":"{}"}}"#, "Ж".repeat(71));
        let (dc, parts) = body_of(&long).expect("UCS2");
        assert_eq!((dc, parts.len()), (DataCoding::UCS2, 2), "71 UCS2 characters: two parts");
        assert!(parts.iter().all(|p| p.udhi && p.total == 2));
        let (dc, parts) =
            body_of(r#"{"from":"a","to":"1","data":"0A0b","data_coding":4}"#).expect("data");
        assert_eq!((dc, parts[0].short_message.as_slice()), (DataCoding(4), &[0x0a, 0x0b][..]));
        for bad in [
            r#"{"from":"a","to":"1"}"#,
            r#"{"from":"a","to":"1","text":"x","data":"00","data_coding":4}"#,
            r#"{"from":"a","to":"1","data":"00"}"#,
            r#"{"from":"a","to":"1","text":"x","data_coding":8}"#,
            r#"{"from":"a","to":"1","data":"0","data_coding":4}"#,
            r#"{"from":"a","to":"1","data":"00","data_coding":5}"#,
            r#"{"from":"a","to":"1","data":"00","data_coding":8}"#,
        ] {
            assert_eq!(
                body_of(bad).map(|_| ()).map_err(|p| p.status),
                Err(StatusCode::BAD_REQUEST),
                "{bad}"
            );
        }
    }
}
