//! Validation of submit_sm, submit_multi and data_sm, and the bus events they become.
//!
//! Pure functions of the PDU, the account and the time: every rejection is the status
//! the spec names for it, and nothing here touches the network.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use smsc_accounts::Account;
use smsc_bus::{Flow, Record};
use smsc_smpp::pdu::{DataSm, ShortMessage, SubmitMulti, SubmitSm, TimeString};
use smsc_smpp::text::Alphabet;
use smsc_smpp::{
    COctetString, CommandId, CommandStatus, DataCoding, EsmClass, Npi, RegisteredDelivery, TlvTag,
    Tlvs, Ton,
};
use smsc_store::{Address, UnixMillis};

type Status = CommandStatus;

/// The longest alphanumeric sender a handset displays (GSM 03.40: 11 characters).
const MAX_ALPHANUMERIC_SENDER: usize = 11;

fn is_number(addr: &[u8]) -> bool {
    let digits = addr.strip_prefix(b"+").unwrap_or(addr);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// source_addr: TON/NPI defined, the form its TON implies, and allowed for the account.
pub fn check_source(account: &Account, a: &Address) -> Result<(), Status> {
    let addr = a.addr.as_bytes();
    if !a.ton.is_defined() {
        return Err(Status::ESME_RINVSRCTON);
    }
    if !a.npi.is_defined() {
        return Err(Status::ESME_RINVSRCNPI);
    }
    let well_formed = match a.ton {
        Ton::ALPHANUMERIC => !addr.is_empty() && addr.len() <= MAX_ALPHANUMERIC_SENDER,
        Ton::INTERNATIONAL | Ton::NATIONAL => is_number(addr),
        _ => true,
    };
    let text = std::str::from_utf8(addr).map_err(|_| Status::ESME_RINVSRCADR)?;
    if !well_formed || !account.source_allowed(text) {
        return Err(Status::ESME_RINVSRCADR);
    }
    Ok(())
}

/// destination_addr: present, TON/NPI defined, digits when the TON says it is a number.
pub fn check_dest(a: &Address) -> Result<(), Status> {
    let addr = a.addr.as_bytes();
    if !a.ton.is_defined() {
        return Err(Status::ESME_RINVDSTTON);
    }
    if !a.npi.is_defined() {
        return Err(Status::ESME_RINVDSTNPI);
    }
    let numeric = matches!(a.ton, Ton::INTERNATIONAL | Ton::NATIONAL | Ton::SUBSCRIBER_NUMBER)
        || a.npi == Npi::ISDN;
    if addr.is_empty() || (numeric && !is_number(addr)) {
        return Err(Status::ESME_RINVDSTADR);
    }
    Ok(())
}

/// The one-octet flags of a submit.
pub fn check_flags(
    esm_class: EsmClass,
    priority_flag: u8,
    registered_delivery: RegisteredDelivery,
    replace_if_present_flag: u8,
    data_coding: DataCoding,
) -> Result<(), Status> {
    // An ESME may submit a normal message or an SME acknowledgement, not a receipt.
    if !matches!(
        esm_class.message_type(),
        0 | EsmClass::TYPE_DELIVERY_ACK | EsmClass::TYPE_USER_ACK
    ) {
        return Err(Status::ESME_RINVESMCLASS);
    }
    if priority_flag > 3 {
        return Err(Status::ESME_RINVPRTFLG);
    }
    if !registered_delivery.is_valid() {
        return Err(Status::ESME_RINVREGDLVFLG);
    }
    if replace_if_present_flag > 1 {
        return Err(Status::ESME_RINVREPFLAG);
    }
    // SMPP's own table (0-0x0E) is always acceptable; above it, only GSM coding groups.
    if data_coding.0 > 0x0E && data_coding.alphabet() == Alphabet::Unknown {
        return Err(Status::ESME_RINVDCS);
    }
    Ok(())
}

/// The message body: short_message, or message_payload when short_message is empty.
/// Both at once is ESME_RINVMSGLEN (3.4 §5.3.2.32: sm_length must then be 0).
pub fn payload(short_message: &ShortMessage, tlvs: &Tlvs) -> Result<Bytes, Status> {
    if let Some(tag) = tlvs.duplicate() {
        tracing::debug!(?tag, "duplicate TLV");
        return Err(Status::ESME_RINVOPTPARSTREAM);
    }
    match tlvs.message_payload() {
        Some(_) if !short_message.is_empty() => Err(Status::ESME_RINVMSGLEN),
        Some(p) => Ok(p.clone()),
        None => Ok(short_message.as_bytes().clone()),
    }
}

fn to_datetime(ms: UnixMillis) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// Resolves schedule_delivery_time and validity_period against `now`: the account's
/// default validity when none is given, and an ESME value clamped to its maximum.
pub fn times(
    account: &Account,
    schedule: &TimeString,
    validity: &TimeString,
    now: UnixMillis,
) -> Result<(Option<UnixMillis>, UnixMillis), Status> {
    // Calendar time only for a submit that gives a time: most give none.
    let now_dt = || to_datetime(now).ok_or(Status::ESME_RSYSERR);
    let max_expire = now.saturating_add(account.max_validity.as_millis() as i64);
    let schedule_at = match schedule.parse().map_err(|_| Status::ESME_RINVSCHED)? {
        None => None,
        Some(t) => {
            let at = t.resolve(now_dt()?).ok_or(Status::ESME_RINVSCHED)?.timestamp_millis();
            if at > max_expire {
                return Err(Status::ESME_RINVSCHED);
            }
            // A time in the past means "now".
            (at > now).then_some(at)
        }
    };
    let start = schedule_at.unwrap_or(now);
    let expire_at = match validity.parse().map_err(|_| Status::ESME_RINVEXPIRY)? {
        None => start.saturating_add(account.default_validity.as_millis() as i64),
        Some(t) => {
            let at = t.resolve(now_dt()?).ok_or(Status::ESME_RINVEXPIRY)?.timestamp_millis();
            if at <= start {
                return Err(Status::ESME_RINVEXPIRY);
            }
            at
        }
    };
    Ok((schedule_at, expire_at.min(max_expire)))
}

/// What submit_sm, data_sm and submit_multi carry that becomes the message: the three
/// differ only in which of these fields they have. data_sm has no priority, schedule or
/// validity, and carries its text in message_payload.
#[derive(Debug, Clone, Copy)]
pub struct Submit<'a> {
    pub command: CommandId,
    pub service_type: &'a [u8],
    pub source: Address,
    pub esm_class: EsmClass,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub registered_delivery: RegisteredDelivery,
    pub replace_if_present_flag: u8,
    pub data_coding: DataCoding,
    pub short_message: Option<&'a ShortMessage>,
    pub tlvs: &'a Tlvs,
    pub schedule_delivery_time: &'a TimeString,
    pub validity_period: &'a TimeString,
}

