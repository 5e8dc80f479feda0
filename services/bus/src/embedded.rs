//! An in-process [`Bus`] with the semantics of the Kafka one, for `smsc all` and tests.
//!
//! Each topic is a set of partitions (fixed at first use); a partition is an append-only
//! log addressed by offset. Every consumer group that ever subscribed to a topic keeps a
//! cursor per partition: the committed offset, the fetch position of its current owner
//! and the acks above the committed offset. The log is trimmed below the lowest committed
//! offset of all groups, and `publish` answers [`BusError::Full`] rather than let any
//! group's uncommitted lag pass `max_lag`, so memory stays bounded.
//!
//! **Not durable across process restarts**: "durable" here means appended in memory. A
//! group stays registered (its committed offsets kept, its lag bounding publishers) until
//! the bus is dropped, as Kafka keeps a group's offsets after its last member left.
//!
//! Time: `not_before` is compared with the injected [`Clock`]; waiting uses
//! `tokio::time::sleep`, so tests drive it with a manual clock and paused tokio time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keys here are our own (topic names, offsets): no need for SipHash's DoS resistance.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::{Bus, BusError, Consumer, Delivery, Record};
use smsc_runtime::clock::{Clock, SystemClock, UnixMillis};

/// The longest a waiting consumer sleeps before looking at the clock again, so that a
/// wall-clock step (NTP) delays a due record by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedBusConfig {
    /// Partitions of a topic, fixed when the topic is first used. 0 is taken as 1.
    pub partitions: u32,
    /// How many records a registered group may have behind its committed offset on one
    /// partition before `publish` answers [`BusError::Full`]; also how many records a
    /// topic that no group reads retains. 0 is taken as 1.
    pub max_lag: usize,
}

impl Default for EmbeddedBusConfig {
    fn default() -> Self {
        Self { partitions: 8, max_lag: 10_000 }
    }
}

