//! The harness of the in-process message-path tests: the router, the delivery worker and
//! the notification dispatcher on one [`EmbeddedBus`] and one [`EmbeddedStore`], the
//! network simulator as the only connector, and a [`FakeEdge`] in place of the edges
//! that records every `Edge.Deliver` call and answers as the test says.
//!
//! It lives in the `smsc` crate because roles never depend on each other: only the crate
//! that composes them may wire them together, here as in `smsc all`.
//!
//! Time: the tests run on paused tokio time and every component reads [`TokioClock`],
//! which follows it. Tokio moves time only when every task is idle, and then straight to
//! the next timer, so a retry tier of 100 ms takes exactly 100 ms of virtual time,
//! nothing can happen "too fast to see", and a test that waits 30 s for a state that
//! never comes fails in milliseconds of real time.

// Each test binary uses a part of the harness.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use prost::Message as _;
use smsc_accounts::{Account, AccountDirectory};
use smsc_bus::Topics;
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_bus::lanes::Lanes;
use smsc_bus::{Bus, Class, Flow, Record};
use smsc_delivery_worker::config::SimProfile;
use smsc_delivery_worker::connector::{Connector, Simulator};
use smsc_delivery_worker::dispatch::Dispatcher;
use smsc_delivery_worker::edge_link::EdgeLink;
use smsc_delivery_worker::simulator::SimulatorGrpc;
use smsc_delivery_worker::{Connectors, Worker};
use smsc_proto::{Address, DeliverOutcome, DeliverRequest, DeliverResponse, NotificationKind};
use smsc_proto::{DeliveryTask, SubmitEvent};
use smsc_router::RoutingConfig;
use smsc_router::config::MoRoute;
use smsc_router::{Router, Routes};
use smsc_runtime::telemetry::Metrics;
use smsc_smpp::pdu::DeliverSm;
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::{Body, CommandStatus, EsmClass};
pub use smsc_store::DeliveryState;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{BindKind, Clock, SessionLease, Store, StoredMessage, UnixMillis};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use smsc_accounts::testing::account;

/// Where [`TokioClock`] starts (2023-11-14): any fixed instant will do, and one far from
/// the wall clock makes a component that reads the wall clock instead fail loudly.
pub const START_MS: UnixMillis = 1_700_000_000_000;
/// Short retry tiers: `smsc.retry.100ms`, `smsc.retry.200ms`.
pub const TIERS: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(200)];
/// How often the dispatcher sweeps the pending queues.
pub const PENDING_INTERVAL: Duration = Duration::from_millis(50);
/// The longest any wait for an expected state lasts before the test fails (virtual time).
pub const WAIT: Duration = Duration::from_secs(30);
/// Longer than every tier, the sweep interval and the dispatcher's directory cache: after
/// this much idle virtual time, whatever was still to happen has happened.
pub const SETTLE: Duration = Duration::from_secs(3);

/// The accounts; both have a transceiver session on [`EDGE`].
pub const ACME: &str = "acme";
pub const BANK: &str = "bank";
/// The endpoint of the (fake) edge that holds the sessions.
pub const EDGE: &str = "10.0.0.7:50051";
/// Short codes routed to [`ACME`] and [`BANK`]; nothing routes `9999`.
pub const ACME_SHORT_CODE: &str = "5555";
pub const BANK_SHORT_CODE: &str = "6666";
/// The simulator connector's name (the default MT route's).
pub const CONNECTOR: &str = "sim";

/// Wall-clock milliseconds that follow tokio's clock (paused in these tests).
#[derive(Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self { start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> UnixMillis {
        START_MS + self.start.elapsed().as_millis() as UnixMillis
    }
}

/// How the [`FakeEdge`] answers `Edge.Deliver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// deliver_sm_resp ESME_ROK.
    Delivered,
    /// No receiver bound on the edge (what a real edge answers then).
    Temporary,
    /// The ESME refused it for good, with this status.
    Permanent(CommandStatus),
}

/// One `Edge.Deliver` call.
#[derive(Debug, Clone)]
pub struct Call {
    pub endpoint: String,
    pub request: DeliverRequest,
    pub answer: Answer,
}

impl Call {
    pub fn is_receipt(&self) -> bool {
        self.request.kind == NotificationKind::Receipt as i32
    }

    pub fn is_mo(&self) -> bool {
        self.request.kind == NotificationKind::Mo as i32
    }

