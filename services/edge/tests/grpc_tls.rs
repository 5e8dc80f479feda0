//! Mutual TLS on the edge's gRPC server (`smsc_runtime::grpc_tls`), with a CA and
//! certificates made here: a client holding a certificate of the pods' CA is served;
//! one without a certificate, with another CA's, or speaking plaintext is refused.

mod common;

use std::path::Path;

use common::{ESME, READ_TIMEOUT, Setup, TestEdge, deliver_request};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use smsc_edge::grpc::EdgeGrpc;
use smsc_proto::edge_client::EdgeClient;
use smsc_proto::edge_server::EdgeServer;
use smsc_proto::{DeliverOutcome, DeliverRequest};
use smsc_runtime::grpc_tls::{self, GrpcTls};
use smsc_smpp::pdu::MessageIdResp;
use smsc_smpp::{Body, CommandId, Pdu};
use smsc_store::BindKind;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A pod certificate: server and client in one, as every pod has one certificate.
/// Writes `ca.crt`, `tls.crt`, `tls.key` (a kubernetes.io/tls Secret's names) to `dir`.
fn pod_files(ca: &Ca, dir: &Path, server_name: Option<&str>) -> GrpcTls {
    let names = vec!["127.0.0.1".to_owned(), "smsc.internal".to_owned()];
    let mut params = CertificateParams::new(names).expect("params");
    params.distinguished_name.push(DnType::CommonName, "smsc pod");
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write");
    GrpcTls {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        server_name: server_name.map(str::to_owned),
    }
}

/// The edge's `Edge` service served with mTLS; returns its address.
async fn serve_mtls(edge: &TestEdge, tls: &GrpcTls) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = grpc_tls::server(Some(tls))
        .expect("mTLS server")
        .add_service(EdgeServer::new(EdgeGrpc(edge.edge.clone())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            edge.shutdown.clone().cancelled_owned(),
        );
    tokio::spawn(server);
    addr
}

/// Whether a call with this client configuration gets an answer.
async fn call_works(addr: &str, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let endpoint = match tls {
        Some(t) => grpc_tls::endpoint(addr, Some(&t)).map_err(|e| e.to_string())?,
        // Plaintext at a TLS port.
        None => grpc_tls::endpoint(addr, None).map_err(|e| e.to_string())?,
    };
    let call = async {
        let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
        // No session of ESME is bound: any answer (NO_SESSION) shows the call went through.
        EdgeClient::new(channel)
            .deliver(DeliverRequest { system_id: ESME.into(), ..DeliverRequest::default() })
            .await
            .map(|_| ())
            .map_err(|e| format!("call: {e:?}"))
    };
    tokio::time::timeout(READ_TIMEOUT, call).await.map_err(|_| "timed out".to_owned())?
}

#[tokio::test]
async fn a_client_with_the_pods_ca_certificate_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("smsc pods");
    let server_tls = pod_files(&ca, &dir.path().join("server"), None);
    let edge = TestEdge::start(Setup::default()).await;
    let addr = serve_mtls(&edge, &server_tls).await;

    // Another pod: its own certificate from the same CA, dialling the IP (an IP SAN).
    let client_tls = grpc_tls::client_tls_config(&pod_files(&ca, &dir.path().join("a"), None))
        .expect("client TLS");
    call_works(&addr, Some(client_tls.clone())).await.expect("mTLS call");

    // Edge.Deliver end to end over mTLS.
    let channel = grpc_tls::endpoint(&addr, Some(&client_tls))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    let mut grpc = EdgeClient::new(channel);
    let mut c = edge.bind(BindKind::Receiver, ESME).await;
    let id = "0123456789abcdef0123456789abcdef";
    let call = tokio::spawn(async move { grpc.deliver(deliver_request(ESME, id)).await });
    let deliver = c.recv().await;
    assert_eq!(deliver.command_id(), CommandId::DeliverSm, "{deliver:?}");
    let ok = Pdu::new(deliver.sequence_number, Body::DeliverSmResp(MessageIdResp::default()));
    c.send(&[ok]).await;
    let resp = call.await.expect("no panic").expect("gRPC over mTLS").into_inner();
    assert_eq!(resp.outcome(), DeliverOutcome::Delivered, "{resp:?}");

    // A name from the certificate instead of the address dialled (server_name).
    let by_name = pod_files(&ca, &dir.path().join("b"), Some("smsc.internal"));
    let by_name = grpc_tls::client_tls_config(&by_name).expect("client TLS");
    call_works(&addr, Some(by_name)).await.expect("server_name");
}

#[tokio::test]
async fn clients_without_a_certificate_of_the_pods_ca_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_pem = |ca: &Ca| Certificate::from_pem(ca.pem());
    let pods = ca("smsc pods");
    let server_tls = pod_files(&pods, &dir.path().join("server"), None);
    let edge = TestEdge::start(Setup::default()).await;
    let addr = serve_mtls(&edge, &server_tls).await;

    // Trusts the server, presents no certificate.
    let anonymous = ClientTlsConfig::new().ca_certificate(ca_pem(&pods));
    let e = call_works(&addr, Some(anonymous)).await.expect_err("no client certificate");
    assert!(e.contains("CertificateRequired"), "{e}");

    // Trusts the server, presents a certificate of another CA.
    let stranger = ca("not the pods");
    let other = pod_files(&stranger, &dir.path().join("other"), None);
    let foreign =
        ClientTlsConfig::new().ca_certificate(ca_pem(&pods)).identity(Identity::from_pem(
            std::fs::read(&other.cert).expect("read"),
            std::fs::read(&other.key).expect("read"),
        ));
    let e = call_works(&addr, Some(foreign)).await.expect_err("another CA's certificate");
    assert!(e.contains("UnknownCA"), "{e}");

    // Plaintext gRPC at the mTLS port.
    call_works(&addr, None).await.expect_err("plaintext");

    // The client side checks the server too: a client of another CA does not talk to it.
    let wrong_ca = grpc_tls::client_tls_config(&other).expect("client TLS");
    let e = call_works(&addr, Some(wrong_ca)).await.expect_err("server not of the client's CA");
    assert!(e.contains("UnknownIssuer"), "{e}");

    // Nor does a client that wants a name the certificate does not have.
    let misnamed = pod_files(&pods, &dir.path().join("misnamed"), Some("elsewhere.example"));
    let misnamed = grpc_tls::client_tls_config(&misnamed).expect("client TLS");
    let e = call_works(&addr, Some(misnamed)).await.expect_err("name not in the certificate");
    assert!(e.contains("NotValidForName"), "{e}");

    // Refusing those did not stop the server.
    let good = grpc_tls::client_tls_config(&pod_files(&pods, &dir.path().join("ok"), None))
        .expect("client TLS");
    call_works(&addr, Some(good)).await.expect("still serving");
}

#[test]
fn a_key_that_does_not_match_its_certificate_fails_at_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = ca("smsc pods");
    let a = pod_files(&pods, &dir.path().join("a"), None);
    let b = pod_files(&pods, &dir.path().join("b"), None);
    let mixed = GrpcTls { key: b.key.clone(), ..a };
    let e = grpc_tls::server_tls_config(&mixed).expect_err("mismatched key");
    let text = smsc_runtime::telemetry::error_chain(&e).to_string();
    assert!(text.starts_with("grpc_tls:"), "{text}");
}
