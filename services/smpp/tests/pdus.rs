//! Round trips of every PDU, byte-exact vectors (cross-checked against python smpplib by
//! `tests/vectors/check_smpplib.py`), and the status every malformed input class gets.

use bytes::{Bytes, BytesMut};
use smsc_smpp::pdu::*;
use smsc_smpp::tlv::{NetworkErrorCode, TlvString};
use smsc_smpp::{
    Address, Body, COctetString, CommandId, CommandStatus, DataCoding, DecodeErrorKind, EsmClass,
    Field, MessageState, Npi, Pdu, RegisteredDelivery, Tlv, TlvTag, Tlvs, Ton, decode,
};

fn cs<const N: usize>(s: &str) -> COctetString<N> {
    COctetString::new(s.as_bytes()).expect("fits")
}

fn intl(s: &str) -> Address<21> {
    Address::international(s).expect("fits")
}

fn hex(s: &str) -> Bytes {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect::<Vec<_>>()
        .into()
}

fn vector(name: &str) -> Bytes {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    hex(&std::fs::read_to_string(path).expect("vector file"))
}

fn bind() -> Bind {
    Bind {
        system_id: cs("demo"),
        password: cs("secret"),
        system_type: cs(""),
        interface_version: 0x34,
        addr_ton: Ton::UNKNOWN,
        addr_npi: Npi::UNKNOWN,
        address_range: cs(""),
    }
}

fn submit(text: &[u8], dc: u8) -> SubmitSm {
    SubmitSm {
        source: Address::new(Ton::ALPHANUMERIC, Npi::UNKNOWN, "Bank").expect("fits"),
        dest: intl("447700900123"),
        registered_delivery: RegisteredDelivery::FINAL,
        data_coding: DataCoding(dc),
        short_message: ShortMessage::new(Bytes::copy_from_slice(text)).expect("fits"),
        ..SubmitSm::default()
    }
}

/// One sample of every body, with non-default values where the body has fields.
fn every_pdu() -> Vec<Pdu> {
    let tlvs = Tlvs::from(vec![
        Tlv::UserMessageReference(7),
        Tlv::SourcePort(1234),
        Tlv::Other { tag: TlvTag(0x1401), value: Bytes::from_static(b"vendor") },
    ]);
    let mut sm = submit(b"hello", 0);
    sm.service_type = cs("CMT");
    sm.schedule_delivery_time = TimeString::new(b"261127031500004+").expect("time");
    sm.validity_period = TimeString::new(b"000001000000000R").expect("time");
    sm.esm_class = EsmClass(0x40);
    sm.tlvs = tlvs.clone();
    let bodies = vec![
        Body::BindTransmitter(bind()),
        Body::BindReceiver(bind()),
        Body::BindTransceiver(bind()),
        Body::BindTransmitterResp(BindResp { system_id: cs("smsc"), tlvs: Tlvs::new() }),
        Body::BindReceiverResp(BindResp {
            system_id: cs("smsc"),
            tlvs: vec![Tlv::ScInterfaceVersion(0x34)].into(),
        }),
        Body::BindTransceiverResp(BindResp { system_id: cs("smsc"), tlvs: Tlvs::new() }),
        Body::Outbind(Outbind { system_id: cs("smsc"), password: cs("pw") }),
        Body::Unbind,
        Body::UnbindResp,
        Body::GenericNack,
        Body::EnquireLink,
        Body::EnquireLinkResp,
        Body::SubmitSm(sm.clone()),
        Body::SubmitSmResp(MessageIdResp { message_id: cs("abc"), tlvs: Tlvs::new() }),
        Body::DeliverSm(sm.clone()),
        Body::DeliverSmResp(MessageIdResp::default()),
        Body::DataSm(DataSm {
            service_type: cs("WAP"),
            source: Address::new(Ton(1), Npi(1), &"1".repeat(64)).expect("fits"),
            dest: Address::new(Ton(1), Npi(1), "4477").expect("fits"),
            esm_class: EsmClass(0),
            registered_delivery: RegisteredDelivery(1),
            data_coding: DataCoding(4),
            tlvs: vec![Tlv::MessagePayload(Bytes::from(vec![7u8; 300]))].into(),
        }),
        Body::DataSmResp(MessageIdResp { message_id: cs("d1"), tlvs: tlvs.clone() }),
        Body::SubmitMulti(SubmitMulti {
            service_type: cs(""),
            source: intl("111"),
            dests: vec![
                DestAddress::Sme(intl("222")),
                DestAddress::DistributionList(cs("friends")),
                DestAddress::Sme(intl("333")),
            ],
            registered_delivery: RegisteredDelivery(2),
            short_message: ShortMessage::new(Bytes::from_static(b"multi")).expect("fits"),
            tlvs: tlvs.clone(),
            ..SubmitMulti::default()
        }),
        Body::SubmitMultiResp(SubmitMultiResp {
            message_id: cs("m1"),
            unsuccess: vec![UnsuccessSme {
                dest: intl("333"),
                error_status_code: CommandStatus::ESME_RINVDSTADR,
            }],
            tlvs: Tlvs::new(),
        }),
        Body::QuerySm(QuerySm { message_id: cs("abc"), source: intl("111") }),
        Body::QuerySmResp(QuerySmResp {
            message_id: cs("abc"),
            final_date: TimeString::new(b"261127031500000+").expect("time"),
            message_state: MessageState::DELIVERED,
            error_code: 0,
        }),
        Body::CancelSm(CancelSm {
            service_type: cs(""),
            message_id: cs("abc"),
            source: intl("111"),
            dest: intl("222"),
        }),
        Body::CancelSmResp,
        Body::ReplaceSm(ReplaceSm {
            message_id: cs("abc"),
            source: intl("111"),
            schedule_delivery_time: TimeString::EMPTY,
            validity_period: TimeString::new(b"000002000000000R").expect("time"),
            registered_delivery: RegisteredDelivery(1),
            sm_default_msg_id: 0,
            short_message: ShortMessage::new(Bytes::from_static(b"new text")).expect("fits"),
            tlvs: Tlvs::new(),
        }),
        Body::ReplaceSmResp,
        Body::AlertNotification(AlertNotification {
            source: Address::new(Ton(1), Npi(1), "447700900123").expect("fits"),
            esme_addr: Address::new(Ton(5), Npi(0), "Bank").expect("fits"),
            tlvs: vec![Tlv::MsAvailabilityStatus(0)].into(),
        }),
    ];
    bodies.into_iter().enumerate().map(|(i, b)| Pdu::new(i as u32 + 1, b)).collect()
}