impl<'a> From<&'a SubmitSm> for Submit<'a> {
    fn from(sm: &'a SubmitSm) -> Self {
        Self {
            command: CommandId::SubmitSm,
            service_type: sm.service_type.as_bytes(),
            source: sm.source.resized(),
            esm_class: sm.esm_class,
            protocol_id: sm.protocol_id,
            priority_flag: sm.priority_flag,
            registered_delivery: sm.registered_delivery,
            replace_if_present_flag: sm.replace_if_present_flag,
            data_coding: sm.data_coding,
            short_message: Some(&sm.short_message),
            tlvs: &sm.tlvs,
            schedule_delivery_time: &sm.schedule_delivery_time,
            validity_period: &sm.validity_period,
        }
    }
}

impl<'a> From<&'a DataSm> for Submit<'a> {
    fn from(d: &'a DataSm) -> Self {
        Self {
            command: CommandId::DataSm,
            service_type: d.service_type.as_bytes(),
            source: d.source.resized(),
            esm_class: d.esm_class,
            protocol_id: 0,
            priority_flag: 0,
            registered_delivery: d.registered_delivery,
            replace_if_present_flag: 0,
            data_coding: d.data_coding,
            short_message: None,
            tlvs: &d.tlvs,
            schedule_delivery_time: &TimeString::EMPTY,
            validity_period: &TimeString::EMPTY,
        }
    }
}

impl<'a> From<&'a SubmitMulti> for Submit<'a> {
    fn from(m: &'a SubmitMulti) -> Self {
        Self {
            command: CommandId::SubmitMulti,
            service_type: m.service_type.as_bytes(),
            source: m.source.resized(),
            esm_class: m.esm_class,
            protocol_id: m.protocol_id,
            priority_flag: m.priority_flag,
            registered_delivery: m.registered_delivery,
            replace_if_present_flag: m.replace_if_present_flag,
            data_coding: m.data_coding,
            short_message: Some(&m.short_message),
            tlvs: &m.tlvs,
            schedule_delivery_time: &m.schedule_delivery_time,
            validity_period: &m.validity_period,
        }
    }
}

