//! The optional TLS listener: same sessions, rustls underneath.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub type Acceptor = TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("TLS configuration")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// Builds an acceptor from PEM certificate chain and key files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<Acceptor, TlsError> {
    let read_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| TlsError::Read { path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(read_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(read_err(key))?;
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
