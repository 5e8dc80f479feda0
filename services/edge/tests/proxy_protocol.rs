//! The PROXY protocol on the SMPP listeners, over real TCP: the balancer is this test on
//! 127.0.0.1 (trusted), writing a v1 or v2 header before the SMPP (or TLS) bytes; the
//! client address in it must be what the accounts' allowlist, the per-address limit and
//! the bind lockout see. Other peers connect from 127.0.0.2 (not trusted).

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{Client, ESME, PASSWORD, Setup, TestEdge, account, assert_status, paused, submit_sm};
use smsc_accounts::AccountConfig;
use smsc_edge::proxy::fixtures;
use smsc_edge::{Limits, LockoutSettings, ProxyProtocolConfig};
use smsc_smpp::{Body, CommandId, CommandStatus};
use smsc_store::BindKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client address the balancer reports, and a second one.
const CLIENT: &str = "203.0.113.7:40000";
const OTHER_CLIENT: &str = "203.0.113.8:40001";
const CLIENT_V6: &str = "[2001:db8::7]:40002";
/// Allowed only from CLIENT (203.0.113.7).
const PROXIED: &str = "proxied";
/// Allowed only from the balancer's own address (127.0.0.1).
const LOCAL: &str = "local";
const BALANCER: &str = "127.0.0.1";
const UNTRUSTED: &str = "127.0.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn allowed_only(system_id: &str, net: &str) -> AccountConfig {
    AccountConfig { allowed_cidrs: vec![net.parse().expect("net")], ..account(system_id) }
}

/// The balancer (127.0.0.1) trusted; `limits` otherwise as given.
fn trusting(limits: Limits) -> Limits {
    Limits {
        proxy_protocol: ProxyProtocolConfig {
            trusted_cidrs: vec!["127.0.0.1/32".parse().expect("net")],
        },
        ..limits
    }
}

fn setup(limits: Limits) -> Setup {
    Setup {
        limits: trusting(limits),
        ..Setup::accounts(vec![
            account(ESME),
            allowed_only(PROXIED, "203.0.113.7/32"),
            allowed_only(LOCAL, "127.0.0.1/32"),
            allowed_only("proxied6", "2001:db8::/64"),
        ])
    }
}

async fn edge() -> TestEdge {
    TestEdge::start(setup(Limits::default())).await
}

/// Writes a header for a client and the edge's listener.
type Header = fn(SocketAddr, SocketAddr) -> Vec<u8>;

fn v1(client: SocketAddr, edge: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    // The destination as the balancer saw it; the edge does not use it.
    let dest = match client {
        SocketAddr::V4(_) => edge,
        SocketAddr::V6(_) => addr("[2001:db8::1]:2775"),
    };
    format!("PROXY {family} {} {} {} {}\r\n", client.ip(), dest.ip(), client.port(), dest.port())
        .into_bytes()
}

