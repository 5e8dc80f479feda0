//! The multi-process cluster end to end: 2 edges, 1 router and 2 workers as separate
//! `smsc` processes on the production engines tests/run starts: Apache Kafka with three
//! brokers (`SMSC_TEST_KAFKA`, topics replicated 3 times) and the ScyllaDB store on Apache
//! Cassandra (`SCYLLA_URI`, a keyspace of this run's own), driven through [`Cluster`], with
//! ESMEs speaking SMPP over TCP.
//!
//! Starting the cluster costs seconds, so one test starts it once and runs the
//! scenarios in order, each under its own accounts (with a per-run suffix, so records a
//! broker kept from an earlier run can never reach this run's ESMEs). Every wait is
//! bounded: a scenario fails, it does not hang.

mod esme;
mod http;
mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use smsc::cluster::{Cluster, ClusterAccount, ClusterOptions, ClusterRole};
use smsc_delivery_worker::config::SimProfile;
use smsc_smpp::EsmClass;
use smsc_smpp::pdu::DeliverSm;
use smsc_smpp::text::{Alphabet, decode};
use smsc_store::BindKind;
use tokio::net::TcpStream;

use peers::{Ask, EsmeArgs, Mode, Peer, Stack};

use esme::{Esme, PASSWORD, assert_delivered_receipt, eventually, inject_mo, metric};

/// Destinations the simulator fails once (absent subscriber), then delivers.
const FLAKY_PREFIX: &str = "1555";
/// Destinations the simulator takes [`SLOW`] to deliver to: still in a worker's hands
/// when it is told to stop.
const SLOW_PREFIX: &str = "1666";
/// Shorter than the retry tier (1 s), as a connector call must be: a worker that sees a
/// task of a message another holds checks it one tier later, and a holder still inside
/// its call then would be taken for dead (a rebalance hands out tasks in progress).
const SLOW: Duration = Duration::from_millis(800);
/// Destinations routed to connector `up`: an SMPP upstream (an `smsc all` in this
/// process) that both workers bind to, through bind slots leased in the shared store.
const UPSTREAM_PREFIX: &str = "3361";
/// The upstream's account for the cluster, and the binds it allows (one per worker).
const UPSTREAM_ACCOUNT: &str = "cluster";
const UPSTREAM_BINDS: u32 = 2;
/// The only retry tier.
const TIER: Duration = Duration::from_secs(1);

/// Kafka's brokers and the CQL server tests/run started, or `None` (test skipped) under
/// `SMSC_SKIP_KAFKA=1`.
fn engines() -> Option<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let (Some(kafka), Some(cql)) = (var("SMSC_TEST_KAFKA"), var("SCYLLA_URI")) {
        return Some((kafka, cql));
    }
    if var("SMSC_SKIP_KAFKA").as_deref() == Some("1") {
        eprintln!("\n*** SKIPPED: cluster end-to-end test (SMSC_SKIP_KAFKA=1, no engines) ***\n");
        return None;
    }
    panic!(
        "no engines: run this test through tests/run (it exports SMSC_TEST_KAFKA and \
         SCYLLA_URI from tests/engines), or set SMSC_SKIP_KAFKA=1 to skip it"
    );
}

/// The accounts of one run: system_ids and short codes no other run uses.
struct Run {
    alpha: String,
    beta: String,
    acme: String,
    bank: String,
    delta: String,
    echo: String,
    golf: String,
    /// Submits over HTTP; its receipts go to the test's webhook receiver.
    hook: String,
    acme_code: String,
    bank_code: String,
    /// Each third-party stack's account (its name's first 5 letters, as system_ids are
    /// at most 15) and short code.
    peers: Vec<(Stack, String, String)>,
}

impl Run {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = nanos ^ std::process::id().rotate_left(16);
        let id = |name: &str| format!("{name}{:06x}", n & 0xff_ffff);
        Self {
            alpha: id("alpha"),
            beta: id("beta"),
            acme: id("acme"),
            bank: id("bank"),
            delta: id("delta"),
            echo: id("echo"),
            golf: id("golf"),
            hook: id("hook"),
            acme_code: format!("5{:05}", n % 100_000),
            bank_code: format!("6{:05}", n % 100_000),
            peers: Stack::ALL
                .iter()
                .zip(7..)
                .map(|(&s, code)| (s, id(&s.name()[..5]), format!("{code}{:05}", n % 100_000)))
                .collect(),
        }
    }

    /// The accounts, `hook`'s webhook at `webhook`.
    fn accounts(&self, webhook: SocketAddr) -> Vec<ClusterAccount> {
        let plain = |id: &str| ClusterAccount::new(id, PASSWORD, &[]);
        let url = format!("http://{webhook}/events");
        vec![
            plain(&self.hook).with_webhook(&url, HOOK_SECRET),
            plain(&self.alpha),
            plain(&self.beta),
            ClusterAccount::new(&self.acme, PASSWORD, &[&self.acme_code]),
            ClusterAccount::new(&self.bank, PASSWORD, &[&self.bank_code]),
            plain(&self.delta),
            plain(&self.echo),
            plain(&self.golf),
        ]
        .into_iter()
        .chain(self.peers.iter().map(|(_, id, code)| ClusterAccount::new(id, PASSWORD, &[code])))
        .collect()
    }
}