/// The in-process bus. Cheap to clone: clones share the topics and groups.
#[derive(Clone)]
pub struct EmbeddedBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("config", &self.shared.config)
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Shared {
    config: EmbeddedBusConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below completes without panicking, so a poisoned state is still
        // consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type MemberId = u64;

#[derive(Debug, Default)]
struct State {
    closed: bool,
    topics: FastMap<Arc<str>, Topic>,
    groups: FastMap<Arc<str>, Group>,
    next_member: MemberId,
}

#[derive(Debug)]
struct Topic {
    partitions: Vec<Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offset of `log[0]`.
    base: u64,
    log: VecDeque<Record>,
    /// The place of every group registered on the topic, by group name.
    cursors: FastMap<Arc<str>, Cursor>,
}

#[derive(Debug)]
struct Cursor {
    /// Every offset below it is acked.
    committed: u64,
    /// The next offset to hand to the owner; `committed <= fetch <= end`.
    fetch: u64,
    /// Acked offsets in `committed..fetch`, waiting for the gap below them to fill.
    acked: BTreeSet<u64>,
    owner: Option<MemberId>,
}

#[derive(Debug, Default)]
struct Group {
    /// Every topic the group ever subscribed to: it has cursors there.
    topics: BTreeSet<Arc<str>>,
    /// By join order, which is the round-robin order of the assignment.
    members: BTreeMap<MemberId, Member>,
}

#[derive(Debug)]
struct Member {
    topics: BTreeSet<Arc<str>>,
    assigned: Vec<(Arc<str>, u32)>,
    notify: Arc<Notify>,
    /// Counts what may have made a record available to this member (records appended
    /// to its partitions, a new assignment, closing): a consumer that found nothing
    /// does not scan its partitions again until it moves.
    changes: AtomicU64,
}

impl Member {
    /// Something may be there for this member now.
    fn wake(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }
}

/// Below this many slots a log or table is not worth shrinking.
const SHRINK_FLOOR: usize = 1024;

impl Partition {
    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// Frees records every group has committed; with no group, keeps the last `max_lag`.
    fn trim(&mut self, max_lag: u64) {
        let keep_from = match self.cursors.values().map(|c| c.committed).min() {
            Some(committed) => committed,
            None => self.end().saturating_sub(max_lag),
        };
        while self.base < keep_from && self.log.pop_front().is_some() {
            self.base += 1;
        }
        // A burst leaves the ring sized for its peak; hand that back once it drained.
        if self.log.capacity() > 4 * self.log.len().max(SHRINK_FLOOR) {
            self.log.shrink_to(2 * self.log.len());
        }
    }
}

impl State {
    /// The interned name of `name`, creating the topic on first use.
    fn topic(&mut self, name: &str, partitions: u32) -> Arc<str> {
        if let Some((key, _)) = self.topics.get_key_value(name) {
            return Arc::clone(key);
        }
        let key: Arc<str> = Arc::from(name);
        let partitions = (0..partitions).map(|_| Partition::default()).collect();
        self.topics.insert(Arc::clone(&key), Topic { partitions });
        key
    }
}

/// The partition of `key` among `partitions` (FNV-1a: stable across processes and
/// releases, unlike `std`'s `DefaultHasher`).
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in key {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// Milliseconds since the epoch at or after `at` (rounded up, so a record is never
/// handed out early on a millisecond clock).
fn due_ms(at: SystemTime) -> UnixMillis {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => {
            let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
            UnixMillis::try_from(ms).unwrap_or(UnixMillis::MAX)
        }
        Err(_) => UnixMillis::MIN,
    }
}

/// Reassigns the partitions of `group`'s topics round-robin over its members in join
/// order, skipping members not subscribed to a topic. A partition that changes owner
/// restarts from its committed offset: what the previous owner had not acked in the
/// contiguous prefix is handed out again (at-least-once), as after a Kafka rebalance.
fn rebalance(topics: &mut FastMap<Arc<str>, Topic>, group_name: &Arc<str>, group: &mut Group) {
    let order: Vec<MemberId> = group.members.keys().copied().collect();
    let mut assigned: HashMap<MemberId, Vec<(Arc<str>, u32)>> = HashMap::new();
    let mut turn = 0;
    for name in &group.topics {
        let Some(topic) = topics.get_mut(name) else { continue };
        for (p, part) in (0u32..).zip(topic.partitions.iter_mut()) {
            let owner = (0..order.len())
                .map(|i| (turn + i) % order.len())
                .find(|&i| group.members.get(&order[i]).is_some_and(|m| m.topics.contains(name)));
            let owner = owner.map(|i| {
                turn = i + 1;
                order[i]
            });
            if let Some(id) = owner {
                assigned.entry(id).or_default().push((Arc::clone(name), p));
            }
            if let Some(cursor) = part.cursors.get_mut(group_name)
                && cursor.owner != owner
            {
                cursor.owner = owner;
                cursor.fetch = cursor.committed;
                cursor.acked.clear();
            }
        }
    }
    for (id, member) in &mut group.members {
        member.assigned = assigned.remove(id).unwrap_or_default();
        member.wake();
    }
}

impl EmbeddedBus {
    pub fn new(config: EmbeddedBusConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A bus that decides whether a record is due by `clock` (tests inject a manual one).
    pub fn with_clock(config: EmbeddedBusConfig, clock: Arc<dyn Clock>) -> Self {
        let config = EmbeddedBusConfig {
            partitions: config.partitions.max(1),
            max_lag: config.max_lag.max(1),
        };
        let shared = Shared { config, clock, state: Mutex::new(State::default()) };
        Self { shared: Arc::new(shared) }
    }

    pub fn config(&self) -> EmbeddedBusConfig {
        self.shared.config
    }

    /// The partition `key` goes to.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        partition_for(key, self.shared.config.partitions)
    }

    /// Stops the bus: pending and later `recv` answer [`BusError::Closed`], so do
    /// `publish` and `consumer`, and `is_ready` turns false.
    pub fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        for member in state.groups.values().flat_map(|g| g.members.values()) {
            member.wake();
        }
    }

    /// Appends the whole batch or nothing: the lag bound is checked for every record
    /// before the first is appended.
    fn append(&self, topic: &str, records: Vec<Record>) -> Result<(), BusError> {
        let config = self.shared.config;
        let max_lag = config.max_lag as u64;
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(BusError::Closed);
        }
        let name = state.topic(topic, config.partitions);
        let Some(topic) = state.topics.get_mut(&name) else {
            return Err(BusError::unavailable(format!("topic {name} vanished")));
        };
        let partitions = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
        let placed: Vec<(usize, Record)> =
            records.into_iter().map(|r| (partition_for(&r.key, partitions) as usize, r)).collect();
        let mut added = vec![0u64; topic.partitions.len()];
        for (p, _) in &placed {
            added[*p] += 1;
        }
        for (part, &n) in topic.partitions.iter().zip(&added) {
            let end = part.end() + n;
            if n > 0 && part.cursors.values().any(|c| end.saturating_sub(c.committed) > max_lag) {
                return Err(BusError::Full);
            }
        }
        for (p, record) in placed {
            topic.partitions[p].log.push_back(record);
        }
        for (part, &n) in topic.partitions.iter_mut().zip(&added) {
            if n == 0 {
                continue;
            }
            for (group, cursor) in &part.cursors {
                let owner = cursor.owner.and_then(|id| state.groups.get(group)?.members.get(&id));
                if let Some(member) = owner {
                    member.wake();
                }
            }
            part.trim(max_lag);
        }
        Ok(())
    }

    fn join(
        &self,
        group: &str,
        topics: &[&str],
        max_in_flight: usize,
    ) -> Result<EmbeddedConsumer, BusError> {
        let partitions = self.shared.config.partitions;
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(BusError::Closed);
        }
        let group_name: Arc<str> = match state.groups.get_key_value(group) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(group),
        };
        let mut subscribed = BTreeSet::new();
        for &topic in topics {
            let name = state.topic(topic, partitions);
            if let Some(topic) = state.topics.get_mut(&name) {
                for part in &mut topic.partitions {
                    // A new group starts at the oldest record retained (Kafka's
                    // auto.offset.reset=earliest): nothing published before it joined is lost.
                    let base = part.base;
                    part.cursors.entry(Arc::clone(&group_name)).or_insert_with(|| Cursor {
                        committed: base,
                        fetch: base,
                        acked: BTreeSet::new(),
                        owner: None,
                    });
                }
            }
            subscribed.insert(name);
        }
        let id = state.next_member;
        state.next_member += 1;
        let notify = Arc::new(Notify::new());
        let entry = state.groups.entry(Arc::clone(&group_name)).or_default();
        entry.topics.extend(subscribed.iter().cloned());
        let member = Member {
            topics: subscribed,
            assigned: Vec::new(),
            notify: Arc::clone(&notify),
            changes: AtomicU64::new(0),
        };
        entry.members.insert(id, member);
        rebalance(&mut state.topics, &group_name, entry);
        Ok(EmbeddedConsumer {
            shared: Arc::clone(&self.shared),
            group: group_name,
            id,
            notify,
            max_in_flight: max_in_flight.max(1),
            in_flight: FastMap::default(),
            in_flight_total: 0,
            next_start: 0,
            idle: None,
        })
    }
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::new(EmbeddedBusConfig::default())
    }
}

