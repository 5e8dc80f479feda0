//! The multi-process cluster end to end: a store server, 2 edges, 1 router and 2
//! workers as separate `smsc` processes on a real Kafka-protocol broker
//! (`SMSC_TEST_NOIDA`, else `SMSC_TEST_TANSU`: run through tests/run), driven through
//! [`Cluster`], with ESMEs speaking SMPP over TCP.
//!
//! Starting the cluster costs seconds, so one test starts it once and runs the
//! scenarios in order, each under its own accounts (with a per-run suffix, so records a
//! broker kept from an earlier run can never reach this run's ESMEs). Every wait is
//! bounded: a scenario fails, it does not hang.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use smsc::cluster::{Cluster, ClusterAccount, ClusterOptions, ClusterRole};
use smsc_common::config::SimProfile;
use smsc_common::store::BindKind;
use smsc_proto::InjectMoRequest;
use smsc_proto::simulator_client::SimulatorClient;
use smsc_smpp::codec::SmppCodec;
use smsc_smpp::pdu::{Bind, DeliverSm, MessageIdResp, ShortMessage, SubmitSm};
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::text::{Alphabet, decode};
use smsc_smpp::{
    Address, Body, COctetString, CommandStatus, EsmClass, MessageState, Npi, Pdu,
    RegisteredDelivery, Ton,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(30);
const PASSWORD: &str = "secret";
/// Destinations the simulator fails once (absent subscriber), then delivers.
const FLAKY_PREFIX: &str = "1555";
/// The only retry tier.
const TIER: Duration = Duration::from_secs(1);

/// The broker tests/run started, or `None` (test skipped) under `SMSC_SKIP_KAFKA=1`.
fn broker() -> Option<String> {
    for var in ["SMSC_TEST_NOIDA", "SMSC_TEST_TANSU"] {
        if let Ok(b) = std::env::var(var)
            && !b.trim().is_empty()
        {
            return Some(b.trim().to_owned());
        }
    }
    if std::env::var("SMSC_SKIP_KAFKA").as_deref() == Ok("1") {
        eprintln!("\n*** SKIPPED: cluster end-to-end test (SMSC_SKIP_KAFKA=1, no broker) ***\n");
        return None;
    }
    panic!(
        "no Kafka-protocol broker: run this test through tests/run (it exports \
         SMSC_TEST_NOIDA and SMSC_TEST_TANSU), or set SMSC_SKIP_KAFKA=1 to skip it"
    );
}

/// The accounts of one run: system_ids and short codes no other run uses.
struct Run {
    alpha: String,
    beta: String,
    acme: String,
    bank: String,
    delta: String,
    acme_code: String,
    bank_code: String,
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
            acme_code: format!("5{:05}", n % 100_000),
            bank_code: format!("6{:05}", n % 100_000),
        }
    }

    fn accounts(&self) -> Vec<ClusterAccount> {
        let plain = |id: &str| ClusterAccount::new(id, PASSWORD, &[]);
        vec![
            plain(&self.alpha),
            plain(&self.beta),
            ClusterAccount::new(&self.acme, PASSWORD, &[&self.acme_code]),
            ClusterAccount::new(&self.bank, PASSWORD, &[&self.bank_code]),
            plain(&self.delta),
        ]
    }
}

/// Retries `f` every 100 ms until it returns `Some`, for at most [`STEP`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let got = tokio::time::timeout(STEP, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    got.unwrap_or_else(|_| panic!("never happened within {STEP:?}: {what}"))
}

/// The sum over `admins` of one sample line of `/metrics` (0 where absent).
async fn metric(admins: &[SocketAddr], series: &str) -> f64 {
    let mut total = 0.0;
    for admin in admins {
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(admin)).await
        else {
            continue;
        };
        let mut body = String::new();
        let read = async {
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: smsc\r\n\r\n").await?;
            s.read_to_string(&mut body).await
        };
        if tokio::time::timeout(Duration::from_secs(2), read).await.is_ok() {
            let value = body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok());
            total += value.unwrap_or(0.0);
        }
    }
    total
}

