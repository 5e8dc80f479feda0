//! What an upstream sends us, read tolerantly: a deliver_sm (or data_sm) is a delivery
//! receipt (esm_class type 0x04, or an intermediate notification 0x20) or an MO. Pure:
//! no I/O, so every variant upstreams produce is unit-tested here.
//!
//! A receipt names the upstream's message_id in the receipted_message_id TLV (SMPP 3.4
//! §5.3.2.12: the id of its submit_sm_resp) and/or in the text's `id:`, which some
//! upstreams write in decimal for an id they returned in hexadecimal (or the reverse):
//! [`receipt_keys`] turns them into the store keys to try, per [`ReceiptIdFormat`]. The
//! state comes from the message_state TLV, else the text's `stat:`; the error from the
//! network_error_code TLV, else the text's `err:`.

use crate::config::ReceiptIdFormat;
use crate::connector::{DEFAULT_PARK_TTL, UpstreamReceipt};
use bytes::Bytes;
use smsc_proto::{Address, MoEvent};
use smsc_smpp::pdu::DataSm;
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::{Body, EsmClass, Pdu, Tlv, TlvTag, Tlvs};

/// Why a receipt cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptProblem {
    #[error("receipt names no message id")]
    NoId,
    #[error("receipt names no state")]
    NoState,
}

/// One PDU from an upstream's receiver side.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Receipt(Result<UpstreamReceipt, ReceiptProblem>),
    Mo(Box<MoEvent>),
    /// An SME acknowledgement (esm_class 0x08 / 0x10): nothing for us to do.
    Ignored,
}

/// The fields of a deliver_sm or data_sm this module reads.
struct Fields<'a> {
    source: Address,
    dest: Address,
    esm_class: EsmClass,
    data_coding: u8,
    short_message: &'a [u8],
    tlvs: &'a Tlvs,
}

fn address(ton: u8, npi: u8, addr: &[u8]) -> Address {
    Address {
        ton: u32::from(ton),
        npi: u32::from(npi),
        addr: String::from_utf8_lossy(addr).into_owned(),
    }
}

/// Reads a deliver_sm or data_sm from `connector` (`pdu` is it, re-encoded). `None` for
/// any other PDU. MO events get `id` and `now` as their id and receive time.
pub fn classify(
    connector: &str,
    body: &Body,
    pdu: Bytes,
    format: ReceiptIdFormat,
    id: impl FnOnce() -> String,
    now: i64,
) -> Option<Incoming> {
    let fields = match body {
        Body::DeliverSm(d) => Fields {
            source: address(d.source.ton.0, d.source.npi.0, d.source.addr.as_bytes()),
            dest: address(d.dest.ton.0, d.dest.npi.0, d.dest.addr.as_bytes()),
            esm_class: d.esm_class,
            data_coding: d.data_coding.0,
            short_message: d.short_message.as_bytes(),
            tlvs: &d.tlvs,
        },
        Body::DataSm(DataSm { source, dest, esm_class, data_coding, tlvs, .. }) => Fields {
            source: address(source.ton.0, source.npi.0, source.addr.as_bytes()),
            dest: address(dest.ton.0, dest.npi.0, dest.addr.as_bytes()),
            esm_class: *esm_class,
            data_coding: data_coding.0,
            short_message: &[],
            tlvs,
        },
        _ => return None,
    };
    Some(match fields.esm_class.message_type() {
        EsmClass::TYPE_DELIVERY_RECEIPT | EsmClass::TYPE_INTERMEDIATE_NOTIFICATION => {
            Incoming::Receipt(receipt(&fields, pdu, format))
        }
        EsmClass::TYPE_DELIVERY_ACK | EsmClass::TYPE_USER_ACK => Incoming::Ignored,
        _ => Incoming::Mo(Box::new(mo(connector, fields, id(), now))),
    })
}

/// The text of a short message or, when that is empty, of message_payload.
fn text<'a>(f: &'a Fields<'a>) -> &'a [u8] {
    if f.short_message.is_empty() {
        f.tlvs.message_payload().map_or(&[][..], |b| &b[..])
    } else {
        f.short_message
    }
}

