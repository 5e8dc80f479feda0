//! The delivery worker: consumes delivery tasks (each class's `smsc.deliver` and the retry tiers),
//! hands each message to its connector exactly once, moves it to its final state with
//! conditional writes, retries temporary failures on the delayed tiers, and emits
//! receipts. Its dispatcher consumes `smsc.notify` and pushes receipts and MO to the
//! edge that holds a receiver bind of the account, keeping them pending in the store
//! while none does.
//!
//! A message's life here, all transitions `IF state = <read state>`:
//! `ENROUTE|SCHEDULED → DeliveryState::InDelivery` (the claim; only the claimer calls the network)
//! `→ DELIVERED | UNDELIVERABLE | EXPIRED` (final, then the receipt), or
//! `→ ENROUTE` (temporary failure; a retry task is on a tier first), or
//! `→ DeliveryState::AtUpstream` (an SMPP upstream accepted it: the link between its id and ours is
//! written first, a check task waits on the tiers for the validity's end) and from there
//! `→ <the state the upstream's receipt reports>` or, when no receipt came in time,
//! `→ EXPIRED`. A message at the upstream is never submitted again.
//!
//! [`start`] is the entry point `smsc worker` runs (with [`build_connectors`]);
//! [`config`] the `connectors:` and `worker:` sections; [`metrics`] the `smsc_worker_*`
//! and `smsc_upstream_*` families; [`connector`] the connector contract, the simulator
//! and the webhook; [`pace`] a connector's `rate`; [`upstream`] the SMPP upstream;
//! [`dispatch`] receipts and MO to the edges over [`edge_link`].
#![forbid(unsafe_code)]

pub mod config;
pub mod connector;
pub mod dispatch;
pub mod edge_link;
pub mod hooks;
pub mod metrics;
pub mod pace;
pub mod receipt;
pub mod simulator;
pub mod start;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use smsc_bus::Topics;
use smsc_bus::lanes::{Lanes, Step, join, publish_until_ok, run_batches};
use smsc_bus::{Bus, BusError, Delivery, Record};
use smsc_bus::{Class, Flow};
use smsc_runtime::telemetry::Metrics;
use smsc_store::store_until_ok;
use smsc_store::{
    Applied, Clock, DeliveryState, Store, StoredMessage, Update, UpstreamEntry, UpstreamLink,
};

use smsc_accounts::AccountDirectory;
use smsc_proto::{DeliveryTask, MoEvent, Notification, NotificationKind, SubmitEvent};
use smsc_smpp::receipt::ReceiptStat;
use smsc_smpp::{CommandStatus, RegisteredDelivery};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use connector::{Connector, Connectors, Outcome};
use connector::{ConnectorContext, Inbound, UpstreamReceipt};
pub use metrics::{UpstreamMetrics, WorkerMetrics};
pub use start::{Deps, build_connectors, start};

/// Consumer group of the delivery workers: `<bus.group_prefix>-worker` ([`Topics::group`]).
pub const GROUP: &str = "worker";

#[derive(Debug)]
pub struct Worker {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub connectors: Connectors,
    /// The release's topics (its retry tiers among them) and groups.
    pub topics: Topics,
    pub clock: Arc<dyn Clock>,
    /// The process's registry (consumer lag).
    pub process_metrics: Arc<Metrics>,
    pub metrics: Arc<WorkerMetrics>,
    pub upstream_metrics: Arc<UpstreamMetrics>,
    pub shutdown: CancellationToken,
    /// The routes' rates, as the tasks carry them.
    routes: pace::RoutePaces,
    /// The accounts (a CDR's traffic class).
    accounts: Arc<AccountDirectory>,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
        connectors: Connectors,
        topics: Topics,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        accounts: Arc<AccountDirectory>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            accounts,
            bus,
            store,
            connectors,
            topics,
            clock,
            metrics: metrics.family(),
            upstream_metrics: metrics.family(),
            process_metrics: metrics,
            shutdown,
            routes: pace::RoutePaces::default(),
        })
    }
}

