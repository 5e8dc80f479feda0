//! What `smsc edge` / `smsc worker` / `smsc all` start in a Kubernetes cluster (feature
//! `k8s`): the `SmppAccount` watcher feeding the account directory, ready edges
//! from EndpointSlices for rebalancing, and the edge pod's deletion cost.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use smsc_accounts::AccountDirectory;
use smsc_accounts::AccountsCrdConfig;
use smsc_edge::config::{PeersConfig, PodDeletionCostConfig};
use smsc_runtime::admin::ReadyCondition;

use crate::config::Config;
use smsc_edge::Edge;
use smsc_edge::rebalance::PeerSource;
use smsc_k8s::watch::{self, StatusSettings};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The watcher task for `accounts_crd`; with an edge, it also reports the edge's
/// sessions in each resource's status.
pub(crate) async fn accounts(
    crd: &AccountsCrdConfig,
    config: &Config,
    directory: Arc<AccountDirectory>,
    edge: Option<Arc<Edge>>,
    loaded: ReadyCondition,
    shutdown: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let client = smsc_k8s::connect().await.context("accounts_crd: Kubernetes API client")?;
    let namespace = crd.namespace.clone().unwrap_or_else(|| smsc_k8s::default_namespace(&client));
    info!(%namespace, "accounts from SmppAccount resources");
    let status = edge.map(|edge| StatusSettings {
        pod: config.node_id.clone(),
        interval: crd.status_interval,
        sessions: Arc::new(move |system_id: &str| edge.registry.count(system_id)),
    });
    let settings = watch::Settings {
        namespace,
        secret_selector: crd.secret_selector.clone(),
        max_validity_cap: config.store.message_ttl,
        status,
    };
    Ok(watch::run(client, settings, directory, Some(loaded), shutdown))
}

/// `edge.peers.service`: ready edges from the Service's EndpointSlices (the pod's
/// namespace). The watch runs in `tasks` until `shutdown`.
pub(crate) async fn peers(
    peers: &PeersConfig,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<dyn PeerSource>> {
    let service = peers.service.clone().context("edge.peers: no source")?;
    let client = smsc_k8s::connect().await.context("edge.peers.service: Kubernetes API client")?;
    let namespace = smsc_k8s::default_namespace(&client);
    info!(%namespace, %service, "ready edges from EndpointSlices");
    let (ready, task) = smsc_k8s::peers::watch(client, &namespace, service.trim(), shutdown);
    tasks.spawn(task);
    Ok(Arc::new(SlicePeers(ready)))
}

/// `edge.pod_deletion_cost`: the task keeping the Pod `pod` (the pod's namespace)
/// annotated with the edge's bound sessions, until `shutdown`.
pub(crate) async fn deletion_cost(
    cost: &PodDeletionCostConfig,
    pod: &str,
    edge: Arc<Edge>,
    shutdown: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let client =
        smsc_k8s::connect().await.context("edge.pod_deletion_cost: Kubernetes API client")?;
    let namespace = smsc_k8s::default_namespace(&client);
    info!(%namespace, %pod, "pod-deletion-cost from the bound sessions");
    let settings = smsc_k8s::deletion_cost::Settings {
        namespace,
        pod: pod.to_owned(),
        interval: cost.interval,
    };
    let sessions = move || edge.registry.total();
    Ok(smsc_k8s::deletion_cost::run(client, settings, sessions, shutdown))
}

/// The edge's view of [`smsc_k8s::peers::ReadyEndpoints`].
#[derive(Debug)]
struct SlicePeers(smsc_k8s::peers::ReadyEndpoints);

impl PeerSource for SlicePeers {
    fn ready_peers(&self) -> BoxFuture<'_, Option<usize>> {
        futures::future::ready(self.0.count()).boxed()
    }
}
