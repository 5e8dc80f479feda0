//! [`KafkaConsumer`]: one member of a consumer group, with its own driver thread, records
//! buffered per assigned partition, and offsets stored only for the acked prefix.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::headers::decode;
use super::{
    ADMIN_TIMEOUT, BUFFERED_PER_PARTITION, DRIVER_POLL, KafkaBusConfig, MAX_SLEEP, log_to_tracing,
    unavailable,
};
use crate::{BusError, Consumer, Delivery};

/// What a consumer knows about one assigned partition.
#[derive(Debug, Default)]
struct PartitionState {
    /// Polled, not handed out yet; the head may not be due.
    buffered: VecDeque<Delivery>,
    /// Handed out, in offset order, with whether each is acked. The acked prefix is
    /// popped as its offsets are stored.
    handed: VecDeque<(u64, bool)>,
    /// The offset after the last polled record: anything below is a refetch.
    next_fetch: u64,
    /// Whether we asked librdkafka to pause it.
    paused: bool,
}

impl PartitionState {
    /// When the head of the buffer is due, if it is not yet.
    fn head_not_due(&self, now: SystemTime) -> Option<SystemTime> {
        let at = self.buffered.front()?.record.not_before?;
        (at > now).then_some(at)
    }

    fn should_pause(&self, now: SystemTime) -> bool {
        self.buffered.len() >= BUFFERED_PER_PARTITION || self.head_not_due(now).is_some()
    }
}

#[derive(Debug, Default)]
struct ConsumerState {
    /// Assigned partitions by topic, then partition.
    partitions: HashMap<String, BTreeMap<i32, PartitionState>>,
    /// The same, in a fixed order for round-robin.
    order: Vec<(String, i32)>,
    /// Handed out and not acked, over the assigned partitions.
    in_flight: usize,
    /// The first assignment came (the member has joined).
    joined: bool,
    /// A fatal consumer error: `recv` reports it.
    fatal: Option<String>,
    /// Lag per topic over the assigned partitions, from librdkafka's statistics.
    lag: Vec<(String, u64)>,
}

impl ConsumerState {
    fn partition(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        self.partitions.get_mut(topic)?.get_mut(&partition)
    }

    fn reorder(&mut self) {
        self.order = self
            .partitions
            .iter()
            .flat_map(|(t, ps)| ps.keys().map(move |p| (t.clone(), *p)))
            .collect();
        self.order.sort();
    }
}

#[derive(Debug)]
struct ConsumerShared {
    group: String,
    state: Mutex<ConsumerState>,
    /// Signalled with `state` when `joined` turns true.
    joined: Condvar,
    /// Wakes a waiting `recv`: records came, or the assignment changed.
    notify: Notify,
    stop: AtomicBool,
}

impl ConsumerShared {
    fn lock(&self) -> MutexGuard<'_, ConsumerState> {
        // Every update completes without panicking, so a poisoned state is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type KafkaBaseConsumer = BaseConsumer<GroupContext>;

/// Pauses or resumes one partition, as `state` says it should be. Called with the state
/// locked so that the pause/resume calls reach librdkafka in the order they were decided.
fn set_paused(
    consumer: &KafkaBaseConsumer,
    topic: &str,
    partition: i32,
    state: &mut PartitionState,
    pause: bool,
) {
    if state.paused == pause {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let result = if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    match result {
        Ok(()) => state.paused = pause,
        Err(error) => tracing::warn!(topic, partition, pause, %error, "pause/resume failed"),
    }
}

/// The rebalance callbacks, run on the driver thread inside `poll`.
struct GroupContext {
    shared: Arc<ConsumerShared>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(group = %self.shared.group, %error, reason, "kafka consumer error");
    }

    /// Keeps the lag of the partitions this member holds: to the offset stored after the
    /// last acked record (a second fresher than the committed one, which the fairness
    /// of the hops reads), else to the committed one; librdkafka reports -1 while it
    /// does not know it yet: left out.
    fn stats(&self, statistics: Statistics) {
        let mut state = self.shared.lock();
        let mut lag = Vec::new();
        for (topic, t) in &statistics.topics {
            let Some(assigned) = state.partitions.get(topic) else { continue };
            let sum: u64 = t
                .partitions
                .iter()
                .filter(|(p, _)| assigned.contains_key(p))
                .filter_map(|(_, p)| {
                    let lag = if p.consumer_lag_stored >= 0 {
                        p.consumer_lag_stored
                    } else {
                        p.consumer_lag
                    };
                    u64::try_from(lag).ok()
                })
                .sum();
            lag.push((topic.clone(), sum));
        }
        state.lag = lag;
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &KafkaBaseConsumer, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let mut state = self.shared.lock();
        for elem in revoked.elements() {
            let removed =
                state.partitions.get_mut(elem.topic()).and_then(|ps| ps.remove(&elem.partition()));
            if let Some(removed) = removed {
                // Its unacked records go to the next owner; later acks are ignored.
                let unacked = removed.handed.iter().filter(|(_, acked)| !acked).count();
                state.in_flight = state.in_flight.saturating_sub(unacked);
            }
        }
        state.partitions.retain(|_, ps| !ps.is_empty());
        state.reorder();
        // Commit the acked prefix now, before the partitions move (librdkafka would
        // on unassign too; a sync commit makes the order certain). Nothing stored is
        // not an error.
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(error) => tracing::warn!(group = %self.shared.group, %error, "commit on revoke"),
        }
        drop(state);
        self.shared.notify.notify_one();
    }

