//! Ready edge pods from a Service's EndpointSlices, against a fake apiserver.

mod apiserver;

use std::time::Duration;

use apiserver::{ApiServer, slices_path};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "smsc-edge-smpp";

fn slice(name: &str, service: &str, endpoints: &[(&str, Option<bool>, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready, terminating)| {
            let mut conditions = json!({ "terminating": terminating });
            if let Some(ready) = ready {
                conditions["ready"] = json!(ready);
            }
            json!({ "addresses": [ip], "conditions": conditions })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": { "name": name, "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": "smpp", "port": 2775, "protocol": "TCP" }],
    })
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never reached: {what}");
}

#[tokio::test(start_paused = true)]
async fn counts_ready_endpoints_of_the_service() {
    let (server, client) = ApiServer::start();
    server.put(
        &slices_path(),
        slice(
            "smpp-a",
            SERVICE,
            &[
                ("10.0.0.1", Some(true), false),
                ("10.0.0.2", None, false),
                ("10.0.0.3", Some(false), false),
            ],
        ),
    );
    // The same pod in a second slice counts once; another Service's slice not at all.
    server.put(&slices_path(), slice("smpp-b", SERVICE, &[("10.0.0.1", Some(true), false)]));
    server.put(&slices_path(), slice("grpc", "smsc-edge-grpc", &[("10.0.0.9", Some(true), false)]));
    let shutdown = CancellationToken::new();
    let (ready, task) = smsc_k8s::peers::watch(client, apiserver::NS, SERVICE, shutdown.clone());
    assert_eq!(ready.count(), None, "unknown before the first list");
    let task = tokio::spawn(task);

    until("two ready", || ready.count() == Some(2)).await;
    // Scale-out: a new pod turns ready.
    server.put(
        &slices_path(),
        slice(
            "smpp-b",
            SERVICE,
            &[("10.0.0.1", Some(true), false), ("10.0.0.4", Some(true), false)],
        ),
    );
    until("three ready", || ready.count() == Some(3)).await;
    // A pod terminating (draining) no longer counts.
    server.put(
        &slices_path(),
        slice(
            "smpp-b",
            SERVICE,
            &[("10.0.0.1", Some(true), false), ("10.0.0.4", Some(false), true)],
        ),
    );
    until("two again", || ready.count() == Some(2)).await;
    server.delete(&slices_path(), "smpp-a");
    until("one left", || ready.count() == Some(1)).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops").expect("no panic");
}