#[test]
fn every_command_has_a_sample() {
    let mut seen: Vec<CommandId> = every_pdu().iter().map(Pdu::command_id).collect();
    seen.sort_by_key(|c| c.as_u32());
    seen.dedup();
    assert_eq!(seen.len(), CommandId::ALL.len());
}

#[test]
fn every_pdu_round_trips() {
    for pdu in every_pdu() {
        let bytes = pdu.to_bytes().expect("encodes");
        assert_eq!(bytes.len(), pdu.encoded_len(), "{:?}", pdu.command_id());
        assert_eq!(u32::from_be_bytes(bytes[..4].try_into().expect("4")) as usize, bytes.len());
        let back = decode(bytes.clone()).unwrap_or_else(|e| panic!("{pdu:?}: {e}"));
        assert_eq!(back, pdu);
        assert_eq!(back.to_bytes().expect("re-encodes"), bytes);
    }
}

#[test]
fn error_responses_omit_the_body_and_round_trip() {
    let nack = Pdu::error_response(CommandId::SubmitSmResp, 9, CommandStatus::ESME_RTHROTTLED);
    let bytes = nack.to_bytes().expect("encodes");
    assert_eq!(&bytes[..], &hex("00000010800000040000005800000009")[..]);
    assert_eq!(decode(bytes).expect("decodes"), nack);
}

#[test]
fn vector_bind_transceiver() {
    let pdu = Pdu::new(1, Body::BindTransceiver(bind()));
    assert_eq!(pdu.to_bytes().expect("encodes"), vector("bind_transceiver"));
    assert_eq!(decode(vector("bind_transceiver")).expect("decodes"), pdu);
}

#[test]
fn vector_bind_transceiver_resp() {
    let pdu = Pdu::new(
        1,
        Body::BindTransceiverResp(BindResp {
            system_id: cs("smsc"),
            tlvs: vec![Tlv::ScInterfaceVersion(0x34)].into(),
        }),
    );
    assert_eq!(pdu.to_bytes().expect("encodes"), vector("bind_transceiver_resp"));
    assert_eq!(decode(vector("bind_transceiver_resp")).expect("decodes"), pdu);
}