impl Bus for EmbeddedBus {
    fn publish(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        let bus = self.clone();
        let topic = topic.to_owned();
        Box::pin(async move { bus.append(&topic, records) })
    }

    /// Joins `group`; `max_in_flight` 0 is taken as 1 (0 would never hand anything out).
    fn consumer(
        &self,
        group: &str,
        topics: &[&str],
        max_in_flight: usize,
    ) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(self.join(group, topics, max_in_flight)?))
    }

    fn is_ready(&self) -> bool {
        !self.shared.lock().closed
    }
}

/// A member of a consumer group of an [`EmbeddedBus`]; dropping it leaves the group.
pub struct EmbeddedConsumer {
    shared: Arc<Shared>,
    group: Arc<str>,
    id: MemberId,
    notify: Arc<Notify>,
    max_in_flight: usize,
    /// Handed out and not acked yet, with multiplicity: after the partition moved away
    /// and back, the same offset can be handed out again while the first copy is held.
    in_flight: FastMap<(Arc<str>, u32, u64), u32>,
    in_flight_total: usize,
    /// Where the next scan of the assigned partitions starts, so a busy partition does
    /// not starve the others.
    next_start: usize,
    /// The last scan found nothing: the member's `changes` then, and when the first
    /// record held back by `not_before` falls due. Until either moves, nothing is there.
    idle: Option<(u64, Option<UnixMillis>)>,
}