/// Checks a submit of `account` at `now` into the message all its destinations share:
/// the flags, the source, `dest` (the one destination of a submit_sm or data_sm, checked
/// before the payload as the spec's error order has it; submit_multi's are checked one by
/// one with [`check_dest`]), the payload and the schedule and validity times.
pub fn check<'a>(
    s: Submit<'a>,
    dest: Option<&Address>,
    account: &Account,
    now: UnixMillis,
) -> Result<Message<'a>, Status> {
    check_flags(
        s.esm_class,
        s.priority_flag,
        s.registered_delivery,
        s.replace_if_present_flag,
        s.data_coding,
    )?;
    check_source(account, &s.source)?;
    if let Some(dest) = dest {
        check_dest(dest)?;
    }
    let payload = match s.short_message {
        Some(sm) => payload(sm, s.tlvs)?,
        None => payload(&ShortMessage::empty(), s.tlvs)?,
    };
    let (schedule_at, expire_at) =
        times(account, s.schedule_delivery_time, s.validity_period, now)?;
    Ok(Message {
        command: s.command.name(),
        service_type: s.service_type,
        source: s.source,
        esm_class: s.esm_class,
        protocol_id: s.protocol_id,
        priority_flag: s.priority_flag,
        registered_delivery: s.registered_delivery,
        data_coding: s.data_coding,
        payload,
        tlvs: s.tlvs,
        schedule_at,
        expire_at,
    })
}

/// Everything a submit contributes to its events, validated.
#[derive(Debug)]
pub struct Message<'a> {
    pub command: &'static str,
    pub service_type: &'a [u8],
    pub source: Address,
    pub esm_class: EsmClass,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub registered_delivery: RegisteredDelivery,
    pub data_coding: DataCoding,
    pub payload: Bytes,
    pub tlvs: &'a Tlvs,
    pub schedule_at: Option<UnixMillis>,
    pub expire_at: UnixMillis,
}

impl Message<'_> {
    /// Writes the `smsc.submit` payload for one destination into `arena` and returns it.
    ///
    /// Encoded by hand rather than through the prost struct: the struct wants owned
    /// `String`s and `Vec`s, which cost eleven allocations per message on the hottest path
    /// of the edge. The bytes are the same as `SubmitEvent::encode` produces (tested
    /// below), so every consumer decodes them with prost.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &self,
        arena: &mut BytesMut,
        message_id: &[u8],
        dest_index: u32,
        dest: &Address,
        system_id: &str,
        edge_id: &str,
        now: UnixMillis,
    ) -> Bytes {
        let w = arena;
        pb::bytes(w, 1, message_id);
        pb::uint(w, 2, u64::from(dest_index));
        pb::bytes(w, 3, system_id.as_bytes());
        pb::bytes(w, 4, edge_id.as_bytes());
        pb::address(w, 5, &self.source);
        pb::address(w, 6, dest);
        pb::bytes(w, 7, self.service_type);
        pb::uint(w, 8, u64::from(self.esm_class.0));
        pb::uint(w, 9, u64::from(self.protocol_id));
        pb::uint(w, 10, u64::from(self.priority_flag));
        pb::uint(w, 11, u64::from(self.registered_delivery.0));
        pb::uint(w, 12, u64::from(self.data_coding.0));
        pb::bytes(w, 13, &self.payload);
        if self.tlvs.iter().any(|t| t.tag() != TlvTag::MESSAGE_PAYLOAD) {
            pb::bytes(w, 14, &encode_tlvs(self.tlvs));
        }
        pb::uint(w, 15, now as u64);
        pb::uint(w, 16, self.schedule_at.unwrap_or(0) as u64);
        pb::uint(w, 17, self.expire_at as u64);
        pb::bytes(w, 18, self.command.as_bytes());
        w.split().freeze()
    }
}

/// One destination of a message the edge accepts: what its bus record is made of
/// besides the [`Message`].
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    /// The 32 hex digits the ESME (or HTTP client) is given.
    pub id: &'a [u8; 32],
    pub dest_index: u32,
    pub dest: &'a Address,
    pub account: &'a Account,
    pub now: UnixMillis,
}

impl Accepted<'_> {
    /// The `smsc.submit` record of this destination (keyed by the destination, marked
    /// with the account's flow) and the topic of its class; written into `arena`.
    pub fn record(
        &self,
        edge: &crate::Edge,
        arena: &mut BytesMut,
        msg: &Message<'_>,
    ) -> (Record, Arc<str>) {
        let system_id = &self.account.system_id;
        let edge_id = &edge.settings.edge_id;
        let payload =
            msg.event(arena, self.id, self.dest_index, self.dest, system_id, edge_id, self.now);
        arena.extend_from_slice(self.dest.addr.as_bytes());
        let key = arena.split().freeze();
        arena.extend_from_slice(system_id.as_bytes());
        let flow = Flow::new(self.account.class_of(msg.priority_flag), arena.split().freeze());
        let mut record = Record::new(key, payload);
        flow.mark(&mut record);
        (record, edge.topics.submit(flow.class).clone())
    }
}

/// The few protobuf wire-format writes the submit event needs (proto3: zero values and
/// empty fields are omitted, as prost does).
mod pb {
    use bytes::{BufMut, BytesMut};

    use smsc_store::Address;

