//! Binding the process's listeners, with errors that name the config key.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A listener that could not be bound (or whose bound address could not be read).
#[derive(Debug, thiserror::Error)]
#[error("binding {key} {addr}")]
pub struct BindError {
    /// The config key that gave the address (`edge.smpp_listen`, `admin_listen`, ...).
    pub key: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr`, the value of config key `key`.
pub async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError { key, addr, source })
}

/// The address `listener` (bound from `key`'s `addr`) took; port 0 resolved.
pub fn local_addr(
    listener: &TcpListener,
    key: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, BindError> {
    listener.local_addr().map_err(|source| BindError { key, addr, source })
}
