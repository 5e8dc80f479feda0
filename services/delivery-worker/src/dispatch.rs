//! The notification dispatcher: receipts and MO (`smsc.notify`) to the edge that holds
//! a receiver bind of the account, over `Edge.Deliver`. Success is recorded only on
//! deliver_sm_resp OK; with no receiver bound (or every edge failing) the notification
//! goes to the store's pending queue, which a sweeper retries until a receiver binds.
//! A copy of a notification the ESME acknowledged lately is dropped ([`Recent`]).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use prost::Message as _;
use smsc_accounts::AccountDirectory;
use smsc_bus::lanes::{Lanes, join, run_lanes};
use smsc_bus::{Bus, BusError, Delivery, Topics};
use smsc_store::store_until_ok;

use crate::edge_link::DynEdgeLink;
use smsc_runtime::telemetry::Metrics;
use smsc_store::{Clock, NotificationKind as StoredKind, PendingNotification, SlotClaim, Store};

use crate::hooks::Hooks;
use crate::metrics::WorkerMetrics;
use smsc_accounts::Webhook;
use smsc_proto::{DeliverOutcome, DeliverRequest, Notification, NotificationKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Consumer group of the dispatchers: `<bus.group_prefix>-dispatcher` ([`Topics::group`]).
pub const GROUP: &str = "dispatcher";

/// The endpoints of the edges holding an account's receivers, shared: no copy per
/// notification.
type Edges = Arc<[String]>;

/// How long the edges of an account are remembered: binds change rarely, and a stale
/// entry only costs one failed call before the lookup is refreshed.
const DIRECTORY_TTL: Duration = Duration::from_secs(1);

/// Pending notifications read per account per sweep page.
const PAGE: usize = 256;

/// Pending notifications of one account in flight at once during a sweep: a receiver's
/// window and queue hold more, and live receipts from `smsc.notify` share them.
const SWEEP_IN_FLIGHT: usize = 32;

/// Accounts swept at once.
const SWEEP_ACCOUNTS: usize = 8;

/// The store lease (`claim_slot`, pool `sweep:<system_id>`) a worker holds while it
/// sweeps an account, refreshed per page: two workers never send the same pending
/// notification. A worker that dies holding it delays that account's sweep this long.
const SWEEP_LEASE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The ESME refused it for good (ESME_RX_P_APPN / ESME_RX_R_APPN): dropped.
    Refused,
    /// No receiver took it now.
    NotNow,
    /// A copy of one the ESME acknowledged lately: dropped.
    Repeat,
}

impl Sent {
    /// The `outcome` label of `smsc_worker_notifications_total`; `None`: not done yet.
    fn outcome(self) -> Option<&'static str> {
        match self {
            Sent::Delivered => Some("delivered"),
            Sent::Refused => Some("refused"),
            Sent::Repeat => Some("repeat"),
            Sent::NotNow => None,
        }
    }
}

/// Notifications lately acknowledged, as hashes of (system_id, message_id, deliver_sm).
///
/// A final receipt goes to `smsc.notify` again when its delivery task is seen again
/// (redelivered to a worker after the receipt went out, or a duplicate submit record):
/// the copy is byte for byte the same, keyed by the same message_id, so it reaches the
/// same dispatcher lane after the first, which finds it here. Two generations of
/// [`RECENT_GENERATION`] hashes each bound the memory (two tables of 131,072 8-byte
/// slots, about 2.4 MB by construction); a copy is caught if
/// fewer than that many notifications went out on this worker in between. A copy that
/// reaches another worker (the partition moved) or this one after a restart still goes
/// out: receipts stay at least once.
#[derive(Debug)]
struct Recent {
    /// Keys are hashed outside the lock.
    hasher: foldhash::quality::RandomState,
    /// (current, previous); the keys are hashes already.
    sets: Mutex<(Hashes, Hashes)>,
}

type Hashes = HashSet<u64, foldhash::fast::RandomState>;

