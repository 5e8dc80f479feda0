//! The edge pod's `controller.kubernetes.io/pod-deletion-cost` annotation against a fake
//! apiserver: it follows the session count, one merge patch per change at most once an
//! interval, and failures are retried.

mod apiserver;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apiserver::{ApiServer, NS, pods_path};
use serde_json::{Value, json};
use smsc_k8s::deletion_cost::{self, ANNOTATION, FIELD_MANAGER, Settings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const POD: &str = "smsc-edge-6f7d9-a1";
const INTERVAL: Duration = Duration::from_secs(10);

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "annotations": { "other": "kept" } },
        "spec": { "containers": [{ "name": "smsc", "image": "smsc" }] },
    })
}

struct Running {
    server: ApiServer,
    sessions: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(server: ApiServer, client: kube::Client) -> Self {
        let sessions = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let settings =
            Settings { namespace: NS.to_owned(), pod: POD.to_owned(), interval: INTERVAL };
        let count = sessions.clone();
        let task = tokio::spawn(deletion_cost::run(
            client,
            settings,
            move || count.load(Ordering::Relaxed),
            shutdown.clone(),
        ));
        Self { server, sessions, shutdown, task }
    }

    fn set(&self, n: usize) {
        self.sessions.store(n, Ordering::Relaxed);
    }

    fn cost(&self) -> Option<String> {
        let pod = self.server.get(&pods_path(), POD)?;
        pod["metadata"]["annotations"][ANNOTATION].as_str().map(str::to_owned)
    }

    async fn until(&self, what: &str, check: impl Fn(&Self) -> bool) {
        for _ in 0..2000 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never reached: {what}; patches: {:#?}", self.server.patched());
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}

#[tokio::test(start_paused = true)]
async fn the_annotation_follows_the_sessions_once_per_change() {
    let (server, client) = ApiServer::start();
    server.put(&pods_path(), pod(POD));
    let w = Running::start(server.clone(), client);

    // The first interval writes the count, even 0.
    w.until("cost 0", |w| w.cost().as_deref() == Some("0")).await;
    let first = server.patched();
    assert_eq!(first.len(), 1, "{first:#?}");
    let p = &first[0];
    assert_eq!(p.path, format!("{}/{POD}", pods_path()));
    assert_eq!(p.manager, FIELD_MANAGER);
    assert_eq!(p.content_type, "application/merge-patch+json");
    assert_eq!(p.body, json!({ "metadata": { "annotations": { ANNOTATION: "0" } } }));
    let annotations = &server.get(&pods_path(), POD).expect("pod")["metadata"]["annotations"];
    assert_eq!(annotations["other"], "kept", "only the one annotation is touched");

    w.set(3);
    w.until("cost 3", |w| w.cost().as_deref() == Some("3")).await;

    // Nothing changes: no request over several intervals.
    let before = server.requests().len();
    tokio::time::sleep(INTERVAL * 5).await;
    assert_eq!(server.requests().len(), before, "{:#?}", server.requests());

    // A count that moves fast is written at most once an interval, its latest value.
    for n in [4, 5, 6, 7] {
        w.set(n);
        tokio::time::sleep(INTERVAL / 4).await;
    }
    w.until("cost 7", |w| w.cost().as_deref() == Some("7")).await;
    let patched = server.patched();
    for pair in patched.windows(2) {
        assert!(pair[1].at - pair[0].at >= INTERVAL, "two patches within an interval: {pair:#?}");
    }
    // Back to a value seen before is a change too.
    w.set(0);
    w.until("cost 0 again", |w| w.cost().as_deref() == Some("0")).await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_at_the_next_interval() {
    let (server, client) = ApiServer::start();
    server.put(&pods_path(), pod(POD));
    server.fail_patches(3);
    let w = Running::start(server.clone(), client);
    w.set(2);
    w.until("cost 2 after three failures", |w| w.cost().as_deref() == Some("2")).await;
    let patched = server.patched();
    assert_eq!(patched.len(), 4, "three failed, one written: {patched:#?}");
    for pair in patched.windows(2) {
        assert!(pair[1].at - pair[0].at >= INTERVAL, "a retry within the interval: {pair:#?}");
    }
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_pod_is_retried_until_it_exists() {
    let (server, client) = ApiServer::start();
    let w = Running::start(server.clone(), client);
    w.set(1);
    w.until("404s", |w| w.server.patched().len() >= 3).await;
    assert_eq!(w.cost(), None);
    server.put(&pods_path(), pod(POD));
    w.until("cost 1", |w| w.cost().as_deref() == Some("1")).await;
    w.stop().await;
}
