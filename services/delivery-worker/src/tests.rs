//! The worker's side of upstream delivery, on the embedded bus and store under paused
//! time: a scripted connector answers `Accepted`, and receipts come in through the
//! worker's [`Inbound`] as the SMPP upstream connector hands them over.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;
use smsc_bus::Consumer;
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_proto::{Address, Notification};
use smsc_smpp::receipt::Receipt;
use smsc_smpp::{Body, Pdu};
use smsc_store::contract::sample_message;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{
    Page, PendingNotification, SessionLease, SlotClaim, StoreError, StoreResult, UnixMillis,
};

use super::*;

const START_MS: UnixMillis = 1_700_000_000_000;
const TIERS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
const WAIT: Duration = Duration::from_secs(120);

/// Store time that follows tokio's (paused) clock.
#[derive(Debug)]
pub(crate) struct TokioClock(pub(crate) tokio::time::Instant);

impl Clock for TokioClock {
    fn now_ms(&self) -> UnixMillis {
        START_MS + self.0.elapsed().as_millis() as UnixMillis
    }
}

/// A connector that answers from a script (then `Accepted` with a fresh id).
#[derive(Debug, Default)]
struct Scripted {
    script: Mutex<VecDeque<Outcome>>,
    calls: AtomicU32,
}

impl Connector for Scripted {
    fn deliver<'a>(
        &'a self,
        _m: &'a StoredMessage,
        _attempt: u32,
    ) -> futures::future::BoxFuture<'a, Outcome> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.script.lock().expect("script").pop_front();
        Box::pin(
            async move { next.unwrap_or(Outcome::Accepted { upstream_id: format!("auto-{n}") }) },
        )
    }
}

/// The embedded store, but the answer to the first `lose` final writes is lost after the
/// write applied: what a CQL client sees when an LWT times out on its side and applies
/// on the server all the same.
#[derive(Debug)]
struct LostAnswers {
    inner: Arc<EmbeddedStore>,
    lose: AtomicU32,
}

impl Store for LostAnswers {
    fn insert_message(&self, m: StoredMessage) -> BoxFuture<'_, StoreResult<Applied>> {
        self.inner.insert_message(m)
    }
    fn get_message(&self, id: &str) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>> {
        self.inner.get_message(id)
    }
    fn transition(
        &self,
        id: &str,
        dest_index: u32,
        from: DeliveryState,
        update: Update,
    ) -> BoxFuture<'_, StoreResult<Applied>> {
        let lost = update.final_at.is_some()
            && self
                .lose
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        let write = self.inner.transition(id, dest_index, from, update);
        Box::pin(async move {
            let applied = write.await?;
            if lost { Err(StoreError::Timeout) } else { Ok(applied) }
        })
    }
    fn put_session(&self, l: SessionLease, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_session(l, ttl)
    }
    fn remove_session(&self, system_id: &str, id: &str) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.remove_session(system_id, id)
    }
    fn sessions(&self, system_id: &str) -> BoxFuture<'_, StoreResult<Vec<SessionLease>>> {
        self.inner.sessions(system_id)
    }
    fn push_pending(
        &self,
        system_id: &str,
        n: PendingNotification,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.push_pending(system_id, n)
    }
    fn pending(
        &self,
        system_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        self.inner.pending(system_id, after, limit)
    }
    fn delete_pending(&self, system_id: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.delete_pending(system_id, id)
    }
    fn put_upstream_link(
        &self,
        connector: &str,
        upstream_id: &str,
        link: UpstreamLink,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_upstream_link(connector, upstream_id, link, ttl)
    }
    fn park_upstream_receipt(
        &self,
        connector: &str,
        upstream_id: &str,
        deliver_sm: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.park_upstream_receipt(connector, upstream_id, deliver_sm, ttl)
    }
    fn upstream_entry(
        &self,
        connector: &str,
        upstream_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<UpstreamEntry>>> {
        self.inner.upstream_entry(connector, upstream_id)
    }
    fn claim_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<SlotClaim>> {
        self.inner.claim_slot(pool, slot, holder, ttl)
    }
    fn release_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.release_slot(pool, slot, holder)
    }
    fn take_quota(
        &self,
        system_id: &str,
        period: &str,
        want: u64,
        limit: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        self.inner.take_quota(system_id, period, want, limit, ttl)
    }
    fn give_back_quota(
        &self,
        system_id: &str,
        period: &str,
        n: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.give_back_quota(system_id, period, n, ttl)
    }
}