/// Hashes per generation of [`Recent`].
const RECENT_GENERATION: usize = 100_000;

impl Recent {
    fn new() -> Self {
        Self { hasher: foldhash::quality::RandomState::default(), sets: Mutex::default() }
    }

    fn key(&self, system_id: &str, message_id: &str, pdu: &[u8]) -> u64 {
        self.hasher.hash_one((system_id, message_id, pdu))
    }

    fn contains(&self, key: u64) -> bool {
        let (current, previous) = &*self.sets.lock().unwrap_or_else(|e| e.into_inner());
        current.contains(&key) || previous.contains(&key)
    }

    fn insert(&self, key: u64) {
        let (current, previous) = &mut *self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if current.len() >= RECENT_GENERATION {
            *previous = std::mem::take(current);
        }
        current.insert(key);
    }
}

#[derive(Debug)]
pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub link: DynEdgeLink,
    pub accounts: Arc<AccountDirectory>,
    pub clock: Arc<dyn Clock>,
    /// The process's registry (consumer lag).
    pub process_metrics: Arc<Metrics>,
    pub metrics: Arc<WorkerMetrics>,
    pub shutdown: CancellationToken,
    edges: Mutex<HashMap<String, (Instant, Edges)>>,
    recent: Recent,
    /// The accounts' webhooks.
    hooks: Hooks,
    ids: smsc_runtime::ids::IdGenerator,
    /// This worker's name in sweep leases.
    node_id: String,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        link: DynEdgeLink,
        accounts: Arc<AccountDirectory>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        node_id: &str,
    ) -> Self {
        Self {
            store,
            link,
            accounts,
            clock,
            hooks: Hooks::new(metrics.family::<WorkerMetrics>().webhook_requests_total.clone()),
            metrics: metrics.family(),
            process_metrics: metrics,
            shutdown,
            edges: Mutex::new(HashMap::new()),
            recent: Recent::new(),
            ids: smsc_runtime::ids::IdGenerator::new(),
            node_id: node_id.to_owned(),
        }
    }

    /// Edges with a receiver bind of `system_id`, from the session directory.
    async fn edges(&self, system_id: &str, fresh: bool) -> Edges {
        if !fresh {
            let m = self.edges.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = m.get(system_id)
                && at.elapsed() < DIRECTORY_TTL
            {
                return v.clone();
            }
        }
        let mut v: Vec<String> = match self.store.sessions(system_id).await {
            Ok(leases) => {
                leases.into_iter().filter(|l| l.bind.receives()).map(|l| l.endpoint).collect()
            }
            Err(e) => {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), "session directory unavailable");
                Vec::new()
            }
        };
        v.sort();
        v.dedup();
        let v: Edges = v.into();
        let mut m = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(system_id.to_owned(), (Instant::now(), Arc::clone(&v)));
        v
    }

    /// Whether no receiver of the account is bound anywhere, as the session directory says
    /// now. A directory that cannot be read says nothing: false (the MO waits for SMPP
    /// rather than go to the webhook while a receiver may be bound).
    async fn no_receiver(&self, system_id: &str) -> bool {
        match self.store.sessions(system_id).await {
            Ok(leases) => !leases.iter().any(|l| l.bind.receives()),
            Err(_) => false,
        }
    }

    /// Tries each edge of the account once (or its webhook: an HTTP submit's receipt,
    /// or an MO while no receiver is bound), unless this very notification was
    /// acknowledged lately.
    pub async fn send(
        &self,
        system_id: &str,
        kind: NotificationKind,
        message_id: &str,
        pdu: &Bytes,
        created_at: i64,
    ) -> Sent {
        let key = self.recent.key(system_id, message_id, pdu);
        if self.recent.contains(key) {
            debug!(system_id, message_id, "copy of an acknowledged notification dropped");
            return Sent::Repeat;
        }
        let hook = || self.accounts.get(system_id).and_then(|a| a.webhook.clone());
        let post = async |hook: Webhook| {
            let now = self.clock.now_ms();
            self.hooks.post(system_id, &hook, kind, message_id, pdu, created_at, now).await
        };
        let sent = match kind {
            NotificationKind::WebhookReceipt => match hook() {
                Some(h) => post(h).await,
                // The webhook was removed: kept until there is one again.
                None => Sent::NotNow,
            },
            NotificationKind::Mo => match hook() {
                Some(h) if self.no_receiver(system_id).await => post(h).await,
                _ => self.send_to_edges(system_id, kind, message_id, pdu).await,
            },
            _ => self.send_to_edges(system_id, kind, message_id, pdu).await,
        };
        if sent == Sent::Delivered {
            self.recent.insert(key);
        }
        sent
    }

    async fn send_to_edges(
        &self,
        system_id: &str,
        kind: NotificationKind,
        message_id: &str,
        pdu: &Bytes,
    ) -> Sent {
        for fresh in [false, true] {
            let edges = self.edges(system_id, fresh).await;
            for endpoint in edges.iter() {
                let req = DeliverRequest {
                    system_id: system_id.to_owned(),
                    deliver_sm: pdu.to_vec(),
                    message_id: message_id.to_owned(),
                    kind: kind as i32,
                };
                match self.link.deliver(endpoint, req).await {
                    Ok(r) if r.outcome == DeliverOutcome::Delivered as i32 => {
                        return Sent::Delivered;
                    }
                    Ok(r) if r.outcome == DeliverOutcome::Permanent as i32 => {
                        warn!(
                            system_id,
                            message_id,
                            status = r.command_status,
                            "ESME refused a notification for good"
                        );
                        return Sent::Refused;
                    }
                    Ok(r) => {
                        debug!(system_id, endpoint, detail = %r.detail, "edge could not deliver now")
                    }
                    Err(e) => debug!(system_id, endpoint, error = %e, "edge unreachable"),
                }
            }
            if edges.is_empty() && !fresh {
                continue;
            }
        }
        Sent::NotNow
    }

    /// One notification from the bus: delivered now, or made pending (durably) first.
    pub async fn notification(&self, payload: &Bytes) -> bool {
        let n = match Notification::decode(payload.clone()) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "undecodable notification dropped");
                return true;
            }
        };
        let kind = NotificationKind::try_from(n.kind).unwrap_or(NotificationKind::Receipt);
        let pdu = Bytes::from(n.deliver_sm);
        let sent = self.send(&n.system_id, kind, &n.message_id, &pdu, n.created_at_ms).await;
        let label = kind_label(kind);
        if let Some(outcome) = sent.outcome() {
            self.metrics.notifications_total.with_label_values(&[label, outcome]).inc();
            return true;
        }
        let pending = PendingNotification {
            id: self.ids.next_at(self.clock.now_ms()).to_string(),
            kind: match kind {
                NotificationKind::Mo => StoredKind::Mo,
                NotificationKind::WebhookReceipt => StoredKind::WebhookReceipt,
                _ => StoredKind::Receipt,
            },
            message_id: n.message_id,
            pdu,
            created_at: n.created_at_ms,
        };
        let pushed = store_until_ok("push_pending", &self.shutdown, || {
            self.store.push_pending(&n.system_id, pending.clone())
        })
        .await
        .is_some();
        if pushed {
            self.metrics.notifications_total.with_label_values(&[label, "pending"]).inc();
        }
        pushed
    }

    /// Delivers what is pending for every account that has a receiver now: a few
    /// accounts at once, and within an account up to [`SWEEP_IN_FLIGHT`] notifications
    /// in flight (issued in queue order), so that a backlog left by a long unbound
    /// period drains at the receiver's pace rather than one round trip at a time. One
    /// worker at a time sweeps an account ([`SWEEP_LEASE`]).
    pub async fn sweep(&self) {
        let mut accounts = self.accounts.system_ids().into_iter();
        let mut sweeping = FuturesUnordered::new();
        loop {
            while sweeping.len() < SWEEP_ACCOUNTS {
                let Some(system_id) = accounts.next() else { break };
                sweeping.push(self.sweep_account(system_id));
            }
            if sweeping.next().await.is_none() {
                return;
            }
        }
    }

    async fn sweep_account(&self, system_id: String) {
        // A cheap look first: most accounts have nothing pending, and a lease is an LWT.
        match self.store.pending(&system_id, None, 1).await {
            Ok(page) if !page.items.is_empty() => {}
            Ok(_) => return,
            Err(e) => {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), "pending queue unavailable");
                return;
            }
        }
        let webhook = self.accounts.get(&system_id).is_some_and(|a| a.webhook.is_some());
        if self.edges(&system_id, false).await.is_empty() && !webhook {
            return;
        }
        let pool = format!("sweep:{system_id}");
        let mut after: Option<String> = None;
        // Taken (or refreshed) before each page is read, so that a page never predates
        // another worker's deletes, and refreshed while a slow page is delivered.
        while self.claim_sweep(&pool).await {
            let page = match self.store.pending(&system_id, after.as_deref(), PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), "pending queue unavailable");
                    break;
                }
            };
            let stopped = self.deliver_page(&system_id, &pool, &page.items).await;
            match page.next {
                Some(n) if !stopped => after = Some(n),
                _ => break,
            }
        }
        // Conditional on holding it: harmless when the lease was lost.
        let _ = self.store.release_slot(&pool, 0, &self.node_id).await;
    }

    /// Takes or refreshes this worker's sweep lease on `pool`; whether it holds it.
    async fn claim_sweep(&self, pool: &str) -> bool {
        match self.store.claim_slot(pool, 0, &self.node_id, SWEEP_LEASE).await {
            Ok(SlotClaim::Held) => true,
            Ok(SlotClaim::Busy { holder }) => {
                debug!(pool, holder, "another worker sweeps this account");
                false
            }
            Err(e) => {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), "sweep lease unavailable");
                false
            }
        }
    }

    /// Delivers `items` in order, up to [`SWEEP_IN_FLIGHT`] at once, refreshing the
    /// lease on `pool` every third of [`SWEEP_LEASE`]. Once one finds no room, or the
    /// lease is lost, none more is issued (those in flight finish); whether that happened.
    async fn deliver_page(
        &self,
        system_id: &str,
        pool: &str,
        items: &[PendingNotification],
    ) -> bool {
        let mut stopped = false;
        let mut claimed = Instant::now();
        let mut items = items.iter();
        let mut in_flight = FuturesOrdered::new();
        loop {
            if !stopped && claimed.elapsed() >= SWEEP_LEASE / 3 {
                stopped = !self.claim_sweep(pool).await;
                claimed = Instant::now();
            }
            while !stopped && in_flight.len() < SWEEP_IN_FLIGHT {
                let Some(p) = items.next() else { break };
                in_flight.push_back(self.send_pending(system_id, p));
            }
            let Some((p, kind, sent)) = in_flight.next().await else { return stopped };
            let Some(outcome) = sent.outcome() else {
                stopped = true;
                continue;
            };
            self.metrics.notifications_total.with_label_values(&[kind_label(kind), outcome]).inc();
            let _ = self.store.delete_pending(system_id, &p.id).await;
        }
    }

    async fn send_pending<'a>(
        &self,
        system_id: &str,
        p: &'a PendingNotification,
    ) -> (&'a PendingNotification, NotificationKind, Sent) {
        let kind = match p.kind {
            StoredKind::Mo => NotificationKind::Mo,
            StoredKind::WebhookReceipt => NotificationKind::WebhookReceipt,
            StoredKind::Receipt => NotificationKind::Receipt,
        };
        (p, kind, self.send(system_id, kind, &p.message_id, &p.pdu, p.created_at).await)
    }
}