/// v2 PROXY over TCP from `client`, with an AWS-style TLV (0xEA) after the addresses.
fn v2(client: SocketAddr, edge: SocketAddr) -> Vec<u8> {
    let loopback: IpAddr = match client {
        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    let dest = SocketAddr::new(loopback, edge.port());
    fixtures::v2_proxy(client, dest, &[0xEA, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e'])
}

/// v2 LOCAL, as in a balancer's health check.
fn v2_local() -> Vec<u8> {
    fixtures::v2(0x20, 0x00, &[])
}

/// A connection from the balancer that begins with `header`.
async fn through_balancer(edge: &TestEdge, header: &[u8]) -> Client {
    let mut c = edge.connect_from(ip(BALANCER)).await;
    c.write(header).await;
    c
}

async fn bind_status(c: &mut Client, system_id: &str, password: &str) -> CommandStatus {
    c.bind_as(BindKind::Transceiver, system_id, password, 0x34).await.status
}

/// The metrics text has this exact line.
fn has_metric(edge: &TestEdge, line: &str) -> bool {
    edge.metrics.encode().lines().any(|l| l == line)
}

#[tokio::test]
async fn v1_and_v2_headers_from_a_trusted_balancer_set_the_client_address() {
    let edge = edge().await;
    let headers: [(&str, Header); 2] = [("v1", v1), ("v2", v2)];
    for (version, header) in headers {
        // Allowed only from the proxied address: binds through the balancer.
        let mut c = through_balancer(&edge, &header(addr(CLIENT), edge.addr)).await;
        c.bind_ok(BindKind::Transceiver, PROXIED).await;
        assert_status(&c.submit(submit_sm(version)).await, CommandStatus::ESME_ROK);
        let sessions = edge.edge.registry.all();
        let peers: Vec<IpAddr> =
            sessions.iter().filter(|h| h.system_id == PROXIED).map(|h| h.peer).collect();
        assert_eq!(peers, [ip("203.0.113.7")], "{version}: the session's client address");
        assert_eq!(c.request(Body::Unbind).await.command_id(), CommandId::UnbindResp);
        c.expect_closed().await;

        // Allowed only from the balancer's address: refused through it.
        let mut c = through_balancer(&edge, &header(addr(CLIENT), edge.addr)).await;
        assert_eq!(bind_status(&mut c, LOCAL, PASSWORD).await, CommandStatus::ESME_RBINDFAIL);

        // IPv6 clients too.
        let mut c = through_balancer(&edge, &header(addr(CLIENT_V6), edge.addr)).await;
        c.bind_ok(BindKind::Transceiver, "proxied6").await;
    }
    for reason in ["missing", "malformed", "oversized", "truncated", "timeout"] {
        let line = format!(r#"smsc_edge_proxy_protocol_errors_total{{reason="{reason}"}} 0"#);
        assert!(has_metric(&edge, &line), "{line}");
    }
}

#[tokio::test]
async fn v2_local_and_v1_unknown_keep_the_balancers_address() {
    let edge = edge().await;
    for header in [v2_local(), b"PROXY UNKNOWN\r\n".to_vec(), fixtures::v2(0x21, 0x00, &[])] {
        let mut c = through_balancer(&edge, &header).await;
        c.bind_ok(BindKind::Transceiver, LOCAL).await;
        let mut c = through_balancer(&edge, &header).await;
        assert_eq!(bind_status(&mut c, PROXIED, PASSWORD).await, CommandStatus::ESME_RBINDFAIL);
    }
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_not_honoured() {
    let edge = edge().await;
    for header in [v1(addr(CLIENT), edge.addr), v2(addr(CLIENT), edge.addr)] {
        let mut c = edge.connect_from(ip(UNTRUSTED)).await;
        c.write(&header).await;
        c.send(&[smsc_smpp::Pdu::new(
            1,
            common::bind_body(BindKind::Transceiver, PROXIED, PASSWORD, 0x34),
        )])
        .await;
        // Read as SMPP: its first four octets are a command_length far past the maximum.
        let nack = c.read().await.expect("an answer before the close");
        assert_eq!(nack.command_id(), CommandId::GenericNack, "{nack:?}");
        assert_status(&nack, CommandStatus::ESME_RINVCMDLEN);
        c.expect_closed().await;
    }
    // Plain SMPP from the untrusted peer is served as before, as itself.
    let mut c = edge.connect_from(ip(UNTRUSTED)).await;
    c.bind_ok(BindKind::Transceiver, ESME).await;
    let mut c = edge.connect_from(ip(UNTRUSTED)).await;
    assert_eq!(bind_status(&mut c, LOCAL, PASSWORD).await, CommandStatus::ESME_RBINDFAIL);
    assert!(has_metric(&edge, r#"smsc_edge_proxy_protocol_errors_total{reason="missing"} 0"#));
}

#[tokio::test]
async fn the_lockout_locks_the_proxied_address_not_the_balancers() {
    let limits = Limits {
        lockout: LockoutSettings { max_failures: 2, ..LockoutSettings::default() },
        ..Limits::default()
    };
    let edge = TestEdge::start(setup(limits)).await;
    let mut c = through_balancer(&edge, &v2(addr(CLIENT), edge.addr)).await;
    for _ in 0..2 {
        assert_eq!(bind_status(&mut c, ESME, "wrongpw1").await, CommandStatus::ESME_RINVPASWD);
    }
    // The proxied client is locked out, on any connection through the balancer.
    let mut c = through_balancer(&edge, &v1(addr(CLIENT), edge.addr)).await;
    assert_eq!(bind_status(&mut c, ESME, PASSWORD).await, CommandStatus::ESME_RBINDFAIL);
    c.expect_closed().await;
    // Another client behind the same balancer is not.
    let mut c = through_balancer(&edge, &v2(addr(OTHER_CLIENT), edge.addr)).await;
    c.bind_ok(BindKind::Transceiver, ESME).await;
    // Nor is the balancer's own address.
    let mut c = through_balancer(&edge, &v2_local()).await;
    c.bind_ok(BindKind::Transceiver, ESME).await;
    assert!(has_metric(&edge, r#"smsc_edge_lockouts_total{reason="bind_failures"} 1"#));
}

#[tokio::test]
async fn the_per_ip_limit_counts_the_client_the_header_names() {
    let edge =
        TestEdge::start(setup(Limits { max_connections_per_ip: 1, ..Limits::default() })).await;
    // Two clients behind one balancer address: one connection each is within the limit.
    let mut a = through_balancer(&edge, &v2(addr(CLIENT), edge.addr)).await;
    let mut b = through_balancer(&edge, &v1(addr(OTHER_CLIENT), edge.addr)).await;
    for c in [&mut a, &mut b] {
        assert_eq!(c.request(Body::EnquireLink).await.command_id(), CommandId::EnquireLinkResp);
    }
    // A second connection of the first client is past it.
    let mut again = through_balancer(&edge, &v1(addr(CLIENT), edge.addr)).await;
    again.expect_closed().await;
    assert!(has_metric(&edge, r#"smsc_edge_connections_refused_total{reason="per_ip"} 1"#));
    // Its place comes back when its connection closes.
    drop(a);
    let e = &edge.edge;
    common::eventually("the connection closed", || async { e.open_connections() == 1 }).await;
    let mut again = through_balancer(&edge, &v2(addr(CLIENT), edge.addr)).await;
    again.bind_ok(BindKind::Transceiver, PROXIED).await;
}

/// A connection of the balancer that sends `bytes` and then half-closes.
async fn send_and_finish(edge: &TestEdge, bytes: &[u8]) -> Vec<u8> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(ip(BALANCER), 0)).expect("bind");
    let mut s: TcpStream = socket.connect(edge.addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    tokio::time::timeout(common::READ_TIMEOUT, s.read_to_end(&mut got))
        .await
        .expect("closed by the edge")
        .expect("read");
    got
}

#[tokio::test]
async fn a_bad_header_closes_its_connection_only() {
    let edge = edge().await;
    let mut bound = through_balancer(&edge, &v2(addr(CLIENT), edge.addr)).await;
    bound.bind_ok(BindKind::Transceiver, PROXIED).await;

    let mut oversized = v2(addr(CLIENT), edge.addr);
    oversized[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let bind =
        smsc_smpp::Pdu::new(1, common::bind_body(BindKind::Transceiver, ESME, PASSWORD, 0x34))
            .to_bytes()
            .expect("encodes");
    let cases: [(&str, Vec<u8>); 6] = [
        ("malformed", b"PROXY TCP4 203.0.113.300 127.0.0.1 1 2775\r\n".to_vec()),
        ("malformed", b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2775\n\r".to_vec()),
        ("malformed", fixtures::v2(0x21, 0x21, &[0; 12])), // IPv6 needs 36 bytes of addresses
        ("oversized", oversized),
        ("oversized", [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat()),
        ("missing", bind.to_vec()),
    ];
    for (reason, bytes) in &cases {
        let mut c = through_balancer(&edge, bytes).await;
        c.expect_closed().await;
        assert_status(&bound.submit(submit_sm(reason)).await, CommandStatus::ESME_ROK);
    }
    // Ended part-way through a header, and without a byte (a plain TCP health check).
    let v2 = v2(addr(CLIENT), edge.addr);
    assert!(send_and_finish(&edge, &v2[..20]).await.is_empty());
    assert!(send_and_finish(&edge, b"PROXY TCP4 203.0.113.7").await.is_empty());
    assert!(send_and_finish(&edge, b"").await.is_empty());
    assert_status(&bound.submit(submit_sm("still here")).await, CommandStatus::ESME_ROK);

    for line in [
        r#"smsc_edge_proxy_protocol_errors_total{reason="malformed"} 3"#,
        r#"smsc_edge_proxy_protocol_errors_total{reason="oversized"} 2"#,
        r#"smsc_edge_proxy_protocol_errors_total{reason="missing"} 1"#,
        r#"smsc_edge_proxy_protocol_errors_total{reason="truncated"} 2"#,
        r#"smsc_edge_proxy_protocol_errors_total{reason="timeout"} 0"#,
    ] {
        assert!(has_metric(&edge, line), "{line} in\n{}", edge.metrics.encode());
    }
    let e = &edge.edge;
    common::eventually("only the bound session left", || async { e.open_connections() == 1 }).await;
}

#[test]
fn a_trusted_peer_that_sends_nothing_is_closed_at_the_deadline() {
    paused(|| async {
        let edge = edge().await;
        let deadline = edge.edge.limits.pdu_read_timeout;
        let start = tokio::time::Instant::now();
        let mut silent = edge.connect_from(ip(BALANCER)).await;
        silent.timeout = deadline * 10;
        silent.expect_closed().await;
        let elapsed = start.elapsed();
        assert!(elapsed >= deadline && elapsed < deadline * 2, "closed after {elapsed:?}");

        // Half a header, then nothing: the same deadline, from accept.
        let start = tokio::time::Instant::now();
        let mut slow = through_balancer(&edge, b"PROXY TCP4 203.0.").await;
        slow.timeout = deadline * 10;
        slow.expect_closed().await;
        let elapsed = start.elapsed();
        assert!(elapsed >= deadline && elapsed < deadline * 2, "closed after {elapsed:?}");
        assert!(has_metric(&edge, r#"smsc_edge_proxy_protocol_errors_total{reason="timeout"} 2"#));

        // At shutdown a connection still waiting for its header does not hold the drain.
        let start = tokio::time::Instant::now();
        let mut waiting = edge.connect_from(ip(BALANCER)).await;
        let e = &edge.edge;
        common::eventually("accepted", || async { e.open_connections() == 1 }).await;
        edge.shutdown.cancel();
        waiting.expect_closed().await;
        edge.serving.await.expect("serve ends");
        assert!(start.elapsed() < deadline, "drained after {:?}", start.elapsed());
    });
}

// ---- TLS -------------------------------------------------------------------------------

#[tokio::test]
async fn over_tls_the_header_comes_before_the_handshake() {
    use tokio_rustls::rustls::pki_types::ServerName;

    let (acceptor, connector) = common::self_signed_tls();
    let edge = TestEdge::start(Setup { tls: Some(acceptor), ..setup(Limits::default()) }).await;
    let tls_addr = edge.tls_addr.expect("TLS listener");
    for header in [v2(addr(CLIENT), tls_addr), v1(addr(CLIENT), tls_addr)] {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(ip(BALANCER), 0)).expect("bind");
        let mut tcp = socket.connect(tls_addr).await.expect("connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        tcp.write_all(&header).await.expect("PROXY header");
        let server_name = ServerName::try_from("localhost").expect("name");
        let tls =
            connector.connect(server_name, tcp).await.expect("TLS handshake after the header");
        let mut c = Client::new(tls);
        c.bind_ok(BindKind::Transceiver, PROXIED).await;
        assert_status(&c.submit(submit_sm("over TLS")).await, CommandStatus::ESME_ROK);
    }
    // A header the balancer did not send: the ClientHello is not a header.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(ip(BALANCER), 0)).expect("bind");
    let tcp = socket.connect(tls_addr).await.expect("connect");
    let server_name = ServerName::try_from("localhost").expect("name");
    let refused = connector.connect(server_name, tcp).await;
    assert!(refused.is_err(), "a handshake without the header must fail");
    assert!(has_metric(&edge, r#"smsc_edge_proxy_protocol_errors_total{reason="missing"} 1"#));
}
