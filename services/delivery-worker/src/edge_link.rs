//! The worker's link to the edges: receipts and MO go to the edge that holds the ESME's
//! session, by gRPC `Edge.Deliver` (or a direct call to an edge in the same process).

use std::sync::Arc;

use futures::future::BoxFuture;
use smsc_proto::{DeliverRequest, DeliverResponse};

/// Pushes a deliver_sm to an edge: gRPC `Edge.Deliver` in a cluster, a direct call when
/// the edge runs in the same process (`smsc all`).
pub trait EdgeLink: Send + Sync + std::fmt::Debug + 'static {
    fn deliver(
        &self,
        endpoint: &str,
        request: DeliverRequest,
    ) -> BoxFuture<'_, Result<DeliverResponse, tonic::Status>>;
}

/// `Edge.Deliver` over gRPC, one lazily connected channel per endpoint.
#[derive(Debug, Default)]
pub struct GrpcEdgeLink {
    /// Mutual TLS to the edges (`grpc_tls`); `None`: plaintext.
    tls: Option<tonic::transport::ClientTlsConfig>,
    clients: std::sync::Mutex<
        std::collections::HashMap<
            String,
            smsc_proto::edge_client::EdgeClient<tonic::transport::Channel>,
        >,
    >,
}

impl GrpcEdgeLink {
    pub fn new(tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        Self { tls, clients: std::sync::Mutex::default() }
    }

    fn client(
        &self,
        endpoint: &str,
    ) -> Result<smsc_proto::edge_client::EdgeClient<tonic::transport::Channel>, tonic::Status> {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(endpoint) {
            return Ok(c.clone());
        }
        let channel = smsc_runtime::grpc_tls::endpoint(endpoint, self.tls.as_ref())
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(smsc_proto::EDGE_DELIVER_DEADLINE)
            .connect_lazy();
        let c = smsc_proto::edge_client::EdgeClient::new(channel);
        m.insert(endpoint.to_owned(), c.clone());
        Ok(c)
    }
}

impl EdgeLink for GrpcEdgeLink {
    fn deliver(
        &self,
        endpoint: &str,
        request: DeliverRequest,
    ) -> BoxFuture<'_, Result<DeliverResponse, tonic::Status>> {
        let client = self.client(endpoint);
        Box::pin(async move { Ok(client?.deliver(request).await?.into_inner()) })
    }
}

/// Shared handle.
pub type DynEdgeLink = Arc<dyn EdgeLink>;