    /// The deliver_sm it carries.
    pub fn deliver_sm(&self) -> DeliverSm {
        let pdu = smsc_smpp::decode(Bytes::from(self.request.deliver_sm.clone()));
        match pdu {
            Ok(smsc_smpp::Pdu { body: Body::DeliverSm(d), .. }) => d,
            other => panic!("Edge.Deliver with something else than a deliver_sm: {other:?}"),
        }
    }
}

/// The edges, as the dispatcher sees them through `EdgeLink`.
#[derive(Debug)]
pub struct FakeEdge {
    answer: Mutex<Answer>,
    calls: Mutex<Vec<Call>>,
}

impl FakeEdge {
    fn new() -> Self {
        Self { answer: Mutex::new(Answer::Delivered), calls: Mutex::new(Vec::new()) }
    }

    /// How later calls are answered.
    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("answer") = answer;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// The calls answered [`Answer::Delivered`] for receipts of `message_id`.
    pub fn receipts(&self, message_id: &str) -> Vec<Call> {
        let calls = self.calls().into_iter();
        calls
            .filter(|c| c.is_receipt() && c.request.message_id == message_id)
            .filter(|c| c.answer == Answer::Delivered)
            .collect()
    }

    /// The calls carrying MO.
    pub fn mo(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mo).collect()
    }
}

impl EdgeLink for FakeEdge {
    fn deliver(
        &self,
        endpoint: &str,
        request: DeliverRequest,
    ) -> BoxFuture<'_, Result<DeliverResponse, tonic::Status>> {
        let answer = *self.answer.lock().expect("answer");
        let call = Call { endpoint: endpoint.to_owned(), request, answer };
        self.calls.lock().expect("calls").push(call);
        let (outcome, status, detail) = match answer {
            Answer::Delivered => (DeliverOutcome::Delivered, CommandStatus::ESME_ROK, ""),
            Answer::Temporary => (
                DeliverOutcome::Temporary,
                CommandStatus::ESME_RMSGQFUL,
                "no receiver session on this edge",
            ),
            Answer::Permanent(st) => (DeliverOutcome::Permanent, st, "refused"),
        };
        let response = DeliverResponse {
            outcome: outcome as i32,
            command_status: status.0,
            detail: detail.to_owned(),
        };
        Box::pin(async move { Ok(response) })
    }
}

/// Router, worker and dispatcher running until the value is dropped.
#[derive(Debug)]
pub struct Pipeline {
    pub clock: Arc<TokioClock>,
    pub bus: EmbeddedBus,
    pub store: Arc<EmbeddedStore>,
    pub simulator: Arc<Simulator>,
    pub edge: Arc<FakeEdge>,
    pub metrics: Arc<Metrics>,
    /// The handset side of the simulator, on the same bus.
    pub handsets: SimulatorGrpc,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Pipeline {
    /// Starts the roles with the simulator behaving as `profiles` say (destinations no
    /// profile matches are delivered at once). Call under paused tokio time.
    pub async fn start(profiles: Vec<SimProfile>) -> Self {
        let clock = Arc::new(TokioClock::new());
        let bus = EmbeddedBus::with_clock(EmbeddedBusConfig::default(), clock.clone());
        let store =
            Arc::new(EmbeddedStore::with_clock(EmbeddedStoreConfig::default(), clock.clone()));
        let simulator = Arc::new(Simulator::new(profiles));
        let edge = Arc::new(FakeEdge::new());
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let topics = Topics::new("smsc", "smsc", &TIERS);
        let dyn_bus: Arc<dyn Bus> = Arc::new(bus.clone());
        let dyn_clock: Arc<dyn Clock> = clock.clone();

        let accounts = [ACME, BANK].map(|id| Account::from_config(&account(id)));
        let accounts = accounts.into_iter().collect::<Result<Vec<_>, _>>().expect("valid accounts");
        for (n, system_id) in [ACME, BANK].into_iter().enumerate() {
            let lease = SessionLease {
                system_id: system_id.to_owned(),
                session_id: format!("edge-7/{n}"),
                edge_id: "edge-7".to_owned(),
                endpoint: EDGE.to_owned(),
                bind: BindKind::Transceiver,
                bound_at: clock.now_ms(),
            };
            store.put_session(lease, Duration::from_secs(3600)).await.expect("lease");
        }

        let routing = RoutingConfig {
            mo: vec![
                MoRoute { prefix: ACME_SHORT_CODE.into(), account: ACME.into() },
                MoRoute { prefix: BANK_SHORT_CODE.into(), account: BANK.into() },
            ],
            ..RoutingConfig::default()
        };
        let router = Router::new(
            dyn_bus.clone(),
            store.clone(),
            Arc::new(arc_swap::ArcSwap::from_pointee(Routes::new(&routing))),
            topics.clone(),
            dyn_clock.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        let connectors =
            Connectors::from([(CONNECTOR.to_owned(), simulator.clone() as Arc<dyn Connector>)]);
        let directory = Arc::new(AccountDirectory::new(accounts));
        let worker = Worker::new(
            dyn_bus.clone(),
            store.clone(),
            connectors,
            topics.clone(),
            dyn_clock.clone(),
            metrics.clone(),
            directory.clone(),
            shutdown.clone(),
        );
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            edge.clone(),
            directory,
            dyn_clock.clone(),
            metrics.clone(),
            shutdown.clone(),
            "worker-0",
        ));

        let mut tasks = JoinSet::new();
        let lanes = || Lanes { read_ahead: 64, ..Lanes::new(4) };
        tasks.spawn(async move { smsc_router::run(router, lanes()).await.expect("router runs") });
        tasks.spawn(async move {
            smsc_delivery_worker::run(worker, lanes()).await.expect("worker runs")
        });
        let dispatch = smsc_delivery_worker::dispatch::run(
            dispatcher,
            dyn_bus.clone(),
            topics.clone(),
            lanes(),
            PENDING_INTERVAL,
        );
        tasks.spawn(async move { dispatch.await.expect("dispatcher runs") });

        let handsets = SimulatorGrpc::new(dyn_bus, topics.mo().clone(), dyn_clock);
        Self { clock, bus, store, simulator, edge, metrics, handsets, shutdown, tasks }
    }

