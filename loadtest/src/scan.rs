//! Allocation-free reads of the two PDUs that come back once per message, for the hot
//! path: the message_id of a submit_sm_resp and the receipt fields of a deliver_sm.
//!
//! The codec's [`smsc_smpp::decode`] builds the whole body (every field copied, a `Vec`
//! of TLVs, reference-counted slices): at a million receipts a second that was a third
//! of the tool's CPU. These readers borrow from the frame instead, and give up (`None`)
//! on anything unusual; the caller then decodes with the codec, which stays the reference
//! for what a valid PDU is (and builds the error response). The tests check both agree.

use smsc_smpp::{HEADER_LEN, MessageState, TlvTag};

/// What a deliver_sm says about a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeliverView<'a> {
    pub esm_class: u8,
    pub short_message: &'a [u8],
    /// The value of receipted_message_id, without its NUL.
    pub receipted_message_id: Option<&'a [u8]>,
    pub message_state: Option<MessageState>,
}

/// The message_id of a submit_sm_resp frame (header included): the C-string after the
/// header. `None` when it has no terminator within 65 octets.
pub(crate) fn message_id(frame: &[u8]) -> Option<&[u8]> {
    let body = frame.get(HEADER_LEN..)?;
    let end = body.iter().take(65).position(|&b| b == 0)?;
    Some(&body[..end])
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        (self.pos + n <= self.buf.len()).then(|| self.pos += n)
    }

    /// Skips a C-Octet String of at most `max` octets, NUL included.
    fn cstr(&mut self, max: usize) -> Option<()> {
        let rest = self.buf.get(self.pos..)?;
        let end = rest.iter().take(max).position(|&b| b == 0)?;
        self.pos += end + 1;
        Some(())
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(b)
    }
}

