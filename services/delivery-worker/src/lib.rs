//! The delivery worker: consumes delivery tasks (`smsc.deliver` and the retry tiers),
//! hands each message to its connector exactly once, moves it to its final state with
//! conditional writes, retries temporary failures on the delayed tiers, and emits
//! receipts. Its dispatcher consumes `smsc.notify` and pushes receipts and MO to the
//! edge that holds a receiver bind of the account, keeping them pending in the store
//! while none does.
//!
//! A message's life here, all transitions `IF state = <read state>`:
//! `ENROUTE|SCHEDULED → IN_DELIVERY` (the claim; only the claimer calls the network)
//! `→ DELIVERED | UNDELIVERABLE | EXPIRED` (final, then the receipt), or
//! `→ ENROUTE` (temporary failure; a retry task is on a tier first).
#![forbid(unsafe_code)]

pub mod connector;
pub mod dispatch;
pub mod receipt;
pub mod simulator;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use smsc_common::bus::{Bus, BusError, Delivery, Record, topics};
use smsc_common::pipeline::{Tiers, publish_until_ok, run_lanes, store_until_ok};
use smsc_common::store::{Applied, Clock, IN_DELIVERY, Store, StoredMessage, Update};
use smsc_common::telemetry::Metrics;
use smsc_proto::{DeliveryTask, Notification, NotificationKind};
use smsc_smpp::receipt::ReceiptStat;
use smsc_smpp::{MessageState, RegisteredDelivery};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use connector::{Connector, Connectors, Outcome};

/// Consumer group of the delivery workers.
pub const GROUP: &str = "smsc-worker";