#[test]
fn vector_submit_sm_gsm() {
    // "Hello @ € { ß" in the GSM 03.38 default alphabet, unpacked.
    let text = smsc_smpp::text::gsm7_encode("Hello @ € { ß").expect("gsm");
    let pdu = Pdu::new(2, Body::SubmitSm(submit(&text, 0)));
    assert_eq!(pdu.to_bytes().expect("encodes"), vector("submit_sm_gsm"));
    let back = decode(vector("submit_sm_gsm")).expect("decodes");
    assert_eq!(back, pdu);
    let Body::SubmitSm(sm) = back.body else { panic!("submit_sm") };
    let decoded = smsc_smpp::text::gsm7_decode(sm.short_message.as_bytes()).expect("text");
    assert_eq!(decoded, "Hello @ € { ß");
}

#[test]
fn vector_submit_sm_ucs2() {
    let text = smsc_smpp::text::encode("Привет 😀", smsc_smpp::text::Alphabet::Ucs2).expect("ucs2");
    let sm = SubmitSm {
        source: intl("79000000000"),
        dest: intl("79161234567"),
        data_coding: DataCoding::UCS2,
        short_message: ShortMessage::new(text).expect("fits"),
        ..SubmitSm::default()
    };
    let pdu = Pdu::new(3, Body::SubmitSm(sm));
    assert_eq!(pdu.to_bytes().expect("encodes"), vector("submit_sm_ucs2"));
    assert_eq!(decode(vector("submit_sm_ucs2")).expect("decodes"), pdu);
}

#[test]
fn vector_submit_sm_resp_and_generic_nack() {
    let resp = Pdu::new(
        2,
        Body::SubmitSmResp(MessageIdResp { message_id: cs("0123456789abcdef"), tlvs: Tlvs::new() }),
    );
    assert_eq!(resp.to_bytes().expect("encodes"), vector("submit_sm_resp"));
    let nack = Pdu::generic_nack(42, CommandStatus::ESME_RINVCMDID);
    assert_eq!(nack.to_bytes().expect("encodes"), vector("generic_nack"));
    assert_eq!(decode(vector("generic_nack")).expect("decodes"), nack);
    let el = Pdu::new(5, Body::EnquireLink);
    assert_eq!(el.to_bytes().expect("encodes"), vector("enquire_link"));
}

#[test]
fn vector_deliver_sm_receipt() {
    let text = "id:0123456789abcdef sub:001 dlvrd:001 submit date:2611270300 \
                done date:2611270301 stat:DELIVRD err:000 text:Hello";
    let dlr = DeliverSm {
        source: intl("447700900123"),
        dest: Address::new(Ton::ALPHANUMERIC, Npi::UNKNOWN, "Bank").expect("fits"),
        esm_class: EsmClass(EsmClass::TYPE_DELIVERY_RECEIPT),
        short_message: ShortMessage::new(Bytes::from(text)).expect("fits"),
        tlvs: vec![
            Tlv::ReceiptedMessageId(TlvString::new(b"0123456789abcdef")),
            Tlv::MessageState(MessageState::DELIVERED),
            Tlv::NetworkErrorCode(NetworkErrorCode { network_type: 3, error_code: 0 }),
        ]
        .into(),
        ..DeliverSm::default()
    };
    let pdu = Pdu::new(7, Body::DeliverSm(dlr));
    assert_eq!(pdu.to_bytes().expect("encodes"), vector("deliver_sm_receipt"));
    let back = decode(vector("deliver_sm_receipt")).expect("decodes");
    assert_eq!(back, pdu);
    let Body::DeliverSm(d) = back.body else { panic!("deliver_sm") };
    assert!(d.esm_class.is_delivery_receipt());
    let r = smsc_smpp::receipt::Receipt::parse_bytes(d.short_message.as_bytes()).expect("receipt");
    assert_eq!(r.id, "0123456789abcdef");
    assert_eq!(r.stat, smsc_smpp::receipt::ReceiptStat::Delivered);
    assert_eq!(d.tlvs.receipted_message_id().map(TlvString::value), Some(&b"0123456789abcdef"[..]));
}

/// Builds a raw PDU around `body`, with a correct command_length.
fn raw(command_id: u32, seq: u32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
    b.extend_from_slice(&command_id.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(body);
    b.freeze()
}

fn submit_body(
    src: &[u8],
    dst: &[u8],
    sched: &[u8],
    sm_len: u8,
    sm: &[u8],
    tlvs: &[u8],
) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(src);
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(dst);
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(sched);
    b.extend_from_slice(&[0, 1, 0, 0, 0, sm_len]);
    b.extend_from_slice(sm);
    b.extend_from_slice(tlvs);
    b
}

