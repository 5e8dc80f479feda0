//! Every SMPP 3.4 PDU, its body type, and the pure decoder and encoder.
//!
//! `decode` takes one whole PDU (the framer has already checked command_length) as
//! `Bytes` and borrows the short message and TLV values from it without copying.
//! `Pdu::encode` appends to a `BytesMut`, writing the length last.

use bytes::{BufMut, Bytes, BytesMut};

use crate::command::{HEADER_LEN, Header};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError, Field};
use crate::text::DataCoding;
use crate::tlv::{TlvError, Tlvs};
use crate::types::{Address, COctetString, EsmClass, FieldError, Npi, RegisteredDelivery, Ton};
use crate::{CommandId, CommandStatus, MessageState};

/// `schedule_delivery_time`, `validity_period`, `final_date`: empty, or exactly the 16
/// characters of an SMPP time. `parse` turns it into a [`crate::time::SmppTime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimeString(COctetString<17>);

impl TimeString {
    pub const EMPTY: Self = Self(COctetString::EMPTY);

    pub fn new(value: &[u8]) -> Result<Self, FieldError> {
        if !(value.is_empty() || value.len() == 16) {
            return Err(FieldError::TooLong { len: value.len() + 1, max: 17 });
        }
        COctetString::new(value).map(Self)
    }