impl std::fmt::Debug for EmbeddedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedConsumer")
            .field("group", &self.group)
            .field("member", &self.id)
            .field("in_flight", &self.in_flight_total)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

enum Step {
    Ready(Delivery),
    /// Nothing to hand out: wait for a notification, or at most this long (a record
    /// becomes due).
    Wait(Option<Duration>),
    Closed,
}

impl EmbeddedConsumer {
    fn try_next(&mut self) -> Step {
        let shared = Arc::clone(&self.shared);
        let mut guard = shared.lock();
        let State { closed, topics, groups, .. } = &mut *guard;
        if *closed {
            return Step::Closed;
        }
        if self.in_flight_total >= self.max_in_flight {
            // Only our own `ack` frees a slot, and it cannot run while `recv` borrows us.
            return Step::Wait(None);
        }
        let Some(member) = groups.get(&self.group).and_then(|g| g.members.get(&self.id)) else {
            return Step::Wait(None);
        };
        let now = shared.clock.now_ms();
        let changes = member.changes.load(Ordering::Relaxed);
        if let Some((seen, due)) = self.idle
            && seen == changes
            && due.is_none_or(|due| due > now)
        {
            return Step::Wait(due.map(|due| wait_until(due, now)));
        }
        let mut earliest_due: Option<UnixMillis> = None;
        let n = member.assigned.len();
        // The assignment lists a topic's partitions together: one lookup per topic.
        let mut current: Option<(&Arc<str>, &mut Topic)> = None;
        for i in 0..n {
            let idx = (self.next_start + i) % n;
            let (topic, p) = &member.assigned[idx];
            if current.as_ref().is_none_or(|(name, _)| !Arc::ptr_eq(name, topic)) {
                current = topics.get_mut(topic).map(|t| (topic, t));
            }
            let Some(part) = current.as_mut().and_then(|(_, t)| t.partitions.get_mut(*p as usize))
            else {
                continue;
            };
            let Some(cursor) = part.cursors.get_mut(&self.group) else { continue };
            let index = cursor.fetch.checked_sub(part.base).and_then(|i| usize::try_from(i).ok());
            let Some(record) = index.and_then(|i| part.log.get(i)) else { continue };
            if let Some(due) = record.not_before.map(due_ms)
                && due > now
            {
                // The head is not due: this partition waits, the others go on.
                earliest_due = Some(earliest_due.map_or(due, |e| e.min(due)));
                continue;
            }
            let offset = cursor.fetch;
            cursor.fetch += 1;
            self.next_start = idx + 1;
            self.idle = None;
            *self.in_flight.entry((Arc::clone(topic), *p, offset)).or_default() += 1;
            self.in_flight_total += 1;
            return Step::Ready(Delivery {
                topic: Arc::clone(topic),
                partition: *p,
                offset,
                record: record.clone(),
            });
        }
        self.idle = Some((changes, earliest_due));
        Step::Wait(earliest_due.map(|due| wait_until(due, now)))
    }
}

