//! The TLS listener: the same sessions behind rustls, with a certificate made here.

mod common;

use common::{
    Client, ESME, Setup, TestEdge, assert_status, message_id, self_signed_tls, submit_sm,
};
use smsc_smpp::CommandStatus;
use smsc_store::BindKind;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// An edge serving TLS with a self-signed certificate, and a client connector trusting it.
async fn tls_edge() -> (TestEdge, TlsConnector) {
    let (acceptor, connector) = self_signed_tls();
    let edge = TestEdge::start(Setup { tls: Some(acceptor), ..Setup::default() }).await;
    (edge, connector)
}

#[tokio::test]
async fn tls_listener_binds_and_submits() {
    let (edge, connector) = tls_edge().await;
    let tcp = tokio::net::TcpStream::connect(edge.tls_addr.expect("TLS listener"))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let server_name = ServerName::try_from("localhost").expect("name");
    let tls = connector
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake with the edge's certificate");

    let mut c = Client::new(tls);
    c.bind_ok(BindKind::Transceiver, ESME).await;
    let resp = c.submit(submit_sm("over TLS")).await;
    assert_status(&resp, CommandStatus::ESME_ROK);
    message_id(&resp);
}

#[test]
fn a_connection_that_never_handshakes_is_closed_at_session_init_timeout() {
    common::paused(|| async {
        let (edge, _) = tls_edge().await;
        let init = edge.edge.settings.session_init_timeout;
        let start = tokio::time::Instant::now();
        let mut c = Client::connect(edge.tls_addr.expect("TLS listener")).await;
        c.timeout = init * 10;
        // No ClientHello, ever.
        c.expect_closed().await;
        let elapsed = start.elapsed();
        assert!(elapsed >= init && elapsed < init * 2, "closed after {elapsed:?}");
    });
}
