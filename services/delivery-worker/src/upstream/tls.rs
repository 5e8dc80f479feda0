//! SMPP over TLS to an upstream: rustls (ring) checking the upstream's certificate
//! against the configured CA and name. The files are read when the connector is built
//! (at startup), so bad material is a startup warning, not a failure per connection.

use std::path::Path;
use std::sync::Arc;

use crate::config::UpstreamTls;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Material for TLS that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("tls.ca: cannot read PEM certificates from {path}")]
    Ca {
        path: String,
        #[source]
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("tls.ca: {path} holds no usable CA certificate")]
    NoCa { path: String },
    #[error("tls.server_name: `{name}` is not a DNS name or IP address")]
    ServerName { name: String },
    #[error("TLS configuration")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// A connector and the name the upstream's certificate must carry.
#[derive(Clone)]
pub struct Tls {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// Builds the client side for `address` (`host:port`).
pub fn client(tls: &UpstreamTls, address: &str) -> Result<Tls, TlsError> {
    let roots = roots(&tls.ca)?;
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let name = tls.server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
    let server_name =
        ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName { name })?;
    Ok(Tls { connector: TlsConnector::from(Arc::new(config)), server_name })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Ca { path: shown.clone(), source })?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoCa { path: shown });
    }
    Ok(roots)
}
