//! A PROXY protocol header (v1 text, v2 binary) in the bytes read so far: whether it is
//! whole, how long it is, and the client address it carries. No I/O: [`super::read_header`]
//! feeds it what the socket gave.
//!
//! The framing (which version, where the header ends, how long it may be) is done here, so
//! that a header is only handed to `ppp` once whole and no byte past it is looked at: those
//! are the connection's own (SMPP, or a TLS ClientHello).

use std::net::SocketAddr;

use ppp::{v1, v2};

/// The longest v1 line, CRLF included (the spec's 107 bytes).
pub const V1_MAX: usize = 107;

/// The longest v2 header accepted, its 16 fixed bytes included. The spec allows 64 KiB of
/// addresses and TLVs; balancers send far less (an AWS NLB about 50 bytes, HAProxy with its
/// TLS TLVs a few hundred), and a trusted peer must not make each connection buffer more.
pub const V2_MAX: usize = 4096;

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and protocol, length.
const V2_FIXED: usize = 16;

/// What the bytes read so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The start of a header: it is at least `at_least` bytes long, more than given.
    Incomplete { at_least: usize },
    /// A whole header of `len` bytes. `client` is the source address it carries; `None`
    /// when it carries none to use (v2 LOCAL, as in a balancer's health checks; v1
    /// UNKNOWN; v2 UNSPEC or unix addresses): the connection's peer stays the client.
    Header { len: usize, client: Option<SocketAddr> },
}

/// Why the bytes are not a PROXY header. Each is final: more bytes would not help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("the connection does not begin with a PROXY protocol signature")]
    Missing,
    #[error("malformed PROXY protocol v1 header")]
    V1(#[source] v1::BinaryParseError),
    /// Known before the line ends: waiting for its CRLF would only run into the deadline.
    #[error("PROXY protocol v1 header with byte {byte:#04x} before its CRLF")]
    V1Byte { byte: u8 },
    #[error("malformed PROXY protocol v2 header")]
    V2(#[source] v2::ParseError),
    #[error("PROXY protocol v{version} header longer than {max} bytes")]
    Oversized { version: u8, max: usize },
}

impl HeaderError {
    /// The metric label: missing, malformed or oversized.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::V1(_) | Self::V1Byte { .. } | Self::V2(_) => "malformed",
            Self::Oversized { .. } => "oversized",
        }
    }
}

/// The header at the start of `buf`, if `buf` starts with one (a v2 or v1 signature, or
/// the start of one); anything else is [`HeaderError::Missing`].
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete { at_least: 1 });
    }
    if begins_like(buf, V2_SIGNATURE) {
        parse_v2(buf)
    } else if begins_like(buf, V1_SIGNATURE) {
        parse_v1(buf)
    } else {
        Err(HeaderError::Missing)
    }
}

/// `buf` and `signature` agree on their common length.
fn begins_like(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(&[hi, lo]) = buf.get(V2_FIXED - 2..V2_FIXED) else {
        return Ok(Parsed::Incomplete { at_least: V2_FIXED });
    };
    let len = V2_FIXED + usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX {
        return Err(HeaderError::Oversized { version: 2, max: V2_MAX });
    }
    let Some(bytes) = buf.get(..len) else {
        return Ok(Parsed::Incomplete { at_least: len });
    };
    let header = v2::Header::try_from(bytes).map_err(HeaderError::V2)?;
    let client = match (header.command, header.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
            Some(SocketAddr::from((a.source_address, a.source_port)))
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
            Some(SocketAddr::from((a.source_address, a.source_port)))
        }
        // LOCAL: the balancer's own connection, whatever the block says (the spec: use
        // the real endpoints); UNSPEC and unix sockets: no address to key anything on.
        _ => None,
    };
    Ok(Parsed::Header { len, client })
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let cr = window.iter().position(|&b| b == b'\r');
    // The line is printable ASCII up to its CR.
    if let Some(&byte) =
        window[..cr.unwrap_or(window.len())].iter().find(|b| !matches!(b, b' '..=b'~'))
    {
        return Err(HeaderError::V1Byte { byte });
    }
    let Some(cr) = cr else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::Oversized { version: 1, max: V1_MAX });
        }
        return Ok(Parsed::Incomplete { at_least: buf.len() + 1 });
    };
    let len = cr + 2;
    if len > V1_MAX {
        return Err(HeaderError::Oversized { version: 1, max: V1_MAX });
    }
    let Some(line) = buf.get(..len) else {
        return Ok(Parsed::Incomplete { at_least: len });
    };
    // A CR not followed by LF fails here (ppp checks the line ends in CRLF).
    let header = v1::Header::try_from(line).map_err(HeaderError::V1)?;
    let client = match header.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    };
    Ok(Parsed::Header { len, client })
}