    fn varint(w: &mut BytesMut, mut v: u64) {
        while v >= 0x80 {
            w.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        w.put_u8(v as u8);
    }

    fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    fn key(w: &mut BytesMut, field: u32, wire_type: u32) {
        varint(w, u64::from(field << 3 | wire_type));
    }

    /// uint32/uint64, and int64 values (negative ones as ten-byte two's complement).
    pub(super) fn uint(w: &mut BytesMut, field: u32, v: u64) {
        if v != 0 {
            key(w, field, 0);
            varint(w, v);
        }
    }

    /// `string` and `bytes`.
    pub(super) fn bytes(w: &mut BytesMut, field: u32, v: &[u8]) {
        if !v.is_empty() {
            key(w, field, 2);
            varint(w, v.len() as u64);
            w.put_slice(v);
        }
    }

    /// A present `Address` submessage.
    pub(super) fn address(w: &mut BytesMut, field: u32, a: &Address) {
        let (ton, npi) = (u64::from(a.ton.0), u64::from(a.npi.0));
        let addr = a.addr.as_bytes();
        let len = if ton != 0 { 1 + varint_len(ton) } else { 0 }
            + if npi != 0 { 1 + varint_len(npi) } else { 0 }
            + if addr.is_empty() { 0 } else { 1 + varint_len(addr.len() as u64) + addr.len() };
        key(w, field, 2);
        varint(w, len as u64);
        uint(w, 1, ton);
        uint(w, 2, npi);
        bytes(w, 3, addr);
    }
}

/// The submit's TLVs other than message_payload (which became the payload), encoded.
fn encode_tlvs(tlvs: &Tlvs) -> Vec<u8> {
    let mut rest = Tlvs::new();
    for t in tlvs.iter().filter(|t| t.tag() != TlvTag::MESSAGE_PAYLOAD) {
        rest.push(t.clone());
    }
    rest.to_vec()
}

/// A message_id as it goes in the `_resp`.
pub fn message_id(hex: &[u8; 32]) -> COctetString<65> {
    COctetString::new(hex).expect("32 hex digits fit a 65-octet message_id")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use smsc_proto::{Address as PAddress, SubmitEvent};
    use smsc_smpp::Tlv;

    fn addr(ton: u8, npi: u8, a: &'static str) -> Address {
        Address::new(Ton(ton), Npi(npi), a).expect("fits")
    }

    #[test]
    fn hand_encoded_event_is_what_prost_encodes() {
        let tlvs = Tlvs::from(vec![
            Tlv::MessagePayload(Bytes::from_static(b"payload moved")),
            Tlv::UserMessageReference(300),
        ]);
        for (source, dest, schedule, payload, tlvs) in [
            (
                addr(5, 0, "Bank"),
                addr(1, 1, "447700900123"),
                Some(1_800_000_000_123),
                &b"hi"[..],
                &tlvs,
            ),
            (addr(0, 0, ""), addr(1, 1, "1"), None, &b""[..], &Tlvs::new()),
        ] {
            let m = Message {
                command: "submit_sm",
                service_type: b"CMT",
                source,
                esm_class: EsmClass(0x40),
                protocol_id: 0,
                priority_flag: 2,
                registered_delivery: RegisteredDelivery(1),
                data_coding: DataCoding(8),
                payload: Bytes::copy_from_slice(payload),
                tlvs,
                schedule_at: schedule,
                expire_at: 1_900_000_000_000,
            };
            let mut arena = BytesMut::new();
            let bytes =
                m.event(&mut arena, b"0123abcd", 3, &dest, "demo", "edge-1", 1_700_000_000_000);
            let expected = SubmitEvent {
                message_id: "0123abcd".into(),
                dest_index: 3,
                system_id: "demo".into(),
                edge_id: "edge-1".into(),
                source: Some(PAddress {
                    ton: u32::from(source.ton.0),
                    npi: u32::from(source.npi.0),
                    addr: String::from_utf8_lossy(source.addr.as_bytes()).into(),
                }),
                dest: Some(PAddress {
                    ton: u32::from(dest.ton.0),
                    npi: u32::from(dest.npi.0),
                    addr: String::from_utf8_lossy(dest.addr.as_bytes()).into(),
                }),
                service_type: "CMT".into(),
                esm_class: 0x40,
                protocol_id: 0,
                priority_flag: 2,
                registered_delivery: 1,
                data_coding: 8,
                payload: payload.to_vec(),
                tlvs: if tlvs.is_empty() { Vec::new() } else { encode_tlvs(tlvs) },
                submitted_at_ms: 1_700_000_000_000,
                schedule_at_ms: schedule.unwrap_or(0),
                expire_at_ms: 1_900_000_000_000,
                command: "submit_sm".into(),
            };
            assert_eq!(&bytes[..], &expected.encode_to_vec()[..]);
            assert_eq!(SubmitEvent::decode(bytes).expect("decodes"), expected);
        }
    }
}