/// Runs delivery until `shutdown`, `lanes` tasks in progress (per destination in order).
pub async fn run(worker: Arc<Worker>, mut lanes: Lanes) -> Result<(), BusError> {
    let mut topics: Vec<String> = worker.topics.delivers().iter().map(|t| t.to_string()).collect();
    topics.extend(worker.topics.tiers.topics());
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    // What waits on the retry tiers is not due yet: not a backlog.
    lanes.delayed = Some(worker.topics.retry_prefix().clone());
    let Some(consumer) = join(
        &worker.bus,
        &worker.topics.group(GROUP),
        &names,
        lanes.read_ahead,
        &worker.shutdown,
        Some(&worker.process_metrics),
    )
    .await
    else {
        return Ok(());
    };
    let ctx = ConnectorContext {
        inbound: worker.clone(),
        store: worker.store.clone(),
        clock: worker.clock.clone(),
        metrics: worker.upstream_metrics.clone(),
        shutdown: worker.shutdown.clone(),
    };
    for c in worker.connectors.values() {
        c.start(ctx.clone());
    }
    let shutdown = worker.shutdown.clone();
    run_batches(consumer, lanes, shutdown, move |batch: &[(Flow, Delivery)]| {
        let work = batch.iter().map(|(flow, d)| (d.record.payload.clone(), flow.clone())).collect();
        worker.clone().batch(work)
    })
    .await;
    Ok(())
}

/// The final state and receipt word of an outcome.
fn final_of(o: Outcome) -> (DeliveryState, ReceiptStat, u16) {
    match o {
        Outcome::Delivered => (DeliveryState::Delivered, ReceiptStat::Delivered, 0),
        Outcome::Permanent { error_code } => {
            (DeliveryState::Undeliverable, ReceiptStat::Undeliverable, error_code)
        }
        Outcome::Temporary { error_code } => {
            (DeliveryState::Expired, ReceiptStat::Expired, error_code)
        }
        // Not an end: handled before any final write. Should one get here, the truth
        // is that nobody knows.
        Outcome::Accepted { .. } => (DeliveryState::Unknown, ReceiptStat::Unknown, 0),
    }
}

/// How long an MO from an upstream may wait for the bus before the upstream is told to
/// try again later.
const MO_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// `SubmitEvent::command` of a message submitted over the HTTP API.
const HTTP_ORIGIN: &str = "http";

/// Whether `m` came from the HTTP API (for intermediate receipts; a final state decodes
/// the event once for the CDR too).
fn from_http(m: &StoredMessage) -> bool {
    SubmitEvent::decode(m.event.clone()).is_ok_and(|e| e.command == HTTP_ORIGIN)
}

/// A delivery task from the bus; `None` (logged) when it does not decode: nothing can make
/// it decode later, and keeping it would block its partition.
fn decode_task(payload: &Bytes) -> Option<DeliveryTask> {
    DeliveryTask::decode(payload.clone())
        .map_err(|e| warn!(error = %e, "undecodable delivery task dropped"))
        .ok()
}

