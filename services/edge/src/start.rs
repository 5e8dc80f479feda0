//! The edge's entry point: what `smsc edge` (and `smsc all`) run. It binds the edge's
//! listeners (SMPP, SMPP over TLS, the HTTP API, the `Edge` gRPC service), starts the sessions' server,
//! the directory heartbeat and rebalancing, and hands back the edge for in-process
//! `Edge.Deliver` calls.

use std::sync::Arc;

use smsc_accounts::AccountDirectory;
use smsc_bus::pressure::Pressure;
use smsc_bus::{Bus, Topics};
use smsc_proto::edge_server::EdgeServer;
use smsc_runtime::config::ConfigError;
use smsc_runtime::grpc_tls::GrpcTls;
use smsc_runtime::listen::{BindError, bind, local_addr};
use smsc_runtime::telemetry::Metrics;
use smsc_store::{Clock, Store};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::EdgeConfig;
use crate::grpc::EdgeGrpc;
use crate::rebalance::PeerSource;
use crate::{Edge, Limits, Settings, rebalance, tls};

/// What the edge runs on, given by the process that runs it.
#[derive(Debug, Clone)]
pub struct Deps {
    pub accounts: Arc<AccountDirectory>,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The accounts over their share of the hops behind this edge ([`smsc_bus::pressure`]).
    pub pressure: Pressure,
    /// The release's topics: where the submits go.
    pub topics: Topics,
}

/// Why the edge did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    /// `edge.tls` or `grpc_tls` name files that do not make a TLS configuration.
    #[error("the edge's configuration")]
    Config(#[from] ConfigError),
}

/// A running edge.
#[derive(Debug)]
pub struct Started {
    /// Takes `Edge.Deliver` calls; the process's own workers call it directly.
    pub edge: Arc<Edge>,
    /// Where other pods reach this edge's gRPC (`edge.grpc_advertise`, else the bound
    /// `edge.grpc_listen`).
    pub endpoint: String,
    /// Ends once the sessions have drained after `shutdown`; await it before the rest.
    pub serving: JoinHandle<()>,
}

/// Starts the edge of `node_id` until `shutdown`. Its helpers (gRPC server, heartbeat,
/// rebalancing with `peers`) go into `tasks`, which stop on `shutdown` too.
pub async fn start(
    config: &EdgeConfig,
    node_id: &str,
    grpc_tls: Option<&GrpcTls>,
    peers: Option<Arc<dyn PeerSource>>,
    deps: Deps,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<Started, StartError> {
    let unusable = |key: &str, source: Box<dyn std::error::Error + Send + Sync>| {
        ConfigError::Unusable { key: key.to_owned(), source }
    };
    let mut grpc =
        smsc_runtime::grpc_tls::server(grpc_tls).map_err(|e| unusable("grpc_tls", e.into()))?;
    let tls = match &config.tls {
        Some(t) => {
            let acceptor =
                tls::acceptor(&t.cert, &t.key).map_err(|e| unusable("edge.tls", e.into()))?;
            let listener = bind("edge.tls.listen", t.listen).await?;
            info!(addr = %t.listen, "SMPP over TLS listening");
            Some((listener, acceptor))
        }
        None => None,
    };
    let smpp = bind("edge.smpp_listen", config.smpp_listen).await?;
    let http = match config.http_listen {
        Some(addr) => {
            let tls = match &config.http_tls {
                Some(t) => Some(
                    tls::acceptor(&t.cert, &t.key)
                        .map_err(|e| unusable("edge.http_tls", e.into()))?,
                ),
                None => None,
            };
            let listener = bind("edge.http_listen", addr).await?;
            let at = local_addr(&listener, "edge.http_listen", addr)?;
            info!(addr = %at, tls = tls.is_some(), "HTTP API listening");
            Some((listener, tls))
        }
        None => None,
    };
    let grpc_listener = bind("edge.grpc_listen", config.grpc_listen).await?;
    let endpoint = match &config.grpc_advertise {
        Some(a) => a.clone(),
        None => local_addr(&grpc_listener, "edge.grpc_listen", config.grpc_listen)?.to_string(),
    };
    info!(smpp = %local_addr(&smpp, "edge.smpp_listen", config.smpp_listen)?, grpc = %endpoint, "SMPP listening");

    let settings = Settings::from_config(config, node_id, endpoint.clone());
    let edge = Edge::with_limits(settings, Limits::from_config(config), deps);
    let grpc = grpc.add_service(EdgeServer::new(EdgeGrpc(edge.clone())));
    let stop = shutdown.clone();
    tasks.spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
        if let Err(e) = grpc.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await {
            warn!(error = %e, "edge gRPC server stopped");
        }
    });
    if let Some((listener, tls)) = http {
        let (config, stop) = (config.http.clone(), shutdown.clone());
        tasks.spawn(crate::http::serve(listener, tls, edge.clone(), config, stop));
    }
    tasks.spawn(crate::heartbeat(edge.clone(), shutdown.clone()));
    if let Some(peers) = peers {
        let settings = rebalance::Settings::from_config(&config.rebalance);
        tasks.spawn(rebalance::run(edge.clone(), peers, settings, shutdown.clone()));
    }
    let serving = tokio::spawn(crate::serve(edge.clone(), smpp, tls, shutdown));
    Ok(Started { edge, endpoint, serving })
}