fn receipt(
    f: &Fields<'_>,
    pdu: Bytes,
    format: ReceiptIdFormat,
) -> Result<UpstreamReceipt, ReceiptProblem> {
    let text = Lenient::read(text(f));
    let tlv_id = f.tlvs.receipted_message_id().and_then(|t| t.as_str()).map(str::trim);
    let tlv_id = tlv_id.filter(|id| !id.is_empty());
    let keys = receipt_keys(format, tlv_id, text.id.as_deref());
    if keys.is_empty() {
        return Err(ReceiptProblem::NoId);
    }
    let state = f.tlvs.message_state().or(text.stat.map(ReceiptStat::to_message_state));
    let state = state.ok_or(ReceiptProblem::NoState)?;
    let error_code = f.tlvs.network_error_code().map(|n| n.error_code).or(text.err).unwrap_or(0);
    Ok(UpstreamReceipt { keys, state, error_code, pdu, park_ttl: DEFAULT_PARK_TTL })
}

/// A receipt's text read as far as it goes: [`Receipt::parse_bytes`] when the text is
/// well formed, else `id:`, `stat:` and `err:` picked out one by one (an upstream that
/// writes `err:E21` or a date of its own still tells us which message and what became
/// of it).
#[derive(Debug, Default, PartialEq, Eq)]
struct Lenient {
    id: Option<String>,
    stat: Option<ReceiptStat>,
    err: Option<u16>,
}

impl Lenient {
    fn read(bytes: &[u8]) -> Self {
        if let Ok(r) = Receipt::parse_bytes(bytes) {
            return Self { id: Some(r.id), stat: Some(r.stat), err: Some(r.err) };
        }
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        let mut out = Self::default();
        let words: Vec<&str> = text.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            let Some((key, value)) = word.split_once(':') else { continue };
            // `id: 123`: the value may be the next word.
            let value =
                if value.is_empty() { words.get(i + 1).copied().unwrap_or("") } else { value };
            let value = value.trim_matches(char::from(0));
            match key.to_ascii_lowercase().as_str() {
                "id" if out.id.is_none() && !value.is_empty() && value.len() <= 65 => {
                    out.id = Some(value.to_owned());
                }
                "stat" if out.stat.is_none() => out.stat = ReceiptStat::parse(value),
                "err" if out.err.is_none() => {
                    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
                    out.err = digits.parse().ok();
                }
                "text" => break,
                _ => {}
            }
        }
        out
    }
}

/// The store key of an upstream's message_id as its submit_sm_resp gave it.
pub fn link_key(format: ReceiptIdFormat, id: &str) -> String {
    let converted = match format {
        ReceiptIdFormat::Auto | ReceiptIdFormat::Exact => None,
        ReceiptIdFormat::HexSubmitDecimalReceipt => hex_to_decimal(id),
        ReceiptIdFormat::DecimalSubmitHexReceipt => decimal_to_hex(id).map(|(lower, _)| lower),
    };
    converted.unwrap_or_else(|| id.to_owned())
}

/// The store keys a receipt may be filed under, most likely first, without repeats:
/// from its receipted_message_id TLV and its text's `id:`.
pub fn receipt_keys(
    format: ReceiptIdFormat,
    tlv_id: Option<&str>,
    text_id: Option<&str>,
) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut push = |k: Option<String>| {
        if let Some(k) = k.filter(|k| !k.is_empty())
            && !keys.contains(&k)
        {
            keys.push(k);
        }
    };
    for (id, from_tlv) in [(tlv_id, true), (text_id, false)] {
        let Some(id) = id else { continue };
        match format {
            ReceiptIdFormat::Exact => push(Some(id.to_owned())),
            ReceiptIdFormat::Auto => {
                push(Some(id.to_owned()));
                if let Some((lower, upper)) = decimal_to_hex(id) {
                    push(Some(lower));
                    push(Some(upper));
                }
                push(hex_to_decimal(id));
            }
            ReceiptIdFormat::HexSubmitDecimalReceipt => {
                // The TLV should carry the submit_sm_resp's (hex) id; some carry the
                // receipt's (decimal) form.
                if from_tlv {
                    push(hex_to_decimal(id));
                }
                push(id.parse::<u128>().ok().map(|n| n.to_string()));
            }
            ReceiptIdFormat::DecimalSubmitHexReceipt => {
                if from_tlv {
                    push(decimal_to_hex(id).map(|(lower, _)| lower));
                }
                push(u128::from_str_radix(id, 16).ok().map(|n| format!("{n:x}")));
            }
        }
    }
    keys
}