impl Worker {
    /// A batch of delivery tasks, each of its flow: decoded in one pass and their
    /// messages read in one store call; then each goes on alone (its connector, its
    /// writes), so a slow delivery holds only its own lane.
    pub async fn batch(
        self: Arc<Self>,
        work: Vec<(Bytes, Flow)>,
    ) -> Vec<Step<impl Future<Output = bool> + Send + 'static>> {
        let tasks: Vec<Option<DeliveryTask>> = work.iter().map(|(p, _)| decode_task(p)).collect();
        let ids: Vec<&str> = tasks.iter().flatten().map(|t| t.message_id.as_str()).collect();
        let read = store_until_ok("get_messages", &self.shutdown, || self.store.get_messages(&ids));
        let Some(rows) = read.await else {
            return work.iter().map(|_| Step::Done(false)).collect();
        };
        let mut rows = rows.into_iter();
        let steps = work.into_iter().zip(tasks).map(|((_, flow), task)| match task {
            None => Step::Done(true),
            Some(task) => {
                let (worker, rows) = (self.clone(), rows.next().unwrap_or_default());
                Step::Then(async move { worker.task_with(task, rows, &flow).await })
            }
        });
        steps.collect()
    }

    /// One delivery task of `flow`, with its message's rows as just read. Returns when
    /// its effects are durable (or at shutdown, leaving the task unacked for redelivery).
    async fn task_with(&self, task: DeliveryTask, rows: Vec<StoredMessage>, flow: &Flow) -> bool {
        let Some(m) = rows.into_iter().find(|m| m.dest_index == task.dest_index) else {
            warn!(message_id = %task.message_id, "delivery task for a message the store does not have (expired?)");
            return true;
        };
        let now = self.clock.now_ms();
        if task.upstream_check && m.state != DeliveryState::AtUpstream {
            // Ended already (its receipt went with the final write), or not ours to check.
            return true;
        }
        if m.state.is_final() {
            // A task seen again after a crash between the final write and its ack: the
            // receipt may not have gone out, so it goes (again). Receipts may repeat.
            return self.closed(&m, m.state, m.error_code, m.final_at.unwrap_or(now)).await;
        }
        if m.state == DeliveryState::AtUpstream {
            // Handed to an upstream: only its receipt or the validity's end moves it on.
            if now >= m.expire_at {
                let expired = Outcome::Temporary { error_code: m.error_code };
                return self.finish(&m, DeliveryState::AtUpstream, expired, now).await;
            }
            return self.upstream_check(task, &m, now, flow).await;
        }
        if m.state == DeliveryState::InDelivery {
            let holder_gave_up = !task.check_claim && task.attempt == m.attempts;
            if !holder_gave_up {
                return self.held_elsewhere(task, &m, flow).await;
            }
            // The holder scheduled this retry and died before writing ENROUTE: its
            // attempt failed temporarily, so the message is free to try again.
        } else if let Some(at) = m.schedule_at.filter(|at| *at > now) {
            let wait = Duration::from_millis((at - now) as u64);
            return self.requeue(task, self.topics.tiers.for_wait(wait), Some(wait), flow).await;
        }
        // The route's and the connector's rates: the message waits for its turns unclaimed.
        if let Some(pace) = self.routes.get(&task.route, task.route_rate) {
            pace.turn().await;
        }
        let connector = task.connectors.iter().find_map(|n| self.connectors.get(n));
        if let Some(pace) = connector.and_then(|c| c.pace()) {
            pace.turn().await;
        }
        let now = self.clock.now_ms();
        if now >= m.expire_at {
            return self
                .finish(&m, m.state, Outcome::Temporary { error_code: m.error_code }, now)
                .await;
        }
        if task.connectors.is_empty() {
            return self.finish(&m, m.state, Outcome::Permanent { error_code: 0 }, now).await;
        }
        // The claim: only the worker whose write applies hands the message to the network.
        // It records what the CDR reports: the first attempt's time, and the connector
        // (the first of the route's that this worker has, as `call_connectors` picks).
        let attempt = m.attempts + 1;
        let connector = task.connectors.iter().find(|n| self.connectors.contains_key(*n));
        let claim = Update {
            state: Some(DeliveryState::InDelivery),
            attempts: Some(attempt),
            first_attempt_at: m.first_attempt_at.is_none().then_some(now),
            connector: connector.cloned(),
            ..Update::default()
        };
        let Some(applied) = store_until_ok("claim", &self.shutdown, || {
            self.store.transition(&m.message_id, m.dest_index, m.state, claim.clone())
        })
        .await
        else {
            return false;
        };
        let m = match applied {
            // The row as the claim left it.
            Applied::Yes => StoredMessage {
                state: DeliveryState::InDelivery,
                attempts: attempt,
                first_attempt_at: m.first_attempt_at.or(Some(now)),
                connector: claim.connector.unwrap_or(m.connector),
                ..m
            },
            // Someone holds it: possibly this very claim, applied by an attempt that timed
            // out. Either way the holder check settles it without a second handoff.
            Applied::No(Some(row)) if row.state == DeliveryState::InDelivery => {
                return self.held_elsewhere(task, &row, flow).await;
            }
            Applied::No(_) => {
                debug!(message_id = %m.message_id, "claim lost (cancelled, or another worker)");
                return true;
            }
        };
        let (outcome, connector) = self.call_connectors(&task.connectors, &m, attempt).await;
        let now = self.clock.now_ms();
        match outcome {
            Outcome::Accepted { upstream_id } => {
                let connector = connector.unwrap_or_default();
                self.handed_off(task, &m, &connector, &upstream_id, flow).await
            }
            Outcome::Temporary { error_code } => {
                let Some((delay, topic)) = self.retry_tier(attempt, now, m.expire_at) else {
                    return self.finish(&m, DeliveryState::InDelivery, outcome, now).await;
                };
                // The retry task first, then ENROUTE: a crash in between leaves a task
                // that finds DeliveryState::InDelivery with its own attempt count and carries on.
                let retry = DeliveryTask { attempt, check_claim: false, seen_claim: 0, ..task };
                let mut record = Record::new(
                    Bytes::copy_from_slice(m.dest.addr.as_bytes()),
                    Bytes::from(retry.encode_to_vec()),
                );
                flow.mark(&mut record);
                record.not_before = Some(smsc_runtime::clock::after(now, delay));
                if !publish_until_ok(&*self.bus, topic, vec![record], &self.shutdown).await {
                    return false;
                }
                self.metrics
                    .retries_total
                    .with_label_values(&[topic.trim_start_matches(&**self.topics.retry_prefix())])
                    .inc();
                let back = Update {
                    state: Some(DeliveryState::Enroute),
                    error_code: Some(error_code),
                    ..Update::default()
                };
                let released = store_until_ok("release", &self.shutdown, || {
                    self.store.transition(
                        &m.message_id,
                        m.dest_index,
                        DeliveryState::InDelivery,
                        back.clone(),
                    )
                })
                .await
                .is_some();
                if released && RegisteredDelivery(m.registered_delivery).wants_intermediate() {
                    let http = from_http(&m);
                    return self
                        .notify_receipt(&m, ReceiptStat::Enroute, error_code, now, http)
                        .await;
                }
                released
            }
            _ => self.finish(&m, DeliveryState::InDelivery, outcome, now).await,
        }
    }

    /// When and on which tier the retry after failed attempt `attempt` comes, or `None`
    /// when the validity has ended. A retry tier that would fall past the validity is
    /// cut short: the message gets its attempts until the validity's end (on the longest
    /// tier that fits), and expires then, not at the last attempt before it.
    fn retry_tier(&self, attempt: u32, now: i64, expire_at: i64) -> Option<(Duration, &str)> {
        let left = Duration::from_millis(u64::try_from(expire_at - now).ok().filter(|l| *l > 0)?);
        let (delay, topic) = self.topics.tiers.for_attempt(attempt);
        if delay < left {
            return Some((delay, topic));
        }
        let (delay, topic) = self.topics.tiers.for_wait(left);
        Some((delay.min(left), topic))
    }

    /// Tries the route's connectors in order; a connector this worker does not have is
    /// skipped (failover), and if none is left the attempt counts as a temporary failure.
    /// Returns the outcome and the connector that gave it.
    async fn call_connectors(
        &self,
        names: &[String],
        m: &StoredMessage,
        attempt: u32,
    ) -> (Outcome, Option<String>) {
        for name in names {
            let Some(c) = self.connectors.get(name) else { continue };
            let outcome = c.deliver(m, attempt).await;
            let label = match outcome {
                Outcome::Delivered => "delivered",
                Outcome::Accepted { .. } => "accepted",
                Outcome::Temporary { .. } => "temporary",
                Outcome::Permanent { .. } => "permanent",
            };
            self.metrics.deliveries_total.with_label_values(&[name, label]).inc();
            return (outcome, Some(name.clone()));
        }
        warn!(message_id = %m.message_id, ?names, "no configured connector on the route");
        (Outcome::Temporary { error_code: 0 }, None)
    }

    /// An upstream accepted the message (we hold it DeliveryState::InDelivery): the link from its id
    /// to ours first, so that its receipt finds the message; then a receipt that
    /// overtook the submit_sm_resp (parked) ends it, or it waits `DeliveryState::AtUpstream` with a
    /// check task on the tiers for the end of its validity.
    async fn handed_off(
        &self,
        task: DeliveryTask,
        m: &StoredMessage,
        connector: &str,
        upstream_id: &str,
        flow: &Flow,
    ) -> bool {
        let now = self.clock.now_ms();
        let link = UpstreamLink { message_id: m.message_id.clone(), dest_index: m.dest_index };
        let ttl = upstream::link_ttl(m, now);
        let linked = store_until_ok("put_upstream_link", &self.shutdown, || {
            self.store.put_upstream_link(connector, upstream_id, link.clone(), ttl)
        })
        .await;
        if linked.is_none() {
            return false;
        }
        let Some(entry) = store_until_ok("upstream_entry", &self.shutdown, || {
            self.store.upstream_entry(connector, upstream_id)
        })
        .await
        else {
            return false;
        };
        let format = crate::config::ReceiptIdFormat::Exact;
        let parked = entry
            .and_then(|e| e.parked_receipt)
            .and_then(|pdu| upstream::inbound::parse_parked(&pdu, format))
            .and_then(|r| Some((r.final_state()?, r)));
        if let Some((state, r)) = parked {
            self.upstream_metrics
                .receipts_total
                .with_label_values(&[connector, "matched_late"])
                .inc();
            let done = self.finish_as(m, DeliveryState::InDelivery, state, r.error_code, now).await;
            if done {
                self.mark_handled(connector, upstream_id, r.park_ttl).await;
            }
            return done;
        }
        let to_upstream = Update {
            state: Some(DeliveryState::AtUpstream),
            error_code: Some(0),
            ..Update::default()
        };
        let Some(applied) = store_until_ok("at_upstream", &self.shutdown, || {
            self.store.transition(
                &m.message_id,
                m.dest_index,
                DeliveryState::InDelivery,
                to_upstream.clone(),
            )
        })
        .await
        else {
            return false;
        };
        if !applied.applied() {
            // Its receipt came first and ended it (and sent ours), or it is gone.
            return true;
        }
        self.upstream_check(task, m, now, flow).await
    }

    /// Comes back at the end of the message's validity (hopping tiers) to expire it if
    /// the upstream's receipt has not ended it by then.
    async fn upstream_check(
        &self,
        task: DeliveryTask,
        m: &StoredMessage,
        now: i64,
        flow: &Flow,
    ) -> bool {
        let wait = Duration::from_millis(u64::try_from(m.expire_at - now).unwrap_or(0));
        let check =
            DeliveryTask { upstream_check: true, check_claim: false, seen_claim: 0, ..task };
        self.requeue(check, self.topics.tiers.for_wait(wait), Some(wait), flow).await
    }

    /// Records that the receipt of `key` was applied and ours sent (an empty parked
    /// receipt), so that the same receipt sent again (its deliver_sm_resp got lost) is
    /// answered without a second receipt of ours. Best effort: without the mark, a resent
    /// receipt sends ours again, which at-least-once allows.
    async fn mark_handled(&self, connector: &str, key: &str, ttl: Duration) {
        let marked = self.store.park_upstream_receipt(connector, key, Bytes::new(), ttl).await;
        if let Err(e) = marked {
            debug!(connector, error = %smsc_runtime::telemetry::error_chain(&e), "receipt not marked handled");
        }
    }

    /// The first of `keys` that links to one of our messages, with what is stored for it.
    /// `None`: the store is unavailable and the worker is stopping.
    async fn find_link(
        &self,
        connector: &str,
        keys: &[String],
    ) -> Option<Option<(String, UpstreamEntry)>> {
        for key in keys {
            let entry = store_until_ok("upstream_entry", &self.shutdown, || {
                self.store.upstream_entry(connector, key)
            })
            .await?;
            if let Some(e) = entry.filter(|e| e.link.is_some()) {
                return Some(Some((key.clone(), e)));
            }
        }
        Some(None)
    }

    /// A receipt from upstream `connector`, made durable: the final state it reports
    /// written (from whatever non-final state the message is in) and our receipt sent;
    /// or, for an id not linked yet, parked for the link to come.
    async fn upstream_receipt(&self, connector: &str, r: UpstreamReceipt) -> CommandStatus {
        const LATER: CommandStatus = CommandStatus::ESME_RX_T_APPN;
        let count = |result: &str| {
            self.upstream_metrics.receipts_total.with_label_values(&[connector, result]).inc();
        };
        let park = |key: String| {
            let pdu = r.pdu.clone();
            async move {
                store_until_ok("park_upstream_receipt", &self.shutdown, || {
                    self.store.park_upstream_receipt(connector, &key, pdu.clone(), r.park_ttl)
                })
                .await
            }
        };
        let Some(found) = self.find_link(connector, &r.keys).await else { return LATER };
        // What an earlier handling of this id left: nothing, the receipt (it was being
        // applied: we may have crashed before our receipt went out), or an empty mark
        // (applied, and ours sent).
        // Counted once each, as found on arrival: matched, or unmatched (parked).
        let (key, entry, prior_parked) = match found {
            Some((key, entry)) => {
                count("matched");
                if entry.parked_receipt.as_ref().is_some_and(Bytes::is_empty) {
                    return CommandStatus::ESME_ROK;
                }
                let prior = entry.parked_receipt.is_some();
                (key, entry, prior)
            }
            None => {
                // Before its submit_sm_resp was recorded, or not ours at all. Kept under
                // every form of its id, then looked up once more: a link written
                // meanwhile found no parked receipt, so this is its last chance.
                for key in &r.keys {
                    if park(key.clone()).await.is_none() {
                        return LATER;
                    }
                }
                count("unmatched");
                match self.find_link(connector, &r.keys).await {
                    None => return LATER,
                    Some(None) => {
                        debug!(connector, keys = ?r.keys, "receipt for an unknown upstream id parked");
                        return CommandStatus::ESME_ROK;
                    }
                    Some(Some((key, entry))) => (key, entry, false),
                }
            }
        };
        // Marks this id's receipt as being applied, so that if the upstream sends it again
        // (we crashed before our receipt went out) ours goes out then.
        if !prior_parked && park(key.clone()).await.is_none() {
            return LATER;
        }
        let Some(link) = entry.link else { return CommandStatus::ESME_ROK };
        let Some(rows) = store_until_ok("get_message", &self.shutdown, || {
            self.store.get_message(&link.message_id)
        })
        .await
        else {
            return LATER;
        };
        let Some(mut m) = rows.into_iter().find(|m| m.dest_index == link.dest_index) else {
            debug!(connector, message_id = %link.message_id, "receipt for a message the store no longer has");
            return CommandStatus::ESME_ROK;
        };
        let now = self.clock.now_ms();
        if m.state.is_final() {
            if prior_parked && Some(m.state) == DeliveryState::from_smpp(r.state) {
                let at = m.final_at.unwrap_or(now);
                if !self.closed(&m, m.state, m.error_code, at).await {
                    return LATER;
                }
                self.mark_handled(connector, &key, r.park_ttl).await;
            }
            return CommandStatus::ESME_ROK;
        }
        // A final state SMPP names; anything else says the message is still on its way.
        let Some(reported) = r.final_state() else {
            // ENROUTE, ACCEPTED: the message is still on its way, which an ESME that
            // asked for intermediate notifications hears (as it does of our retries).
            let stat = ReceiptStat::from_message_state(r.state);
            if let Some(stat) = stat
                && RegisteredDelivery(m.registered_delivery).wants_intermediate()
                && !self.notify_receipt(&m, stat, r.error_code, now, from_http(&m)).await
            {
                return LATER;
            }
            return CommandStatus::ESME_ROK;
        };
        loop {
            let update = Update {
                state: Some(reported),
                error_code: Some(r.error_code),
                final_at: Some(now),
                ..Update::default()
            };
            let Some(applied) = store_until_ok("upstream_final", &self.shutdown, || {
                self.store.transition(&m.message_id, m.dest_index, m.state, update.clone())
            })
            .await
            else {
                return LATER;
            };
            match applied {
                // Ours, also when an attempt that timed out applied it.
                ref a if a.applied_or_already(&update) => {
                    if !self.finished(&m, reported, r.error_code, now).await {
                        return LATER;
                    }
                    self.mark_handled(connector, &key, r.park_ttl).await;
                    return CommandStatus::ESME_ROK;
                }
                Applied::No(Some(row)) if !row.state.is_final() => m = row,
                // Ended by someone else (its expiry, or this receipt handled twice at
                // once), who sent the receipt.
                _ => return CommandStatus::ESME_ROK,
            }
        }
    }

    /// An MO from upstream `connector`, onto `smsc.mo` like the simulator's.
    async fn upstream_mo(&self, connector: &str, mo: MoEvent) -> CommandStatus {
        let key = mo.dest.as_ref().map(|a| a.addr.clone()).unwrap_or_default();
        let record = Record::new(Bytes::from(key.into_bytes()), Bytes::from(mo.encode_to_vec()));
        let published = tokio::time::timeout(
            MO_PUBLISH_TIMEOUT,
            self.bus.publish(self.topics.mo(), vec![record]),
        )
        .await;
        let ok = matches!(published, Ok(Ok(())));
        let label = if ok { "published" } else { "failed" };
        self.upstream_metrics.mo_total.with_label_values(&[connector, label]).inc();
        if ok { CommandStatus::ESME_ROK } else { CommandStatus::ESME_RX_T_APPN }
    }

    /// Another worker holds the message. Come back after the first tier; if the holder
    /// has not moved it by then (same attempt count), it died mid-delivery and nobody can
    /// know whether the network got it: the message ends UNKNOWN rather than risk a
    /// duplicate to the network.
    async fn held_elsewhere(&self, task: DeliveryTask, m: &StoredMessage, flow: &Flow) -> bool {
        if task.check_claim && task.seen_claim == m.attempts {
            let now = self.clock.now_ms();
            let update = Update {
                state: Some(DeliveryState::Unknown),
                final_at: Some(now),
                ..Update::default()
            };
            return match store_until_ok("unknown", &self.shutdown, || {
                self.store.transition(
                    &m.message_id,
                    m.dest_index,
                    DeliveryState::InDelivery,
                    update.clone(),
                )
            })
            .await
            {
                Some(a) if a.applied_or_already(&update) => {
                    warn!(message_id = %m.message_id, "holder died mid-delivery; message state UNKNOWN");
                    self.metrics.final_total.with_label_values(&["UNKNOWN"]).inc();
                    self.closed(m, DeliveryState::Unknown, 0, now).await
                }
                Some(_) => true,
                None => false,
            };
        }
        let check = DeliveryTask { check_claim: true, seen_claim: m.attempts, ..task };
        self.requeue(check, self.topics.tiers.for_attempt(1), None, flow).await
    }

    async fn requeue(
        &self,
        task: DeliveryTask,
        (delay, topic): (Duration, &str),
        wait: Option<Duration>,
        flow: &Flow,
    ) -> bool {
        let key = Bytes::from(task.message_id.clone().into_bytes());
        let mut record = Record::new(key, Bytes::from(task.encode_to_vec()));
        flow.mark(&mut record);
        let now = self.clock.now_ms();
        record.not_before =
            Some(smsc_runtime::clock::after(now, wait.map_or(delay, |w| w.min(delay))));
        publish_until_ok(&*self.bus, topic, vec![record], &self.shutdown).await
    }

    /// The final write, then the receipt.
    async fn finish(
        &self,
        m: &StoredMessage,
        from: DeliveryState,
        outcome: Outcome,
        now: i64,
    ) -> bool {
        let (state, _, error_code) = final_of(outcome);
        self.finish_as(m, from, state, error_code, now).await
    }

    /// The final write of `state`, then the receipt.
    async fn finish_as(
        &self,
        m: &StoredMessage,
        from: DeliveryState,
        state: DeliveryState,
        error_code: u16,
        now: i64,
    ) -> bool {
        let update = Update {
            state: Some(state),
            error_code: Some(error_code),
            final_at: Some(now),
            ..Update::default()
        };
        let Some(applied) = store_until_ok("finish", &self.shutdown, || {
            self.store.transition(&m.message_id, m.dest_index, from, update.clone())
        })
        .await
        else {
            return false;
        };
        // Not applied: someone else ended it and sent its receipt; unless the row holds
        // this very write, applied by an attempt whose answer was lost: then the receipt
        // is ours to send.
        if !applied.applied_or_already(&update) {
            return true;
        }
        self.finished(m, state, error_code, now).await
    }

    /// After a final write applied: the metrics, and the receipt.
    async fn finished(
        &self,
        m: &StoredMessage,
        state: DeliveryState,
        error_code: u16,
        now: i64,
    ) -> bool {
        let label = state.name();
        self.metrics.final_total.with_label_values(&[label]).inc();
        self.metrics.end_to_end_seconds.observe((now - m.submitted_at).max(0) as f64 / 1000.0);
        self.closed(m, state, error_code, now).await
    }

    /// What a final state sends: its CDR and the receipt (if asked for), at once. Also
    /// for a message seen final again (after a crash, or cancelled at the edge): both go
    /// again, the CDR with the same idempotency key.
    async fn closed(
        &self,
        m: &StoredMessage,
        state: DeliveryState,
        error_code: u16,
        at: i64,
    ) -> bool {
        let account = self.accounts.get(&m.system_id);
        // The class the account's settings give the message, as the edge did.
        let class = |priority| account.map_or(Class::default(), |a| a.class_of(priority)).name();
        // Decoded once for both: the CDR reads it, and the receipt's route depends on it.
        let event = SubmitEvent::decode(m.event.clone()).ok();
        let http = event.as_ref().is_some_and(|e| e.command == HTTP_ORIGIN);
        let cdr = smsc_store::cdr::record(m, event.as_ref(), state, error_code, at, class);
        let record = Record::new(
            Bytes::from(cdr.idempotency_key.clone().into_bytes()),
            Bytes::from(cdr.encode_to_vec()),
        );
        let published =
            publish_until_ok(&*self.bus, self.topics.cdr(), vec![record], &self.shutdown);
        let receipt = self.receipt(m, state, error_code, at, http);
        let (published, receipt) = tokio::join!(published, receipt);
        published && receipt
    }

    /// The final receipt, if the message asked for one.
    /// The final receipt of `m` (`http`: submitted over the HTTP API), if it asked for one.
    async fn receipt(
        &self,
        m: &StoredMessage,
        state: DeliveryState,
        error_code: u16,
        at: i64,
        http: bool,
    ) -> bool {
        let Some(stat) = ReceiptStat::from_message_state(state.to_smpp()) else { return true };
        if RegisteredDelivery(m.registered_delivery)
            .wants_receipt(state == DeliveryState::Delivered)
        {
            return self.notify_receipt(m, stat, error_code, at, http).await;
        }
        true
    }

    /// A receipt on `smsc.notify`: for the account's webhook when `http` (an HTTP API
    /// submit's), else for its SMPP receivers.
    async fn notify_receipt(
        &self,
        m: &StoredMessage,
        stat: ReceiptStat,
        error_code: u16,
        at: i64,
        http: bool,
    ) -> bool {
        let Some(pdu) = receipt::deliver_sm(m, stat, error_code, at) else {
            warn!(message_id = %m.message_id, "receipt does not fit a deliver_sm");
            return true;
        };
        let kind = if http { NotificationKind::WebhookReceipt } else { NotificationKind::Receipt };
        let n = Notification {
            system_id: m.system_id.clone(),
            kind: kind as i32,
            message_id: m.message_id.clone(),
            deliver_sm: pdu.to_vec(),
            created_at_ms: at,
        };
        // Keyed by message: receipts of one account need no order among themselves, and
        // a system_id key would put all of a busy account's receipts in one lane.
        let mut record = Record::new(
            Bytes::from(m.message_id.clone().into_bytes()),
            Bytes::from(n.encode_to_vec()),
        );
        // Receipts are scheduled by account; their class is the standard one.
        let account = Bytes::copy_from_slice(m.system_id.as_bytes());
        Flow::new(Class::Standard, account).mark(&mut record);
        publish_until_ok(&*self.bus, self.topics.notify(), vec![record], &self.shutdown).await
    }
}

#[cfg(test)]
mod tests;

impl Inbound for Worker {
    fn receipt<'a>(
        &'a self,
        connector: &'a str,
        receipt: UpstreamReceipt,
    ) -> futures::future::BoxFuture<'a, CommandStatus> {
        Box::pin(self.upstream_receipt(connector, receipt))
    }

    fn mo<'a>(
        &'a self,
        connector: &'a str,
        mo: MoEvent,
    ) -> futures::future::BoxFuture<'a, CommandStatus> {
        Box::pin(self.upstream_mo(connector, mo))
    }
}
