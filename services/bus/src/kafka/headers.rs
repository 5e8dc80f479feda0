//! A [`Record`] as a Kafka message and back: its headers in order, `not_before` as
//! [`NOT_BEFORE_HEADER`], and [`PARENT_SPAN_HEADER`] when it has no `traceparent`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};

use super::{NOT_BEFORE_HEADER, PARENT_SPAN_HEADER, TRACEPARENT_HEADER};
use crate::{Delivery, Record};

/// The Kafka headers of `record`: its own, then `not_before`, then the parent span.
pub(super) fn encode_headers(record: &Record, parent_span: Option<u64>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 2);
    let mut has_traceparent = false;
    for (key, value) in &record.headers {
        if *key == NOT_BEFORE_HEADER {
            // Reserved: `not_before` says it.
            continue;
        }
        has_traceparent |= key.eq_ignore_ascii_case(TRACEPARENT_HEADER);
        headers = headers.insert(Header { key, value: Some(&value[..]) });
    }
    if let Some(at) = record.not_before {
        let value = encode_not_before(at);
        headers = headers.insert(Header { key: NOT_BEFORE_HEADER, value: Some(&value) });
    }
    if let (false, Some(id)) = (has_traceparent, parent_span) {
        let value = format!("{id:016x}");
        headers = headers.insert(Header { key: PARENT_SPAN_HEADER, value: Some(&value) });
    }
    headers
}

/// Unix milliseconds, with the sub-millisecond rest as a decimal fraction when there is
/// one (`1700000000123.456789`). Instants before 1970 are taken as 0 (due at once).
pub(super) fn encode_not_before(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ms = since.as_millis();
    let rest_ns = since.subsec_nanos() % 1_000_000;
    if rest_ns == 0 { ms.to_string() } else { format!("{ms}.{rest_ns:06}") }
}

pub(super) fn decode_not_before(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let (ms, fraction) = match text.split_once('.') {
        Some((ms, fraction)) => (ms, Some(fraction)),
        None => (text, None),
    };
    let ms: u64 = ms.parse().ok()?;
    let ns: u32 = match fraction {
        None => 0,
        Some(fraction)
            if (1..=6).contains(&fraction.len())
                && fraction.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let digits: u32 = fraction.parse().ok()?;
            digits * 10u32.pow(6 - u32::try_from(fraction.len()).ok()?)
        }
        _ => return None,
    };
    UNIX_EPOCH.checked_add(Duration::from_millis(ms) + Duration::from_nanos(u64::from(ns)))
}

/// The delivery of a polled message: headers back to the record, `not_before` out of them.
pub(super) fn decode(message: &BorrowedMessage<'_>) -> Delivery {
    let mut record = Record {
        key: message.key().map(Bytes::copy_from_slice).unwrap_or_default(),
        payload: message.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        headers: Vec::new(),
        not_before: None,
    };
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header.value.unwrap_or_default();
            if header.key == NOT_BEFORE_HEADER {
                record.not_before = decode_not_before(value);
                if record.not_before.is_none() {
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        "unreadable {NOT_BEFORE_HEADER} header: the record is due at once"
                    );
                }
            } else {
                record.headers.push((header.key.to_owned().into(), Bytes::copy_from_slice(value)));
            }
        }
    }
    Delivery {
        topic: message.topic().into(),
        partition: u32::try_from(message.partition()).unwrap_or_default(),
        offset: u64::try_from(message.offset()).unwrap_or_default(),
        record,
    }
}
