//! [`Body`], the body by command, and [`Pdu`], the header fields around it: what every
//! command's body is, and the dispatch of [`Pdu::encode`] and [`decode`] to each body's
//! writer and reader.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::Reader;
use super::{
    AlertNotification, Bind, BindResp, CancelSm, DataSm, DeliverSm, MessageIdResp, Outbind,
    QuerySm, QuerySmResp, ReplaceSm, SubmitMulti, SubmitMultiResp, SubmitSm,
};
use crate::command::{HEADER_LEN, Header};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::{CommandId, CommandStatus};

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
                b.encoded_len()
            }
            Body::BindTransmitterResp(b)
            | Body::BindReceiverResp(b)
            | Body::BindTransceiverResp(b) => b.encoded_len(),
            Body::Outbind(b) => b.encoded_len(),
            Body::Unbind
            | Body::UnbindResp
            | Body::GenericNack
            | Body::EnquireLink
            | Body::EnquireLinkResp
            | Body::CancelSmResp
            | Body::ReplaceSmResp => 0,
            Body::SubmitSm(m) | Body::DeliverSm(m) => m.encoded_len(),
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => r.encoded_len(),
            Body::DataSm(m) => m.encoded_len(),
            Body::SubmitMulti(m) => m.encoded_len(),
            Body::SubmitMultiResp(r) => r.encoded_len(),
            Body::QuerySm(q) => q.encoded_len(),
            Body::QuerySmResp(r) => r.encoded_len(),
            Body::CancelSm(c) => c.encoded_len(),
            Body::ReplaceSm(r) => r.encoded_len(),
            Body::AlertNotification(a) => a.encoded_len(),
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
                b.encode(out);
            }
            Body::BindTransmitterResp(b)
            | Body::BindReceiverResp(b)
            | Body::BindTransceiverResp(b) => b.encode(out),
            Body::Outbind(b) => b.encode(out),
            Body::Unbind
            | Body::UnbindResp
            | Body::GenericNack
            | Body::EnquireLink
            | Body::EnquireLinkResp
            | Body::CancelSmResp
            | Body::ReplaceSmResp => {}
            Body::SubmitSm(m) | Body::DeliverSm(m) => m.encode(out),
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => r.encode(out),
            Body::DataSm(m) => m.encode(out),
            Body::SubmitMulti(m) => m.encode(out),
            Body::SubmitMultiResp(r) => r.encode(out),
            Body::QuerySm(q) => q.encode(out),
            Body::QuerySmResp(r) => r.encode(out),
            Body::CancelSm(c) => c.encode(out),
            Body::ReplaceSm(r) => r.encode(out),
            Body::AlertNotification(a) => a.encode(out),
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
        CommandId::BindTransmitter => Body::BindTransmitter(Bind::read(r)),
        CommandId::BindReceiver => Body::BindReceiver(Bind::read(r)),
        CommandId::BindTransceiver => Body::BindTransceiver(Bind::read(r)),
        CommandId::BindTransmitterResp => Body::BindTransmitterResp(BindResp::read(r)),
        CommandId::BindReceiverResp => Body::BindReceiverResp(BindResp::read(r)),
        CommandId::BindTransceiverResp => Body::BindTransceiverResp(BindResp::read(r)),
        CommandId::Outbind => Body::Outbind(Outbind::read(r)),
        CommandId::Unbind => Body::Unbind,
        CommandId::UnbindResp => Body::UnbindResp,
        CommandId::GenericNack => Body::GenericNack,
        CommandId::EnquireLink => Body::EnquireLink,
        CommandId::EnquireLinkResp => Body::EnquireLinkResp,
        CommandId::CancelSmResp => Body::CancelSmResp,
        CommandId::ReplaceSmResp => Body::ReplaceSmResp,
        CommandId::SubmitSm => Body::SubmitSm(SubmitSm::read(r)),
        CommandId::DeliverSm => Body::DeliverSm(SubmitSm::read(r)),
        CommandId::SubmitSmResp => Body::SubmitSmResp(MessageIdResp::read(r)),
        CommandId::DeliverSmResp => Body::DeliverSmResp(MessageIdResp::read(r)),
        CommandId::DataSmResp => Body::DataSmResp(MessageIdResp::read(r)),
        CommandId::DataSm => Body::DataSm(DataSm::read(r)),
        CommandId::SubmitMulti => Body::SubmitMulti(SubmitMulti::read(r)),
        CommandId::SubmitMultiResp => Body::SubmitMultiResp(SubmitMultiResp::read(r)),
        CommandId::QuerySm => Body::QuerySm(QuerySm::read(r)),
        CommandId::QuerySmResp => Body::QuerySmResp(QuerySmResp::read(r)),
        CommandId::CancelSm => Body::CancelSm(CancelSm::read(r)),
        CommandId::ReplaceSm => Body::ReplaceSm(ReplaceSm::read(r)),
        CommandId::AlertNotification => Body::AlertNotification(AlertNotification::read(r)),
    }
}