/// Retries `f` every 100 ms until it returns `Some`, for at most [`STEP`].
fn worker_admins(cluster: &Cluster) -> Vec<SocketAddr> {
    let e = cluster.endpoints();
    e.members.iter().filter(|m| m.role == ClusterRole::Worker).map(|m| m.admin).collect()
}

fn smpp(cluster: &Cluster, edge: usize) -> SocketAddr {
    cluster.endpoints().smpp(edge).expect("the edge exists")
}

const HOOK_SECRET: &str = "cluster-hook-secret-0123";

/// (g) Over HTTP: submitted on edge 0 with a receipt asked for, read back with `GET` on
/// edge 1, the receipt on the account's webhook (signed), and the CDR of each number in
/// the router's `cdr.file`, read from `smsc.cdr` on Kafka.
async fn over_http(cluster: &Cluster, run: &Run, hits: &std::sync::Mutex<Vec<http::Hit>>) {
    let e = cluster.endpoints();
    let (edge0, edge1) = (e.http(0).expect("edge 0"), e.http(1).expect("edge 1"));
    let auth = http::basic(&run.hook, PASSWORD);
    let to = ["447700900071", "447700900072"];
    let body =
        serde_json::json!({ "from": "Shop", "to": to, "text": "over HTTP", "receipt": true });
    let a = http::request(
        edge0,
        "POST",
        "/v1/messages",
        Some(&auth),
        "application/json",
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = a.body["message_ids"][0].as_str().expect("an id").to_owned();

    let path = format!("/v1/messages/{id}");
    let read = eventually("delivered, as edge 1 reads it", || async {
        let a = http::request(edge1, "GET", &path, Some(&auth), "", "").await;
        let dests = a.body["destinations"].as_array()?;
        (dests.len() == 2 && dests.iter().all(|d| d["state"] == "DELIVERED")).then_some(a.body)
    })
    .await;
    assert_eq!(read["from"], serde_json::json!("Shop"));

    let receipts = eventually("a receipt per number on the webhook", || async {
        let mine: Vec<_> = http::taken(hits, "receipt")
            .into_iter()
            .filter(|h| h.event()["message_id"] == serde_json::json!(id))
            .collect();
        (mine.len() == 2).then_some(mine)
    })
    .await;
    for r in &receipts {
        let ts = r.header("smsc-timestamp").expect("a timestamp");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
        let tag = ring::hmac::sign(&key, format!("{ts}.{}", r.body).as_bytes());
        let signature = format!("v1={}", hex::encode(tag));
        assert_eq!(r.header("smsc-signature"), Some(signature.as_str()), "{r:?}");
    }

    let file = e.cdr_file(0).expect("router 0");
    let cdrs = eventually("a CDR per number, from Kafka", || async {
        let text = std::fs::read_to_string(&file).ok()?;
        let mine: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|c: &serde_json::Value| c["message_id"] == serde_json::json!(id))
            .collect();
        (mine.len() == 2).then_some(mine)
    })
    .await;
    for c in &cdrs {
        assert_eq!(c["state"], serde_json::json!("DELIVERED"), "{c}");
        assert_eq!(c["origin"], serde_json::json!("http"), "{c}");
        assert_eq!(c["system_id"], serde_json::json!(run.hook), "{c}");
        assert_eq!(c["connector"], serde_json::json!("sim"), "{c}");
    }
    assert_ne!(cdrs[0]["idempotency_key"], cdrs[1]["idempotency_key"]);

    // `smsc trace` reads its life from the store, with the router's config.
    let router = e.member(ClusterRole::Router, 0).expect("router 0").config.clone();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smsc"))
        .args(["trace", &id, "--config"])
        .arg(&router)
        .output()
        .await
        .expect("smsc trace runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for number in to {
        assert!(text.contains(&format!("to {number} (destination ")), "{text}");
    }
    assert!(text.contains("(http)") && text.contains("through connector sim"), "{text}");
    assert!(text.contains("receipt: on the final state"), "{text}");
    for c in &cdrs {
        let key = c["idempotency_key"].as_str().expect("a key");
        assert!(text.contains(&format!("CDR {key}")), "the CDR's key {key} in:\n{text}");
    }
}

