//! The HTTP API over TLS (`edge.http_tls`): a submit through rustls, with a client that
//! never handshakes holding up nobody, and plain HTTP on the TLS port getting no answer.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{ESME, Setup, TestEdge, self_signed_tls};
use smsc_accounts::testing::PASSWORD;
use smsc_edge::config::HttpConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::ServerName;

fn submit(host: &str) -> String {
    let body = r#"{"from":"Bank","to":"447700900123","text":"over TLS"}"#;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ESME}:{PASSWORD}"));
    format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Authorization: Basic {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn the_api_serves_https_and_a_stalled_handshake_holds_up_nobody() {
    let (acceptor, connector) = self_signed_tls();
    let edge = TestEdge::start(Setup::default()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let at = listener.local_addr().expect("addr");
    let serve = smsc_edge::http::serve(
        listener,
        Some(acceptor),
        edge.edge.clone(),
        HttpConfig::default(),
        edge.shutdown.clone(),
    );
    let served = tokio::spawn(serve);

    // Connected, and never a ClientHello.
    let _stalled = TcpStream::connect(at).await.expect("connect");

    let tcp = TcpStream::connect(at).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake with the edge's cert");
    tls.write_all(submit(&at.to_string()).as_bytes()).await.expect("send");
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.contains("message_ids"), "{answer}");

    // Plain HTTP on the TLS port: not a handshake, closed without an HTTP answer.
    let mut plain = TcpStream::connect(at).await.expect("connect");
    plain.write_all(submit(&at.to_string()).as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), plain.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "closed");
    assert!(!String::from_utf8_lossy(&raw).contains("HTTP/1.1 202"));

    edge.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("the server stops on shutdown")
        .expect("ends");
}
