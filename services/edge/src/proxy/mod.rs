//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) on the SMPP listeners,
//! for load balancers that do not keep the client's address (an NLB or ELB in TCP mode,
//! HAProxy).
//!
//! A connection from a peer inside `edge.proxy_protocol.trusted_cidrs` must begin with a
//! header, read here within a deadline (before the TLS handshake on the TLS listener, as
//! balancers send it); the source address in it is the client from then on: for the
//! accounts' `allowed_cidrs`, `edge.max_connections_per_ip`, the bind lockout, the
//! session's logs. A v2 LOCAL header (a balancer's health check), v1 UNKNOWN and v2
//! UNSPEC keep the peer's own address. A missing, malformed, oversized or truncated
//! header, or none within the deadline, closes that connection only
//! (`smsc_edge_proxy_protocol_errors_total{reason}`). From any other peer nothing is
//! read ahead: its bytes are SMPP, and a header there is not honoured (it fails as a PDU).
//!
//! - `header.rs`: framing and parsing, no I/O (the address parsing is the `ppp` crate's).
//! - `rewind.rs`: the connection with the bytes read past the header put back in front.

mod header;
mod rewind;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use header::{HeaderError, Parsed, V1_MAX, V2_MAX, parse};
pub use rewind::Rewind;

#[cfg(any(test, feature = "testing"))]
pub use header::fixtures;

/// `edge.proxy_protocol`. Off while `trusted_cidrs` is empty (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyProtocolConfig {
    /// The balancers' networks (a bare address is that one host). Connections from them
    /// must begin with a PROXY header; no other peer's are read as one.
    #[serde(deserialize_with = "networks")]
    pub trusted_cidrs: Vec<IpNet>,
}

impl ProxyProtocolConfig {
    /// Whether a connection from `peer` must begin with a PROXY header. An IPv4 peer on
    /// a dual-stack socket (`::ffff:10.1.2.3`) is matched against the IPv4 networks too.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let canonical = peer.to_canonical();
        self.trusted_cidrs.iter().any(|net| net.contains(&peer) || net.contains(&canonical))
    }
}

/// Each entry on its own, so that a bad one is named by its index
/// (`edge.proxy_protocol.trusted_cidrs[1]`).
fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    struct Network(IpNet);
    impl<'de> Deserialize<'de> for Network {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            let t = text.trim();
            let net = t
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("`{t}` is neither a CIDR nor an IP address"))
                })?;
            // Trusting every address would let any client claim any address: the allowlist,
            // the per-address limit and the lockout would stop meaning anything.
            if net.prefix_len() == 0 {
                return Err(serde::de::Error::custom(format!(
                    "`{t}` trusts every address: name the load balancers' networks"
                )));
            }
            Ok(Network(net))
        }
    }
    Ok(Vec::<Network>::deserialize(d)?.into_iter().map(|n| n.0).collect())
}

/// Why a trusted peer's connection was closed before its header was whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Closed (or reset) with part of a header sent.
    #[error("the connection ended inside the PROXY header, after {read} bytes")]
    Truncated {
        read: usize,
        #[source]
        source: Option<std::io::Error>,
    },
    /// Closed without a byte: a balancer's plain TCP health check does that.
    #[error("closed before sending anything")]
    Empty,
    #[error("no complete PROXY header within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

impl ReadError {
    /// The `reason` label of `smsc_edge_proxy_protocol_errors_total`; `None` for a
    /// connection that sent nothing at all, which is not counted.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Header(e) => Some(e.reason()),
            Self::Truncated { .. } => Some("truncated"),
            Self::Empty => None,
            Self::Timeout(_) => Some("timeout"),
        }
    }
}

/// The `reason` label values, each exposed from the start.
pub const REASONS: [&str; 5] = ["missing", "malformed", "oversized", "truncated", "timeout"];

/// What a header held, and the bytes that followed it.
#[derive(Debug)]
pub struct Proxied<S> {
    /// The header's source address; `None`: the peer's own (LOCAL, UNKNOWN, UNSPEC).
    pub client: Option<SocketAddr>,
    /// The connection, the bytes read past the header first.
    pub stream: Rewind<S>,
}

/// Reads the PROXY header that `stream` must begin with, all of it within `within`.
/// Reads go a buffer at a time (not a byte at a time); what they bring past the header is
/// handed back in front of the connection.
pub async fn read_header<S>(stream: S, within: Duration) -> Result<Proxied<S>, ReadError>
where
    S: AsyncRead + Unpin,
{
    tokio::time::timeout(within, read(stream)).await.map_err(|_| ReadError::Timeout(within))?
}

