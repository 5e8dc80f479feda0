//! The delivery worker's entry point: what `smsc worker` (and `smsc all`) run. It starts
//! the delivery consumer (`<prefix>.deliver` and the retry tiers), the dispatcher of
//! receipts and MO (`<prefix>.notify`), and the simulator's handset side (`smsc mo`); and it builds the
//! configured connectors, which the binary does first, so that one that cannot be built
//! stops the process before anything starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use smsc_accounts::AccountDirectory;
use smsc_bus::lanes::Lanes;
use smsc_bus::pressure::Pressure;
use smsc_bus::{Bus, Shares, Topics};
use smsc_runtime::config::ConfigError;
use smsc_runtime::listen::{BindError, bind};
use smsc_runtime::telemetry::Metrics;
use smsc_store::{Clock, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{ConnectorConfig, WorkerConfig};
use crate::connector::{Connector, Connectors, Journal, Simulator, Webhook};
use crate::dispatch::Dispatcher;
use crate::edge_link::DynEdgeLink;
use crate::pace::Paced;
use crate::simulator::SimulatorGrpc;
use crate::{Worker, dispatch};

/// Builds the configured connectors. One that cannot be built (a journal that does not
/// open, a URL that does not parse, TLS material that does not load) is a config error
/// naming its key: a worker never runs with a connector quietly left out.
pub fn build_connectors(
    config: &BTreeMap<String, ConnectorConfig>,
) -> Result<Connectors, ConfigError> {
    let unusable = |name: &str, field: &str, source: Box<dyn std::error::Error + Send + Sync>| {
        ConfigError::Unusable { key: format!("connectors.{name}.{field}"), source }
    };
    let mut out = Connectors::new();
    for (name, c) in config {
        let connector: Arc<dyn Connector> = match c {
            ConnectorConfig::Simulator { profiles, journal, rate } => {
                let mut sim = Simulator::new(profiles.clone());
                if let Some(path) = journal {
                    let j = Journal::open(path).map_err(|e| unusable(name, "journal", e.into()))?;
                    sim.journal = Some(j);
                }
                Paced::wrap(Arc::new(sim), *rate)
            }
            ConnectorConfig::Webhook { url, timeout, rate } => {
                let hook =
                    Webhook::new(url, *timeout).map_err(|e| unusable(name, "url", e.into()))?;
                Paced::wrap(Arc::new(hook), *rate)
            }
            ConnectorConfig::Smpp(u) => Arc::new(
                crate::upstream::SmppUpstream::new(name, u)
                    .map_err(|e| unusable(name, "tls", e.into()))?,
            ),
        };
        out.insert(name.clone(), connector);
    }
    Ok(out)
}

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
    /// Where the worker and the dispatcher report the accounts crowding them.
    pub pressure: Pressure,
    /// The traffic classes' shares (`bus.class_shares`).
    pub shares: Shares,
}

/// Starts the worker of `node_id` with `connectors` (built from the config:
/// [`build_connectors`]) into `tasks`, until `shutdown`.
pub async fn start(
    config: &WorkerConfig,
    node_id: &str,
    connectors: Connectors,
    topics: Topics,
    deps: Deps,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<(), BindError> {
    let simulator = bind("worker.simulator_listen", config.simulator_listen).await?;
    let worker = Worker::new(
        deps.bus.clone(),
        deps.store.clone(),
        connectors,
        topics.clone(),
        deps.clock.clone(),
        deps.metrics.clone(),
        deps.accounts.clone(),
        shutdown.clone(),
    );
    let lanes = |n: usize, hop: &'static str| Lanes {
        shares: deps.shares,
        pressure: Some((deps.pressure.clone(), hop)),
        ..Lanes::new(n)
    };
    let deliver = lanes(config.max_in_flight, "worker");
    let notify = lanes(config.notify_in_flight, "dispatcher");
    tasks.spawn(async move {
        if let Err(e) = crate::run(worker, deliver).await {
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
    let (bus, interval) = (deps.bus.clone(), config.pending_interval);
    let names = topics.clone();
    tasks.spawn(async move {
        if let Err(e) = dispatch::run(dispatcher, bus, names, notify, interval).await {
            warn!(error = %smsc_runtime::telemetry::error_chain(&e), "dispatcher stopped");
        }
    });

    let handsets = SimulatorGrpc::new(deps.bus, topics.mo().clone(), deps.clock);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::ConnectorConfig;
    use crate::connector::Outcome;

    /// Every configured kind this build runs is built: a webhook route must not fall
    /// back to "no connector" (that turned every message into a retry).
    #[tokio::test]
    async fn build_makes_every_configured_connector() {
        let config = BTreeMap::from([
            ("sim".to_owned(), ConnectorConfig::default()),
            (
                "hook".to_owned(),
                ConnectorConfig::Webhook {
                    url: "http://127.0.0.1:9/sms".into(),
                    timeout: Duration::from_millis(100),
                    rate: 50,
                },
            ),
        ]);
        let built = build_connectors(&config).expect("every connector builds");
        assert_eq!(built.keys().collect::<Vec<_>>(), ["hook", "sim"]);
        // Nothing listens on port 9 (discard): a temporary failure, not a panic.
        let message = smsc_store::contract::sample_message("1", 0, "a");
        let outcome = built["hook"].deliver(&message, 1).await;
        assert!(matches!(outcome, Outcome::Temporary { .. }), "{outcome:?}");
    }

    /// A connector that cannot be built is a config error naming its key, never a
    /// connector quietly left out.
    #[test]
    fn a_connector_that_cannot_be_built_is_a_config_error_naming_its_key() {
        let cases = [
            (
                ConnectorConfig::Webhook {
                    url: "not a url".into(),
                    timeout: Duration::from_secs(1),
                    rate: 0,
                },
                "connectors.bad.url",
            ),
            (
                ConnectorConfig::Simulator {
                    profiles: Vec::new(),
                    journal: Some("/nonexistent-dir/journal".into()),
                    rate: 0,
                },
                "connectors.bad.journal",
            ),
        ];
        for (connector, key) in cases {
            let config = BTreeMap::from([("bad".to_owned(), connector)]);
            match build_connectors(&config) {
                Err(ConfigError::Unusable { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {:?}", other.map(|c| c.len())),
            }
        }
    }
}
