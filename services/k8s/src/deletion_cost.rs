//! Keeps this pod's `controller.kubernetes.io/pod-deletion-cost` annotation equal to the
//! sessions it holds (`edge.pod_deletion_cost`): when the edge Deployment scales down,
//! the ReplicaSet controller deletes the pods of lowest cost first, so the edge with the
//! fewest ESMEs to rebind goes.
//!
//! Every `interval` the count is read; only when it differs from the last value written
//! is the Pod patched (a JSON merge patch of that one annotation, field manager
//! [`FIELD_MANAGER`]): at most one request per interval and one in flight. A failed
//! write is retried at the next interval and never stops the task; it is logged at WARN
//! once per [`WARN_EVERY`] (403: RBAC lacks `patch` on `pods`; 404: the process does not
//! run in the pod it names), at DEBUG otherwise.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The annotation the ReplicaSet controller orders scale-down victims by.
pub const ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Owns the annotation in the Pod's `managedFields`.
pub const FIELD_MANAGER: &str = "smsc-edge/deletion-cost";
/// A failing write is logged at WARN at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(5 * 60);

/// Which Pod, and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    /// This pod's name (`$POD_NAME`).
    pub pod: String,
    pub interval: Duration,
}

/// The task: runs until `shutdown`, reading the pod's bound sessions from `sessions`.
pub fn run(
    client: Client,
    settings: Settings,
    sessions: impl Fn() -> usize + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let api: Api<Pod> = Api::namespaced(client, &settings.namespace);
    let mut writer = Writer { api, settings, written: None, warned: None };
    async move {
        let mut tick = tokio::time::interval(writer.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let count = sessions();
            if writer.written == Some(count) {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = writer.write(count) => {}
            }
        }
        debug!("pod-deletion-cost writer stopped");
    }
}

struct Writer {
    api: Api<Pod>,
    settings: Settings,
    /// The value the Pod holds as far as this pod knows (`None`: not written yet).
    written: Option<usize>,
    /// When a failed write was last logged at WARN.
    warned: Option<tokio::time::Instant>,
}

impl Writer {
    async fn write(&mut self, count: usize) {
        // The annotation is an int32 as a string.
        let cost = i32::try_from(count).unwrap_or(i32::MAX);
        let patch = serde_json::json!({
            "metadata": { "annotations": { ANNOTATION: cost.to_string() } }
        });
        let params =
            PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        let pod = &self.settings.pod;
        match self.api.patch(pod, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                if self.warned.take().is_some() {
                    info!(%pod, cost, "pod-deletion-cost written again");
                } else {
                    debug!(%pod, cost, "pod-deletion-cost written");
                }
                self.written = Some(count);
            }
            Err(e) => {
                let now = tokio::time::Instant::now();
                if self.warned.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
                    debug!(%pod, error = %e, "pod-deletion-cost not written; next interval");
                    return;
                }
                self.warned = Some(now);
                let namespace = &self.settings.namespace;
                match status_code(&e) {
                    Some(403) => warn!(
                        %pod, %namespace, error = %e,
                        "pod-deletion-cost not written: the service account may not `patch` `pods` (RBAC); retrying each interval"
                    ),
                    Some(404) => warn!(
                        %pod, %namespace, error = %e,
                        "pod-deletion-cost not written: no such Pod (not running in a pod, or node_id is not the pod's name); retrying each interval"
                    ),
                    _ => {
                        warn!(%pod, error = %e, "pod-deletion-cost not written; retrying each interval")
                    }
                }
            }
        }
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