#[derive(Debug)]
pub struct Worker {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub connectors: Connectors,
    pub tiers: Tiers,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// Runs delivery until `shutdown`, `lanes` tasks in progress (per destination in order).
pub async fn run(worker: Arc<Worker>, lanes: usize, max_in_flight: usize) -> Result<(), BusError> {
    let mut topics: Vec<String> = vec![topics::DELIVER.to_owned()];
    topics.extend(worker.tiers.topics());
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let consumer = worker.bus.consumer(GROUP, &names, max_in_flight)?;
    let shutdown = worker.shutdown.clone();
    run_lanes(consumer, lanes, max_in_flight, shutdown, move |d: Delivery| {
        let worker = worker.clone();
        async move { worker.task(&d.record.payload).await }
    })
    .await;
    Ok(())
}

/// `ms` (Unix milliseconds, as the [`Clock`] counts) as a `SystemTime`: `not_before` is
/// stamped on the injected clock, the one the bus compares it with.
fn instant(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The final state and receipt word of an outcome.
fn final_of(o: Outcome) -> (MessageState, ReceiptStat, u16) {
    match o {
        Outcome::Delivered => (MessageState::DELIVERED, ReceiptStat::Delivered, 0),
        Outcome::Permanent { error_code } => {
            (MessageState::UNDELIVERABLE, ReceiptStat::Undeliverable, error_code)
        }
        Outcome::Temporary { error_code } => {
            (MessageState::EXPIRED, ReceiptStat::Expired, error_code)
        }
    }
}

impl Worker {
    /// One delivery task. Returns when its effects are durable (or at shutdown, leaving
    /// the task unacked for redelivery).
    pub async fn task(&self, payload: &Bytes) -> bool {
        let task = match DeliveryTask::decode(payload.clone()) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "undecodable delivery task dropped");
                return true;
            }
        };
        let Some(rows) = store_until_ok("get_message", &self.shutdown, || {
            self.store.get_message(&task.message_id)
        })
        .await
        else {
            return false;
        };
        let Some(m) = rows.into_iter().find(|m| m.dest_index == task.dest_index) else {
            warn!(message_id = %task.message_id, "delivery task for a message the store does not have (expired?)");
            return true;
        };
        let now = self.clock.now_ms();
        if m.state.is_final() {
            // A task seen again after a crash between the final write and its ack: the
            // receipt may not have gone out, so it goes (again). Receipts may repeat.
            return self.receipt(&m, m.state, m.error_code, m.final_at.unwrap_or(now)).await;
        }
        if m.state == IN_DELIVERY {
            let holder_gave_up = !task.check_claim && task.attempt == m.attempts;
            if !holder_gave_up {
                return self.held_elsewhere(task, &m).await;
            }
            // The holder scheduled this retry and died before writing ENROUTE: its
            // attempt failed temporarily, so the message is free to try again.
        } else if let Some(at) = m.schedule_at.filter(|at| *at > now) {
            let wait = Duration::from_millis((at - now) as u64);
            return self.requeue(task, self.tiers.for_wait(wait), Some(wait)).await;
        }
        if now >= m.expire_at {
            return self
                .finish(&m, m.state, Outcome::Temporary { error_code: m.error_code }, now)
                .await;
        }
        if task.connectors.is_empty() {
            return self.finish(&m, m.state, Outcome::Permanent { error_code: 0 }, now).await;
        }
        // The claim: only the worker whose write applies hands the message to the network.
        let attempt = m.attempts + 1;
        let claim =
            Update { state: Some(IN_DELIVERY), attempts: Some(attempt), ..Update::default() };
        let Some(applied) = store_until_ok("claim", &self.shutdown, || {
            self.store.transition(&m.message_id, m.dest_index, m.state, claim.clone())
        })
        .await
        else {
            return false;
        };
        match applied {
            Applied::Yes => {}
            // Someone holds it: possibly this very claim, applied by an attempt that timed
            // out. Either way the holder check settles it without a second handoff.
            Applied::No(Some(row)) if row.state == IN_DELIVERY => {
                return self.held_elsewhere(task, &row).await;
            }
            Applied::No(_) => {
                debug!(message_id = %m.message_id, "claim lost (cancelled, or another worker)");
                return true;
            }
        }
        let outcome = self.call_connectors(&task.connectors, &m, attempt).await;
        let now = self.clock.now_ms();
        match outcome {
            Outcome::Temporary { error_code } => {
                let (delay, topic) = self.tiers.for_attempt(attempt);
                if now.saturating_add(delay.as_millis() as i64) >= m.expire_at {
                    return self.finish(&m, IN_DELIVERY, outcome, now).await;
                }
                // The retry task first, then ENROUTE: a crash in between leaves a task
                // that finds IN_DELIVERY with its own attempt count and carries on.
                let retry = DeliveryTask { attempt, check_claim: false, seen_claim: 0, ..task };
                let mut record = Record::new(
                    Bytes::from(m.dest.addr.clone().into_bytes()),
                    Bytes::from(retry.encode_to_vec()),
                );
                record.not_before = Some(instant(now) + delay);
                if !publish_until_ok(&*self.bus, topic, vec![record], &self.shutdown).await {
                    return false;
                }
                self.metrics
                    .worker
                    .retries_total
                    .with_label_values(&[topic.trim_start_matches("smsc.retry.")])
                    .inc();
                let back = Update {
                    state: Some(MessageState::ENROUTE),
                    error_code: Some(error_code),
                    ..Update::default()
                };
                let released = store_until_ok("release", &self.shutdown, || {
                    self.store.transition(&m.message_id, m.dest_index, IN_DELIVERY, back.clone())
                })
                .await
                .is_some();
                if released && RegisteredDelivery(m.registered_delivery).wants_intermediate() {
                    return self.notify_receipt(&m, ReceiptStat::Enroute, error_code, now).await;
                }
                released
            }
            _ => self.finish(&m, IN_DELIVERY, outcome, now).await,
        }
    }

    /// Tries the route's connectors in order; a connector this worker does not have is
    /// skipped (failover), and if none is left the attempt counts as a temporary failure.
    async fn call_connectors(&self, names: &[String], m: &StoredMessage, attempt: u32) -> Outcome {
        for name in names {
            let Some(c) = self.connectors.get(name) else { continue };
            let outcome = c.deliver(m, attempt).await;
            let label = match outcome {
                Outcome::Delivered => "delivered",
                Outcome::Temporary { .. } => "temporary",
                Outcome::Permanent { .. } => "permanent",
            };
            self.metrics.worker.deliveries_total.with_label_values(&[name, label]).inc();
            return outcome;
        }
        warn!(message_id = %m.message_id, ?names, "no configured connector on the route");
        Outcome::Temporary { error_code: 0 }
    }

    /// Another worker holds the message. Come back after the first tier; if the holder
    /// has not moved it by then (same attempt count), it died mid-delivery and nobody can
    /// know whether the network got it: the message ends UNKNOWN rather than risk a
    /// duplicate to the network.
    async fn held_elsewhere(&self, task: DeliveryTask, m: &StoredMessage) -> bool {
        if task.check_claim && task.seen_claim == m.attempts {
            let now = self.clock.now_ms();
            let update = Update {
                state: Some(MessageState::UNKNOWN),
                final_at: Some(now),
                ..Update::default()
            };
            return match store_until_ok("unknown", &self.shutdown, || {
                self.store.transition(&m.message_id, m.dest_index, IN_DELIVERY, update.clone())
            })
            .await
            {
                Some(Applied::Yes) => {
                    warn!(message_id = %m.message_id, "holder died mid-delivery; message state UNKNOWN");
                    self.metrics.worker.final_total.with_label_values(&["UNKNOWN"]).inc();
                    self.receipt(m, MessageState::UNKNOWN, 0, now).await
                }
                Some(Applied::No(_)) => true,
                None => false,
            };
        }
        let check = DeliveryTask { check_claim: true, seen_claim: m.attempts, ..task };
        self.requeue(check, self.tiers.for_attempt(1), None).await
    }

    async fn requeue(
        &self,
        task: DeliveryTask,
        (delay, topic): (Duration, &str),
        wait: Option<Duration>,
    ) -> bool {
        let key = Bytes::from(task.message_id.clone().into_bytes());
        let mut record = Record::new(key, Bytes::from(task.encode_to_vec()));
        let now = self.clock.now_ms();
        record.not_before = Some(instant(now) + wait.map_or(delay, |w| w.min(delay)));
        publish_until_ok(&*self.bus, topic, vec![record], &self.shutdown).await
    }

    /// The final write, then the receipt.
    async fn finish(
        &self,
        m: &StoredMessage,
        from: MessageState,
        outcome: Outcome,
        now: i64,
    ) -> bool {
        let (state, _, error_code) = final_of(outcome);
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
        if !applied.applied() {
            return true;
        }
        let label = state.name().unwrap_or("other");
        self.metrics.worker.final_total.with_label_values(&[label]).inc();
        self.metrics
            .worker
            .end_to_end_seconds
            .observe((now - m.submitted_at).max(0) as f64 / 1000.0);
        self.receipt(m, state, error_code, now).await
    }

    /// The final receipt, if the message asked for one.
    async fn receipt(
        &self,
        m: &StoredMessage,
        state: MessageState,
        error_code: u16,
        at: i64,
    ) -> bool {
        let Some(stat) = ReceiptStat::from_message_state(state) else { return true };
        if RegisteredDelivery(m.registered_delivery).wants_receipt(state == MessageState::DELIVERED)
        {
            return self.notify_receipt(m, stat, error_code, at).await;
        }
        true
    }

    async fn notify_receipt(
        &self,
        m: &StoredMessage,
        stat: ReceiptStat,
        error_code: u16,
        at: i64,
    ) -> bool {
        let Some(pdu) = receipt::deliver_sm(m, stat, error_code, at) else {
            warn!(message_id = %m.message_id, "receipt does not fit a deliver_sm");
            return true;
        };
        let n = Notification {
            system_id: m.system_id.clone(),
            kind: NotificationKind::Receipt as i32,
            message_id: m.message_id.clone(),
            deliver_sm: pdu.to_vec(),
            created_at_ms: at,
        };
        // Keyed by message: receipts of one account need no order among themselves, and
        // a system_id key would put all of a busy account's receipts in one lane.
        let record = Record::new(
            Bytes::from(m.message_id.clone().into_bytes()),
            Bytes::from(n.encode_to_vec()),
        );
        publish_until_ok(&*self.bus, topics::NOTIFY, vec![record], &self.shutdown).await
    }
}