    pub fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    /// A submit of `text` from [`ACME`]'s alphanumeric sender to `dest` as the edge
    /// produces it: accepted now, valid for an hour. Tests change what they look at.
    pub fn event(&self, message_id: &str, dest: &str, registered_delivery: u32) -> SubmitEvent {
        let now = self.now_ms();
        SubmitEvent {
            message_id: message_id.to_owned(),
            dest_index: 0,
            system_id: ACME.to_owned(),
            edge_id: "edge-7".to_owned(),
            source: Some(Address { ton: 5, npi: 0, addr: "Acme".to_owned() }),
            dest: Some(Address { ton: 1, npi: 1, addr: dest.to_owned() }),
            registered_delivery,
            data_coding: 0,
            payload: b"Your code is 123456".to_vec(),
            submitted_at_ms: now,
            expire_at_ms: now + 3_600_000,
            command: "submit_sm".to_owned(),
            ..SubmitEvent::default()
        }
    }

    /// Publishes `ev` to `smsc.submit` as the edge does (key: the destination; flow:
    /// its account, standard class).
    pub async fn submit(&self, ev: &SubmitEvent) {
        self.submit_as(ev, Class::Standard).await;
    }

    /// [`Pipeline::submit`] in traffic class `class`.
    pub async fn submit_as(&self, ev: &SubmitEvent, class: Class) {
        let key = ev.dest.as_ref().map(|d| d.addr.clone()).unwrap_or_default();
        let mut record = Record::new(Bytes::from(key), Bytes::from(ev.encode_to_vec()));
        Flow::new(class, Bytes::from(ev.system_id.clone())).mark(&mut record);
        self.bus
            .publish(Topics::default().submit(class), vec![record])
            .await
            .expect("publish submit");
    }

    /// Publishes a delivery task to `smsc.deliver` as the router does (key: `dest`).
    pub async fn publish_task(&self, dest: &str, task: &DeliveryTask) {
        let record = Record::new(Bytes::from(dest.to_owned()), Bytes::from(task.encode_to_vec()));
        self.bus.publish("smsc.deliver", vec![record]).await.expect("publish task");
    }

    /// The stored row of a single-destination message.
    pub async fn row(&self, message_id: &str) -> Option<StoredMessage> {
        let rows = self.store.get_message(message_id).await.expect("store");
        assert!(rows.len() <= 1, "one row per message_id: {rows:?}");
        rows.into_iter().next()
    }