/// Room for any v1 header and the v2 headers balancers send; a longer v2 grows it to its
/// announced length (at most [`V2_MAX`]).
const FIRST_READ: usize = 256;

async fn read<S>(mut stream: S) -> Result<Proxied<S>, ReadError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; FIRST_READ];
    let mut filled = 0;
    loop {
        match parse(&buf[..filled])? {
            Parsed::Header { len, client } => {
                let rest = Bytes::copy_from_slice(&buf[len..filled]);
                return Ok(Proxied { client, stream: Rewind::new(rest, stream) });
            }
            // `parse` bounds `at_least` by V2_MAX (or V1_MAX).
            Parsed::Incomplete { at_least } if at_least > buf.len() => buf.resize(at_least, 0),
            Parsed::Incomplete { .. } => {}
        }
        let ended = |source| match filled {
            0 => ReadError::Empty,
            read => ReadError::Truncated { read, source },
        };
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => return Err(ended(None)),
            Ok(n) => filled += n,
            Err(e) => return Err(ended(Some(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn trusted_cidrs_match_ipv4_on_dual_stack_sockets_too() {
        let c = ProxyProtocolConfig {
            trusted_cidrs: vec![
                "10.0.0.0/8".parse().expect("net"),
                "fd00::/8".parse().expect("net"),
            ],
        };
        for ip in ["10.1.2.3", "::ffff:10.1.2.3", "fd00::1"] {
            assert!(c.trusts(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["11.1.2.3", "::ffff:11.1.2.3", "2001:db8::1"] {
            assert!(!c.trusts(ip.parse().expect("ip")), "{ip}");
        }
        assert!(!ProxyProtocolConfig::default().trusts("10.1.2.3".parse().expect("ip")));
    }

    /// The header arrives in pieces, with SMPP behind it in the last one.
    #[tokio::test]
    async fn a_header_in_pieces_is_read_and_what_follows_is_kept() {
        let (mut peer, inner) = tokio::io::duplex(1024);
        let reading = tokio::spawn(read_header(inner, Duration::from_secs(5)));
        let h = fixtures::v2_proxy(addr("203.0.113.7:40000"), addr("10.0.0.1:2775"), &[]);
        peer.write_all(&h[..5]).await.expect("write");
        tokio::task::yield_now().await;
        peer.write_all(&h[5..20]).await.expect("write");
        tokio::task::yield_now().await;
        peer.write_all(&[&h[20..], b"SMPP"].concat()).await.expect("write");
        drop(peer);
        let Proxied { client, mut stream } = reading.await.expect("task").expect("a header");
        assert_eq!(client, Some(addr("203.0.113.7:40000")));
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"SMPP");
    }

    #[tokio::test]
    async fn a_long_v2_header_grows_the_buffer_to_its_length() {
        let (mut peer, inner) = tokio::io::duplex(8192);
        let tlvs = vec![0u8; 1000];
        let h = fixtures::v2_proxy(addr("203.0.113.7:1"), addr("10.0.0.1:2775"), &tlvs);
        peer.write_all(&[&h[..], b"next"].concat()).await.expect("write");
        drop(peer);
        let Proxied { client, mut stream } =
            read_header(inner, Duration::from_secs(5)).await.expect("a header");
        assert_eq!(client, Some(addr("203.0.113.7:1")));
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"next");
    }

    #[tokio::test]
    async fn an_end_inside_the_header_is_truncated_and_before_it_empty() {
        let (mut peer, inner) = tokio::io::duplex(64);
        peer.write_all(b"PROXY TCP4 203.0.113.7").await.expect("write");
        drop(peer);
        let e = read_header(inner, Duration::from_secs(5)).await.expect_err("truncated");
        assert!(matches!(e, ReadError::Truncated { read: 22, .. }), "{e:?}");
        assert_eq!(e.reason(), Some("truncated"));

        let (peer, inner) = tokio::io::duplex(64);
        drop(peer);
        let e = read_header(inner, Duration::from_secs(5)).await.expect_err("empty");
        assert!(matches!(e, ReadError::Empty), "{e:?}");
        assert_eq!(e.reason(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_not_whole_within_the_deadline_times_out() {
        let (mut peer, inner) = tokio::io::duplex(64);
        peer.write_all(b"PROXY TCP4 ").await.expect("write");
        let start = tokio::time::Instant::now();
        let e = read_header(inner, Duration::from_secs(5)).await.expect_err("timeout");
        assert!(matches!(e, ReadError::Timeout(_)), "{e:?}");
        assert_eq!(e.reason(), Some("timeout"));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        drop(peer);
    }
}