struct Setup {
    worker: Arc<Worker>,
    store: Arc<EmbeddedStore>,
    bus: EmbeddedBus,
    clock: Arc<TokioClock>,
    connector: Arc<Scripted>,
    notify: Box<dyn Consumer>,
    shutdown: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Setup {
    async fn start(script: Vec<Outcome>) -> Self {
        Self::start_losing(script, 0).await
    }

    /// [`Setup::start`], the answers to the first `lose` final writes lost ([`LostAnswers`]).
    async fn start_losing(script: Vec<Outcome>, lose: u32) -> Self {
        Self::start_with(script, lose, 0).await
    }

    /// [`Setup::start`], the connector at `rate` messages per second.
    async fn start_paced(script: Vec<Outcome>, rate: u32) -> Self {
        Self::start_with(script, 0, rate).await
    }

    async fn start_with(script: Vec<Outcome>, lose: u32, rate: u32) -> Self {
        let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
        let bus = EmbeddedBus::with_clock(EmbeddedBusConfig::default(), clock.clone());
        let store =
            Arc::new(EmbeddedStore::with_clock(EmbeddedStoreConfig::default(), clock.clone()));
        let connector =
            Arc::new(Scripted { script: Mutex::new(script.into()), ..Scripted::default() });
        let shutdown = CancellationToken::new();
        let worker = Worker::new(
            Arc::new(bus.clone()),
            Arc::new(LostAnswers { inner: store.clone(), lose: AtomicU32::new(lose) }),
            Connectors::from([(
                "up".to_owned(),
                crate::pace::Paced::wrap(connector.clone() as Arc<dyn Connector>, rate),
            )]),
            Topics::new("smsc", "smsc", &TIERS),
            clock.clone(),
            Metrics::new(),
            Arc::new(smsc_accounts::AccountDirectory::new(Vec::new())),
            shutdown.clone(),
        );
        let notify = bus.consumer("test", &["smsc.notify"], 1000).expect("consumer");
        let w = worker.clone();
        let lanes = smsc_bus::lanes::Lanes { read_ahead: 64, ..smsc_bus::lanes::Lanes::new(4) };
        tokio::spawn(async move { run(w, lanes).await.expect("worker runs") });
        Self { worker, store, bus, clock, connector, notify, shutdown }
    }

    /// Stores a message valid for `valid` and publishes its delivery task.
    async fn submit(&self, id: &str, valid: Duration) -> StoredMessage {
        self.submit_asking(id, valid, sample_message(id, 0, "acme").registered_delivery).await
    }

    /// [`Setup::submit`] with this `registered_delivery`.
    async fn submit_asking(
        &self,
        id: &str,
        valid: Duration,
        registered_delivery: u8,
    ) -> StoredMessage {
        let m = self.store_message(id, valid, registered_delivery).await;
        self.publish_task(id).await;
        m
    }

    /// The row [`Setup::submit_asking`] stores, without its task.
    async fn store_message(
        &self,
        id: &str,
        valid: Duration,
        registered_delivery: u8,
    ) -> StoredMessage {
        let now = self.clock.now_ms();
        let m = StoredMessage {
            registered_delivery,
            source: smsc_store::Address::new(smsc_smpp::Ton(5), smsc_smpp::Npi(0), "Acme")
                .expect("address"),
            dest: smsc_store::Address::new(smsc_smpp::Ton(1), smsc_smpp::Npi(1), "447700900123")
                .expect("address"),
            submitted_at: now,
            expire_at: now + valid.as_millis() as i64,
            event: Bytes::new(),
            ..sample_message(id, 0, "acme")
        };
        assert!(self.store.insert_message(m.clone()).await.expect("insert").applied());
        m
    }

    async fn publish_task(&self, id: &str) {
        self.publish_routed(id, "447700900123", "", 0).await;
    }

    /// A task keyed by `key` over route `route` limited to `rate` (0: unlimited).
    async fn publish_routed(&self, id: &str, key: &str, route: &str, rate: u32) {
        let task = DeliveryTask {
            message_id: id.to_owned(),
            connectors: vec!["up".into()],
            route: route.to_owned(),
            route_rate: rate,
            ..Default::default()
        };
        let key = Bytes::copy_from_slice(key.as_bytes());
        let record = Record::new(key, Bytes::from(task.encode_to_vec()));
        self.bus.publish("smsc.deliver", vec![record]).await.expect("publish");
    }

    async fn row(&self, id: &str) -> StoredMessage {
        self.store.get_message(id).await.expect("store").into_iter().next().expect("row")
    }

    async fn wait_state(&self, id: &str, state: DeliveryState) -> StoredMessage {
        let reached = tokio::time::timeout(WAIT, async {
            loop {
                let row = self.row(id).await;
                if row.state == state {
                    return row;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        reached.unwrap_or_else(|_| panic!("{id} never reached {state}"))
    }

    /// The receipts the worker published, within `d`.
    async fn receipts_within(&mut self, d: Duration) -> Vec<Receipt> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Ok(delivery)) = tokio::time::timeout_at(deadline, self.notify.recv()).await {
            let n = Notification::decode(delivery.record.payload.clone()).expect("notification");
            let Ok(Pdu { body: Body::DeliverSm(d), .. }) =
                smsc_smpp::decode(Bytes::from(n.deliver_sm))
            else {
                panic!("a deliver_sm")
            };
            let text = Receipt::parse_bytes(d.short_message.as_bytes()).expect("receipt text");
            assert_eq!(n.message_id, text.id);
            out.push(text);
            let _ = self.notify.ack(&delivery);
        }
        out
    }

    fn receipts_metric(&self, result: &str) -> u64 {
        self.worker.upstream_metrics.receipts_total.with_label_values(&["up", result]).get()
    }
}

fn receipt(key: &str, state: DeliveryState, error_code: u16) -> UpstreamReceipt {
    let stat = ReceiptStat::from_message_state(state.to_smpp()).expect("stat");
    let text = format!("id:{key} stat:{stat} err:{error_code:03}");
    let d = smsc_smpp::pdu::DeliverSm {
        esm_class: smsc_smpp::EsmClass(smsc_smpp::EsmClass::TYPE_DELIVERY_RECEIPT),
        short_message: smsc_smpp::pdu::ShortMessage::new(Bytes::from(text)).expect("fits"),
        ..Default::default()
    };
    UpstreamReceipt {
        keys: vec![key.to_owned()],
        state: state.to_smpp(),
        error_code,
        pdu: Pdu::new(1, Body::DeliverSm(d)).to_bytes().expect("encodes"),
        park_ttl: Duration::from_secs(600),
    }
}

#[tokio::test(start_paused = true)]
async fn an_accepted_message_waits_at_the_upstream_and_its_receipt_ends_it() {
    let mut s = Setup::start(vec![Outcome::Accepted { upstream_id: "U1".into() }]).await;
    let id = "m1";
    s.submit(id, Duration::from_secs(60)).await;
    let row = s.wait_state(id, DeliveryState::AtUpstream).await;
    assert_eq!(row.attempts, 1);
    let entry = s.store.upstream_entry("up", "U1").await.expect("store").expect("linked");
    assert_eq!(entry.link, Some(UpstreamLink { message_id: id.into(), dest_index: 0 }));
    assert!(
        s.receipts_within(Duration::from_secs(5)).await.is_empty(),
        "no receipt while at the upstream"
    );

    let status = s.worker.upstream_receipt("up", receipt("U1", DeliveryState::Delivered, 0)).await;
    assert_eq!(status, CommandStatus::ESME_ROK);
    let row = s.wait_state(id, DeliveryState::Delivered).await;
    assert!(row.final_at.is_some());
    let got = s.receipts_within(Duration::from_secs(1)).await;
    assert_eq!(
        got.iter().map(|r| (r.id.as_str(), r.stat)).collect::<Vec<_>>(),
        [(id, ReceiptStat::Delivered)]
    );
    assert_eq!(s.receipts_metric("matched"), 1);

    // The upstream sends it again (our answer got lost): answered, and ours not repeated.
    let again = s.worker.upstream_receipt("up", receipt("U1", DeliveryState::Delivered, 0)).await;
    assert_eq!(again, CommandStatus::ESME_ROK);
    assert!(s.receipts_within(Duration::from_secs(1)).await.is_empty());
    // We crashed after the final write, before our receipt went out (the id's receipt is
    // parked, not marked done): when the upstream sends it again, ours goes out.
    let r = receipt("U1", DeliveryState::Delivered, 0);
    s.store.park_upstream_receipt("up", "U1", r.pdu.clone(), r.park_ttl).await.expect("store");
    assert_eq!(s.worker.upstream_receipt("up", r).await, CommandStatus::ESME_ROK);
    assert_eq!(s.receipts_within(Duration::from_secs(1)).await.len(), 1);
    // A contradicting one changes nothing.
    let other =
        s.worker.upstream_receipt("up", receipt("U1", DeliveryState::Undeliverable, 1)).await;
    assert_eq!(other, CommandStatus::ESME_ROK);
    // Past the validity: the check task finds it final and says nothing more.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(s.receipts_within(Duration::from_secs(1)).await.is_empty());
    assert_eq!(s.row(id).await.state, DeliveryState::Delivered);
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_intermediate_upstream_receipt_reaches_an_esme_that_asked_for_one() {
    let asking = smsc_smpp::RegisteredDelivery::INTERMEDIATE | 0x01;
    let script = vec![
        Outcome::Accepted { upstream_id: "U7".into() },
        Outcome::Accepted { upstream_id: "U8".into() },
    ];
    let mut s = Setup::start(script).await;
    s.submit_asking("m7", Duration::from_secs(60), asking).await;
    s.wait_state("m7", DeliveryState::AtUpstream).await;
    s.submit_asking("m8", Duration::from_secs(60), 0x01).await;
    s.wait_state("m8", DeliveryState::AtUpstream).await;

    for id in ["U7", "U8"] {
        let status = s.worker.upstream_receipt("up", receipt(id, DeliveryState::Enroute, 0)).await;
        assert_eq!(status, CommandStatus::ESME_ROK);
    }
    let got = s.receipts_within(Duration::from_secs(1)).await;
    assert_eq!(
        got.iter().map(|r| (r.id.as_str(), r.stat)).collect::<Vec<_>>(),
        [("m7", ReceiptStat::Enroute)],
        "only the message that asked for intermediate notifications"
    );
    assert_eq!(s.row("m7").await.state, DeliveryState::AtUpstream, "still on its way");

    let status = s.worker.upstream_receipt("up", receipt("U7", DeliveryState::Delivered, 0)).await;
    assert_eq!(status, CommandStatus::ESME_ROK);
    let got = s.receipts_within(Duration::from_secs(1)).await;
    assert_eq!(
        got.iter().map(|r| (r.id.as_str(), r.stat)).collect::<Vec<_>>(),
        [("m7", ReceiptStat::Delivered)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_receipt_that_overtakes_the_submit_resp_ends_the_message_once_linked() {
    let mut s = Setup::start(vec![Outcome::Accepted { upstream_id: "U2".into() }]).await;
    let early =
        s.worker.upstream_receipt("up", receipt("U2", DeliveryState::Undeliverable, 11)).await;
    assert_eq!(early, CommandStatus::ESME_ROK, "parked: durable");
    assert_eq!(s.receipts_metric("unmatched"), 1);
    let parked = s.store.upstream_entry("up", "U2").await.expect("store").expect("parked");
    assert!(parked.link.is_none() && parked.parked_receipt.is_some());

    let id = "m2";
    s.submit(id, Duration::from_secs(60)).await;
    let row = s.wait_state(id, DeliveryState::Undeliverable).await;
    assert_eq!(row.error_code, 11);
    let got = s.receipts_within(Duration::from_secs(5)).await;
    assert_eq!(
        got.iter().map(|r| (r.id.as_str(), r.stat, r.err)).collect::<Vec<_>>(),
        [(id, ReceiptStat::Undeliverable, 11)]
    );
    assert_eq!(s.receipts_metric("matched_late"), 1);
    let entry = s.store.upstream_entry("up", "U2").await.expect("store").expect("entry");
    assert_eq!(entry.parked_receipt, Some(Bytes::new()), "marked handled");
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(
        s.receipts_within(Duration::from_secs(1)).await.is_empty(),
        "no check task left to expire it"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_receipt_the_message_expires_at_the_end_of_its_validity() {
    let mut s = Setup::start(vec![Outcome::Accepted { upstream_id: "U3".into() }]).await;
    let id = "m3";
    let m = s.submit(id, Duration::from_secs(5)).await;
    s.wait_state(id, DeliveryState::AtUpstream).await;
    let row = s.wait_state(id, DeliveryState::Expired).await;
    assert!(row.final_at >= Some(m.expire_at), "{row:?}");
    let got = s.receipts_within(Duration::from_secs(1)).await;
    assert_eq!(
        got.iter().map(|r| (r.id.as_str(), r.stat)).collect::<Vec<_>>(),
        [(id, ReceiptStat::Expired)]
    );
    // A receipt after that changes nothing.
    let late = s.worker.upstream_receipt("up", receipt("U3", DeliveryState::Delivered, 0)).await;
    assert_eq!(late, CommandStatus::ESME_ROK);
    assert_eq!(s.row(id).await.state, DeliveryState::Expired);
    assert!(s.receipts_within(Duration::from_secs(1)).await.is_empty());
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_task_seen_again_never_submits_a_message_at_the_upstream_twice() {
    let s = Setup::start(vec![Outcome::Accepted { upstream_id: "U4".into() }]).await;
    let id = "m4";
    s.submit(id, Duration::from_secs(600)).await;
    s.wait_state(id, DeliveryState::AtUpstream).await;
    for _ in 0..3 {
        s.publish_task(id).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 1);
    assert_eq!(s.row(id).await.state, DeliveryState::AtUpstream);
    // Intermediate news from the upstream moves nothing either.
    let enroute = s.worker.upstream_receipt("up", receipt("U4", DeliveryState::Enroute, 0)).await;
    assert_eq!(enroute, CommandStatus::ESME_ROK);
    assert_eq!(s.row(id).await.state, DeliveryState::AtUpstream);
}

#[tokio::test(start_paused = true)]
async fn a_temporary_upstream_failure_is_retried_on_the_tiers() {
    let s = Setup::start(vec![
        Outcome::Temporary { error_code: 0x58 },
        Outcome::Accepted { upstream_id: "U5".into() },
    ])
    .await;
    let id = "m5";
    s.submit(id, Duration::from_secs(600)).await;
    let row = s.wait_state(id, DeliveryState::AtUpstream).await;
    assert_eq!(row.attempts, 2);
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 2);
    assert_eq!(s.worker.metrics.retries_total.with_label_values(&["1s"]).get(), 1);
    assert!(s.store.upstream_entry("up", "U5").await.expect("store").is_some());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_destination_is_tried_until_its_validity_ends_then_expires() {
    // Tiers of 1 s and 2 s, 5 s of validity: attempts at 0, 1 and 3 s; the next tier
    // (2 s) would end at the validity's end, so the message is held until then instead
    // of being finalised at 3 s, two seconds early.
    let unreachable = vec![Outcome::Temporary { error_code: 0x0b }; 10];
    let mut s = Setup::start(unreachable).await;
    let id = "m-validity";
    let m = s.submit(id, Duration::from_secs(5)).await;
    let row = s.wait_state(id, DeliveryState::Expired).await;
    assert!(row.final_at >= Some(m.expire_at), "expired early: {row:?}");
    assert_eq!(row.attempts, 3, "{row:?}");
    assert_eq!(row.error_code, 0x0b, "the last attempt's error");
    let got = s.receipts_within(Duration::from_secs(1)).await;
    assert_eq!(
        got.iter().map(|r| (r.id.as_str(), r.stat)).collect::<Vec<_>>(),
        [(id, ReceiptStat::Expired)]
    );
}

#[tokio::test(start_paused = true)]
async fn retries_near_the_end_of_the_validity_come_on_the_tier_that_fits() {
    // 2.5 s of validity: attempts at 0 and 1 s; 1.5 s are left, so the third comes on
    // the 1 s tier (at 2 s) and the message expires at 2.5 s.
    let unreachable = vec![Outcome::Temporary { error_code: 0x0b }; 10];
    let s = Setup::start(unreachable).await;
    let id = "m-fits";
    let m = s.submit(id, Duration::from_millis(2500)).await;
    let row = s.wait_state(id, DeliveryState::Expired).await;
    assert!(row.final_at >= Some(m.expire_at), "{row:?}");
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn past_its_rate_a_connector_gets_messages_in_turn_and_they_wait_unclaimed() {
    let delivered = vec![Outcome::Delivered; 3];
    let s = Setup::start_paced(delivered, 2).await;
    let ids = ["p1", "p2", "p3"];
    for id in ids {
        s.submit(id, Duration::from_secs(600)).await;
    }
    s.wait_state("p1", DeliveryState::Delivered).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 2 per second: the second's turn is 500 ms after the first; it waits unclaimed.
    let waiting: Vec<_> =
        [s.row("p2").await, s.row("p3").await].into_iter().map(|r| (r.state, r.attempts)).collect();
    assert_eq!(waiting, [(DeliveryState::Enroute, 0); 2]);
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 1);
    for id in ids {
        s.wait_state(id, DeliveryState::Delivered).await;
    }
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 3, "each once");
}

/// A route's rate paces its messages (like a connector's), and only its own: a message
/// over another route passes the ones waiting.
#[tokio::test(start_paused = true)]
async fn past_its_rate_a_route_gets_messages_in_turn_and_other_routes_pass() {
    let s = Setup::start(vec![Outcome::Delivered; 4]).await;
    let valid = Duration::from_secs(600);
    // Each to its own destination (its own lane), so only the rate holds them back.
    for id in ["r1", "r2", "r3", "other"] {
        s.store_message(id, valid, 1).await;
    }
    for id in ["r1", "r2", "r3"] {
        s.publish_routed(id, id, "uk-mobile", 2).await;
    }
    s.publish_routed("other", "other", "", 0).await;
    let mut done = Vec::new();
    for id in ["r1", "r2", "r3", "other"] {
        let row = s.wait_state(id, DeliveryState::Delivered).await;
        done.push(row.final_at.expect("final"));
    }
    // 2 per second: the route's three are handed over 500 ms apart (on the test's
    // virtual clock), and the message over another route does not wait its turn.
    let mut routed = done[..3].to_vec();
    routed.sort_unstable();
    assert!(routed.windows(2).all(|w| w[1] - w[0] >= 500), "{routed:?}");
    assert!(done[3] < routed[1], "the other route passed the waiting ones: {done:?}");
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 4, "each once");
}

#[tokio::test(start_paused = true)]
async fn mo_from_an_upstream_goes_to_smsc_mo() {
    let s = Setup::start(Vec::new()).await;
    let mut mo_topic = s.bus.consumer("test-mo", &["smsc.mo"], 10).expect("consumer");
    let mo = MoEvent {
        id: "mo-1".into(),
        source: Some(Address { ton: 1, npi: 1, addr: "447700900555".into() }),
        dest: Some(Address { ton: 3, npi: 0, addr: "5555".into() }),
        payload: b"STOP".to_vec(),
        connector: "up".into(),
        ..MoEvent::default()
    };
    assert_eq!(s.worker.upstream_mo("up", mo.clone()).await, CommandStatus::ESME_ROK);
    let got = tokio::time::timeout(WAIT, mo_topic.recv()).await.expect("in time").expect("record");
    assert_eq!(got.record.key.as_ref(), b"5555", "keyed by the short code");
    assert_eq!(MoEvent::decode(got.record.payload).expect("MoEvent"), mo);
    let published =
        s.worker.upstream_metrics.mo_total.with_label_values(&["up", "published"]).get();
    assert_eq!(published, 1);
}

/// A final write whose answer was lost (it applied; the client timed out) is retried, finds
/// the row holding that very write, and still sends the receipt: before, the retry took
/// the row for another worker's and the receipt was never sent.
#[tokio::test(start_paused = true)]
async fn a_final_write_whose_answer_was_lost_still_sends_its_receipt() {
    let mut s = Setup::start_losing(vec![Outcome::Delivered], 1).await;
    s.submit_asking("lost-answer", Duration::from_secs(600), 1).await;
    s.wait_state("lost-answer", DeliveryState::Delivered).await;
    let receipts = s.receipts_within(Duration::from_secs(5)).await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0].stat, ReceiptStat::Delivered);
}

#[tokio::test(start_paused = true)]
async fn a_batch_reads_its_messages_at_once_and_each_task_goes_on_alone() {
    let s = Setup::start(vec![Outcome::Delivered]).await;
    s.store_message("known", Duration::from_secs(60), 0).await;
    let task = |id: &str| {
        let task = DeliveryTask {
            message_id: id.into(),
            connectors: vec!["up".into()],
            ..Default::default()
        };
        Bytes::from(task.encode_to_vec())
    };
    let flow = Flow::new(Class::Standard, Bytes::from_static(b"acme"));
    let work = vec![
        (Bytes::from_static(b"\xff not a task"), flow.clone()),
        (task("unknown"), flow.clone()),
        (task("known"), flow),
    ];
    let mut outcomes = Vec::new();
    for step in s.worker.clone().batch(work).await {
        outcomes.push(match step {
            Step::Done(durable) => ("done", durable),
            Step::Then(work) => ("then", work.await),
        });
    }
    // Undecodable: dropped (acked); a message the store does not have: acked after a
    // warning; the other delivered, once.
    assert_eq!(outcomes, [("done", true), ("then", true), ("then", true)]);
    assert_eq!(s.row("known").await.state, DeliveryState::Delivered);
    assert_eq!(s.connector.calls.load(Ordering::SeqCst), 1);
}
