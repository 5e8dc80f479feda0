//! `store.tls` and `store.auth` on the wire: what the ScyllaDB driver, configured by
//! `ScyllaConfig`, sends a node. The node here is a CQL endpoint over rustls that demands
//! a client certificate of the test CA, answers OPTIONS and STARTUP as a ScyllaDB with
//! PasswordAuthenticator does, records the AUTH_RESPONSE, and then refuses the
//! credentials: it checks what arrives, it does not pretend to be a database (the Store
//! contract against ScyllaDB is `contract_scylla`, with `SCYLLA_URI`).
//!
//! Another CA, no client certificate and plaintext never get a CQL frame through.

use std::path::Path;
use std::sync::{Arc, Mutex};

use smsc_runtime::config::ClientTls;
use smsc_store::scylla::{ScyllaConfig, connect_session};
use smsc_test_support::tls::{ca, client_cert, write_ca};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const OPTIONS: u8 = 0x05;
const STARTUP: u8 = 0x01;
const AUTH_RESPONSE: u8 = 0x0F;
const SUPPORTED: u8 = 0x06;
const AUTHENTICATE: u8 = 0x03;
const ERROR: u8 = 0x00;
const BAD_CREDENTIALS: i32 = 0x0100;

/// What reached the node over TLS: the request opcodes in order, and the SASL PLAIN
/// token of the AUTH_RESPONSE.
#[derive(Debug, Default)]
struct Seen {
    opcodes: Vec<u8>,
    token: Option<Vec<u8>>,
}

fn frame(stream: [u8; 2], opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x84, 0, stream[0], stream[1], opcode];
    out.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn string(s: &str) -> Vec<u8> {
    let mut out = u16::try_from(s.len()).expect("short").to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Serves CQL v4 over TLS on 127.0.0.1 until the test ends; returns the address.
async fn node(acceptor: TlsAcceptor, seen: Arc<Mutex<Seen>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut header = [0u8; 9];
                while tls.read_exact(&mut header).await.is_ok() {
                    let length = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
                    let mut body = vec![0u8; usize::try_from(length).expect("length")];
                    if tls.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let (stream, opcode) = ([header[2], header[3]], header[4]);
                    seen.lock().expect("seen").opcodes.push(opcode);
                    let answer = match opcode {
                        OPTIONS => frame(stream, SUPPORTED, &0u16.to_be_bytes()),
                        STARTUP => frame(
                            stream,
                            AUTHENTICATE,
                            &string("org.apache.cassandra.auth.PasswordAuthenticator"),
                        ),
                        AUTH_RESPONSE => {
                            // [bytes]: a 4-byte length, then the SASL PLAIN token.
                            seen.lock().expect("seen").token = body.get(4..).map(<[u8]>::to_vec);
                            let mut error = BAD_CREDENTIALS.to_be_bytes().to_vec();
                            error.extend(string("the test node stops here"));
                            frame(stream, ERROR, &error)
                        }
                        _ => return,
                    };
                    if tls.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

fn config(address: String, tls: Option<ClientTls>) -> ScyllaConfig {
    ScyllaConfig {
        uris: vec![address],
        username: Some("smsc".to_owned()),
        password: Some("s3cret".to_owned()),
        tls,
        ..ScyllaConfig::default()
    }
}

fn full(ca: &Path, (cert, key): &(std::path::PathBuf, std::path::PathBuf)) -> ClientTls {
    ClientTls { ca: ca.to_owned(), cert: Some(cert.clone()), key: Some(key.clone()) }
}

#[tokio::test]
async fn the_driver_speaks_cql_over_tls_with_the_client_certificate_and_the_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("scylla test CA");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let address =
        node(smsc_test_support::tls::acceptor(&ca, "127.0.0.1", dir.path()), Arc::clone(&seen))
            .await;
    let tls = full(&write_ca(&ca, &dir.path().join("ca.crt")), &client_cert(&ca, dir.path()));

    let refused = connect_session(&config(address, Some(tls))).await;
    assert!(refused.is_err(), "the test node refuses the credentials");
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.opcodes.first(), Some(&OPTIONS), "{seen:?}");
    assert!(seen.opcodes.contains(&STARTUP), "{seen:?}");
    assert_eq!(seen.token.as_deref(), Some(&b"\0smsc\0s3cret"[..]), "SASL PLAIN with store.auth");
}

#[tokio::test]
async fn another_ca_no_client_certificate_or_plaintext_get_no_frame_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_ = ca("scylla test CA");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let address =
        node(smsc_test_support::tls::acceptor(&ca_, "127.0.0.1", dir.path()), Arc::clone(&seen))
            .await;
    let right_ca = write_ca(&ca_, &dir.path().join("ca.crt"));
    let other_ca = write_ca(&ca("another CA"), &dir.path().join("other.crt"));
    let client = client_cert(&ca_, dir.path());

    for (case, tls) in [
        ("another CA", Some(full(&other_ca, &client))),
        ("no client certificate", Some(ClientTls { ca: right_ca.clone(), cert: None, key: None })),
        ("plaintext", None),
    ] {
        let result = connect_session(&config(address.clone(), tls)).await;
        assert!(result.is_err(), "{case}: connected");
        let seen = seen.lock().expect("seen");
        assert!(seen.opcodes.is_empty(), "{case}: a CQL frame got through: {seen:?}");
    }
}
