//! SMPP 3.4 (with the 5.0 TLVs): the codec every role of the SMSC speaks.
//!
//! Pure: no sockets and no runtime. The optional `tokio-codec` feature adds a
//! `tokio_util` framer on top of [`split_frame`].
//!
//! - [`pdu`]: every PDU and its body type; [`decode`] and [`Pdu::encode`].
//! - [`tlv`]: optional parameters, typed where they carry meaning, raw otherwise.
//! - [`status`], [`command`], [`error`]: the catalogues, and how a decode error maps to
//!   the command_status the peer must get.
//! - [`types`]: fields whose spec limits are enforced by construction.
//! - [`text`], [`concat`]: data_coding, GSM 03.38 / Latin-1 / UCS2, UDH and SAR.
//! - [`time`], [`receipt`]: SMPP times and the delivery receipt text.
#![forbid(unsafe_code)]

pub mod command;
pub mod concat;
pub mod error;
pub mod framing;
pub mod message_state;
pub mod pdu;
pub mod receipt;
pub mod status;
pub mod text;
pub mod time;
pub mod tlv;
pub mod types;

#[cfg(feature = "tokio-codec")]
pub mod codec;

pub use command::{CommandId, HEADER_LEN, Header};
pub use error::{DecodeError, DecodeErrorKind, EncodeError, Field};
pub use framing::{DEFAULT_MAX_COMMAND_LENGTH, split_frame};
pub use message_state::MessageState;
pub use pdu::{Body, Pdu, decode};
pub use status::CommandStatus;
pub use text::DataCoding;
pub use tlv::{Tlv, TlvTag, Tlvs};
pub use types::{Address, COctetString, EsmClass, Npi, RegisteredDelivery, Ton};
