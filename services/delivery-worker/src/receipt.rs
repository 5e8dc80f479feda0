//! Delivery receipts: the deliver_sm an ESME gets about its message (SMPP 3.4 Appendix B
//! text, plus receipted_message_id, message_state and network_error_code).

use bytes::Bytes;
use smsc_smpp::pdu::{DeliverSm, ShortMessage};
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::text::Alphabet;
use smsc_smpp::tlv::{NetworkErrorCode, TlvString};
use smsc_smpp::{Body, DataCoding, EsmClass, Pdu, Tlv, Tlvs};
use smsc_store::StoredMessage;

/// The first 20 characters of the message for `text:`, when it is text a receipt can
/// carry as ASCII; nothing for binary or UCS2. The receipt goes out with data_coding 0,
/// which stacks decode as GSM 7-bit (gosmpp, as this SMSC does MO) or as ASCII (most
/// receipt parsers): only the characters both read alike are kept, others become `?`
/// (`@` is `¡` in GSM, `$` is `¤`, `_` is `§`, brackets are letters with umlauts).
fn excerpt(m: &StoredMessage) -> String {
    let alphabet = DataCoding(m.data_coding).alphabet();
    let udh = m.esm_class & EsmClass::UDHI != 0;
    let text = match alphabet {
        Alphabet::Gsm7 | Alphabet::Ia5 | Alphabet::Latin1 if !udh => {
            smsc_smpp::text::decode(&m.payload, alphabet).unwrap_or_default()
        }
        _ => String::new(),
    };
    let same_in_ascii_and_gsm =
        |c: char| c.is_ascii_alphanumeric() || " !\"#%&'()*+,-./:;<=>?".contains(c);
    let safe = |c: char| match c {
        c if same_in_ascii_and_gsm(c) => c,
        c if c.is_whitespace() => ' ',
        _ => '?',
    };
    text.chars().take(20).map(safe).collect()
}

/// The receipt for `m` reaching `stat` at `done_at` (Unix ms).
pub fn deliver_sm(
    m: &StoredMessage,
    stat: ReceiptStat,
    error_code: u16,
    done_at: i64,
) -> Option<Bytes> {
    let date = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).map(|d| d.naive_utc());
    let delivered = stat == ReceiptStat::Delivered;
    let r = Receipt {
        id: m.message_id.clone(),
        sub: 1,
        dlvrd: u32::from(delivered),
        submit_date: date(m.submitted_at),
        done_date: date(done_at),
        stat,
        err: error_code,
        text: excerpt(m),
    };
    let mut text = Vec::with_capacity(160);
    r.write_to(&mut text);
    let tlvs = Tlvs::from(vec![
        Tlv::ReceiptedMessageId(TlvString::new(m.message_id.as_bytes())),
        Tlv::MessageState(stat.to_message_state()),
        Tlv::NetworkErrorCode(NetworkErrorCode { network_type: NetworkErrorCode::GSM, error_code }),
    ]);
    let d = DeliverSm {
        // Addresses swapped: the receipt comes "from" the handset to the ESME's address.
        source: m.dest.resized(),
        dest: m.source.resized(),
        esm_class: EsmClass(EsmClass::TYPE_DELIVERY_RECEIPT),
        short_message: ShortMessage::new(Bytes::from(text)).ok()?,
        tlvs,
        ..DeliverSm::default()
    };
    Pdu::new(1, Body::DeliverSm(d)).to_bytes().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsc_store::Address;

    fn message(data_coding: u8, payload: &[u8]) -> StoredMessage {
        StoredMessage {
            message_id: "0123456789abcdef0123456789abcdef".into(),
            dest_index: 0,
            system_id: "demo".into(),
            source: Address::new(smsc_smpp::Ton(5), smsc_smpp::Npi(0), "Bank").expect("address"),
            dest: Address::new(smsc_smpp::Ton(1), smsc_smpp::Npi(1), "447700900123")
                .expect("address"),
            service_type: String::new(),
            registered_delivery: 1,
            data_coding,
            esm_class: 0,
            payload: bytes::Bytes::copy_from_slice(payload),
            state: smsc_store::DeliveryState::Delivered,
            error_code: 0,
            attempts: 1,
            submitted_at: 1_795_000_000_000,
            schedule_at: None,
            expire_at: 0,
            final_at: None,
            event: bytes::Bytes::new(),
            first_attempt_at: None,
            connector: String::new(),
            route: String::new(),
        }
    }

    #[test]
    fn receipt_has_standard_text_and_tlvs() {
        let m = message(0, b"Your code is 123456, valid 5 minutes");
        let bytes = deliver_sm(&m, ReceiptStat::Delivered, 0, 1_795_000_060_000).expect("fits");
        let Ok(Pdu { body: Body::DeliverSm(d), .. }) = smsc_smpp::decode(bytes) else {
            panic!("deliver_sm")
        };
        assert!(d.esm_class.is_delivery_receipt());
        assert_eq!(d.source.addr.as_bytes(), b"447700900123");
        assert_eq!(d.dest.addr.as_bytes(), b"Bank");
        let text = std::str::from_utf8(d.short_message.as_bytes()).expect("ascii");
        assert!(
            text.starts_with("id:0123456789abcdef0123456789abcdef sub:001 dlvrd:001 submit date:"),
            "{text}"
        );
        assert!(text.contains(" stat:DELIVRD err:000 text:Your code is 123456"), "{text}");
        let parsed = Receipt::parse(text).expect("parses");
        assert_eq!(parsed.id, m.message_id);
        assert_eq!(
            d.tlvs.receipted_message_id().map(TlvString::value),
            Some(m.message_id.as_bytes())
        );
        assert_eq!(d.tlvs.message_state(), Some(smsc_smpp::MessageState::DELIVERED));
    }

    #[test]
    fn receipt_text_keeps_only_what_ascii_and_gsm_read_alike() {
        let gsm = smsc_smpp::text::encode("Mail a@b.com $5_[x]\nok", Alphabet::Gsm7).expect("GSM");
        let m = message(0, &gsm);
        assert_eq!(excerpt(&m), "Mail a?b.com ?5??x? ");
        // The 20 characters are the message's, before any is replaced.
        assert_eq!(excerpt(&message(3, b"caf\xe9\tok")), "caf? ok");
    }
}