    pub fn from_time(t: &crate::time::SmppTime) -> Self {
        Self(COctetString::from_checked(&t.format()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(None)` when empty (immediate delivery, default validity).
    pub fn parse(&self) -> Result<Option<crate::time::SmppTime>, crate::time::TimeError> {
        crate::time::SmppTime::parse(self.as_bytes())
    }
}

/// The `short_message` field: at most 254 octets (sm_length is one octet and the spec
/// caps it at 254); longer content goes in the `message_payload` TLV.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ShortMessage(Bytes);

impl ShortMessage {
    pub const MAX: usize = 254;

    pub fn new(value: impl Into<Bytes>) -> Result<Self, FieldError> {
        let value = value.into();
        if value.len() > Self::MAX {
            return Err(FieldError::TooLong { len: value.len(), max: Self::MAX });
        }
        Ok(Self(value))
    }

    pub fn empty() -> Self {
        Self(Bytes::new())
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// bind_transmitter, bind_receiver and bind_transceiver share one body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bind {
    pub system_id: COctetString<16>,
    pub password: COctetString<9>,
    pub system_type: COctetString<13>,
    pub interface_version: u8,
    pub addr_ton: Ton,
    pub addr_npi: Npi,
    pub address_range: COctetString<41>,
}

/// The response to any bind. `sc_interface_version` goes in the TLVs, and only to peers
/// that bound with interface_version 0x34 or later.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindResp {
    pub system_id: COctetString<16>,
    pub tlvs: Tlvs,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outbind {
    pub system_id: COctetString<16>,
    pub password: COctetString<9>,
}

/// submit_sm and deliver_sm have the same body (SMPP 3.4 §4.4.1, §4.6.1); in deliver_sm
/// the schedule and validity times are empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitSm {
    pub service_type: COctetString<6>,
    pub source: Address<21>,
    pub dest: Address<21>,
    pub esm_class: EsmClass,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: TimeString,
    pub validity_period: TimeString,
    pub registered_delivery: RegisteredDelivery,
    pub replace_if_present_flag: u8,
    pub data_coding: DataCoding,
    pub sm_default_msg_id: u8,
    pub short_message: ShortMessage,
    pub tlvs: Tlvs,
}

/// deliver_sm: the same body as submit_sm.
pub type DeliverSm = SubmitSm;

/// submit_sm_resp, deliver_sm_resp and data_sm_resp: a message_id (empty in
/// deliver_sm_resp) and, from 5.0, TLVs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageIdResp {
    pub message_id: COctetString<65>,
    pub tlvs: Tlvs,
}

/// One destination of a submit_multi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestAddress {
    /// dest_flag 1.
    Sme(Address<21>),
    /// dest_flag 2.
    DistributionList(COctetString<21>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitMulti {
    pub service_type: COctetString<6>,
    pub source: Address<21>,
    /// 1 to 254 destinations; `encode` refuses more.
    pub dests: Vec<DestAddress>,
    pub esm_class: EsmClass,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: TimeString,
    pub validity_period: TimeString,
    pub registered_delivery: RegisteredDelivery,
    pub replace_if_present_flag: u8,
    pub data_coding: DataCoding,
    pub sm_default_msg_id: u8,
    pub short_message: ShortMessage,
    pub tlvs: Tlvs,
}

/// A destination the SMSC did not accept, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsuccessSme {
    pub dest: Address<21>,
    pub error_status_code: CommandStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitMultiResp {
    pub message_id: COctetString<65>,
    pub unsuccess: Vec<UnsuccessSme>,
    pub tlvs: Tlvs,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataSm {
    pub service_type: COctetString<6>,
    pub source: Address<65>,
    pub dest: Address<65>,
    pub esm_class: EsmClass,
    pub registered_delivery: RegisteredDelivery,
    pub data_coding: DataCoding,
    pub tlvs: Tlvs,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuerySm {
    pub message_id: COctetString<65>,
    pub source: Address<21>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuerySmResp {
    pub message_id: COctetString<65>,
    pub final_date: TimeString,
    pub message_state: MessageState,
    /// The network error code of a failed message (GSM: the MAP error).
    pub error_code: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CancelSm {
    pub service_type: COctetString<6>,
    /// Empty to cancel every message from `source` to `dest` (with service_type).
    pub message_id: COctetString<65>,
    pub source: Address<21>,
    pub dest: Address<21>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplaceSm {
    pub message_id: COctetString<65>,
    pub source: Address<21>,
    pub schedule_delivery_time: TimeString,
    pub validity_period: TimeString,
    pub registered_delivery: RegisteredDelivery,
    pub sm_default_msg_id: u8,
    pub short_message: ShortMessage,
    /// 5.0 allows message_payload here.
    pub tlvs: Tlvs,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertNotification {
    pub source: Address<65>,
    pub esme_addr: Address<65>,
    pub tlvs: Tlvs,
}

/// The body of a PDU, by command.
#[derive(Debug, Clone, PartialEq, Eq)]
// Boxing the large variants would cost an allocation per submit_sm on the hot path.
#[allow(clippy::large_enum_variant)]
pub enum Body {
    BindTransmitter(Bind),
    BindTransmitterResp(BindResp),
    BindReceiver(Bind),
    BindReceiverResp(BindResp),
    BindTransceiver(Bind),
    BindTransceiverResp(BindResp),
    Outbind(Outbind),
    Unbind,
    UnbindResp,
    GenericNack,
    EnquireLink,
    EnquireLinkResp,
    SubmitSm(SubmitSm),
    SubmitSmResp(MessageIdResp),
    DeliverSm(DeliverSm),
    DeliverSmResp(MessageIdResp),
    DataSm(DataSm),
    DataSmResp(MessageIdResp),
    SubmitMulti(SubmitMulti),
    SubmitMultiResp(SubmitMultiResp),
    QuerySm(QuerySm),
    QuerySmResp(QuerySmResp),
    CancelSm(CancelSm),
    CancelSmResp,
    ReplaceSm(ReplaceSm),
    ReplaceSmResp,
    AlertNotification(AlertNotification),
}

impl Body {
    pub const fn command_id(&self) -> CommandId {
        match self {
            Self::BindTransmitter(_) => CommandId::BindTransmitter,
            Self::BindTransmitterResp(_) => CommandId::BindTransmitterResp,
            Self::BindReceiver(_) => CommandId::BindReceiver,
            Self::BindReceiverResp(_) => CommandId::BindReceiverResp,
            Self::BindTransceiver(_) => CommandId::BindTransceiver,
            Self::BindTransceiverResp(_) => CommandId::BindTransceiverResp,
            Self::Outbind(_) => CommandId::Outbind,
            Self::Unbind => CommandId::Unbind,
            Self::UnbindResp => CommandId::UnbindResp,
            Self::GenericNack => CommandId::GenericNack,
            Self::EnquireLink => CommandId::EnquireLink,
            Self::EnquireLinkResp => CommandId::EnquireLinkResp,
            Self::SubmitSm(_) => CommandId::SubmitSm,
            Self::SubmitSmResp(_) => CommandId::SubmitSmResp,
            Self::DeliverSm(_) => CommandId::DeliverSm,
            Self::DeliverSmResp(_) => CommandId::DeliverSmResp,
            Self::DataSm(_) => CommandId::DataSm,
            Self::DataSmResp(_) => CommandId::DataSmResp,
            Self::SubmitMulti(_) => CommandId::SubmitMulti,
            Self::SubmitMultiResp(_) => CommandId::SubmitMultiResp,
            Self::QuerySm(_) => CommandId::QuerySm,
            Self::QuerySmResp(_) => CommandId::QuerySmResp,
            Self::CancelSm(_) => CommandId::CancelSm,
            Self::CancelSmResp => CommandId::CancelSmResp,
            Self::ReplaceSm(_) => CommandId::ReplaceSm,
            Self::ReplaceSmResp => CommandId::ReplaceSmResp,
            Self::AlertNotification(_) => CommandId::AlertNotification,
        }
    }

    /// The empty body of a response, as sent with a non-zero command_status.
    pub fn empty_response(id: CommandId) -> Option<Self> {
        Some(match id {
            CommandId::BindTransmitterResp => Self::BindTransmitterResp(BindResp::default()),
            CommandId::BindReceiverResp => Self::BindReceiverResp(BindResp::default()),
            CommandId::BindTransceiverResp => Self::BindTransceiverResp(BindResp::default()),
            CommandId::UnbindResp => Self::UnbindResp,
            CommandId::GenericNack => Self::GenericNack,
            CommandId::EnquireLinkResp => Self::EnquireLinkResp,
            CommandId::SubmitSmResp => Self::SubmitSmResp(MessageIdResp::default()),
            CommandId::DeliverSmResp => Self::DeliverSmResp(MessageIdResp::default()),
            CommandId::DataSmResp => Self::DataSmResp(MessageIdResp::default()),
            CommandId::SubmitMultiResp => Self::SubmitMultiResp(SubmitMultiResp::default()),
            CommandId::QuerySmResp => Self::QuerySmResp(QuerySmResp::default()),
            CommandId::CancelSmResp => Self::CancelSmResp,
            CommandId::ReplaceSmResp => Self::ReplaceSmResp,
            _ => return None,
        })
    }

    /// Whether the body holds nothing a peer needs (so a response with a non-zero status
    /// may omit it, as the spec says submit_sm_resp and friends do).
    fn is_empty_response(&self) -> bool {
        match self {
            Self::BindTransmitterResp(b)
            | Self::BindReceiverResp(b)
            | Self::BindTransceiverResp(b) => b.system_id.is_empty() && b.tlvs.is_empty(),
            Self::SubmitSmResp(r) | Self::DeliverSmResp(r) | Self::DataSmResp(r) => {
                r.message_id.is_empty() && r.tlvs.is_empty()
            }
            Self::SubmitMultiResp(r) => {
                r.message_id.is_empty() && r.unsuccess.is_empty() && r.tlvs.is_empty()
            }
            Self::QuerySmResp(r) => *r == QuerySmResp::default(),
            _ => false,
        }
    }
}

/// One SMPP PDU: header fields and body. command_length is computed on encode and
/// command_id follows from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub sequence_number: u32,
    pub status: CommandStatus,
    pub body: Body,
}

impl Pdu {
    /// A request (or an OK response) with status 0.
    pub const fn new(sequence_number: u32, body: Body) -> Self {
        Self { sequence_number, status: CommandStatus::ESME_ROK, body }
    }

    pub const fn generic_nack(sequence_number: u32, status: CommandStatus) -> Self {
        Self { sequence_number, status, body: Body::GenericNack }
    }

    /// The `_resp` of command `response` with an error status and an empty body.
    /// `response` must be a response id; anything else gives a generic_nack.
    pub fn error_response(
        response: CommandId,
        sequence_number: u32,
        status: CommandStatus,
    ) -> Self {
        let body = Body::empty_response(response).unwrap_or(Body::GenericNack);
        Self { sequence_number, status, body }
    }

    pub const fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Octets this PDU takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    fn omits_body(&self) -> bool {
        !self.status.is_ok() && self.body.is_empty_response()
    }

    fn body_len(&self) -> usize {
        if self.omits_body() {
            return 0;
        }
        match &self.body {
            Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => {
                b.system_id.encoded_len()
                    + b.password.encoded_len()
                    + b.system_type.encoded_len()
                    + 3
                    + b.address_range.encoded_len()
            }
            Body::BindTransmitterResp(b)
            | Body::BindReceiverResp(b)
            | Body::BindTransceiverResp(b) => b.system_id.encoded_len() + b.tlvs.encoded_len(),
            Body::Outbind(b) => b.system_id.encoded_len() + b.password.encoded_len(),
            Body::Unbind
            | Body::UnbindResp
            | Body::GenericNack
            | Body::EnquireLink
            | Body::EnquireLinkResp
            | Body::CancelSmResp
            | Body::ReplaceSmResp => 0,
            Body::SubmitSm(m) | Body::DeliverSm(m) => {
                m.service_type.encoded_len()
                    + addr_len(&m.source)
                    + addr_len(&m.dest)
                    + 3
                    + m.schedule_delivery_time.0.encoded_len()
                    + m.validity_period.0.encoded_len()
                    + 5
                    + m.short_message.len()
                    + m.tlvs.encoded_len()
            }
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => {
                r.message_id.encoded_len() + r.tlvs.encoded_len()
            }
            Body::DataSm(m) => {
                m.service_type.encoded_len()
                    + addr_len(&m.source)
                    + addr_len(&m.dest)
                    + 3
                    + m.tlvs.encoded_len()
            }
            Body::SubmitMulti(m) => {
                let dests: usize = m
                    .dests
                    .iter()
                    .map(|d| match d {
                        DestAddress::Sme(a) => 1 + addr_len(a),
                        DestAddress::DistributionList(n) => 1 + n.encoded_len(),
                    })
                    .sum();
                m.service_type.encoded_len()
                    + addr_len(&m.source)
                    + 1
                    + dests
                    + 3
                    + m.schedule_delivery_time.0.encoded_len()
                    + m.validity_period.0.encoded_len()
                    + 5
                    + m.short_message.len()
                    + m.tlvs.encoded_len()
            }
            Body::SubmitMultiResp(r) => {
                let unsuccess: usize = r.unsuccess.iter().map(|u| addr_len(&u.dest) + 4).sum();
                r.message_id.encoded_len() + 1 + unsuccess + r.tlvs.encoded_len()
            }
            Body::QuerySm(q) => q.message_id.encoded_len() + addr_len(&q.source),
            Body::QuerySmResp(r) => r.message_id.encoded_len() + r.final_date.0.encoded_len() + 2,
            Body::CancelSm(c) => {
                c.service_type.encoded_len()
                    + c.message_id.encoded_len()
                    + addr_len(&c.source)
                    + addr_len(&c.dest)
            }
            Body::ReplaceSm(r) => {
                r.message_id.encoded_len()
                    + addr_len(&r.source)
                    + r.schedule_delivery_time.0.encoded_len()
                    + r.validity_period.0.encoded_len()
                    + 3
                    + r.short_message.len()
                    + r.tlvs.encoded_len()
            }
            Body::AlertNotification(a) => {
                addr_len(&a.source) + addr_len(&a.esme_addr) + a.tlvs.encoded_len()
            }
        }
    }

    /// Checks what the types cannot: vector counts and TLV value lengths.
    fn check(&self) -> Result<(), EncodeError> {
        let tlvs = match &self.body {
            Body::BindTransmitterResp(b)
            | Body::BindReceiverResp(b)
            | Body::BindTransceiverResp(b) => &b.tlvs,
            Body::SubmitSm(m) | Body::DeliverSm(m) => &m.tlvs,
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => &r.tlvs,
            Body::DataSm(m) => &m.tlvs,
            Body::SubmitMulti(m) => {
                if m.dests.len() > 254 {
                    return Err(EncodeError::TooManyDests { count: m.dests.len() });
                }
                &m.tlvs
            }
            Body::SubmitMultiResp(r) => {
                if r.unsuccess.len() > 255 {
                    return Err(EncodeError::TooManyUnsuccess { count: r.unsuccess.len() });
                }
                &r.tlvs
            }
            Body::ReplaceSm(r) => &r.tlvs,
            Body::AlertNotification(a) => &a.tlvs,
            _ => return Ok(()),
        };
        if !tlvs.fits() {
            let tag = tlvs.iter().find(|t| !t.fits()).map(|t| t.tag());
            return Err(EncodeError::TlvTooLong { tag: tag.unwrap_or(crate::TlvTag(0)) });
        }
        Ok(())
    }

    /// Appends the PDU to `out`. Nothing is written when it fails.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check()?;
        let len = self.encoded_len();
        let command_length = u32::try_from(len).map_err(|_| EncodeError::TooLong { len })?;
        out.reserve(len);
        out.put_u32(command_length);
        out.put_u32(self.command_id().as_u32());
        out.put_u32(self.status.0);
        out.put_u32(self.sequence_number);
        if !self.omits_body() {
            self.encode_body(out);
        }
        Ok(())
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match &self.body {
            Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => {
                put_cstr(out, &b.system_id);
                put_cstr(out, &b.password);
                put_cstr(out, &b.system_type);
                out.put_u8(b.interface_version);
                out.put_u8(b.addr_ton.0);
                out.put_u8(b.addr_npi.0);
                put_cstr(out, &b.address_range);
            }
            Body::BindTransmitterResp(b)
            | Body::BindReceiverResp(b)
            | Body::BindTransceiverResp(b) => {
                put_cstr(out, &b.system_id);
                b.tlvs.encode(out);
            }
            Body::Outbind(b) => {
                put_cstr(out, &b.system_id);
                put_cstr(out, &b.password);
            }
            Body::Unbind
            | Body::UnbindResp
            | Body::GenericNack
            | Body::EnquireLink
            | Body::EnquireLinkResp
            | Body::CancelSmResp
            | Body::ReplaceSmResp => {}
            Body::SubmitSm(m) | Body::DeliverSm(m) => {
                put_cstr(out, &m.service_type);
                put_addr(out, &m.source);
                put_addr(out, &m.dest);
                out.put_u8(m.esm_class.0);
                out.put_u8(m.protocol_id);
                out.put_u8(m.priority_flag);
                put_cstr(out, &m.schedule_delivery_time.0);
                put_cstr(out, &m.validity_period.0);
                out.put_u8(m.registered_delivery.0);
                out.put_u8(m.replace_if_present_flag);
                out.put_u8(m.data_coding.0);
                out.put_u8(m.sm_default_msg_id);
                put_sm(out, &m.short_message);
                m.tlvs.encode(out);
            }
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => {
                put_cstr(out, &r.message_id);
                r.tlvs.encode(out);
            }
            Body::DataSm(m) => {
                put_cstr(out, &m.service_type);
                put_addr(out, &m.source);
                put_addr(out, &m.dest);
                out.put_u8(m.esm_class.0);
                out.put_u8(m.registered_delivery.0);
                out.put_u8(m.data_coding.0);
                m.tlvs.encode(out);
            }
            Body::SubmitMulti(m) => {
                put_cstr(out, &m.service_type);
                put_addr(out, &m.source);
                out.put_u8(m.dests.len() as u8);
                for d in &m.dests {
                    match d {
                        DestAddress::Sme(a) => {
                            out.put_u8(1);
                            put_addr(out, a);
                        }
                        DestAddress::DistributionList(n) => {
                            out.put_u8(2);
                            put_cstr(out, n);
                        }
                    }
                }
                out.put_u8(m.esm_class.0);
                out.put_u8(m.protocol_id);
                out.put_u8(m.priority_flag);
                put_cstr(out, &m.schedule_delivery_time.0);
                put_cstr(out, &m.validity_period.0);
                out.put_u8(m.registered_delivery.0);
                out.put_u8(m.replace_if_present_flag);
                out.put_u8(m.data_coding.0);
                out.put_u8(m.sm_default_msg_id);
                put_sm(out, &m.short_message);
                m.tlvs.encode(out);
            }
            Body::SubmitMultiResp(r) => {
                put_cstr(out, &r.message_id);
                out.put_u8(r.unsuccess.len() as u8);
                for u in &r.unsuccess {
                    put_addr(out, &u.dest);
                    out.put_u32(u.error_status_code.0);
                }
                r.tlvs.encode(out);
            }
            Body::QuerySm(q) => {
                put_cstr(out, &q.message_id);
                put_addr(out, &q.source);
            }
            Body::QuerySmResp(r) => {
                put_cstr(out, &r.message_id);
                put_cstr(out, &r.final_date.0);
                out.put_u8(r.message_state.0);
                out.put_u8(r.error_code);
            }
            Body::CancelSm(c) => {
                put_cstr(out, &c.service_type);
                put_cstr(out, &c.message_id);
                put_addr(out, &c.source);
                put_addr(out, &c.dest);
            }
            Body::ReplaceSm(r) => {
                put_cstr(out, &r.message_id);
                put_addr(out, &r.source);
                put_cstr(out, &r.schedule_delivery_time.0);
                put_cstr(out, &r.validity_period.0);
                out.put_u8(r.registered_delivery.0);
                out.put_u8(r.sm_default_msg_id);
                put_sm(out, &r.short_message);
                r.tlvs.encode(out);
            }
            Body::AlertNotification(a) => {
                put_addr(out, &a.source);
                put_addr(out, &a.esme_addr);
                a.tlvs.encode(out);
            }
        }
    }
}

fn addr_len<const MAX: usize>(a: &Address<MAX>) -> usize {
    2 + a.addr.encoded_len()
}

fn put_cstr<const MAX: usize>(out: &mut BytesMut, s: &COctetString<MAX>) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn put_addr<const MAX: usize>(out: &mut BytesMut, a: &Address<MAX>) {
    out.put_u8(a.ton.0);
    out.put_u8(a.npi.0);
    put_cstr(out, &a.addr);
}

fn put_sm(out: &mut BytesMut, sm: &ShortMessage) {
    // ShortMessage::new caps the length at 254.
    out.put_u8(sm.len() as u8);
    out.put_slice(sm.as_bytes());
}

/// A cursor over one PDU body.
///
/// The first error is kept in `err` and every later read returns a default, so that
/// the field readers return plain values: a `Result` per field made the compiler
/// shuffle each small struct through the stack (store-forwarding stalls measured at a
/// third of the decode time). `finish` reports the error.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    err: Option<DecodeErrorKind>,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Records the first error and stops further reads.
    #[cold]
    fn fail(&mut self, kind: DecodeErrorKind) {
        self.err.get_or_insert(kind);
        self.pos = self.buf.len();
    }

    fn u8(&mut self, field: Field) -> u8 {
        match self.remaining().first() {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => {
                self.fail(DecodeErrorKind::Truncated { field });
                0
            }
        }
    }

    fn u32(&mut self, field: Field) -> u32 {
        match self.remaining().first_chunk::<4>() {
            Some(b) => {
                self.pos += 4;
                u32::from_be_bytes(*b)
            }
            None => {
                self.fail(DecodeErrorKind::Truncated { field });
                0
            }
        }
    }

    fn cstr<const MAX: usize>(&mut self, field: Field) -> COctetString<MAX> {
        match COctetString::read(self.remaining()) {
            Ok((s, used)) => {
                self.pos += used;
                s
            }
            Err(too_long) => {
                self.fail(if too_long {
                    DecodeErrorKind::TooLong { field }
                } else {
                    DecodeErrorKind::Truncated { field }
                });
                COctetString::EMPTY
            }
        }
    }

    fn time(&mut self, field: Field) -> TimeString {
        let s = self.cstr::<17>(field);
        if !(s.is_empty() || s.len() == 16) {
            self.fail(DecodeErrorKind::Invalid { field });
        }
        TimeString(s)
    }

    fn addr<const MAX: usize>(&mut self, field: Field) -> Address<MAX> {
        let ton = Ton(self.u8(Field::Octet));
        let npi = Npi(self.u8(Field::Octet));
        let addr = self.cstr::<MAX>(field);
        Address { ton, npi, addr }
    }

    fn short_message(&mut self) -> ShortMessage {
        let len = usize::from(self.u8(Field::SmLength));
        if len > ShortMessage::MAX || self.remaining().len() < len {
            self.fail(DecodeErrorKind::Invalid { field: Field::SmLength });
            return ShortMessage::empty();
        }
        let sm = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        ShortMessage(sm)
    }

    /// Whatever is left is the TLV part.
    fn tlvs(&mut self) -> Tlvs {
        if self.pos >= self.buf.len() {
            return Tlvs::new();
        }
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        Tlvs::decode(rest).unwrap_or_else(|e| {
            self.fail(match e {
                TlvError::Stream => DecodeErrorKind::TlvStream,
                TlvError::Length(tag) => DecodeErrorKind::TlvLength { tag },
            });
            Tlvs::new()
        })
    }

    /// The first error, or trailing octets after a body that has no TLV part.
    fn finish(self) -> Result<(), DecodeErrorKind> {
        match self.err {
            Some(e) => Err(e),
            None if self.pos != self.buf.len() => Err(DecodeErrorKind::TrailingBytes),
            None => Ok(()),
        }
    }
}

/// Decodes one whole PDU, header included. `frame.len()` must equal command_length
/// (the framer guarantees it); anything shorter than a header is ESME_RINVCMDLEN.
pub fn decode(frame: Bytes) -> Result<Pdu, DecodeError> {
    let Some(header) = Header::peek(&frame) else {
        return Err(DecodeError {
            command_id: 0,
            sequence_number: 0,
            kind: DecodeErrorKind::CommandLength { length: frame.len() as u32, max: 0 },
        });
    };
    let fail = |kind| DecodeError {
        command_id: header.command_id,
        sequence_number: header.sequence_number,
        kind,
    };
    if header.command_length as usize != frame.len() {
        return Err(fail(DecodeErrorKind::CommandLength {
            length: header.command_length,
            max: frame.len() as u32,
        }));
    }
    let command = header.command().ok_or_else(|| fail(DecodeErrorKind::UnknownCommand))?;
    let (sequence_number, status) = (header.sequence_number, header.command_status);
    // A response with an error status may come without a body (SMPP 3.4 §4.4.2).
    if frame.len() == HEADER_LEN
        && !status.is_ok()
        && let Some(body) = Body::empty_response(command)
    {
        return Ok(Pdu { sequence_number, status, body });
    }
    let mut r = Reader { buf: &frame, pos: HEADER_LEN, err: None };
    let body = decode_body(command, &mut r);
    match r.finish() {
        Ok(()) => Ok(Pdu { sequence_number, status, body }),
        Err(kind) => Err(fail(kind)),
    }
}

/// The body by command; errors are left in the reader.
#[inline(always)]
fn decode_body(command: CommandId, r: &mut Reader<'_>) -> Body {
    match command {
        CommandId::BindTransmitter => Body::BindTransmitter(bind(r)),
        CommandId::BindReceiver => Body::BindReceiver(bind(r)),
        CommandId::BindTransceiver => Body::BindTransceiver(bind(r)),
        CommandId::BindTransmitterResp => Body::BindTransmitterResp(bind_resp(r)),
        CommandId::BindReceiverResp => Body::BindReceiverResp(bind_resp(r)),
        CommandId::BindTransceiverResp => Body::BindTransceiverResp(bind_resp(r)),
        CommandId::Outbind => Body::Outbind(Outbind {
            system_id: r.cstr(Field::SystemId),
            password: r.cstr(Field::Password),
        }),
        CommandId::Unbind => Body::Unbind,
        CommandId::UnbindResp => Body::UnbindResp,
        CommandId::GenericNack => Body::GenericNack,
        CommandId::EnquireLink => Body::EnquireLink,
        CommandId::EnquireLinkResp => Body::EnquireLinkResp,
        CommandId::CancelSmResp => Body::CancelSmResp,
        CommandId::ReplaceSmResp => Body::ReplaceSmResp,
        CommandId::SubmitSm => Body::SubmitSm(submit_sm(r)),
        CommandId::DeliverSm => Body::DeliverSm(submit_sm(r)),
        CommandId::SubmitSmResp => Body::SubmitSmResp(message_id_resp(r)),
        CommandId::DeliverSmResp => Body::DeliverSmResp(message_id_resp(r)),
        CommandId::DataSmResp => Body::DataSmResp(message_id_resp(r)),
        CommandId::DataSm => Body::DataSm(DataSm {
            service_type: r.cstr(Field::ServiceType),
            source: r.addr(Field::SourceAddr),
            dest: r.addr(Field::DestinationAddr),
            esm_class: EsmClass(r.u8(Field::Octet)),
            registered_delivery: RegisteredDelivery(r.u8(Field::Octet)),
            data_coding: DataCoding(r.u8(Field::Octet)),
            tlvs: r.tlvs(),
        }),
        CommandId::SubmitMulti => Body::SubmitMulti(submit_multi(r)),
        CommandId::SubmitMultiResp => {
            let message_id = r.cstr(Field::MessageId);
            let n = r.u8(Field::NoUnsuccess);
            let mut unsuccess = Vec::with_capacity(usize::from(n).min(r.remaining().len() / 7));
            while unsuccess.len() < usize::from(n) && r.err.is_none() {
                unsuccess.push(UnsuccessSme {
                    dest: r.addr(Field::DestinationAddr),
                    error_status_code: CommandStatus(r.u32(Field::ErrorStatusCode)),
                });
            }
            Body::SubmitMultiResp(SubmitMultiResp { message_id, unsuccess, tlvs: r.tlvs() })
        }
        CommandId::QuerySm => Body::QuerySm(QuerySm {
            message_id: r.cstr(Field::MessageId),
            source: r.addr(Field::SourceAddr),
        }),
        CommandId::QuerySmResp => Body::QuerySmResp(QuerySmResp {
            message_id: r.cstr(Field::MessageId),
            final_date: r.time(Field::FinalDate),
            message_state: MessageState(r.u8(Field::Octet)),
            error_code: r.u8(Field::Octet),
        }),
        CommandId::CancelSm => Body::CancelSm(CancelSm {
            service_type: r.cstr(Field::ServiceType),
            message_id: r.cstr(Field::MessageId),
            source: r.addr(Field::SourceAddr),
            dest: r.addr(Field::DestinationAddr),
        }),
        CommandId::ReplaceSm => Body::ReplaceSm(ReplaceSm {
            message_id: r.cstr(Field::MessageId),
            source: r.addr(Field::SourceAddr),
            schedule_delivery_time: r.time(Field::ScheduleDeliveryTime),
            validity_period: r.time(Field::ValidityPeriod),
            registered_delivery: RegisteredDelivery(r.u8(Field::Octet)),
            sm_default_msg_id: r.u8(Field::Octet),
            short_message: r.short_message(),
            tlvs: r.tlvs(),
        }),
        CommandId::AlertNotification => Body::AlertNotification(AlertNotification {
            source: r.addr(Field::SourceAddr),
            esme_addr: r.addr(Field::EsmeAddr),
            tlvs: r.tlvs(),
        }),
    }
}

fn bind(r: &mut Reader<'_>) -> Bind {
    Bind {
        system_id: r.cstr(Field::SystemId),
        password: r.cstr(Field::Password),
        system_type: r.cstr(Field::SystemType),
        interface_version: r.u8(Field::InterfaceVersion),
        addr_ton: Ton(r.u8(Field::Octet)),
        addr_npi: Npi(r.u8(Field::Octet)),
        address_range: r.cstr(Field::AddressRange),
    }
}

fn bind_resp(r: &mut Reader<'_>) -> BindResp {
    BindResp { system_id: r.cstr(Field::SystemId), tlvs: r.tlvs() }
}

fn message_id_resp(r: &mut Reader<'_>) -> MessageIdResp {
    MessageIdResp { message_id: r.cstr(Field::MessageId), tlvs: r.tlvs() }
}

fn submit_sm(r: &mut Reader<'_>) -> SubmitSm {
    SubmitSm {
        service_type: r.cstr(Field::ServiceType),
        source: r.addr(Field::SourceAddr),
        dest: r.addr(Field::DestinationAddr),
        esm_class: EsmClass(r.u8(Field::Octet)),
        protocol_id: r.u8(Field::Octet),
        priority_flag: r.u8(Field::Octet),
        schedule_delivery_time: r.time(Field::ScheduleDeliveryTime),
        validity_period: r.time(Field::ValidityPeriod),
        registered_delivery: RegisteredDelivery(r.u8(Field::Octet)),
        replace_if_present_flag: r.u8(Field::Octet),
        data_coding: DataCoding(r.u8(Field::Octet)),
        sm_default_msg_id: r.u8(Field::Octet),
        short_message: r.short_message(),
        tlvs: r.tlvs(),
    }
}

fn submit_multi(r: &mut Reader<'_>) -> SubmitMulti {
    let service_type = r.cstr(Field::ServiceType);
    let source = r.addr(Field::SourceAddr);
    let n = r.u8(Field::NumberOfDests);
    if n == 0 || n > 254 {
        r.fail(DecodeErrorKind::Invalid { field: Field::NumberOfDests });
    }
    // Each destination takes at least 2 octets: bound the allocation by what is there.
    let mut dests = Vec::with_capacity(usize::from(n).min(r.remaining().len() / 2));
    while dests.len() < usize::from(n) && r.err.is_none() {
        match r.u8(Field::DestFlag) {
            1 => dests.push(DestAddress::Sme(r.addr(Field::DestinationAddr))),
            2 => dests.push(DestAddress::DistributionList(r.cstr(Field::DlName))),
            _ => r.fail(DecodeErrorKind::Invalid { field: Field::DestFlag }),
        }
    }
    SubmitMulti {
        service_type,
        source,
        dests,
        esm_class: EsmClass(r.u8(Field::Octet)),
        protocol_id: r.u8(Field::Octet),
        priority_flag: r.u8(Field::Octet),
        schedule_delivery_time: r.time(Field::ScheduleDeliveryTime),
        validity_period: r.time(Field::ValidityPeriod),
        registered_delivery: RegisteredDelivery(r.u8(Field::Octet)),
        replace_if_present_flag: r.u8(Field::Octet),
        data_coding: DataCoding(r.u8(Field::Octet)),
        sm_default_msg_id: r.u8(Field::Octet),
        short_message: r.short_message(),
        tlvs: r.tlvs(),
    }
}
