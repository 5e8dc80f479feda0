//! Mutual TLS for the gRPC between pods (`Edge.Deliver`, the
//! development store server).
//!
//! One CA signs every pod's certificate. A server presents its certificate and accepts
//! only clients that present one signed by the CA; a client checks the server's
//! certificate against the same CA and presents its own. Pods are dialled by IP (the
//! session directory hands out `grpc_advertise`), so one certificate with a DNS name
//! such as `smsc.internal` can serve every pod when clients set [`GrpcTls::server_name`]
//! to it; without it, the certificate must name the host that is dialled.
//!
//! ```yaml
//! grpc_tls:                       # the files of a kubernetes.io/tls Secret + ca.crt
//!   ca: /etc/smsc/grpc/ca.crt
//!   cert: /etc/smsc/grpc/tls.crt
//!   key: /etc/smsc/grpc/tls.key
//!   server_name: smsc.internal    # optional
//! ```
//!
//! The files are read when a server or client is built (at startup): a rotated
//! certificate takes effect on the next restart.
//!
//! - [`server`]: a `tonic` server builder, with mTLS when configured.
//! - [`endpoint`]: a client endpoint for `host:port`, `https` with mTLS when configured.
//! - [`server_tls_config`], [`client_tls_config`]: the two `tonic` TLS configurations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// A TLS handshake must finish within this, on both sides: a peer that opens a
/// connection and sends nothing must not hold it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `grpc_tls:` config key. `Debug` shows paths only, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTls {
    /// PEM CA certificate(s): servers accept only client certificates it signed, and
    /// clients accept only server certificates it signed.
    pub ca: PathBuf,
    /// PEM certificate chain of this pod, presented as server and as client.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// The name a client checks the server's certificate against instead of the host it
    /// dials. Absent: the host dialled (then certificates need IP SANs for pod IPs).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// TLS material that cannot be used, naming the config key and the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrpcTlsError {
    #[error("{key}: cannot read {}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {} holds no PEM {what}", path.display())]
    NotPem { key: &'static str, path: PathBuf, what: &'static str },
    /// rustls refused the material (a key that does not match, a bad certificate).
    #[error("grpc_tls: {what}")]
    Tls {
        what: &'static str,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("gRPC endpoint `{addr}`")]
    Endpoint {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
}

fn read_pem(key: &'static str, path: &Path, what: &'static str) -> Result<Vec<u8>, GrpcTlsError> {
    let bytes = std::fs::read(path).map_err(|source| GrpcTlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(GrpcTlsError::NotPem { key, path: path.to_owned(), what });
    }
    Ok(bytes)
}

fn identity(tls: &GrpcTls) -> Result<Identity, GrpcTlsError> {
    let cert = read_pem("grpc_tls.cert", &tls.cert, "certificate")?;
    let key = read_pem("grpc_tls.key", &tls.key, "private key")?;
    Ok(Identity::from_pem(cert, key))
}

fn ca(tls: &GrpcTls) -> Result<Certificate, GrpcTlsError> {
    Ok(Certificate::from_pem(read_pem("grpc_tls.ca", &tls.ca, "certificate")?))
}

/// The server side: this pod's identity, and a client certificate signed by the CA
/// required on every connection (no certificate, or another CA's: the handshake fails).
///
/// Checked here, so that bad material fails at startup rather than at the first
/// connection.
pub fn server_tls_config(tls: &GrpcTls) -> Result<ServerTlsConfig, GrpcTlsError> {
    let config = ServerTlsConfig::new()
        .identity(identity(tls)?)
        .client_ca_root(ca(tls)?)
        .client_auth_optional(false)
        .timeout(HANDSHAKE_TIMEOUT);
    Server::builder()
        .tls_config(config.clone())
        .map_err(|source| GrpcTlsError::Tls { what: "server certificate and key", source })?;
    Ok(config)
}

/// The client side: servers must present a certificate signed by the CA (for
/// [`GrpcTls::server_name`] when set), and this pod presents its own.
///
/// Checked here, so that bad material fails at startup rather than at the first call.
pub fn client_tls_config(tls: &GrpcTls) -> Result<ClientTlsConfig, GrpcTlsError> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(ca(tls)?)
        .identity(identity(tls)?)
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Endpoint::from_static("https://tls-check.invalid")
        .tls_config(config.clone())
        .map_err(|source| GrpcTlsError::Tls { what: "client certificate, key or CA", source })?;
    Ok(config)
}

/// `tonic::transport::Server::builder()`, with mutual TLS when `tls` is given: every
/// gRPC server of a pod starts from this.
pub fn server(tls: Option<&GrpcTls>) -> Result<Server, GrpcTlsError> {
    let builder = Server::builder();
    match tls {
        None => Ok(builder),
        Some(t) => builder
            .tls_config(server_tls_config(t)?)
            .map_err(|source| GrpcTlsError::Tls { what: "server certificate and key", source }),
    }
}

/// A client endpoint for `addr` (`host:port`, with or without a scheme): `https` with
/// `tls` when given, `http` otherwise. tonic speaks plaintext to an `http://` URI even
/// with a TLS config, so the scheme is chosen here, not by the caller.
pub fn endpoint(addr: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, GrpcTlsError> {
    let host_port =
        addr.strip_prefix("http://").or_else(|| addr.strip_prefix("https://")).unwrap_or(addr);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let err = |source| GrpcTlsError::Endpoint { addr: addr.to_owned(), source };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}")).map_err(err)?;
    match tls {
        Some(t) => endpoint.tls_config(t.clone()).map_err(err),
        None => Ok(endpoint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_in(dir: &Path) -> GrpcTls {
        GrpcTls {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            server_name: None,
        }
    }

    #[test]
    fn missing_files_name_the_key_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls_in(dir.path());
        let e = server_tls_config(&tls).expect_err("no files");
        let text = crate::telemetry::error_chain(&e).to_string();
        assert!(text.starts_with("grpc_tls.cert: cannot read"), "{text}");
        assert!(text.contains("tls.crt"), "{text}");
        let e = client_tls_config(&tls).expect_err("no files");
        assert!(matches!(e, GrpcTlsError::Read { key: "grpc_tls.ca", .. }), "{e:?}");
    }

    #[test]
    fn a_file_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls_in(dir.path());
        for p in [&tls.ca, &tls.cert, &tls.key] {
            std::fs::write(p, "not a certificate").expect("write");
        }
        let e = server_tls_config(&tls).expect_err("garbage");
        assert!(matches!(e, GrpcTlsError::NotPem { key: "grpc_tls.cert", .. }), "{e:?}");
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn endpoints_take_the_scheme_from_the_tls_setting() {
        let plain = endpoint("10.1.2.3:50051", None).expect("endpoint");
        assert_eq!(plain.uri().to_string(), "http://10.1.2.3:50051/");
        let again = endpoint("http://10.1.2.3:50051", None).expect("endpoint");
        assert_eq!(again.uri().to_string(), "http://10.1.2.3:50051/");
        let e = endpoint("not a uri", None).expect_err("bad");
        assert!(e.to_string().contains("not a uri"), "{e}");
    }
}