    fn post_rebalance(&self, consumer: &KafkaBaseConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                // librdkafka keeps an application pause across assignments: start clean.
                if let Err(error) = consumer.resume(assigned) {
                    tracing::debug!(%error, "resume on assign");
                }
                let mut state = self.shared.lock();
                for elem in assigned.elements() {
                    state
                        .partitions
                        .entry(elem.topic().to_owned())
                        .or_default()
                        .entry(elem.partition())
                        .or_default();
                }
                state.reorder();
                state.joined = true;
                tracing::debug!(group = %self.shared.group, partitions = ?state.order, "assigned");
                drop(state);
                self.shared.joined.notify_all();
                self.shared.notify.notify_one();
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.shared.group, %error, "rebalance error");
            }
        }
    }
}

/// A member of a consumer group on Kafka. See the module doc.
pub struct KafkaConsumer {
    shared: Arc<ConsumerShared>,
    /// Shared with the driver thread, which drops the last reference (closing the
    /// consumer: final commit, leave group).
    consumer: Option<Arc<KafkaBaseConsumer>>,
    driver_done: mpsc::Receiver<()>,
    max_in_flight: usize,
    next_start: usize,
    close_timeout: Duration,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("group", &self.shared.group)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

enum Step {
    Ready(Delivery),
    /// Nothing to hand out: wait for a notification, or at most this long.
    Wait(Option<Duration>),
    Failed(BusError),
}

impl KafkaConsumer {
    pub(super) fn join(
        config: &KafkaBusConfig,
        group: &str,
        topics: &[&str],
        max_in_flight: usize,
    ) -> Result<Self, BusError> {
        let shared = Arc::new(ConsumerShared {
            group: group.to_owned(),
            state: Mutex::default(),
            joined: Condvar::new(),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
        });
        let context = GroupContext { shared: Arc::clone(&shared) };
        let consumer: KafkaBaseConsumer = config
            .consumer(group)
            .create_with_context(context)
            .map_err(|e| unavailable("creating the consumer", &e))?;
        consumer.subscribe(topics).map_err(|e| unavailable("subscribing", &e))?;
        let consumer = Arc::new(consumer);

        let (done_tx, driver_done) = mpsc::channel();
        let driver_consumer = Arc::clone(&consumer);
        let driver_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("kafka-{group}"))
            .spawn(move || drive(driver_consumer, driver_shared, done_tx))
            .map_err(|e| BusError::unavailable_by("starting the consumer thread", e))?;

        let mut this = Self {
            shared,
            consumer: Some(consumer),
            driver_done,
            max_in_flight: max_in_flight.max(1),
            next_start: 0,
            close_timeout: config.session_timeout + ADMIN_TIMEOUT,
        };
        let joined = {
            let state = this.shared.lock();
            let (state, _) = this
                .shared
                .joined
                .wait_timeout_while(state, config.join_timeout, |s| !s.joined)
                .unwrap_or_else(PoisonError::into_inner);
            state.joined
        };
        if !joined {
            tracing::warn!(group, ?topics, timeout = ?config.join_timeout, "consumer did not join");
            this.close();
            return Err(BusError::Timeout);
        }
        Ok(this)
    }

