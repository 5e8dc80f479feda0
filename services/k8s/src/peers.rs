//! Ready edge pods from the EndpointSlices of a Service (`edge.peers.service`), for
//! rebalancing sessions: the SMPP Service's slices list exactly the pods that get new
//! connections.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The label Kubernetes puts on a Service's EndpointSlices.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The ready endpoints of one Service, kept up to date by [`watch`]'s task.
#[derive(Clone)]
pub struct ReadyEndpoints {
    store: Store<EndpointSlice>,
    listed: Arc<AtomicBool>,
}

impl std::fmt::Debug for ReadyEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyEndpoints").field("count", &self.count()).finish()
    }
}

impl ReadyEndpoints {
    /// Ready endpoints (distinct addresses, terminating ones left out); `None` until
    /// the slices have been listed once.
    pub fn count(&self) -> Option<usize> {
        if !self.listed.load(Ordering::Acquire) {
            return None;
        }
        Some(ready_addresses(&self.store.state()))
    }
}

/// Watches the EndpointSlices of `service` in `namespace`: the counter, and the task to
/// spawn (it runs until `shutdown`).
pub fn watch(
    client: Client,
    namespace: &str,
    service: &str,
    shutdown: CancellationToken,
) -> (ReadyEndpoints, impl Future<Output = ()> + Send + 'static) {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let (store, writer) = reflector::store();
    let listed = Arc::new(AtomicBool::new(false));
    let config = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"));
    let seen = listed.clone();
    let service = service.to_owned();
    let events = watcher(api, config)
        .modify(|s: &mut EndpointSlice| s.metadata.managed_fields = None)
        .default_backoff()
        .reflect(writer)
        .for_each(move |event| {
            match event {
                Ok(watcher::Event::InitDone) => seen.store(true, Ordering::Release),
                Ok(_) => {}
                Err(e) => warn!(%service, error = %e, "EndpointSlice watch failed; retrying"),
            }
            futures::future::ready(())
        });
    let task = async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = events => {}
        }
    };
    (ReadyEndpoints { store, listed }, task)
}

/// Distinct addresses of ready, not terminating endpoints. An endpoint may sit in two
/// slices for a moment while they are rebalanced: counted once.
fn ready_addresses(slices: &[Arc<EndpointSlice>]) -> usize {
    let mut addresses = BTreeSet::new();
    for slice in slices {
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            // The API: a missing `ready` means ready.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if ready
                && !terminating
                && let Some(address) = endpoint.addresses.first()
            {
                addresses.insert(address.clone());
            }
        }
    }
    addresses.len()
}