/// How long to sleep for a record due at `due` (at most [`MAX_SLEEP`]).
fn wait_until(due: UnixMillis, now: UnixMillis) -> Duration {
    let ms = u64::try_from(due.saturating_sub(now)).unwrap_or(u64::MAX);
    Duration::from_millis(ms).min(MAX_SLEEP)
}

impl Consumer for EmbeddedConsumer {
    /// Cancel-safe: nothing changes until a delivery is returned.
    fn recv(&mut self) -> BoxFuture<'_, Result<Delivery, BusError>> {
        Box::pin(async move {
            loop {
                let wait = match self.try_next() {
                    Step::Ready(delivery) => return Ok(delivery),
                    Step::Closed => return Err(BusError::Closed),
                    Step::Wait(wait) => wait,
                };
                // A notification sent since `try_next` looked is kept as a permit, so
                // none is lost between the check and the wait.
                let notify = Arc::clone(&self.notify);
                match wait {
                    Some(delay) => {
                        tokio::select! {
                            () = notify.notified() => {}
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    None => notify.notified().await,
                }
            }
        })
    }

    fn lag_probe(&self) -> Option<super::LagProbe> {
        let (shared, group, id) = (Arc::clone(&self.shared), Arc::clone(&self.group), self.id);
        Some(Box::new(move || {
            let state = shared.lock();
            let Some(member) = state.groups.get(&group).and_then(|g| g.members.get(&id)) else {
                return Vec::new();
            };
            let mut lag: BTreeMap<String, u64> = BTreeMap::new();
            for (topic, p) in &member.assigned {
                let part = state.topics.get(topic).and_then(|t| t.partitions.get(*p as usize));
                if let Some(part) = part
                    && let Some(cursor) = part.cursors.get(&group)
                {
                    *lag.entry(topic.to_string()).or_default() +=
                        part.end().saturating_sub(cursor.committed);
                }
            }
            lag.into_iter().collect()
        }))
    }

    /// Acking what this consumer does not hold (twice, or never handed out) does
    /// nothing. An ack for a partition that moved to another member since is dropped,
    /// as Kafka refuses a commit after a rebalance: the new owner has it again.
    fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let key = (Arc::clone(&delivery.topic), delivery.partition, delivery.offset);
        match self.in_flight.get_mut(&key) {
            None => return Ok(()),
            Some(1) => {
                self.in_flight.remove(&key);
            }
            Some(count) => *count -= 1,
        }
        self.in_flight_total = self.in_flight_total.saturating_sub(1);

        let max_lag = self.shared.config.max_lag as u64;
        let mut state = self.shared.lock();
        let part = state
            .topics
            .get_mut(&*delivery.topic)
            .and_then(|t| t.partitions.get_mut(delivery.partition as usize));
        let Some(part) = part else { return Ok(()) };
        let Some(cursor) = part.cursors.get_mut(&self.group) else { return Ok(()) };
        let offset = delivery.offset;
        if cursor.owner != Some(self.id) || offset < cursor.committed || offset >= cursor.fetch {
            return Ok(());
        }
        cursor.acked.insert(offset);
        while cursor.acked.remove(&cursor.committed) {
            cursor.committed += 1;
        }
        part.trim(max_lag);
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        let mut guard = self.shared.lock();
        let State { topics, groups, .. } = &mut *guard;
        if let Some(group) = groups.get_mut(&self.group) {
            group.members.remove(&self.id);
            rebalance(topics, &self.group, group);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::time::timeout;

    use super::*;
    use crate::contract::{self, TimeControl};
    use smsc_runtime::clock::ManualClock;
    use smsc_runtime::testing::ManualTime;

    const START_MS: UnixMillis = 1_700_000_000_000;

    fn bus(partitions: u32, max_lag: usize) -> (EmbeddedBus, ManualTime) {
        let clock = Arc::new(ManualClock::new(START_MS));
        let bus = EmbeddedBus::with_clock(EmbeddedBusConfig { partitions, max_lag }, clock.clone());
        (bus, ManualTime::new(clock))
    }

    /// Distinct keys, one per partition, in partition order.
    fn key_per_partition(bus: &EmbeddedBus) -> Vec<String> {
        let n = bus.config().partitions;
        (0..n)
            .map(|p| (0..).map(|i| format!("k{i}")).find(|k| bus.partition_of(k.as_bytes()) == p))
            .map(|k| k.expect("some key hashes to every partition"))
            .collect()
    }

    /// The probe reads uncommitted records per topic while the consumer is held elsewhere.
    #[tokio::test]
    async fn lag_probe_counts_what_is_not_committed() {
        let (bus, _time) = bus(2, 1000);
        let records = (0..5).map(|i| Record::new(format!("k{i}"), "x")).collect();
        bus.publish("t", records).await.expect("publish");
        bus.publish("u", vec![Record::new("k", "y")]).await.expect("publish");
        let mut c = bus.consumer("g", &["t", "u"], 16).expect("consumer");
        let probe = c.lag_probe().expect("embedded consumers have one");
        assert_eq!(probe(), vec![("t".to_owned(), 5), ("u".to_owned(), 1)]);
        let first = c.recv().await.expect("a record");
        let _second = c.recv().await.expect("a record");
        c.ack(&first).expect("ack");
        let lag: u64 = probe().iter().map(|(_, n)| n).sum();
        assert_eq!(lag, 5, "one of six committed; the held one still counts");
    }

    fn log_len(bus: &EmbeddedBus, topic: &str, partition: usize) -> usize {
        let state = bus.shared.lock();
        state.topics.get(topic).map_or(0, |t| t.partitions[partition].log.len())
    }

    #[tokio::test(start_paused = true)]
    async fn contract_suite() {
        let (bus, time) = bus(8, 1000);
        contract::run_all(&bus, &time).await;
    }

    #[test]
    fn partition_hash_is_fnv1a_and_stable() {
        // FNV-1a 32 of "" is 0x811c9dc5 = 2166136261, of "a" 0xe40c292c = 3826002220
        // (the reference test vectors).
        assert_eq!(partition_for(b"", 1000), 261);
        assert_eq!(partition_for(b"a", 1000), 220);
        assert_eq!(partition_for(b"anything", 0), 0, "0 partitions is taken as 1");
    }

    #[tokio::test(start_paused = true)]
    async fn full_when_a_group_would_lag_past_the_bound_and_free_after_ack() {
        let (bus, _) = bus(1, 3);
        let mut c = bus.consumer("g", &["t"], 10).expect("join");
        let three: Vec<Record> = (0..3).map(|i| Record::new("k", format!("{i}"))).collect();
        bus.publish("t", three).await.expect("within the bound");
        let err = bus.publish("t", vec![Record::new("k", "3")]).await;
        assert!(matches!(err, Err(BusError::Full)), "{err:?}");

        // Handing out is not committing: still full.
        let d0 = c.recv().await.expect("recv");
        let err = bus.publish("t", vec![Record::new("k", "3")]).await;
        assert!(matches!(err, Err(BusError::Full)), "{err:?}");

        c.ack(&d0).expect("ack");
        assert_eq!(log_len(&bus, "t", 0), 2, "the committed record is freed");
        bus.publish("t", vec![Record::new("k", "3")]).await.expect("room after the commit");
    }

    #[tokio::test(start_paused = true)]
    async fn full_batch_appends_nothing() {
        let (bus, _) = bus(1, 3);
        let mut c = bus.consumer("g", &["t"], 10).expect("join");
        bus.publish("t", vec![Record::new("k", "0"), Record::new("k", "1")]).await.expect("fits");
        let batch = vec![Record::new("k", "2"), Record::new("k", "3")];
        assert!(matches!(bus.publish("t", batch).await, Err(BusError::Full)));
        assert_eq!(log_len(&bus, "t", 0), 2);
        let got = [c.recv().await.expect("recv"), c.recv().await.expect("recv")];
        assert_eq!(got.map(|d| d.record.payload), [Bytes::from("0"), Bytes::from("1")]);
        assert!(timeout(Duration::from_secs(1), c.recv()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_without_members_still_bounds_publishers() {
        let (bus, _) = bus(1, 2);
        drop(bus.consumer("g", &["t"], 10).expect("join"));
        bus.publish("t", vec![Record::new("k", "0"), Record::new("k", "1")]).await.expect("fits");
        assert!(matches!(bus.publish("t", vec![Record::new("k", "2")]).await, Err(BusError::Full)));
        // The records wait for the group to come back.
        let mut c = bus.consumer("g", &["t"], 10).expect("rejoin");
        assert_eq!(c.recv().await.expect("recv").record.payload, Bytes::from("0"));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_group_only_max_lag_records_are_retained() {
        let (bus, _) = bus(1, 3);
        for i in 0..10 {
            bus.publish("t", vec![Record::new("k", format!("{i}"))]).await.expect("never full");
        }
        assert_eq!(log_len(&bus, "t", 0), 3);
        let mut c = bus.consumer("g", &["t"], 10).expect("join");
        let first = c.recv().await.expect("recv");
        assert_eq!((first.offset, first.record.payload), (7, Bytes::from("7")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_log_gives_back_the_memory_of_its_peak() {
        let (bus, _) = bus(1, 100_000);
        let mut c = bus.consumer("g", &["t"], 100_000).expect("join");
        let burst: Vec<Record> = (0..20_000).map(|i| Record::new("k", format!("{i}"))).collect();
        bus.publish("t", burst).await.expect("within the bound");
        let capacity =
            |bus: &EmbeddedBus| bus.shared.lock().topics["t"].partitions[0].log.capacity();
        assert!(capacity(&bus) >= 20_000);
        for _ in 0..20_000 {
            let d = c.recv().await.expect("recv");
            c.ack(&d).expect("ack");
        }
        assert_eq!(log_len(&bus, "t", 0), 0);
        assert!(capacity(&bus) <= 4 * SHRINK_FLOOR, "capacity {} kept", capacity(&bus));
    }

    #[tokio::test(start_paused = true)]
    async fn records_committed_by_every_group_are_freed() {
        let (bus, _) = bus(1, 100);
        let mut a = bus.consumer("a", &["t"], 10).expect("join");
        let mut b = bus.consumer("b", &["t"], 10).expect("join");
        bus.publish("t", vec![Record::new("k", "0"), Record::new("k", "1")])
            .await
            .expect("publish");
        for _ in 0..2 {
            let d = a.recv().await.expect("recv");
            a.ack(&d).expect("ack");
        }
        assert_eq!(log_len(&bus, "t", 0), 2, "group b has not committed");
        let d = b.recv().await.expect("recv");
        b.ack(&d).expect("ack");
        assert_eq!(log_len(&bus, "t", 0), 1);
        let d = b.recv().await.expect("recv");
        b.ack(&d).expect("ack");
        assert_eq!(log_len(&bus, "t", 0), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_not_due_holds_back_its_partition_only() {
        let (bus, time) = bus(4, 100);
        let keys = key_per_partition(&bus);
        let mut c = bus.consumer("g", &["t"], 10).expect("join");
        let mut delayed = Record::new(keys[0].clone(), "late");
        delayed.not_before = Some(time.now() + Duration::from_secs(30));
        let records = vec![
            delayed,
            Record::new(keys[0].clone(), "behind"),
            Record::new(keys[1].clone(), "other"),
        ];
        bus.publish("t", records).await.expect("publish");

        assert_eq!(c.recv().await.expect("recv").record.payload, Bytes::from("other"));
        assert!(timeout(Duration::from_secs(10), c.recv()).await.is_err(), "held back");

        // A consumer already waiting wakes when the record falls due.
        let (got, ()) = tokio::join!(c.recv(), time.advance(Duration::from_secs(30)));
        assert_eq!(got.expect("recv").record.payload, Bytes::from("late"));
        assert_eq!(c.recv().await.expect("recv").record.payload, Bytes::from("behind"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_joining_member_takes_over_partitions_and_what_was_not_acked() {
        let (bus, _) = bus(2, 100);
        let keys = key_per_partition(&bus);
        let mut a = bus.consumer("g", &["t"], 10).expect("join");
        let records = keys.iter().map(|k| Record::new(k.clone(), k.clone())).collect();
        bus.publish("t", records).await.expect("publish");
        let first = a.recv().await.expect("recv");
        let second = a.recv().await.expect("recv");
        assert_ne!(first.partition, second.partition, "a alone owns both partitions");

        // b takes partition 1 (round-robin in join order); a's unacked record there is b's now.
        let mut b = bus.consumer("g", &["t"], 10).expect("join");
        let on_b = b.recv().await.expect("recv");
        assert_eq!((on_b.partition, on_b.offset), (1, 0));
        let (a1, a0) = if first.partition == 1 { (first, second) } else { (second, first) };
        a.ack(&a1).expect("a stale ack is accepted and ignored");
        a.ack(&a0).expect("ack");
        assert!(timeout(Duration::from_millis(50), a.recv()).await.is_err());
        b.ack(&on_b).expect("ack");
        drop(b);
        // Partition 1 is back with a, and was committed by b.
        assert!(timeout(Duration::from_millis(50), a.recv()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn records_for_several_topics_get_their_outcomes_in_order() {
        let (bus, _) = bus(1, 1);
        let _behind = bus.consumer("g", &["full"], 10).expect("join");
        // At the lag bound: one more record on `full` is refused.
        bus.publish("full", vec![Record::new("k", "1")]).await.expect("publish");
        let mut open = bus.consumer("g", &["open"], 10).expect("join");
        let records = ["x", "y", "z"].map(|p| Record::new("k", p)).to_vec();
        let got = crate::publish_each_to(&bus, &["full", "open", "full"], records).await;
        assert!(matches!(got[..], [Err(BusError::Full), Ok(()), Err(BusError::Full)]), "{got:?}");
        assert_eq!(open.recv().await.expect("recv").record.payload, Bytes::from("y"));
    }

    #[tokio::test(start_paused = true)]
    async fn close_wakes_pending_recv_and_refuses_work() {
        let (bus, _) = bus(2, 100);
        let mut c = bus.consumer("g", &["t"], 10).expect("join");
        assert!(bus.is_ready());
        let (got, ()) = tokio::join!(c.recv(), async {
            tokio::task::yield_now().await;
            bus.close();
        });
        assert!(matches!(got, Err(BusError::Closed)), "{got:?}");
        assert!(!bus.is_ready());
        assert!(matches!(
            bus.publish("t", vec![Record::new("k", "v")]).await,
            Err(BusError::Closed)
        ));
        assert!(matches!(bus.consumer("g", &["t"], 1), Err(BusError::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn members_subscribed_to_other_topics_share_only_theirs() {
        let (bus, _) = bus(2, 100);
        let mut a = bus.consumer("g", &["x"], 10).expect("join");
        let mut b = bus.consumer("g", &["x", "y"], 10).expect("join");
        bus.publish("y", vec![Record::new("k1", "y1"), Record::new("k2", "y2")])
            .await
            .expect("publish");
        assert!(timeout(Duration::from_millis(50), a.recv()).await.is_err(), "a is not on y");
        let got = [b.recv().await.expect("recv"), b.recv().await.expect("recv")];
        assert!(got.iter().all(|d| &*d.topic == "y"));
    }

    #[test]
    fn due_rounds_up_to_the_millisecond() {
        let at = UNIX_EPOCH + Duration::from_micros(1_500);
        assert_eq!(due_ms(at), 2);
        assert_eq!(due_ms(UNIX_EPOCH + Duration::from_millis(7)), 7);
        assert_eq!(due_ms(UNIX_EPOCH - Duration::from_secs(1)), UnixMillis::MIN);
    }
}