    fn try_next(&mut self) -> Step {
        let Some(consumer) = self.consumer.as_deref() else {
            return Step::Failed(BusError::Closed);
        };
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if let Some(fatal) = &state.fatal {
            return Step::Failed(BusError::unavailable(format!("fatal consumer error: {fatal}")));
        }
        if state.in_flight >= self.max_in_flight {
            // Only an `ack` (not while `recv` borrows us) or a revoke frees a slot.
            return Step::Wait(None);
        }
        let now = SystemTime::now();
        let mut earliest: Option<SystemTime> = None;
        let n = state.order.len();
        for i in 0..n {
            let idx = (self.next_start + i) % n;
            let (topic, p) = &state.order[idx];
            let Some(part) = state.partitions.get_mut(topic).and_then(|ps| ps.get_mut(p)) else {
                continue;
            };
            if let Some(at) = part.head_not_due(now) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                continue;
            }
            let Some(delivery) = part.buffered.pop_front() else { continue };
            part.handed.push_back((delivery.offset, false));
            let pause = part.should_pause(now);
            set_paused(consumer, topic, *p, part, pause);
            state.in_flight += 1;
            self.next_start = idx + 1;
            return Step::Ready(delivery);
        }
        let wait = earliest.map(|at| at.duration_since(now).unwrap_or_default().min(MAX_SLEEP));
        Step::Wait(wait)
    }

    /// Stops the driver and waits (bounded) until it has committed and left the group.
    fn close(&mut self) {
        if self.consumer.take().is_none() {
            return;
        }
        self.shared.stop.store(true, Ordering::Release);
        if self.driver_done.recv_timeout(self.close_timeout).is_err() {
            tracing::warn!(group = %self.shared.group, "consumer did not close in time");
        }
    }
}

/// The driver thread: polls, which also runs the rebalance callbacks, and buffers what
/// comes. On stop: commits, then drops the last reference to the consumer, which closes
/// it (revoke callback, leave group).
fn drive(consumer: Arc<KafkaBaseConsumer>, shared: Arc<ConsumerShared>, done: mpsc::Sender<()>) {
    while !shared.stop.load(Ordering::Acquire) {
        match consumer.poll(DRIVER_POLL) {
            None => {}
            Some(Ok(message)) => buffer(&consumer, &shared, &message),
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                tracing::error!(group = %shared.group, %code, "fatal consumer error");
                shared.lock().fatal = Some(code.to_string());
                shared.notify.notify_one();
            }
            Some(Err(error)) => tracing::warn!(group = %shared.group, %error, "consume error"),
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
        Err(error) => tracing::warn!(group = %shared.group, %error, "commit on close"),
    }
    drop(consumer);
    let _ = done.send(());
}

fn buffer(consumer: &KafkaBaseConsumer, shared: &ConsumerShared, message: &BorrowedMessage<'_>) {
    let (Ok(offset), topic, p) =
        (u64::try_from(message.offset()), message.topic(), message.partition())
    else {
        return;
    };
    let mut state = shared.lock();
    // Not ours any more (revoked since it was fetched), or a refetch after a resume.
    let Some(part) = state.partition(topic, p) else { return };
    if offset < part.next_fetch {
        return;
    }
    part.next_fetch = offset + 1;
    part.buffered.push_back(decode(message));
    let pause = part.should_pause(SystemTime::now());
    set_paused(consumer, topic, p, part, pause);
    drop(state);
    shared.notify.notify_one();
}

impl Consumer for KafkaConsumer {
    /// Cancel-safe: nothing changes until a delivery is returned.
    fn recv(&mut self) -> BoxFuture<'_, Result<Delivery, BusError>> {
        Box::pin(async move {
            loop {
                let wait = match self.try_next() {
                    Step::Ready(delivery) => return Ok(delivery),
                    Step::Failed(error) => return Err(error),
                    Step::Wait(wait) => wait,
                };
                // `notify_one` leaves a permit when nobody waits, so a notification sent
                // since `try_next` looked is not lost.
                let shared = Arc::clone(&self.shared);
                match wait {
                    Some(delay) => {
                        tokio::select! {
                            () = shared.notify.notified() => {}
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    None => shared.notify.notified().await,
                }
            }
        })
    }

    fn lag_probe(&self) -> Option<crate::LagProbe> {
        let shared = Arc::clone(&self.shared);
        Some(Box::new(move || shared.lock().lag.clone()))
    }

    /// Acking what this consumer does not hold (twice, never handed out, or revoked
    /// since) does nothing.
    fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let Some(consumer) = self.consumer.as_deref() else { return Err(BusError::Closed) };
        let Ok(p) = i32::try_from(delivery.partition) else { return Ok(()) };
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let Some(part) = state.partition(&delivery.topic, p) else { return Ok(()) };
        let Ok(i) = part.handed.binary_search_by_key(&delivery.offset, |(o, _)| *o) else {
            return Ok(());
        };
        if std::mem::replace(&mut part.handed[i].1, true) {
            return Ok(());
        }
        let mut store = None;
        while let Some(&(offset, true)) = part.handed.front() {
            part.handed.pop_front();
            store = Some(offset + 1);
        }
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(next) = store {
            let next = i64::try_from(next).unwrap_or(i64::MAX);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&delivery.topic, p, Offset::Offset(next))
                .map_err(|e| unavailable("storing an offset", &e))?;
            // Under the state lock: a revoke (which takes it) cannot slip in between the
            // check above and the store.
            consumer.store_offsets(&tpl).map_err(|e| unavailable("storing an offset", &e))?;
        }
        Ok(())
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        self.close();
    }
}