/// A decimal id as hexadecimal, (lowercase, uppercase); `None` unless all digits.
fn decimal_to_hex(id: &str) -> Option<(String, String)> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u128 = id.parse().ok()?;
    Some((format!("{n:x}"), format!("{n:X}")))
}

/// A hexadecimal id as decimal; `None` unless all hex digits.
fn hex_to_decimal(id: &str) -> Option<String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(id, 16).ok().map(|n| n.to_string())
}

/// An MO: the handset's message as an `smsc.mo` event, the UDH flag and TLVs (SAR and
/// the like) kept, message_payload folded into the payload.
fn mo(connector: &str, f: Fields<'_>, id: String, now: i64) -> MoEvent {
    let payload = text(&f).to_vec();
    let mut tlvs = f.tlvs.clone();
    tlvs.remove(TlvTag::MESSAGE_PAYLOAD);
    MoEvent {
        id,
        source: Some(f.source),
        dest: Some(f.dest),
        esm_class: u32::from(f.esm_class.0 & EsmClass::UDHI),
        data_coding: u32::from(f.data_coding),
        payload,
        tlvs: tlvs.to_vec(),
        received_at_ms: now,
        connector: connector.to_owned(),
    }
}

/// Reads a parked receipt back (the bytes [`UpstreamReceipt::pdu`] held).
pub fn parse_parked(pdu: &Bytes, format: ReceiptIdFormat) -> Option<UpstreamReceipt> {
    let decoded = smsc_smpp::decode(pdu.clone()).ok()?;
    match classify("", &decoded.body, pdu.clone(), format, String::new, 0)? {
        Incoming::Receipt(Ok(r)) => Some(r),
        _ => None,
    }
}

/// The PDU re-encoded, for parking (the codec re-encodes byte for byte).
pub fn reencode(pdu: &Pdu) -> Bytes {
    pdu.to_bytes().unwrap_or_default()
}