/// (a) Submitted on edge 0, delivered, and its receipt reaches the account's only
/// receiver, which is bound on edge 1: across processes through the store's session
/// directory and `Edge.Deliver`.
async fn receipt_crosses_edges(cluster: &Cluster, run: &Run) {
    let mut receiver = Esme::bind(smpp(cluster, 1), &run.alpha, BindKind::Receiver).await;
    let mut transmitter = Esme::bind(smpp(cluster, 0), &run.alpha, BindKind::Transmitter).await;
    let id = transmitter.submit("447700900123", "across the edges").await;
    assert_delivered_receipt(&receiver.deliver_sm().await, &id);
    receiver.unbind().await;
    transmitter.unbind().await;
}

/// (b) No receiver bound anywhere: the receipt waits in the shared store (the workers
/// count it pending) and arrives when a receiver binds, here on the other edge.
async fn receipt_waits_for_a_receiver(cluster: &Cluster, run: &Run) {
    let workers = worker_admins(cluster);
    let pending = r#"smsc_worker_notifications_total{kind="receipt",outcome="pending"}"#;
    let before = metric(&workers, pending).await;
    let mut transmitter = Esme::bind(smpp(cluster, 0), &run.beta, BindKind::Transmitter).await;
    let id = transmitter.submit("447700900124", "nobody listens yet").await;
    eventually("the receipt counted pending by a worker", || async {
        (metric(&workers, pending).await > before).then_some(())
    })
    .await;

    let mut receiver = Esme::bind(smpp(cluster, 1), &run.beta, BindKind::Receiver).await;
    assert_delivered_receipt(&receiver.deliver_sm().await, &id);
    receiver.unbind().await;
    transmitter.unbind().await;
}

fn assert_mo(d: &DeliverSm, short_code: &str, text: &str) {
    assert_eq!(d.esm_class, EsmClass(0), "an MO, not a receipt: {d:?}");
    assert_eq!(d.dest.addr.as_bytes(), short_code.as_bytes());
    assert_eq!(decode(d.short_message.as_bytes(), Alphabet::Gsm7).expect("GSM 7"), text);
}

/// (c) MO to a short code reaches the account that owns it and no other: each
/// account's receiver, on different edges, gets exactly its own MO.
async fn mo_reaches_only_its_account(cluster: &Cluster, run: &Run) {
    let mut acme = Esme::bind(smpp(cluster, 0), &run.acme, BindKind::Receiver).await;
    let mut bank = Esme::bind(smpp(cluster, 1), &run.bank, BindKind::Receiver).await;
    let simulator = cluster.endpoints().simulator(1).expect("worker 1");

    assert_eq!(inject_mo(simulator, &run.acme_code, "hi acme").await.len(), 1);
    assert_mo(&acme.deliver_sm().await, &run.acme_code, "hi acme");
    assert_eq!(inject_mo(simulator, &run.bank_code, "hi bank").await.len(), 1);
    // Bank's first deliver_sm is its own MO: acme's, delivered before, never came here.
    assert_mo(&bank.deliver_sm().await, &run.bank_code, "hi bank");
    let extra = acme.deliver_sm_within(Duration::from_secs(2)).await;
    assert!(extra.is_none(), "acme got bank's MO: {extra:?}");
    acme.unbind().await;
    bank.unbind().await;
}

/// (d) The simulator fails the first attempt: the message goes through the 1 s tier
/// and is delivered on the second attempt, with one DELIVRD receipt.
async fn retried_then_delivered(cluster: &Cluster, run: &Run) {
    let workers = worker_admins(cluster);
    let retries =
        format!("smsc_worker_retries_total{{tier=\"{}\"}}", smsc_bus::RetryConfig::tier_name(TIER));
    let before = metric(&workers, &retries).await;
    let mut esme = Esme::bind(smpp(cluster, 1), &run.delta, BindKind::Transceiver).await;
    let started = tokio::time::Instant::now();
    let id = esme.submit(&format!("{FLAKY_PREFIX}0000001"), "second time lucky").await;
    assert_delivered_receipt(&esme.deliver_sm().await, &id);
    assert!(started.elapsed() >= TIER, "delivered before the retry tier elapsed");
    assert_eq!(metric(&workers, &retries).await - before, 1.0, "exactly one retry");
    let again = esme.deliver_sm_within(Duration::from_secs(2)).await;
    assert!(again.is_none(), "one receipt only: {again:?}");
    esme.unbind().await;
}

