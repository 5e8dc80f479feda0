//! command_id values (SMPP 3.4 §5.1.2) and the PDU header.

use crate::CommandStatus;

/// Octets in every PDU header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

macro_rules! commands {
    ($($variant:ident = $value:literal, $name:literal;)*) => {
        /// The operations of SMPP 3.4. 5.0's broadcast operations are not among them:
        /// a peer that sends one gets generic_nack ESME_RINVCMDID.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum CommandId {
            $($variant = $value,)*
        }

        impl CommandId {
            pub const fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The spec's name (`submit_sm_resp`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            pub const ALL: &'static [Self] = &[$(Self::$variant),*];
        }
    };
}

commands! {
    BindReceiver = 0x0000_0001, "bind_receiver";
    BindTransmitter = 0x0000_0002, "bind_transmitter";
    QuerySm = 0x0000_0003, "query_sm";
    SubmitSm = 0x0000_0004, "submit_sm";
    DeliverSm = 0x0000_0005, "deliver_sm";
    Unbind = 0x0000_0006, "unbind";
    ReplaceSm = 0x0000_0007, "replace_sm";
    CancelSm = 0x0000_0008, "cancel_sm";
    BindTransceiver = 0x0000_0009, "bind_transceiver";
    Outbind = 0x0000_000B, "outbind";
    EnquireLink = 0x0000_0015, "enquire_link";
    SubmitMulti = 0x0000_0021, "submit_multi";
    AlertNotification = 0x0000_0102, "alert_notification";
    DataSm = 0x0000_0103, "data_sm";
    GenericNack = 0x8000_0000, "generic_nack";
    BindReceiverResp = 0x8000_0001, "bind_receiver_resp";
    BindTransmitterResp = 0x8000_0002, "bind_transmitter_resp";
    QuerySmResp = 0x8000_0003, "query_sm_resp";
    SubmitSmResp = 0x8000_0004, "submit_sm_resp";
    DeliverSmResp = 0x8000_0005, "deliver_sm_resp";
    UnbindResp = 0x8000_0006, "unbind_resp";
    ReplaceSmResp = 0x8000_0007, "replace_sm_resp";
    CancelSmResp = 0x8000_0008, "cancel_sm_resp";
    BindTransceiverResp = 0x8000_0009, "bind_transceiver_resp";
    EnquireLinkResp = 0x8000_0015, "enquire_link_resp";
    SubmitMultiResp = 0x8000_0021, "submit_multi_resp";
    DataSmResp = 0x8000_0103, "data_sm_resp";
}

impl CommandId {
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// Responses have bit 31 set.
    pub const fn is_response(self) -> bool {
        self.as_u32() & 0x8000_0000 != 0
    }

    /// The response a request expects; `None` for responses and for the two requests that
    /// have none (outbind, alert_notification).
    pub const fn response(self) -> Option<Self> {
        match self {
            Self::Outbind | Self::AlertNotification => None,
            _ if self.is_response() => None,
            _ => Self::from_u32(self.as_u32() | 0x8000_0000),
        }
    }
}

/// A decoded PDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command_length: u32,
    /// Raw, because a header with an unknown id must still be answered with its sequence.
    pub command_id: u32,
    pub command_status: CommandStatus,
    pub sequence_number: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            command_length: word(0),
            command_id: word(4),
            command_status: CommandStatus(word(8)),
            sequence_number: word(12),
        }
    }

    /// Reads a header from the front of `buf`, if 16 octets are there.
    pub fn peek(buf: &[u8]) -> Option<Self> {
        buf.first_chunk::<HEADER_LEN>().map(Self::parse)
    }

    pub fn command(&self) -> Option<CommandId> {
        CommandId::from_u32(self.command_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_pair_with_requests() {
        for &c in CommandId::ALL {
            if let Some(r) = c.response() {
                assert!(!c.is_response());
                assert!(r.is_response());
                assert_eq!(r.name(), format!("{}_resp", c.name()));
            }
        }
        assert_eq!(CommandId::SubmitSm.response(), Some(CommandId::SubmitSmResp));
        assert_eq!(CommandId::Outbind.response(), None);
        assert_eq!(CommandId::GenericNack.response(), None);
        assert_eq!(CommandId::from_u32(0x0000_0111), None);
    }
}
