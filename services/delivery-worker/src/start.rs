//! The delivery worker's entry point: what `smsc worker` (and `smsc all`) run. It starts
//! the delivery consumer (`smsc.deliver` and the retry tiers), the dispatcher of receipts
//! and MO (`smsc.notify`), and the simulator's handset side (`smsc mo`).

use std::sync::Arc;

use smsc_accounts::AccountDirectory;
use smsc_bus::{Bus, Tiers};
use smsc_runtime::telemetry::Metrics;
use smsc_store::{Clock, Store};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::WorkerConfig;
use crate::connector::Connectors;
use crate::dispatch::Dispatcher;
use crate::edge_link::DynEdgeLink;
use crate::simulator::SimulatorGrpc;
use crate::{Worker, dispatch};

/// What the worker runs on, given by the process that runs it.
#[derive(Debug, Clone)]
pub struct Deps {
    pub accounts: Arc<AccountDirectory>,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Receipts and MO to the edges holding the accounts' receivers.
    pub link: DynEdgeLink,
}

/// Starts the worker of `node_id` with `connectors` (built from the config:
/// [`crate::connector::build`]) into `tasks`, until `shutdown`.
pub async fn start(
    config: &WorkerConfig,
    node_id: &str,
    connectors: Connectors,
    tiers: Tiers,
    deps: Deps,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let simulator = TcpListener::bind(config.simulator_listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("binding worker.simulator_listen {}: {e}", config.simulator_listen),
        )
    })?;
    let worker = Worker::new(
        deps.bus.clone(),
        deps.store.clone(),
        connectors,
        tiers,
        deps.clock.clone(),
        deps.metrics.clone(),
        shutdown.clone(),
    );
    let in_flight = config.max_in_flight;
    tasks.spawn(async move {
        if let Err(e) = crate::run(worker, in_flight, in_flight).await {
            warn!(error = %smsc_runtime::telemetry::error_chain(&e), "delivery worker stopped");
        }
    });

    let dispatcher = Arc::new(Dispatcher::new(
        deps.store,
        deps.link,
        deps.accounts,
        deps.clock.clone(),
        deps.metrics,
        shutdown.clone(),
        node_id,
    ));
    let (bus, notify, interval) =
        (deps.bus.clone(), config.notify_in_flight, config.pending_interval);
    tasks.spawn(async move {
        if let Err(e) = dispatch::run(dispatcher, bus, notify, notify, interval).await {
            warn!(error = %smsc_runtime::telemetry::error_chain(&e), "dispatcher stopped");
        }
    });

    let handsets = SimulatorGrpc::new(deps.bus, deps.clock);
    tasks.spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(simulator);
        let served = tonic::transport::Server::builder()
            .add_service(smsc_proto::simulator_server::SimulatorServer::new(handsets))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "simulator gRPC stopped");
        }
    });
    Ok(())
}