/// Headers as balancers write them, for tests (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod fixtures {
    use std::net::SocketAddr;

    /// A v2 PROXY header for TCP from `source` to `dest` (both of one family), followed by
    /// `tlvs` (raw TLV bytes).
    pub fn v2_proxy(source: SocketAddr, dest: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
        let mut block = Vec::new();
        let family = match (source, dest) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                block.extend(s.ip().octets());
                block.extend(d.ip().octets());
                0x11
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                block.extend(s.ip().octets());
                block.extend(d.ip().octets());
                0x21
            }
            _ => panic!("one family"),
        };
        block.extend(source.port().to_be_bytes());
        block.extend(dest.port().to_be_bytes());
        block.extend(tlvs);
        v2(0x21, family, &block)
    }

    /// A v2 header with this version/command byte, family/protocol byte and block.
    pub fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(version_command);
        h.push(family);
        h.extend(u16::try_from(block.len()).expect("block fits").to_be_bytes());
        h.extend(block);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{v2, v2_proxy};
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn header(buf: &[u8]) -> (usize, Option<SocketAddr>) {
        match parse(buf) {
            Ok(Parsed::Header { len, client }) => (len, client),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_give_the_source_address_and_stop_at_crlf() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 2775\r\n";
        let mut buf = line.to_vec();
        buf.extend([0, 0, 0, 16]); // the SMPP that follows is not looked at
        assert_eq!(header(&buf), (line.len(), Some(addr("203.0.113.7:40000"))));

        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 2775\r\n";
        assert_eq!(header(line), (line.len(), Some(addr("[2001:db8::7]:40000"))));
    }

    #[test]
    fn v1_unknown_keeps_the_peer() {
        assert_eq!(header(b"PROXY UNKNOWN\r\n"), (15, None));
        let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        assert_eq!(header(line), (line.len(), None));
    }

    #[test]
    fn v2_proxy_gives_the_source_address_whatever_its_tlvs() {
        let h = v2_proxy(addr("203.0.113.7:40000"), addr("10.0.0.1:2775"), &[]);
        let mut buf = h.clone();
        buf.extend([0x16, 0x03, 0x01]); // a ClientHello after it is not looked at
        assert_eq!(header(&buf), (h.len(), Some(addr("203.0.113.7:40000"))));

        // An AWS-style TLV (type 0xEA) after the addresses.
        let tlv = [0xEA, 0x00, 0x04, 0x01, b'v', b'p', b'c'];
        let h = v2_proxy(addr("[2001:db8::7]:1"), addr("[2001:db8::1]:2775"), &tlv);
        assert_eq!(header(&h), (h.len(), Some(addr("[2001:db8::7]:1"))));
    }

    #[test]
    fn v2_local_unspec_and_unix_keep_the_peer() {
        // LOCAL, family UNSPEC (a health check).
        assert_eq!(header(&v2(0x20, 0x00, &[])), (16, None));
        // LOCAL with addresses: they are ignored.
        let mut local = v2_proxy(addr("203.0.113.7:1"), addr("10.0.0.1:2"), &[]);
        local[12] = 0x20;
        assert_eq!(header(&local), (local.len(), None));
        // PROXY with UNSPEC.
        assert_eq!(header(&v2(0x21, 0x00, &[])), (16, None));
        // PROXY over unix sockets.
        let unix = v2(0x21, 0x31, &[0; 216]);
        assert_eq!(header(&unix), (unix.len(), None));
    }

    #[test]
    fn every_strict_prefix_of_a_header_is_incomplete() {
        let headers = [
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 2775\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2_proxy(addr("203.0.113.7:40000"), addr("10.0.0.1:2775"), &[0xEA, 0, 1, 9]),
            v2(0x20, 0x00, &[]),
        ];
        for h in &headers {
            for n in 0..h.len() {
                match parse(&h[..n]) {
                    Ok(Parsed::Incomplete { at_least }) => {
                        assert!(at_least > n && at_least <= h.len(), "{n}: {at_least}")
                    }
                    other => panic!("{:?} cut at {n}: {other:?}", String::from_utf8_lossy(h)),
                }
            }
        }
    }

    #[test]
    fn no_signature_is_missing_at_the_first_byte_that_differs() {
        // A bind_transceiver's command_length: SMPP, not a header.
        for buf in [
            &[0x00, 0x00, 0x00, 0x2f][..],
            b"GET / HTTP/1.1\r\n",
            b"PROXX",
            b"\r\n\r\n\0\r\nQUIT\r",
        ] {
            assert!(matches!(parse(buf), Err(HeaderError::Missing)), "{buf:?}");
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let v1_bad: &[&[u8]] = &[
            b"PROXY TCP4 203.0.113.300 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1\r\n",
            b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\rX",
            b"PROXY \xff\xfe\r\n",
            // Known at once, not at the CRLF.
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\n",
            b"PROXY TCP4 \x00",
        ];
        for buf in v1_bad {
            let e = parse(buf).expect_err(&String::from_utf8_lossy(buf));
            assert_eq!(e.reason(), "malformed", "{:?}: {e:?}", String::from_utf8_lossy(buf));
        }
        let v2_bad = [
            v2(0x11, 0x11, &[0; 12]), // version 1
            v2(0x22, 0x11, &[0; 12]), // command 2
            v2(0x21, 0x41, &[0; 12]), // family 4
            v2(0x21, 0x13, &[0; 12]), // protocol 3
            v2(0x21, 0x11, &[0; 11]), // IPv4 needs 12 bytes
            v2(0x21, 0x21, &[0; 12]), // IPv6 needs 36
        ];
        for buf in &v2_bad {
            let e = parse(buf).expect_err("bad v2");
            assert_eq!(e.reason(), "malformed", "{buf:02x?}: {e:?}");
        }
    }

    #[test]
    fn oversized_headers_are_refused_before_they_are_read_whole() {
        // v2 announcing 64 KiB: refused from its 16 fixed bytes.
        let mut h = v2(0x21, 0x11, &[0; 12]);
        h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let e = parse(&h[..16]).expect_err("oversized v2");
        assert_eq!(e.reason(), "oversized");
        // The largest accepted v2.
        let h = v2_proxy(addr("1.2.3.4:1"), addr("5.6.7.8:2"), &vec![0; V2_MAX - 28]);
        assert_eq!(header(&h).0, V2_MAX);

        // v1 without a CR within 107 bytes, or with it past them.
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(parse(&long[..V1_MAX - 1]).ok(), Some(Parsed::Incomplete { at_least: 107 }));
        assert_eq!(parse(&long[..V1_MAX]).expect_err("no CR").reason(), "oversized");
        let mut at_limit = long[..V1_MAX].to_vec();
        at_limit[V1_MAX - 1] = b'\r';
        assert_eq!(parse(&at_limit).expect_err("CR at 107").reason(), "oversized");
        let mut longest = long[..V1_MAX].to_vec();
        longest[V1_MAX - 2..].copy_from_slice(b"\r\n");
        assert_eq!(header(&longest), (V1_MAX, None));
    }

    #[test]
    fn no_byte_string_panics_and_a_final_answer_stays_final() {
        // Every one-byte change of valid headers, cut at every length (the fuzz target,
        // services/edge/fuzz/fuzz_targets/proxy_header.rs, checks the same on any bytes).
        let seeds = [
            b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 2775\r\n".to_vec(),
            v2_proxy(addr("[2001:db8::7]:1"), addr("[2001:db8::1]:2"), &[1, 0, 2, 0x68, 0x32]),
        ];
        for seed in &seeds {
            for i in 0..seed.len() {
                for b in [0x00, 0x0a, 0x0d, 0x20, 0x3a, 0x7f, 0xff] {
                    let mut m = seed.clone();
                    m[i] = b;
                    m.extend(b"\r\nPROXY ");
                    let mut settled = None;
                    for n in 0..=m.len() {
                        let now = parse(&m[..n]).map_err(|e| e.reason());
                        match (&settled, now) {
                            (_, Ok(Parsed::Incomplete { at_least })) => {
                                assert!(settled.is_none(), "{m:02x?} cut at {n}");
                                assert!(at_least > n && at_least <= V2_MAX, "{n}: {at_least}");
                            }
                            (None, now) => settled = Some(now),
                            (Some(before), now) => assert_eq!(*before, now, "{m:02x?} at {n}"),
                        }
                    }
                }
            }
        }
    }
}
