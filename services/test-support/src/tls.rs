//! Certificates for the TLS tests (a CA, leaves signed by it, PEM files) and a rustls
//! server that demands a client certificate of that CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

pub type Ca = CertifiedIssuer<'static, KeyPair>;

pub fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// Writes the CA certificate to `path`.
pub fn write_ca(ca: &Ca, path: &Path) -> PathBuf {
    std::fs::write(path, ca.pem()).expect("write");
    path.to_owned()
}

/// A certificate for `name` (a DNS name or an IP address) signed by `ca`, written as
/// `<dir>/<file>.crt` and `<dir>/<file>.key`.
pub fn leaf(
    ca: &Ca,
    name: &str,
    purpose: ExtendedKeyUsagePurpose,
    dir: &Path,
    file: &str,
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    let (crt, pem_key) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
    std::fs::write(&crt, cert.pem()).expect("write");
    std::fs::write(&pem_key, key.serialize_pem()).expect("write");
    (crt, pem_key)
}

pub fn client_cert(ca: &Ca, dir: &Path) -> (PathBuf, PathBuf) {
    leaf(ca, "smsc", ExtendedKeyUsagePurpose::ClientAuth, dir, "client")
}

/// A TLS server with a certificate for `name` from `ca` that accepts only clients
/// presenting a certificate from `ca`.
pub fn acceptor(ca: &Ca, name: &str, dir: &Path) -> TlsAcceptor {
    let (crt, key) = leaf(ca, name, ExtendedKeyUsagePurpose::ServerAuth, dir, "server");
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).expect("root");
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build().expect("verifier");
    let chain = CertificateDer::pem_file_iter(&crt).expect("crt").collect::<Result<Vec<_>, _>>();
    let server = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.expect("crt"), PrivateKeyDer::from_pem_file(&key).expect("key"))
        .expect("server config");
    TlsAcceptor::from(Arc::new(server))
}
