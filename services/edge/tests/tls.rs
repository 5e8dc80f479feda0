//! The TLS listener: the same sessions behind rustls, with a certificate made here.

mod common;

use std::sync::Arc;

use common::{Client, ESME, Setup, TestEdge, assert_status, message_id, submit_sm};
use smsc_smpp::CommandStatus;
use smsc_store::BindKind;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A self-signed certificate for "localhost" and an edge serving TLS with it.
async fn tls_edge() -> (TestEdge, CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let acceptor = smsc_edge::tls::acceptor(&cert_path, &key_path).expect("acceptor");
    let edge = TestEdge::start(Setup { tls: Some(acceptor), ..Setup::default() }).await;
    (edge, cert.cert.der().clone())
}

#[tokio::test]
async fn tls_listener_binds_and_submits() {
    let (edge, cert) = tls_edge().await;
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("trust the test certificate");
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(edge.tls_addr.expect("TLS listener"))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let server_name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(Arc::new(config))
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
