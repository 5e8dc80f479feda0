//! CDRs: one record per destination per final state, for billing, on `<prefix>.cdr`
//! (docs/cdr.md). Built from the message's row as the final write left it, so the record
//! published again (a worker that crashed, a task seen after the edge cancelled the
//! message) is the same, idempotency key included.

use bytes::Bytes;
use smsc_proto::{Address, Cdr, SubmitEvent};
use smsc_smpp::concat::parse_udh;
use smsc_smpp::{EsmClass, Tlvs};

use crate::{DeliveryState, StoredMessage};

/// The record of `m` ending in `state` with `error_code` at `final_at`. `event` is its
/// `SubmitEvent` (`m.event` decoded, by the caller, which needs it too); `class` names
/// the traffic class of a submit with this priority_flag (the account's, as the edge
/// gave it).
pub fn record(
    m: &StoredMessage,
    event: Option<&SubmitEvent>,
    state: DeliveryState,
    error_code: u16,
    final_at: i64,
    class: impl FnOnce(u8) -> &'static str,
) -> Cdr {
    let (part, parts) = part_of(m, event);
    let state_name = state.to_smpp().name().unwrap_or("UNKNOWN");
    let class = class(event.map_or(0, |e| e.priority_flag as u8));
    let address = |a: &crate::Address| Address {
        ton: a.ton.0.into(),
        npi: a.npi.0.into(),
        addr: String::from_utf8_lossy(a.addr.as_bytes()).into_owned(),
    };
    Cdr {
        idempotency_key: format!("{}:{}:{state_name}:{final_at}", m.message_id, m.dest_index),
        message_id: m.message_id.clone(),
        dest_index: m.dest_index,
        system_id: m.system_id.clone(),
        source: Some(address(&m.source)),
        dest: Some(address(&m.dest)),
        part,
        parts,
        data_coding: m.data_coding.into(),
        submitted_at_ms: m.submitted_at,
        first_attempt_at_ms: m.first_attempt_at.unwrap_or(0),
        final_at_ms: final_at,
        state: state_name.to_owned(),
        error_code: error_code.into(),
        route: m.route.clone(),
        connector: m.connector.clone(),
        attempts: m.attempts,
        class: class.to_owned(),
        origin: event.map(|e| e.command.clone()).unwrap_or_default(),
    }
}

/// Which part of a concatenated text `m` is, and of how many: from its UDH, else from
/// the SAR TLVs it was submitted with; 1 of 1 for a message on its own.
fn part_of(m: &StoredMessage, event: Option<&SubmitEvent>) -> (u32, u32) {
    if m.esm_class & EsmClass::UDHI != 0
        && let Ok((udh, _)) = parse_udh(&m.payload)
        && let Some(c) = udh.concat()
    {
        return (c.seq.into(), c.total.into());
    }
    let sar = event
        .filter(|e| !e.tlvs.is_empty())
        .and_then(|e| Tlvs::from_bytes(Bytes::from(e.tlvs.clone())))
        .and_then(|t| t.sar());
    match sar {
        Some(s) => (s.segment_seqnum.into(), s.total_segments.into()),
        None => (1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use smsc_smpp::concat::SarInfo;

    fn message(esm_class: u8, payload: &[u8], event: SubmitEvent) -> StoredMessage {
        let mut m = crate::contract::sample_message("m-1", 2, "bank");
        m.esm_class = esm_class;
        m.payload = Bytes::copy_from_slice(payload);
        m.event = Bytes::from(event.encode_to_vec());
        m.attempts = 3;
        m.first_attempt_at = Some(1_700_000_000_500);
        m.connector = "sim".into();
        m
    }

    fn decoded(m: &StoredMessage) -> Option<SubmitEvent> {
        SubmitEvent::decode(m.event.clone()).ok()
    }

    /// Bulk, raised a class per step of priority_flag.
    fn class(priority: u8) -> &'static str {
        ["bulk", "standard", "interactive"][usize::from(priority.min(2))]
    }

    #[test]
    fn a_record_says_what_billing_needs_and_its_key_is_stable() {
        let event = SubmitEvent { command: "http".into(), priority_flag: 1, ..Default::default() };
        // A UDH with the 8-bit concatenation IE: part 2 of 3.
        let m = message(EsmClass::UDHI, &[5, 0, 3, 0x42, 3, 2, b'h', b'i'], event);
        let r =
            record(&m, decoded(&m).as_ref(), DeliveryState::Delivered, 0, 1_700_000_001_000, class);
        assert_eq!(r.idempotency_key, "m-1:2:DELIVERED:1700000001000");
        assert_eq!((r.part, r.parts), (2, 3));
        let times = (r.attempts, r.first_attempt_at_ms, r.submitted_at_ms);
        assert_eq!(times, (3, 1_700_000_000_500, 1_700_000_000_000));
        assert_eq!((r.route.as_str(), r.connector.as_str()), ("uk-mobile", "sim"));
        assert_eq!((r.origin.as_str(), r.class.as_str()), ("http", "standard"));
        assert_eq!(r.dest.as_ref().map(|d| d.addr.as_str()), Some("447946000002"));
        let again =
            record(&m, decoded(&m).as_ref(), DeliveryState::Delivered, 0, 1_700_000_001_000, class);
        assert_eq!(again, r, "the same record when published again");
        let other =
            record(&m, decoded(&m).as_ref(), DeliveryState::Expired, 0, 1_700_000_001_000, class);
        assert_ne!(other.idempotency_key, r.idempotency_key);
    }

    #[test]
    fn parts_come_from_the_sar_tlvs_and_a_lone_message_is_one_of_one() {
        let mut tlvs = Tlvs::new();
        tlvs.set_sar(SarInfo { msg_ref_num: 7, total_segments: 4, segment_seqnum: 4 });
        let event = SubmitEvent { tlvs: tlvs.to_vec(), ..Default::default() };
        let m = message(0, b"plain", event);
        let r = record(&m, decoded(&m).as_ref(), DeliveryState::Undeliverable, 11, 1, class);
        assert_eq!((r.part, r.parts, r.error_code, r.state.as_str()), (4, 4, 11, "UNDELIVERABLE"));
        assert_eq!(r.class, "bulk", "priority 0");

        let alone = message(0, b"plain", SubmitEvent::default());
        let r = record(&alone, decoded(&alone).as_ref(), DeliveryState::Deleted, 0, 1, class);
        assert_eq!((r.part, r.parts, r.state.as_str()), (1, 1, "DELETED"));
        let never = StoredMessage { first_attempt_at: None, ..alone };
        assert_eq!(
            record(&never, decoded(&never).as_ref(), DeliveryState::Expired, 0, 1, class)
                .first_attempt_at_ms,
            0
        );
    }
}