/// The upstream: `smsc all` in this process (embedded bus and store), with an account
/// for the cluster that allows [`UPSTREAM_BINDS`] binds.
struct Upstream {
    smpp: SocketAddr,
    admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Upstream {
    async fn start() -> Self {
        let free = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let (smpp, admin, simulator) = (free(), free(), free());
        let hash = smsc_accounts::hash_password(PASSWORD).expect("hash");
        let yaml = format!(
            "node_id: upstream\nadmin_listen: \"{admin}\"\n\
             edge: {{ smpp_listen: \"{smpp}\", grpc_listen: \"127.0.0.1:0\" }}\n\
             accounts:\n  - system_id: {UPSTREAM_ACCOUNT}\n    password_hash: \"{hash}\"\n    max_binds: {UPSTREAM_BINDS}\n\
             worker: {{ pending_interval: 100ms, simulator_listen: \"{simulator}\" }}\n"
        );
        let config = smsc::config::Config::from_yaml_str(&yaml, []).expect("valid");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(smsc::run(smsc::Role::All, config, async {
            let _ = stopped.await;
        }));
        Self { smpp, admin, stop, running }
    }

    /// The connector of every worker, as `smsc cluster` writes it under `connectors:`.
    fn connector_yaml(&self) -> String {
        format!(
            "  up:\n    kind: smpp\n    address: \"{}\"\n    system_id: {UPSTREAM_ACCOUNT}\n    \
             password: {PASSWORD}\n    max_binds: {UPSTREAM_BINDS}\n    reconnect_min: 200ms\n    \
             lease_ttl: 6s\n",
            self.smpp
        )
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(Duration::from_secs(30), self.running).await;
        ended.expect("the upstream stops").expect("task").expect("run ends Ok");
    }
}

/// (e) Through a real broker, each of the two workers holds one of the upstream's two
/// bind slots (never more binds than it allows), and a message routed to it comes back
/// with the upstream's receipt under the cluster's message_id.
async fn upstream_interconnect(cluster: &Cluster, run: &Run, upstream: &Upstream) {
    let workers = worker_admins(cluster);
    let bound = r#"smsc_upstream_binds{bind_type="transceiver",connector="up"}"#;
    eventually("every worker bound to the upstream", || async {
        (metric(&workers, bound).await == f64::from(UPSTREAM_BINDS)).then_some(())
    })
    .await;
    for w in &workers {
        assert_eq!(metric(&[*w], bound).await, 1.0, "one slot per worker");
    }
    let sessions = r#"smsc_edge_sessions{bind_type="transceiver"}"#;
    assert_eq!(metric(&[upstream.admin], sessions).await, f64::from(UPSTREAM_BINDS));

    let mut esme = Esme::bind(smpp(cluster, 0), &run.echo, BindKind::Transceiver).await;
    for n in 0..4 {
        let id = esme.submit(&format!("{UPSTREAM_PREFIX}12345{n:03}"), "via the upstream").await;
        assert_delivered_receipt(&esme.deliver_sm().await, &id);
    }
    let taken = r#"smsc_edge_submit_total{command="submit_sm",status="ESME_ROK"}"#;
    assert_eq!(metric(&[upstream.admin], taken).await, 4.0, "the upstream took each once");
    let again = esme.deliver_sm_within(Duration::from_secs(2)).await;
    assert!(again.is_none(), "one receipt each: {again:?}");
    esme.unbind().await;
}

/// A SIGKILLed edge is not reported as a crash, and comes back on its ports.
/// A worker stopped with SIGTERM, as a rolling update does, finishes the deliveries it
/// holds before it exits: every message ends DELIVRD, none UNKNOWN (what a worker cut
/// off between its claim and its final write leaves).
async fn a_terminated_worker_finishes_what_it_holds(cluster: &mut Cluster, run: &Run) {
    let mut esme = Esme::bind(smpp(cluster, 0), &run.golf, BindKind::Transceiver).await;
    let mut ids = std::collections::HashSet::new();
    for i in 0..20 {
        ids.insert(esme.submit(&format!("{SLOW_PREFIX}{i:07}"), "slow").await);
    }
    // Both workers are inside the simulator's call with their share by now.
    tokio::time::sleep(SLOW / 3).await;
    let exited = cluster.terminate(ClusterRole::Worker, 0).await.expect("SIGTERM worker 0");
    assert!(exited.status.success() && !exited.forced, "not a clean shutdown: {exited}");
    cluster.restart(ClusterRole::Worker, 0).await.expect("worker 0 restarts");
    while !ids.is_empty() {
        let d = esme.deliver_sm().await;
        let id = d.tlvs.receipted_message_id().map(|t| t.value().to_vec()).unwrap_or_default();
        let id = String::from_utf8(id).expect("ASCII");
        if ids.remove(&id) {
            assert_delivered_receipt(&d, &id);
        }
    }
    esme.unbind().await;
}

/// (f) jSMPP, Cloudhopper and gosmpp as ESMEs, each a transmitter on edge 0 and a
/// receiver on edge 1 (receipts and MO cross the edges), rebinding after both edges were
/// stopped gracefully (they unbind their sessions) and started again. The script they run is
/// in docs/testing.md ("Interop").
async fn third_party_stacks(cluster: &mut Cluster, run: &Run) {
    let Some(dir) = peers::peers() else { return };
    for (stack, system_id, short_code) in &run.peers {
        let args = EsmeArgs {
            smpp: smpp(cluster, 0),
            rx: Some(smpp(cluster, 1)),
            system_id,
            mode: Mode::TxRx,
            short_code,
        };
        let mut peer = Peer::esme(&dir, *stack, &args);
        loop {
            match peer.next().await {
                Ask::Mo(text) => {
                    let simulator = cluster.endpoints().simulator(0).expect("worker 0");
                    assert_eq!(inject_mo(simulator, short_code, &text).await.len(), 1);
                }
                Ask::Unbind => {
                    // Both down before either is back: each session ends once.
                    for edge in 0..2 {
                        let exited =
                            cluster.terminate(ClusterRole::Edge, edge).await.expect("SIGTERM");
                        assert!(exited.status.success() && !exited.forced, "{exited}");
                    }
                    for edge in 0..2 {
                        cluster.restart(ClusterRole::Edge, edge).await.expect("the edge restarts");
                    }
                }
                Ask::Pass => break,
            }
        }
        peer.finish().await;
    }
}

async fn a_killed_edge_restarts(cluster: &mut Cluster, run: &Run) {
    cluster.kill(ClusterRole::Edge, 1).await.expect("kill edge 1");
    assert!(!cluster.is_running(ClusterRole::Edge, 1));
    assert!(TcpStream::connect(smpp(cluster, 1)).await.is_err(), "edge 1 is gone");
    cluster.restart(ClusterRole::Edge, 1).await.expect("edge 1 restarts");
    let esme = Esme::bind(smpp(cluster, 1), &run.alpha, BindKind::Transceiver).await;
    esme.unbind().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_end_to_end() {
    let Some((brokers, cql)) = engines() else { return };
    let run = Run::new();
    let upstream = Upstream::start().await;
    let (webhook, hits) = http::receiver(0).await;
    let options = ClusterOptions {
        brokers: Some(brokers),
        cql: Some(cql),
        extra_connectors: upstream.connector_yaml(),
        mt_routes: vec![(UPSTREAM_PREFIX.into(), "up".into())],
        accounts: run.accounts(webhook),
        retry_tiers: vec![TIER],
        sim_profiles: vec![
            SimProfile {
                prefix: FLAKY_PREFIX.into(),
                temporary_failures: 1,
                ..SimProfile::default()
            },
            SimProfile { prefix: SLOW_PREFIX.into(), latency: SLOW, ..SimProfile::default() },
        ],
        ready_timeout: Duration::from_secs(120),
        ..ClusterOptions::new(env!("CARGO_BIN_EXE_smsc"))
    };
    let mut cluster = Cluster::start(options).await.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{}", cluster.endpoints());

    receipt_crosses_edges(&cluster, &run).await;
    receipt_waits_for_a_receiver(&cluster, &run).await;
    mo_reaches_only_its_account(&cluster, &run).await;
    retried_then_delivered(&cluster, &run).await;
    upstream_interconnect(&cluster, &run, &upstream).await;
    // Before a worker restarts: the stacks and the webhook receiver check each receipt
    // comes once, and a worker joining makes its groups rebalance, which redelivers the
    // notifications in flight (receipts are at least once).
    third_party_stacks(&mut cluster, &run).await;
    over_http(&cluster, &run, &hits).await;
    a_terminated_worker_finishes_what_it_holds(&mut cluster, &run).await;
    a_killed_edge_restarts(&mut cluster, &run).await;

    let crashed = cluster.exited();
    assert!(crashed.is_empty(), "members exited on their own: {crashed:?}");
    let stopped = cluster.stop().await;
    assert_eq!(stopped.len(), 5, "every member was running: {stopped:?}");
    for e in &stopped {
        assert!(e.status.success() && !e.forced, "not a clean SIGTERM shutdown: {e}");
    }
    upstream.stop().await;
}
