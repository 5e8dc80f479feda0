//! Splitting a byte stream into PDUs, with no I/O: the tokio codec and the edge's own
//! batched reader both use [`split_frame`].

use bytes::{Bytes, BytesMut};

use crate::command::{HEADER_LEN, Header};
use crate::error::{DecodeError, DecodeErrorKind};

/// A command_length limit that fits any legitimate PDU: a 64 KiB message_payload plus
/// the largest mandatory part.
pub const DEFAULT_MAX_COMMAND_LENGTH: u32 = 70_000;

/// Takes the next whole PDU off the front of `buf`.
///
/// `Ok(None)` while incomplete (having reserved room for the rest). command_length is
/// checked against 16 and `max` as soon as the header is in, before anything of the
/// body is buffered; an out-of-range length is a fatal [`DecodeError`] that carries
/// the header's sequence_number for the generic_nack.
pub fn split_frame(buf: &mut BytesMut, max: u32) -> Result<Option<Bytes>, DecodeError> {
    let Some(header) = Header::peek(buf) else {
        buf.reserve(HEADER_LEN - buf.len());
        return Ok(None);
    };
    let len = header.command_length;
    if len < HEADER_LEN as u32 || len > max {
        return Err(DecodeError {
            command_id: header.command_id,
            sequence_number: header.sequence_number,
            kind: DecodeErrorKind::CommandLength { length: len, max },
        });
    }
    let len = len as usize;
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_header_and_body() {
        let mut b = BytesMut::from(&[0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0][..]);
        assert_eq!(split_frame(&mut b, 100), Ok(None));
        b.extend_from_slice(&[0, 0, 0, 0, 7]);
        let f = split_frame(&mut b, 100).expect("ok").expect("frame");
        assert_eq!(f.len(), 16);
        assert!(b.is_empty());
    }

    #[test]
    fn bad_lengths_are_fatal_before_buffering() {
        for len in [0u32, 15, 101, u32::MAX] {
            let mut b = BytesMut::new();
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9]);
            let e = split_frame(&mut b, 100).expect_err("rejected");
            assert!(e.is_fatal());
            assert_eq!(e.sequence_number, 9);
            assert_eq!(e.status(), crate::CommandStatus::ESME_RINVCMDLEN);
            assert!(b.capacity() < 1024, "nothing reserved for the claimed body");
        }
    }
}