fn kind_label(k: NotificationKind) -> &'static str {
    if k == NotificationKind::Mo { "mo" } else { "receipt" }
}

/// Consumes the release's `<prefix>.notify` (per account in order) and sweeps the pending
/// queues every `interval`, until shutdown.
pub async fn run(
    d: Arc<Dispatcher>,
    bus: Arc<dyn Bus>,
    topics: Topics,
    lanes: Lanes,
    interval: Duration,
) -> Result<(), BusError> {
    let metrics = Some(&d.process_metrics);
    let (group, topic) = (topics.group(GROUP), topics.notify());
    let Some(consumer) = join(&bus, &group, &[topic], lanes.read_ahead, &d.shutdown, metrics).await
    else {
        return Ok(());
    };
    let sweeper = {
        let d = d.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = d.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => d.sweep().await,
                }
            }
        })
    };
    let shutdown = d.shutdown.clone();
    run_lanes(consumer, lanes, shutdown, move |_, m: &Delivery| {
        let (d, payload) = (d.clone(), m.record.payload.clone());
        async move { d.notification(&payload).await }
    })
    .await;
    let _ = sweeper.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::edge_link::EdgeLink;
    use futures::future::BoxFuture;
    use smsc_accounts::Account;
    use smsc_proto::DeliverResponse;
    use smsc_store::contract::sample_lease;
    use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};

    use super::*;
    use crate::tests::TokioClock;

    /// An edge whose receivers take `capacity` notifications of an account (absent:
    /// any number) and then answer busy, each call taking a moment; it counts the calls
    /// in flight at once.
    #[derive(Debug, Default)]
    struct Edge {
        capacity: Mutex<HashMap<String, usize>>,
        /// How long a call takes beyond 5 ms.
        delay: Mutex<Duration>,
        delivered: Mutex<HashMap<String, Vec<String>>>,
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl Edge {
        fn delivered(&self, system_id: &str) -> Vec<String> {
            self.delivered.lock().expect("lock").get(system_id).cloned().unwrap_or_default()
        }
    }

    impl EdgeLink for Edge {
        fn deliver(
            &self,
            _endpoint: &str,
            req: DeliverRequest,
        ) -> BoxFuture<'_, Result<DeliverResponse, tonic::Status>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let delay = *self.delay.lock().expect("lock");
                tokio::time::sleep(Duration::from_millis(5) + delay).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                let capacity = self.capacity.lock().expect("lock").get(&req.system_id).copied();
                let mut delivered = self.delivered.lock().expect("lock");
                let taken = delivered.entry(req.system_id).or_default();
                let outcome = if capacity.is_some_and(|c| taken.len() >= c) {
                    DeliverOutcome::Temporary
                } else {
                    taken.push(req.message_id);
                    DeliverOutcome::Delivered
                };
                Ok(DeliverResponse { outcome: outcome as i32, ..DeliverResponse::default() })
            })
        }
    }

    /// Accounts with a receiver bound and `backlog` pending notifications each, in an
    /// embedded store on tokio's clock.
    struct Setup {
        store: Arc<EmbeddedStore>,
        edge: Arc<Edge>,
        accounts: Arc<AccountDirectory>,
        clock: Arc<dyn Clock>,
    }

    impl Setup {
        async fn new(backlog: &[(&str, usize)]) -> Self {
            let clock: Arc<dyn Clock> = Arc::new(TokioClock(tokio::time::Instant::now()));
            let config = EmbeddedStoreConfig::default();
            let store = Arc::new(EmbeddedStore::with_clock(config, clock.clone()));
            let mut accounts = Vec::new();
            for (system_id, count) in backlog {
                let mut account = Account::demo();
                account.system_id = (*system_id).to_owned();
                accounts.push(account);
                let lease = sample_lease(system_id, "s1");
                store.put_session(lease, Duration::from_secs(3600)).await.expect("lease");
                for i in 0..*count {
                    let p = PendingNotification {
                        id: format!("{i:08}"),
                        kind: StoredKind::Receipt,
                        message_id: format!("{system_id}-{i}"),
                        pdu: Bytes::from_static(b"deliver_sm"),
                        created_at: 0,
                    };
                    store.push_pending(system_id, p).await.expect("pending");
                }
            }
            let accounts = Arc::new(AccountDirectory::new(accounts));
            Self { store, edge: Arc::new(Edge::default()), accounts, clock }
        }

        fn dispatcher(&self, node_id: &str) -> Dispatcher {
            Dispatcher::new(
                self.store.clone(),
                self.edge.clone(),
                self.accounts.clone(),
                self.clock.clone(),
                Metrics::new(),
                CancellationToken::new(),
                node_id,
            )
        }
    }

    async fn pending(store: &EmbeddedStore, system_id: &str) -> usize {
        store.pending(system_id, None, 10_000).await.expect("pending").items.len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_drains_in_one_sweep_several_at_a_time() {
        let s = Setup::new(&[("a", 600), ("b", 10)]).await;
        let (edge, store) = (&s.edge, &s.store);
        s.dispatcher("worker-0").sweep().await;
        let mut want: Vec<String> = (0..600).map(|i| format!("a-{i}")).collect();
        let mut got = edge.delivered("a");
        got.sort();
        want.sort();
        assert_eq!(got, want, "every pending notification once");
        assert_eq!(edge.delivered("b").len(), 10);
        assert_eq!((pending(store, "a").await, pending(store, "b").await), (0, 0));
        let max = edge.max_in_flight.load(Ordering::SeqCst);
        assert!(max > SWEEP_IN_FLIGHT, "accounts and notifications in parallel: {max}");
        assert!(max <= SWEEP_IN_FLIGHT * 2, "bounded per account: {max}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_account_stops_issuing_keeps_the_rest_pending_and_others_drain() {
        let s = Setup::new(&[("a", 600), ("b", 10)]).await;
        let (d, edge, store) = (s.dispatcher("worker-0"), &s.edge, &s.store);
        edge.capacity.lock().expect("lock").insert("a".to_owned(), 40);
        d.sweep().await;
        assert_eq!(edge.delivered("a").len(), 40);
        assert_eq!(pending(store, "a").await, 560, "what found no room stays pending");
        let a_calls = edge.calls.load(Ordering::SeqCst) - 10;
        // A notification that finds no room asks the edge twice (again after refreshing
        // the directory): at most the ones in flight when the first answer came.
        assert!(a_calls <= 40 + 2 * SWEEP_IN_FLIGHT, "no more issued once busy: {a_calls} calls");
        assert_eq!(edge.delivered("b").len(), 10, "another account is not held back");

        edge.capacity.lock().expect("lock").clear();
        d.sweep().await;
        let mut got = edge.delivered("a");
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 600, "the rest at the next sweep, none twice");
        assert_eq!(edge.delivered("a").len(), 600);
        assert_eq!(pending(store, "a").await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn two_workers_sweeping_at_once_send_each_notification_once() {
        let s = Setup::new(&[("a", 600), ("b", 300)]).await;
        let (w0, w1) = (s.dispatcher("worker-0"), s.dispatcher("worker-1"));
        tokio::join!(w0.sweep(), w1.sweep());
        tokio::join!(w0.sweep(), w1.sweep());
        for (system_id, count) in [("a", 600), ("b", 300)] {
            let mut got = s.edge.delivered(system_id);
            assert_eq!(got.len(), count, "{system_id}: each once");
            got.sort();
            got.dedup();
            assert_eq!(got.len(), count, "{system_id}: none twice");
            assert_eq!(pending(&s.store, system_id).await, 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_lease_left_by_a_dead_worker_holds_the_account_until_it_expires() {
        let s = Setup::new(&[("a", 5)]).await;
        let ttl = SWEEP_LEASE;
        let dead = s.store.claim_slot("sweep:a", 0, "dead-worker", ttl).await.expect("claim");
        assert_eq!(dead, SlotClaim::Held);
        let d = s.dispatcher("worker-0");
        d.sweep().await;
        assert!(s.edge.delivered("a").is_empty(), "the holder sweeps, not this worker");
        tokio::time::advance(SWEEP_LEASE + Duration::from_secs(1)).await;
        d.sweep().await;
        assert_eq!(s.edge.delivered("a").len(), 5);
        // Released after the sweep: the next worker does not wait out a lease.
        let next = s.store.claim_slot("sweep:a", 0, "worker-1", ttl).await.expect("claim");
        assert_eq!(next, SlotClaim::Held);
    }

    fn notification(message_id: &str, pdu: &'static [u8]) -> Bytes {
        let n = Notification {
            system_id: "a".to_owned(),
            kind: NotificationKind::Receipt as i32,
            message_id: message_id.to_owned(),
            deliver_sm: pdu.to_vec(),
            created_at_ms: 0,
        };
        Bytes::from(n.encode_to_vec())
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_of_an_acknowledged_notification_is_dropped_and_nothing_else_is() {
        let s = Setup::new(&[("a", 0)]).await;
        let d = s.dispatcher("worker-0");
        let receipt = notification("m1", b"stat:DELIVRD");
        assert!(d.notification(&receipt).await);
        assert!(d.notification(&receipt).await, "the copy is done with");
        assert_eq!(s.edge.delivered("a"), ["m1"], "one receipt");
        // Same message, other bytes (an intermediate receipt, then the final one): both.
        assert!(d.notification(&notification("m2", b"stat:ENROUTE")).await);
        assert!(d.notification(&notification("m2", b"stat:DELIVRD")).await);
        assert_eq!(s.edge.delivered("a"), ["m1", "m2", "m2"]);

        // Not acknowledged (no room): pending, and a copy that comes later still goes.
        s.edge.capacity.lock().expect("lock").insert("a".to_owned(), 3);
        let later = notification("m3", b"stat:DELIVRD");
        assert!(d.notification(&later).await);
        assert_eq!(pending(&s.store, "a").await, 1);
        s.edge.capacity.lock().expect("lock").clear();
        assert!(d.notification(&later).await);
        assert_eq!(s.edge.delivered("a"), ["m1", "m2", "m2", "m3"]);
        // The pending one is now a copy: the sweep drops it.
        d.sweep().await;
        assert_eq!(pending(&s.store, "a").await, 0);
        assert_eq!(s.edge.delivered("a").len(), 4);
    }

    #[test]
    fn recent_remembers_between_one_and_two_generations() {
        let recent = Recent::new();
        let first = recent.key("a", "m0", b"pdu");
        recent.insert(first);
        for i in 1..=RECENT_GENERATION as u64 {
            recent.insert(recent.key("a", &format!("m{i}"), b"pdu"));
        }
        assert!(recent.contains(first), "kept for a generation");
        for i in 0..RECENT_GENERATION as u64 {
            recent.insert(recent.key("b", &format!("m{i}"), b"pdu"));
        }
        assert!(!recent.contains(first), "forgotten after two");
        let (current, previous) = &*recent.sets.lock().expect("lock");
        assert!(current.len() + previous.len() <= 2 * RECENT_GENERATION);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_slower_than_its_lease_keeps_it() {
        let s = Setup::new(&[("a", 100)]).await;
        // 32 at a time, 30 s each: the page takes two minutes, twice the lease.
        *s.edge.delay.lock().expect("lock") = Duration::from_secs(30);
        let (w0, w1) = (s.dispatcher("worker-0"), s.dispatcher("worker-1"));
        let late = async {
            tokio::time::sleep(SWEEP_LEASE + Duration::from_secs(10)).await;
            w1.sweep().await;
        };
        tokio::join!(w0.sweep(), late);
        let mut got = s.edge.delivered("a");
        assert_eq!(got.len(), 100, "each once");
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 100);
    }
}
