//! The octet-level writers and the [`Reader`] every body is written and read with.

use bytes::{BufMut, Bytes, BytesMut};

use super::{ShortMessage, TimeString};
use crate::error::{DecodeErrorKind, Field};
use crate::tlv::{TlvError, Tlvs};
use crate::types::{Address, COctetString, Npi, Ton};

pub(super) fn addr_len<const MAX: usize>(a: &Address<MAX>) -> usize {
    2 + a.addr.encoded_len()
}

pub(super) fn put_cstr<const MAX: usize>(out: &mut BytesMut, s: &COctetString<MAX>) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

pub(super) fn put_addr<const MAX: usize>(out: &mut BytesMut, a: &Address<MAX>) {
    out.put_u8(a.ton.0);
    out.put_u8(a.npi.0);
    put_cstr(out, &a.addr);
}

pub(super) fn put_sm(out: &mut BytesMut, sm: &ShortMessage) {
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
pub(super) struct Reader<'a> {
    pub(super) buf: &'a Bytes,
    pub(super) pos: usize,
    pub(super) err: Option<DecodeErrorKind>,
}

impl<'a> Reader<'a> {
    pub(super) fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Records the first error and stops further reads.
    #[cold]
    pub(super) fn fail(&mut self, kind: DecodeErrorKind) {
        self.err.get_or_insert(kind);
        self.pos = self.buf.len();
    }

    pub(super) fn u8(&mut self, field: Field) -> u8 {
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

    pub(super) fn u32(&mut self, field: Field) -> u32 {
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

    pub(super) fn cstr<const MAX: usize>(&mut self, field: Field) -> COctetString<MAX> {
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

    pub(super) fn time(&mut self, field: Field) -> TimeString {
        let s = self.cstr::<17>(field);
        if !(s.is_empty() || s.len() == 16) {
            self.fail(DecodeErrorKind::Invalid { field });
        }
        TimeString(s)
    }

    pub(super) fn addr<const MAX: usize>(&mut self, field: Field) -> Address<MAX> {
        let ton = Ton(self.u8(Field::Octet));
        let npi = Npi(self.u8(Field::Octet));
        let addr = self.cstr::<MAX>(field);
        Address { ton, npi, addr }
    }

    pub(super) fn short_message(&mut self) -> ShortMessage {
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
    pub(super) fn tlvs(&mut self) -> Tlvs {
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
    pub(super) fn finish(self) -> Result<(), DecodeErrorKind> {
        match self.err {
            Some(e) => Err(e),
            None if self.pos != self.buf.len() => Err(DecodeErrorKind::TrailingBytes),
            None => Ok(()),
        }
    }
}