/// The receipt fields of a deliver_sm frame (header included), or `None` to let the
/// codec decide.
pub(crate) fn deliver_sm(frame: &[u8]) -> Option<DeliverView<'_>> {
    let mut c = Cursor { buf: frame, pos: HEADER_LEN };
    c.cstr(6)?; // service_type
    c.skip(2)?; // source TON, NPI
    c.cstr(21)?;
    c.skip(2)?; // destination TON, NPI
    c.cstr(21)?;
    let esm_class = c.u8()?;
    c.skip(2)?; // protocol_id, priority_flag
    for _ in 0..2 {
        // schedule_delivery_time, validity_period: empty or 16 characters
        let at = c.pos;
        c.cstr(17)?;
        if !matches!(c.pos - at, 1 | 17) {
            return None;
        }
    }
    c.skip(4)?; // registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
    let sm_length = usize::from(c.u8()?);
    if sm_length > 254 {
        return None;
    }
    let short_message = c.bytes(sm_length)?;
    let mut view =
        DeliverView { esm_class, short_message, receipted_message_id: None, message_state: None };
    while c.pos < frame.len() {
        let tag = u16::from_be_bytes([c.u8()?, c.u8()?]);
        let len = usize::from(u16::from_be_bytes([c.u8()?, c.u8()?]));
        let value = c.bytes(len)?;
        match TlvTag(tag) {
            // Twice is a duplicate the codec would report; it decides then.
            TlvTag::RECEIPTED_MESSAGE_ID if view.receipted_message_id.is_none() => {
                if !(1..=65).contains(&len) {
                    return None;
                }
                view.receipted_message_id = Some(value.strip_suffix(&[0]).unwrap_or(value));
            }
            TlvTag::MESSAGE_STATE if view.message_state.is_none() => {
                let [state] = value else { return None };
                view.message_state = Some(MessageState(*state));
            }
            TlvTag::RECEIPTED_MESSAGE_ID | TlvTag::MESSAGE_STATE => return None,
            _ => {}
        }
    }
    Some(view)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use smsc_smpp::pdu::{DeliverSm, MessageIdResp, ShortMessage};
    use smsc_smpp::tlv::TlvString;
    use smsc_smpp::{Address, Body, COctetString, EsmClass, Pdu, Tlv};

    use super::*;

    fn encode(pdu: Pdu) -> Vec<u8> {
        let mut b = BytesMut::new();
        pdu.encode(&mut b).expect("encodes");
        b.to_vec()
    }

    /// esm_class, short_message, receipted_message_id, message_state.
    type Fields = (u8, Vec<u8>, Option<Vec<u8>>, Option<MessageState>);

    /// What the codec makes of the same frame.
    fn by_codec(frame: &[u8]) -> Option<Fields> {
        match smsc_smpp::decode(Bytes::copy_from_slice(frame)) {
            Ok(Pdu { body: Body::DeliverSm(d), .. }) => Some((
                d.esm_class.0,
                d.short_message.as_bytes().to_vec(),
                d.tlvs.receipted_message_id().map(|t| t.value().to_vec()),
                d.tlvs.message_state(),
            )),
            _ => None,
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let receipt = |tlvs: bool, id: &str| {
            let mut d = DeliverSm {
                source: Address::international("447700900123").expect("fits"),
                dest: Address::new(smsc_smpp::Ton::ALPHANUMERIC, smsc_smpp::Npi::UNKNOWN, "Bank").expect("fits"),
                esm_class: EsmClass(EsmClass::TYPE_DELIVERY_RECEIPT),
                short_message: ShortMessage::new(Bytes::from(format!(
                    "id:{id} sub:001 dlvrd:001 submit date:2611270340 done date:2611270340 stat:DELIVRD err:000 text:hello"
                )))
                .expect("fits"),
                ..DeliverSm::default()
            };
            if tlvs {
                d.tlvs
                    .push(Tlv::Other { tag: TlvTag(0x1401), value: Bytes::from_static(b"vendor") });
                d.tlvs.push(Tlv::ReceiptedMessageId(TlvString::new(id.as_bytes())));
                d.tlvs.push(Tlv::MessageState(MessageState::DELIVERED));
            }
            encode(Pdu::new(7, Body::DeliverSm(d)))
        };
        let mo = DeliverSm {
            source: Address::international("447700900123").expect("fits"),
            esm_class: EsmClass(0x40),
            short_message: ShortMessage::new(Bytes::from_static(&[5, 0, 3, 1, 2, 1, b'h', b'i']))
                .expect("fits"),
            ..DeliverSm::default()
        };
        let mut payload = DeliverSm::default();
        payload.tlvs.push(Tlv::MessagePayload(Bytes::from(vec![b'x'; 300])));
        vec![
            receipt(true, "0123456789abcdef0123456789abcdef"),
            receipt(false, "100000001"),
            encode(Pdu::new(1, Body::DeliverSm(mo))),
            encode(Pdu::new(2, Body::DeliverSm(payload))),
        ]
    }

    #[test]
    fn agrees_with_the_codec() {
        for frame in samples() {
            let v = deliver_sm(&frame).expect("scans");
            let got = (
                v.esm_class,
                v.short_message.to_vec(),
                v.receipted_message_id.map(<[u8]>::to_vec),
                v.message_state,
            );
            assert_eq!(Some(got), by_codec(&frame));
        }
    }

    #[test]
    fn gives_up_rather_than_guess() {
        // Every truncation: either the codec agrees with the scan, or the scan gave up.
        for frame in samples() {
            for len in 0..frame.len() {
                let mut f = frame[..len].to_vec();
                if f.len() >= 4 {
                    f[..4].copy_from_slice(&(len as u32).to_be_bytes());
                }
                if let Some(v) = deliver_sm(&f) {
                    let got = (
                        v.esm_class,
                        v.short_message.to_vec(),
                        v.receipted_message_id.map(<[u8]>::to_vec),
                        v.message_state,
                    );
                    assert_eq!(Some(got), by_codec(&f), "truncated to {len}");
                }
            }
        }
        // A duplicate receipted_message_id is left to the codec.
        let mut d = DeliverSm::default();
        d.tlvs.push(Tlv::ReceiptedMessageId(TlvString::new(b"a")));
        d.tlvs.push(Tlv::ReceiptedMessageId(TlvString::new(b"b")));
        assert_eq!(deliver_sm(&encode(Pdu::new(1, Body::DeliverSm(d)))), None);
    }

    #[test]
    fn submit_sm_resp_message_id() {
        let resp = MessageIdResp {
            message_id: COctetString::new(b"01ab").expect("fits"),
            ..MessageIdResp::default()
        };
        let frame = encode(Pdu::new(3, Body::SubmitSmResp(resp)));
        assert_eq!(message_id(&frame), Some(&b"01ab"[..]));
        assert_eq!(message_id(&frame[..HEADER_LEN]), None, "no body");
        let mut long = frame[..HEADER_LEN].to_vec();
        long.extend_from_slice(&[b'1'; 70]);
        assert_eq!(message_id(&long), None, "no NUL within 65 octets");
    }
}