    /// Waits until the message's row satisfies `check` (`what` names it), and returns it.
    pub async fn wait_row(
        &self,
        message_id: &str,
        what: &str,
        check: impl Fn(&StoredMessage) -> bool,
    ) -> StoredMessage {
        let mut last = None;
        let reached = within(WAIT, async {
            loop {
                last = self.row(message_id).await;
                if let Some(row) = last.as_ref().filter(|r| check(r)) {
                    return row.clone();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        reached.unwrap_or_else(|| panic!("{message_id} never reached {what}; last seen {last:?}"))
    }

    /// Waits until the message is in `state`, and returns its row.
    pub async fn wait_state(&self, message_id: &str, state: DeliveryState) -> StoredMessage {
        self.wait_row(message_id, &state.to_string(), |r| r.state == state).await
    }

    /// Waits until the edge took `n` receipts of `message_id`, and returns them.
    pub async fn wait_receipts(&self, message_id: &str, n: usize) -> Vec<Call> {
        let what = format!("{n} receipts of {message_id}");
        eventually(&what, || async { self.edge.receipts(message_id).len() >= n }).await;
        self.edge.receipts(message_id)
    }

    /// The row the router writes for `ev`, in `state` after `attempts` attempts.
    pub fn stored(&self, ev: &SubmitEvent, state: DeliveryState, attempts: u32) -> StoredMessage {
        let address = |a: &Option<Address>| {
            let a = a.clone().unwrap_or_default();
            smsc_store::Address::new(
                smsc_smpp::Ton(a.ton as u8),
                smsc_smpp::Npi(a.npi as u8),
                &a.addr,
            )
            .expect("address")
        };
        StoredMessage {
            message_id: ev.message_id.clone(),
            dest_index: ev.dest_index,
            system_id: ev.system_id.clone(),
            source: address(&ev.source),
            dest: address(&ev.dest),
            service_type: ev.service_type.clone(),
            registered_delivery: ev.registered_delivery as u8,
            data_coding: ev.data_coding as u8,
            esm_class: ev.esm_class as u8,
            payload: Bytes::from(ev.payload.clone()),
            state,
            error_code: 0,
            attempts,
            submitted_at: ev.submitted_at_ms,
            schedule_at: None,
            expire_at: ev.expire_at_ms,
            final_at: None,
            event: Bytes::from(ev.encode_to_vec()),
            first_attempt_at: None,
            connector: String::new(),
            route: String::new(),
        }
    }

    /// Connector calls counted by the worker, by outcome.
    pub fn deliveries(&self, outcome: &str) -> u64 {
        self.metrics
            .family::<smsc_delivery_worker::WorkerMetrics>()
            .deliveries_total
            .with_label_values(&[CONNECTOR, outcome])
            .get()
    }

    /// Lets `SETTLE` of idle virtual time pass: every retry, requeue, notification and
    /// sweep still due has run by then.
    pub async fn settle(&self) {
        tokio::time::sleep(SETTLE).await;
    }
}

/// `fut`, or `None` after `limit` (virtual time).
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}

/// Polls `check` every few milliseconds until it holds; fails the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    smsc_test_support::eventually(what, WAIT, check).await
}

/// Checks that `call` is the final receipt of `message_id` with `stat` and `err`, as an
/// ESME parses it: esm_class 0x04, the standard text, and the TLVs agreeing with it.
pub fn assert_receipt(call: &Call, message_id: &str, stat: ReceiptStat, err: u16) -> DeliverSm {
    let d = call.deliver_sm();
    assert_eq!(d.esm_class.0, EsmClass::TYPE_DELIVERY_RECEIPT, "esm_class of {d:?}");
    let text = std::str::from_utf8(d.short_message.as_bytes()).expect("ASCII receipt text");
    let r = Receipt::parse(text).unwrap_or_else(|e| panic!("receipt text {text:?}: {e}"));
    assert_eq!((r.id.as_str(), r.stat, r.err), (message_id, stat, err), "{text}");
    assert_eq!(r.dlvrd, u32::from(stat == ReceiptStat::Delivered), "{text}");
    let receipted = d.tlvs.receipted_message_id().map(|t| t.value().to_vec());
    assert_eq!(receipted.as_deref(), Some(message_id.as_bytes()), "receipted_message_id");
    assert_eq!(d.tlvs.message_state(), Some(stat.to_message_state()), "message_state TLV");
    let network_error = d.tlvs.network_error_code().map(|n| n.error_code);
    assert_eq!(network_error, Some(err), "network_error_code TLV");
    d
}

/// The stat words of the receipts of `message_id` the edge took, in order.
pub fn stats(edge: &FakeEdge, message_id: &str) -> Vec<&'static str> {
    let receipts = edge.receipts(message_id);
    let texts = receipts.iter().map(|c| {
        let text = String::from_utf8_lossy(c.deliver_sm().short_message.as_bytes()).into_owned();
        Receipt::parse(&text).map(|r| r.stat.as_str()).unwrap_or("unparsable")
    });
    texts.collect()
}

/// A distinct message_id in the edge's format (32 lowercase hex digits).
pub fn message_id(n: u64) -> String {
    format!("{n:032x}")
}