fn worker_admins(cluster: &Cluster) -> Vec<SocketAddr> {
    let e = cluster.endpoints();
    e.members.iter().filter(|m| m.role == ClusterRole::Worker).map(|m| m.admin).collect()
}

/// An ESME on one SMPP connection.
struct Esme {
    name: String,
    io: Framed<TcpStream, SmppCodec>,
    seq: u32,
    /// Requests from the SMSC that arrived while we waited for a response.
    backlog: Vec<Pdu>,
}

impl Esme {
    async fn bind(addr: SocketAddr, system_id: &str, kind: BindKind) -> Self {
        let stream =
            eventually("the SMPP listener", || async { TcpStream::connect(addr).await.ok() }).await;
        let mut esme = Self {
            name: format!("{system_id} {kind:?} on {addr}"),
            io: Framed::new(stream, SmppCodec::default()),
            seq: 0,
            backlog: Vec::new(),
        };
        let bind = Bind {
            system_id: COctetString::new(system_id.as_bytes()).expect("fits"),
            password: COctetString::new(PASSWORD.as_bytes()).expect("fits"),
            interface_version: smsc_smpp::types::INTERFACE_VERSION_34,
            ..Bind::default()
        };
        let body = match kind {
            BindKind::Transmitter => Body::BindTransmitter(bind),
            BindKind::Receiver => Body::BindReceiver(bind),
            BindKind::Transceiver => Body::BindTransceiver(bind),
        };
        let resp = esme.request(body).await;
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "bind {}: {resp:?}", esme.name);
        esme
    }

    async fn recv_within(&mut self, within: Duration) -> Option<Pdu> {
        let frame = tokio::time::timeout(within, self.io.next()).await.ok()?;
        Some(frame.expect("connection open").expect("framing").expect("a valid PDU"))
    }

    async fn recv(&mut self) -> Pdu {
        match self.recv_within(STEP).await {
            Some(pdu) => pdu,
            None => panic!("{}: nothing from the SMSC within {STEP:?}", self.name),
        }
    }

    async fn send(&mut self, pdu: Pdu) {
        self.io.send(pdu).await.expect("write to the SMSC");
    }

    async fn request(&mut self, body: Body) -> Pdu {
        self.seq += 1;
        let seq = self.seq;
        self.send(Pdu::new(seq, body)).await;
        loop {
            let pdu = self.recv().await;
            if pdu.sequence_number == seq && pdu.command_id().is_response() {
                return pdu;
            }
            self.backlog.push(pdu);
        }
    }

    /// Answers an SMSC request other than deliver_sm; returns deliver_sm bodies,
    /// acknowledged with ESME_ROK.
    async fn handle(&mut self, pdu: Pdu) -> Option<DeliverSm> {
        match pdu.body {
            Body::DeliverSm(d) => {
                let ok = Body::DeliverSmResp(MessageIdResp::default());
                self.send(Pdu::new(pdu.sequence_number, ok)).await;
                Some(d)
            }
            Body::EnquireLink => {
                self.send(Pdu::new(pdu.sequence_number, Body::EnquireLinkResp)).await;
                None
            }
            other => panic!("{}: expected a deliver_sm, got {other:?}", self.name),
        }
    }

    /// The next deliver_sm within `within`, if any.
    async fn deliver_sm_within(&mut self, within: Duration) -> Option<DeliverSm> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let pdu = if self.backlog.is_empty() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                self.recv_within(left).await?
            } else {
                self.backlog.remove(0)
            };
            if let Some(d) = self.handle(pdu).await {
                return Some(d);
            }
        }
    }

    async fn deliver_sm(&mut self) -> DeliverSm {
        match self.deliver_sm_within(STEP).await {
            Some(d) => d,
            None => panic!("{}: no deliver_sm within {STEP:?}", self.name),
        }
    }

    /// Submits asking for a final receipt; returns the submit_sm_resp's message_id.
    async fn submit(&mut self, dest: &str, text: &str) -> String {
        let sm = SubmitSm {
            source: Address::new(Ton::ALPHANUMERIC, Npi::UNKNOWN, "Acme").expect("fits"),
            dest: Address::new(Ton::INTERNATIONAL, Npi::ISDN, dest).expect("fits"),
            registered_delivery: RegisteredDelivery::FINAL,
            short_message: ShortMessage::new(Bytes::copy_from_slice(text.as_bytes()))
                .expect("fits"),
            ..SubmitSm::default()
        };
        let resp = self.request(Body::SubmitSm(sm)).await;
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "{}: {resp:?}", self.name);
        match resp.body {
            Body::SubmitSmResp(r) => r.message_id.as_str().expect("ASCII").to_owned(),
            other => panic!("expected submit_sm_resp, got {other:?}"),
        }
    }

    async fn unbind(mut self) {
        let resp = self.request(Body::Unbind).await;
        assert_eq!((resp.status, resp.body), (CommandStatus::ESME_ROK, Body::UnbindResp));
    }
}