#[test]
fn malformed_input_gets_the_specs_status() {
    let ok = submit_body(b"111\0", b"222\0", b"\0", 2, b"hi", &[]);
    assert!(decode(raw(4, 1, &ok)).is_ok());

    let cases: Vec<(&str, Bytes, CommandStatus, Option<CommandId>)> = vec![
        (
            "unknown command",
            raw(0x0000_0111, 5, &[]),
            CommandStatus::ESME_RINVCMDID,
            Some(CommandId::GenericNack),
        ),
        (
            "truncated body",
            raw(4, 5, &ok[..10]),
            CommandStatus::ESME_RINVCMDLEN,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "source_addr without terminator within 21",
            raw(4, 5, &submit_body(&[b'1'; 30], b"222\0", b"\0", 0, b"", &[])),
            CommandStatus::ESME_RINVSRCADR,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "destination_addr too long",
            raw(4, 5, &submit_body(b"1\0", &[b'2'; 40], b"\0", 0, b"", &[])),
            CommandStatus::ESME_RINVDSTADR,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "schedule of 5 characters",
            raw(4, 5, &submit_body(b"1\0", b"2\0", b"12345\0", 0, b"", &[])),
            CommandStatus::ESME_RINVSCHED,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "sm_length beyond the body",
            raw(4, 5, &submit_body(b"1\0", b"2\0", b"\0", 200, b"hi", &[])),
            CommandStatus::ESME_RINVMSGLEN,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "sm_length 255",
            raw(4, 5, &submit_body(b"1\0", b"2\0", b"\0", 255, &[b'x'; 255], &[])),
            CommandStatus::ESME_RINVMSGLEN,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "TLV running past the body",
            raw(4, 5, &submit_body(b"1\0", b"2\0", b"\0", 0, b"", &[0x04, 0x24, 0, 9, 1])),
            CommandStatus::ESME_RINVOPTPARSTREAM,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "TLV header cut short",
            raw(4, 5, &submit_body(b"1\0", b"2\0", b"\0", 0, b"", &[0x04])),
            CommandStatus::ESME_RINVOPTPARSTREAM,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "known TLV with a wrong length",
            raw(4, 5, &submit_body(b"1\0", b"2\0", b"\0", 0, b"", &[0x02, 0x0C, 0, 1, 9])),
            CommandStatus::ESME_RINVPARLEN,
            Some(CommandId::SubmitSmResp),
        ),
        (
            "body on enquire_link",
            raw(0x15, 5, &[1, 2, 3]),
            CommandStatus::ESME_RINVCMDLEN,
            Some(CommandId::EnquireLinkResp),
        ),
        (
            "system_id too long",
            raw(9, 5, &[b'a'; 40]),
            CommandStatus::ESME_RINVSYSID,
            Some(CommandId::BindTransceiverResp),
        ),
        (
            "submit_multi with 0 destinations",
            raw(0x21, 5, &[0, 1, 1, b'1', 0, 0]),
            CommandStatus::ESME_RINVNUMDESTS,
            Some(CommandId::SubmitMultiResp),
        ),
        (
            "submit_multi with dest_flag 3",
            raw(0x21, 5, &[0, 1, 1, b'1', 0, 1, 3, 1, 1, b'2', 0]),
            CommandStatus::ESME_RINVDESTFLAG,
            Some(CommandId::SubmitMultiResp),
        ),
        (
            "malformed response is not answered",
            raw(0x8000_0004, 5, &[b'x'; 80]),
            CommandStatus::ESME_RINVMSGID,
            None,
        ),
    ];
    for (what, bytes, status, answer) in cases {
        let err = decode(bytes).expect_err(what);
        assert_eq!(err.status(), status, "{what}: {err}");
        assert_eq!(err.sequence_number, 5, "{what}");
        assert!(!err.is_fatal(), "{what}");
        let resp = err.response();
        assert_eq!(resp.as_ref().map(Pdu::command_id), answer, "{what}");
        if let Some(r) = resp {
            assert_eq!(r.sequence_number, 5);
            assert_eq!(r.status, status);
        }
    }
}

#[test]
fn length_mismatch_is_fatal() {
    let mut b = BytesMut::from(&raw(0x15, 8, &[])[..]);
    b[3] = 20;
    let err = decode(b.freeze()).expect_err("mismatch");
    assert!(err.is_fatal());
    assert!(matches!(err.kind, DecodeErrorKind::CommandLength { .. }));
    assert_eq!(err.response().map(|p| p.command_id()), Some(CommandId::GenericNack));
}