/// Whether a TLV of a submit may be passed on to the upstream: the concatenation and
/// port addressing ones, which the handset needs to reassemble and route the message.
pub fn forwarded_tlv(tlv: &Tlv) -> bool {
    matches!(
        tlv,
        Tlv::SarMsgRefNum(_)
            | Tlv::SarTotalSegments(_)
            | Tlv::SarSegmentSeqnum(_)
            | Tlv::SourcePort(_)
            | Tlv::DestinationPort(_)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smsc_smpp::MessageState;
    use smsc_smpp::pdu::{DeliverSm, ShortMessage};
    use smsc_smpp::tlv::{NetworkErrorCode, TlvString};

    /// A deliver_sm from handset 447700900123 to 5555, as an upstream sends one.
    pub(crate) fn deliver_sm(esm_class: u8, text: &[u8], tlvs: Vec<Tlv>) -> Body {
        Body::DeliverSm(DeliverSm {
            source: smsc_smpp::Address::international("447700900123").expect("fits"),
            dest: smsc_smpp::Address::new(
                smsc_smpp::Ton::NETWORK_SPECIFIC,
                smsc_smpp::Npi::UNKNOWN,
                "5555",
            )
            .expect("fits"),
            esm_class: EsmClass(esm_class),
            short_message: ShortMessage::new(Bytes::copy_from_slice(text)).expect("fits"),
            tlvs: Tlvs::from(tlvs),
            ..DeliverSm::default()
        })
    }

    fn receipt_of(body: &Body, format: ReceiptIdFormat) -> Result<UpstreamReceipt, ReceiptProblem> {
        match classify("up", body, Bytes::new(), format, || "mo-1".into(), 7) {
            Some(Incoming::Receipt(r)) => r,
            other => panic!("not a receipt: {other:?}"),
        }
    }

    #[test]
    fn standard_text_with_a_decimal_id_matches_a_hex_submit_id() {
        let text = b"id:1000000001 sub:001 dlvrd:001 submit date:2611270312 done date:2611270313 stat:DELIVRD err:000 text:hello";
        let r =
            receipt_of(&deliver_sm(0x04, text, vec![]), ReceiptIdFormat::Auto).expect("receipt");
        // All digits: tried as decimal (to hex) and as hexadecimal (to decimal) too.
        assert_eq!(r.keys, ["1000000001", "3b9aca01", "3B9ACA01", "68719476737"]);
        assert_eq!((r.state, r.error_code), (MessageState::DELIVERED, 0));
        // Explicit format: one exact key, whatever the padding and case of either side.
        let r = receipt_of(
            &deliver_sm(0x04, b"id:0001000000001 stat:UNDELIV err:001", vec![]),
            ReceiptIdFormat::HexSubmitDecimalReceipt,
        )
        .expect("receipt");
        assert_eq!(r.keys, ["1000000001"]);
        assert_eq!(link_key(ReceiptIdFormat::HexSubmitDecimalReceipt, "003B9aCA01"), "1000000001");
        assert_eq!((r.state, r.error_code), (MessageState::UNDELIVERABLE, 1));
        let r = receipt_of(
            &deliver_sm(0x04, b"id:003B9ACA01 stat:EXPIRED", vec![]),
            ReceiptIdFormat::DecimalSubmitHexReceipt,
        )
        .expect("receipt");
        assert_eq!(r.keys, ["3b9aca01"]);
        assert_eq!(link_key(ReceiptIdFormat::DecimalSubmitHexReceipt, "1000000001"), "3b9aca01");
        assert_eq!(link_key(ReceiptIdFormat::Auto, "AbC-1"), "AbC-1");
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let tlvs = vec![
            Tlv::ReceiptedMessageId(TlvString::new(b"3B9ACA01")),
            Tlv::MessageState(MessageState::UNDELIVERABLE),
            Tlv::NetworkErrorCode(NetworkErrorCode { network_type: 3, error_code: 11 }),
        ];
        let body = deliver_sm(0x04, b"id:1000000001 stat:DELIVRD err:000", tlvs);
        let r = receipt_of(&body, ReceiptIdFormat::Auto).expect("receipt");
        assert_eq!(r.keys[0], "3B9ACA01", "the TLV's id first");
        assert!(r.keys.contains(&"1000000001".to_owned()));
        assert_eq!((r.state, r.error_code), (MessageState::UNDELIVERABLE, 11));
        // TLVs alone, no text at all.
        let tlvs = vec![
            Tlv::ReceiptedMessageId(TlvString::new(b"abc")),
            Tlv::MessageState(MessageState::DELIVERED),
        ];
        let r = receipt_of(&deliver_sm(0x04, b"", tlvs), ReceiptIdFormat::Exact).expect("receipt");
        assert_eq!(
            (r.keys.as_slice(), r.state),
            (&["abc".to_owned()][..], MessageState::DELIVERED)
        );
    }

    #[test]
    fn odd_texts_still_give_id_and_state() {
        for (text, id, state, err) in [
            (
                &b"ID:77 SUB:1 STAT:undeliv ERR:E21 Text:x"[..],
                "77",
                MessageState::UNDELIVERABLE,
                21,
            ),
            (b"id: 77 submit date:99999999 stat:DELIVRD", "77", MessageState::DELIVERED, 0),
            (b"stat:REJECTD id:77\0\0", "77", MessageState::REJECTED, 0),
            (b"id:77 stat:ACCEPTD", "77", MessageState::ACCEPTED, 0),
        ] {
            let r = receipt_of(&deliver_sm(0x04, text, vec![]), ReceiptIdFormat::Exact)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(text)));
            assert_eq!(
                (r.keys[0].as_str(), r.state, r.error_code),
                (id, state, err),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(
            receipt_of(&deliver_sm(0x04, b"stat:DELIVRD", vec![]), ReceiptIdFormat::Auto),
            Err(ReceiptProblem::NoId)
        );
        assert_eq!(
            receipt_of(&deliver_sm(0x04, b"id:1 stat:WHATEVER", vec![]), ReceiptIdFormat::Auto),
            Err(ReceiptProblem::NoState)
        );
        assert_eq!(
            receipt_of(&deliver_sm(0x04, &[0xff; 200], vec![]), ReceiptIdFormat::Auto),
            Err(ReceiptProblem::NoId)
        );
        // An intermediate notification reads as a receipt with a non-final state.
        let r = receipt_of(&deliver_sm(0x20, b"id:9 stat:ENROUTE", vec![]), ReceiptIdFormat::Auto)
            .expect("receipt");
        assert_eq!(r.state, MessageState::ENROUTE);
    }

    #[test]
    fn other_deliver_sm_are_mo_with_udh_and_payload() {
        let body = Body::DeliverSm(DeliverSm {
            source: smsc_smpp::Address::international("447700900123").expect("fits"),
            dest: smsc_smpp::Address::new(
                smsc_smpp::Ton::NETWORK_SPECIFIC,
                smsc_smpp::Npi::UNKNOWN,
                "5555",
            )
            .expect("fits"),
            esm_class: EsmClass(EsmClass::UDHI),
            data_coding: smsc_smpp::DataCoding(8),
            tlvs: Tlvs::from(vec![
                Tlv::MessagePayload(Bytes::from_static(b"\x05\x00\x03\x01\x02\x01\x00h")),
                Tlv::SourcePort(9200),
            ]),
            ..DeliverSm::default()
        });
        let Some(Incoming::Mo(mo)) =
            classify("up", &body, Bytes::new(), ReceiptIdFormat::Auto, || "mo-1".into(), 7)
        else {
            panic!("an MO")
        };
        assert_eq!((mo.id.as_str(), mo.connector.as_str(), mo.received_at_ms), ("mo-1", "up", 7));
        assert_eq!(mo.esm_class, u32::from(EsmClass::UDHI));
        assert_eq!(
            (mo.data_coding, mo.payload.as_slice()),
            (8, &b"\x05\x00\x03\x01\x02\x01\x00h"[..])
        );
        assert_eq!(mo.source.as_ref().map(|a| (a.ton, a.addr.as_str())), Some((1, "447700900123")));
        assert_eq!(mo.dest.as_ref().map(|a| (a.ton, a.addr.as_str())), Some((3, "5555")));
        let tlvs = Tlvs::from_bytes(Bytes::from(mo.tlvs.clone())).expect("tlvs");
        assert_eq!(tlvs.iter().collect::<Vec<_>>(), [&Tlv::SourcePort(9200)], "payload folded in");
        // SME acknowledgements are nobody's business; other PDUs are not ours to read.
        let ack = deliver_sm(EsmClass::TYPE_USER_ACK, b"ok", vec![]);
        assert_eq!(
            classify("up", &ack, Bytes::new(), ReceiptIdFormat::Auto, String::new, 0),
            Some(Incoming::Ignored)
        );
        assert_eq!(
            classify("up", &Body::EnquireLink, Bytes::new(), ReceiptIdFormat::Auto, String::new, 0),
            None
        );
    }

    #[test]
    fn parked_receipts_read_back() {
        let body = deliver_sm(0x04, b"id:5 stat:EXPIRED err:027", vec![]);
        let pdu = reencode(&Pdu::new(9, body));
        let r = parse_parked(&pdu, ReceiptIdFormat::Exact).expect("a receipt");
        assert_eq!(
            (r.keys.as_slice(), r.state, r.error_code),
            (&["5".to_owned()][..], MessageState::EXPIRED, 27)
        );
        assert_eq!(r.pdu, pdu);
        assert_eq!(
            parse_parked(&Bytes::from_static(b"\x00\x00\x00\x10"), ReceiptIdFormat::Auto),
            None
        );
    }
}
