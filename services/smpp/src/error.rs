//! Decode and encode errors, each mapped to the command_status the peer must get.

use crate::{CommandId, CommandStatus, TlvTag};

/// A mandatory field, named so an error says which one was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    SystemId,
    Password,
    SystemType,
    InterfaceVersion,
    AddressRange,
    ServiceType,
    SourceAddr,
    DestinationAddr,
    EsmeAddr,
    /// TON, NPI and the one-octet flags: only ever short, never too long.
    Octet,
    ScheduleDeliveryTime,
    ValidityPeriod,
    SmLength,
    ShortMessage,
    MessageId,
    NumberOfDests,
    DestFlag,
    DlName,
    NoUnsuccess,
    ErrorStatusCode,
    FinalDate,
}

impl Field {
    /// The status for a value that is present but wrong (too long, bad format).
    pub const fn status(self) -> CommandStatus {
        match self {
            Self::SystemId => CommandStatus::ESME_RINVSYSID,
            Self::Password => CommandStatus::ESME_RINVPASWD,
            Self::SystemType => CommandStatus::ESME_RINVSYSTYP,
            Self::AddressRange | Self::InterfaceVersion => CommandStatus::ESME_RBINDFAIL,
            Self::ServiceType => CommandStatus::ESME_RINVSERTYP,
            Self::SourceAddr => CommandStatus::ESME_RINVSRCADR,
            Self::DestinationAddr | Self::EsmeAddr => CommandStatus::ESME_RINVDSTADR,
            Self::ScheduleDeliveryTime => CommandStatus::ESME_RINVSCHED,
            Self::ValidityPeriod => CommandStatus::ESME_RINVEXPIRY,
            Self::SmLength | Self::ShortMessage => CommandStatus::ESME_RINVMSGLEN,
            Self::MessageId => CommandStatus::ESME_RINVMSGID,
            Self::NumberOfDests => CommandStatus::ESME_RINVNUMDESTS,
            Self::DestFlag => CommandStatus::ESME_RINVDESTFLAG,
            Self::DlName => CommandStatus::ESME_RINVDLNAME,
            Self::Octet | Self::NoUnsuccess | Self::ErrorStatusCode | Self::FinalDate => {
                CommandStatus::ESME_RINVCMDLEN
            }
        }
    }
}

/// What was wrong with a PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// command_length below 16 or above the configured maximum. Framing is lost: the
    /// connection must close after the generic_nack.
    #[error("command_length {length} outside 16..={max}")]
    CommandLength { length: u32, max: u32 },
    #[error("unknown command_id")]
    UnknownCommand,
    /// The body ended inside a mandatory field.
    #[error("body ends inside {field:?}")]
    Truncated { field: Field },
    /// A C-Octet String with no terminator within its maximum size.
    #[error("{field:?} exceeds its maximum length")]
    TooLong { field: Field },
    /// A value outside what the field allows (a time that is neither empty nor 16
    /// characters, a dest_flag other than 1 or 2, more destinations than 254).
    #[error("{field:?} has an invalid value")]
    Invalid { field: Field },
    /// Octets after the mandatory part of a PDU that carries no TLVs.
    #[error("unexpected octets after the mandatory parameters")]
    TrailingBytes,
    /// A TLV header or value runs past the end of the body.
    #[error("malformed TLV stream")]
    TlvStream,
    /// A known TLV whose length is outside the spec's bounds.
    #[error("TLV {tag:?} has an invalid length")]
    TlvLength { tag: TlvTag },
}

/// A PDU that could not be decoded. The header was always read (the framer waits for
/// 16 octets before judging anything), so the answer can carry its sequence_number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (command_id 0x{command_id:08X}, sequence_number {sequence_number})")]
pub struct DecodeError {
    pub command_id: u32,
    pub sequence_number: u32,
    #[source]
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// The command_status the peer must get.
    pub const fn status(&self) -> CommandStatus {
        match self.kind {
            DecodeErrorKind::CommandLength { .. }
            | DecodeErrorKind::Truncated { .. }
            | DecodeErrorKind::TrailingBytes => CommandStatus::ESME_RINVCMDLEN,
            DecodeErrorKind::UnknownCommand => CommandStatus::ESME_RINVCMDID,
            DecodeErrorKind::TooLong { field } | DecodeErrorKind::Invalid { field } => {
                field.status()
            }
            DecodeErrorKind::TlvStream => CommandStatus::ESME_RINVOPTPARSTREAM,
            DecodeErrorKind::TlvLength { .. } => CommandStatus::ESME_RINVPARLEN,
        }
    }

    /// Framing is lost: nothing after this PDU can be trusted, close the connection.
    pub const fn is_fatal(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::CommandLength { .. })
    }

    /// The PDU to send back, if any: the request's own `_resp` carrying the error when
    /// the command is known (so the ESME matches it to its request), generic_nack when
    /// the command is unknown or the framing is broken, and nothing for a malformed
    /// response (answering a response would loop).
    pub fn response(&self) -> Option<crate::Pdu> {
        let status = self.status();
        let seq = self.sequence_number;
        match CommandId::from_u32(self.command_id) {
            _ if self.is_fatal() => Some(crate::Pdu::generic_nack(seq, status)),
            None if self.command_id & 0x8000_0000 != 0 => None,
            None => Some(crate::Pdu::generic_nack(seq, status)),
            Some(c) if c.is_response() => None,
            Some(c) => match c.response() {
                Some(r) => Some(crate::Pdu::error_response(r, seq, status)),
                // outbind and alert_notification have no response of their own.
                None => Some(crate::Pdu::generic_nack(seq, status)),
            },
        }
    }
}

/// A PDU that cannot be put on the wire. The types prevent most of these; what is left
/// are counts and lengths that only the whole PDU can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("TLV {tag:?} value exceeds 65535 octets")]
    TlvTooLong { tag: TlvTag },
    #[error("{count} destinations exceed 254")]
    TooManyDests { count: usize },
    #[error("{count} unsuccessful destinations exceed 255")]
    TooManyUnsuccess { count: usize },
    #[error("PDU of {len} octets exceeds the 32-bit command_length")]
    TooLong { len: usize },
}