#[test]
fn field_errors_name_the_field() {
    let err = decode(raw(4, 1, &submit_body(&[b'1'; 30], b"2\0", b"\0", 0, b"", &[])))
        .expect_err("too long");
    assert_eq!(err.kind, DecodeErrorKind::TooLong { field: Field::SourceAddr });
}

#[test]
fn limits_hold_at_the_boundary() {
    // 20 digits and the NUL: the longest legal address.
    let twenty = [b'1'; 20];
    let mut src = twenty.to_vec();
    src.push(0);
    assert!(decode(raw(4, 1, &submit_body(&src, b"2\0", b"\0", 0, b"", &[]))).is_ok());
    assert!(ShortMessage::new(Bytes::from(vec![0u8; 254])).is_ok());
    assert!(ShortMessage::new(Bytes::from(vec![0u8; 255])).is_err());
    assert!(TimeString::new(b"2611").is_err());
}

#[test]
fn too_many_destinations_cannot_be_encoded() {
    let multi =
        SubmitMulti { dests: vec![DestAddress::Sme(intl("1")); 255], ..SubmitMulti::default() };
    let mut out = BytesMut::new();
    assert!(Pdu::new(1, Body::SubmitMulti(multi)).encode(&mut out).is_err());
    assert!(out.is_empty(), "nothing written on failure");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Bytes> {
        every_pdu().iter().map(|p| p.to_bytes().expect("encodes")).collect()
    }

    /// Whatever decodes must re-encode to something that decodes to the same PDU.
    fn check(bytes: Bytes) {
        if let Ok(pdu) = decode(bytes) {
            let again = pdu.to_bytes().expect("a decoded PDU encodes");
            assert_eq!(decode(again).expect("re-decodes"), pdu);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(mut body in proptest::collection::vec(any::<u8>(), 0..400),
                                    id in prop::sample::select(CommandId::ALL.to_vec())) {
            let len = (16 + body.len()) as u32;
            let mut b = len.to_be_bytes().to_vec();
            b.extend_from_slice(&id.as_u32().to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            b.append(&mut body);
            check(b.into());
        }

        #[test]
        fn mutated_pdus_never_panic(which in any::<prop::sample::Index>(),
                                    flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                    cut in any::<prop::sample::Index>()) {
            let s = samples();
            let mut b = s[which.index(s.len())].to_vec();
            for (at, v) in flips {
                let i = at.index(b.len());
                // Keep command_length honest half of the time so the body decoder is reached.
                if i >= 4 || v & 1 == 0 {
                    b[i] = v;
                }
            }
            let keep = 16 + cut.index(b.len() - 15);
            b.truncate(keep);
            let len = b.len() as u32;
            b[..4].copy_from_slice(&len.to_be_bytes());
            check(b.into());
        }

        #[test]
        fn framing_never_panics(stream in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut buf = BytesMut::from(&stream[..]);
            while let Ok(Some(frame)) = smsc_smpp::split_frame(&mut buf, 300) {
                check(frame);
            }
        }
    }
}

#[tokio::test]
async fn tokio_codec_keeps_the_stream_after_a_bad_body() {
    use futures::StreamExt;
    use smsc_smpp::codec::{CodecError, SmppCodec};
    use tokio_util::codec::FramedRead;

    let mut stream = Vec::new();
    stream.extend_from_slice(&vector("enquire_link"));
    stream.extend_from_slice(&raw(0x0000_0111, 6, &[]));
    stream.extend_from_slice(&vector("submit_sm_gsm"));
    stream.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 9]);
    stream.extend_from_slice(&vector("enquire_link"));
    let mut framed = FramedRead::new(&stream[..], SmppCodec::default());

    let first = framed.next().await.expect("item").expect("framing").expect("pdu");
    assert_eq!(first.command_id(), CommandId::EnquireLink);
    let bad = framed.next().await.expect("item").expect("framing").expect_err("bad body");
    assert_eq!(bad.status(), CommandStatus::ESME_RINVCMDID);
    let third = framed.next().await.expect("item").expect("framing").expect("pdu");
    assert_eq!(third.command_id(), CommandId::SubmitSm);
    match framed.next().await.expect("item") {
        Err(CodecError::Framing(e)) => {
            assert_eq!(e.sequence_number, 9);
            assert_eq!(e.response().map(|p| p.command_id()), Some(CommandId::GenericNack));
        }
        other => panic!("expected a framing error, got {other:?}"),
    }
}