/// Checks `d` is the DELIVRD receipt of `message_id`, by text and TLVs.
fn assert_delivered_receipt(d: &DeliverSm, message_id: &str) {
    assert!(d.esm_class.is_delivery_receipt(), "not a receipt: {d:?}");
    let receipted = d.tlvs.receipted_message_id().map(|t| t.value().to_vec());
    assert_eq!(
        receipted.as_deref(),
        Some(message_id.as_bytes()),
        "receipted_message_id is the submit_sm_resp's id"
    );
    let text = std::str::from_utf8(d.short_message.as_bytes()).expect("ASCII");
    let r = Receipt::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!((r.id.as_str(), r.stat, r.err), (message_id, ReceiptStat::Delivered, 0), "{text}");
    assert_eq!(d.tlvs.message_state(), Some(MessageState::DELIVERED));
}

fn smpp(cluster: &Cluster, edge: usize) -> SocketAddr {
    cluster.endpoints().smpp(edge).expect("the edge exists")
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

async fn inject_mo(simulator: SocketAddr, to: &str, text: &str) -> Vec<String> {
    let endpoint = format!("http://{simulator}");
    let mut client = eventually("the simulator's gRPC", || async {
        SimulatorClient::connect(endpoint.clone()).await.ok()
    })
    .await;
    let req = InjectMoRequest { from: "447700900555".into(), to: to.into(), text: text.into() };
    client.inject_mo(req).await.expect("InjectMo").into_inner().ids
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
    let retries = format!(
        "smsc_worker_retries_total{{tier=\"{}\"}}",
        smsc_common::config::RetryConfig::tier_name(TIER)
    );
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

/// A SIGKILLed edge is not reported as a crash, and comes back on its ports.
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
    let Some(brokers) = broker() else { return };
    let run = Run::new();
    let options = ClusterOptions {
        brokers: Some(brokers),
        accounts: run.accounts(),
        retry_tiers: vec![TIER],
        sim_profiles: vec![SimProfile {
            prefix: FLAKY_PREFIX.into(),
            temporary_failures: 1,
            ..SimProfile::default()
        }],
        ready_timeout: Duration::from_secs(120),
        ..ClusterOptions::new(env!("CARGO_BIN_EXE_smsc"))
    };
    let mut cluster = Cluster::start(options).await.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{}", cluster.endpoints());

    receipt_crosses_edges(&cluster, &run).await;
    receipt_waits_for_a_receiver(&cluster, &run).await;
    mo_reaches_only_its_account(&cluster, &run).await;
    retried_then_delivered(&cluster, &run).await;
    a_killed_edge_restarts(&mut cluster, &run).await;

    let crashed = cluster.exited();
    assert!(crashed.is_empty(), "members exited on their own: {crashed:?}");
    let stopped = cluster.stop().await;
    assert_eq!(stopped.len(), 6, "every member was running: {stopped:?}");
    for e in &stopped {
        assert!(e.status.success() && !e.forced, "not a clean SIGTERM shutdown: {e}");
    }
}
