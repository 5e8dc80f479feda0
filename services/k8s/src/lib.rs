//! Kubernetes integration of the SMSC: accounts as `SmppAccount` custom resources.
//!
//! - [`crd`]: the resource's Rust types; `crdgen` prints the CustomResourceDefinition
//!   (`helm/smsc/crds/smppaccount.yaml` is its output, checked by a test).
//! - [`resolve`]: from resources and the Secrets holding their password hashes to
//!   checked accounts, and the reason for each resource that cannot be used.
//! - [`watch`]: reflectors on both, feeding the edge's `AccountDirectory`, and each
//!   pod's report in the resources' status.
//! - [`peers`]: ready edge pods from the EndpointSlices of a Service (rebalancing).
//! - [`deletion_cost`]: the edge pod's `pod-deletion-cost` annotation from its sessions.
//!
//! Tested against `tower_test::mock` standing in for the apiserver (no cluster here).
#![forbid(unsafe_code)]

pub mod crd;
pub mod deletion_cost;
pub mod peers;
pub mod resolve;
pub mod watch;

pub use crd::{SmppAccount, SmppAccountSpec, SmppAccountStatus};

/// A client for the cluster the process runs in (the pod's service account), or the
/// one of `$KUBECONFIG` / `~/.kube/config` outside a cluster.
pub async fn connect() -> Result<kube::Client, kube::Error> {
    kube::Client::try_default().await
}

/// The namespace a client acts in when none is given: the pod's own in a cluster.
pub fn default_namespace(client: &kube::Client) -> String {
    client.default_namespace().to_owned()
}
