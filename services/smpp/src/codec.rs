//! `tokio_util::codec` framing (feature `tokio-codec`).
//!
//! The item is itself a `Result`: a PDU whose body does not decode is answered and the
//! session goes on, so only broken framing (and I/O) ends the stream.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::Pdu;
use crate::error::{DecodeError, EncodeError};
use crate::framing::{DEFAULT_MAX_COMMAND_LENGTH, split_frame};

#[derive(Debug, Clone, Copy)]
pub struct SmppCodec {
    max_command_length: u32,
}

impl SmppCodec {
    pub fn new(max_command_length: u32) -> Self {
        Self { max_command_length }
    }
}

impl Default for SmppCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_COMMAND_LENGTH)
    }
}

/// What ends a framed stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// command_length out of range: answer with `response()` and close.
    #[error(transparent)]
    Framing(DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Decoder for SmppCodec {
    type Item = Result<Pdu, DecodeError>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match split_frame(src, self.max_command_length) {
            Ok(Some(frame)) => Ok(Some(crate::decode(frame))),
            Ok(None) => Ok(None),
            Err(e) => Err(CodecError::Framing(e)),
        }
    }
}

impl Encoder<&Pdu> for SmppCodec {
    type Error = CodecError;

    fn encode(&mut self, pdu: &Pdu, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(pdu.encode(dst)?)
    }
}

impl Encoder<Pdu> for SmppCodec {
    type Error = CodecError;

    fn encode(&mut self, pdu: Pdu, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(pdu.encode(dst)?)
    }
}
