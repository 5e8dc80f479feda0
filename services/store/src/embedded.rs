//! An in-memory [`Store`] with the semantics of the ScyllaDB one, for `smsc all` and tests.
//!
//! Conditional writes are exact (one mutex, so `IF NOT EXISTS` and `IF state = from` are
//! linearizable). Expiry is measured on the injected [`Clock`]: an expired row is
//! invisible at once and freed lazily: messages and pending notifications through a
//! queue in expiry order that every call drains a little, leases when their account is
//! next touched. Not durable across process restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::DeliveryState;
use futures::future::BoxFuture;

use super::{
    Applied, Clock, Page, PendingNotification, SessionLease, SlotClaim, Store, StoreResult,
    StoredMessage, SystemClock, UnixMillis, Update, UpstreamEntry, UpstreamLink,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedStoreConfig {
    /// How long a message row lives after its insert. Pending notifications live as
    /// long after their push.
    pub message_ttl: Duration,
    /// How long a message is kept once it reached a final state (for query_sm), when
    /// that is sooner than `message_ttl`. This is what bounds the memory of the
    /// in-process store under sustained load.
    pub final_ttl: Duration,
}

impl Default for EmbeddedStoreConfig {
    fn default() -> Self {
        Self {
            message_ttl: Duration::from_secs(72 * 3600),
            final_ttl: Duration::from_secs(72 * 3600),
        }
    }
}

#[derive(Debug)]
pub struct EmbeddedStore {
    config: EmbeddedStoreConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Expiring<T> {
    value: T,
    expires_at: UnixMillis,
    /// A message row's key in `message_expiry` with `expires_at` (0 elsewhere).
    seq: u64,
}

impl<T> Expiring<T> {
    fn live(&self, now: UnixMillis) -> bool {
        now < self.expires_at
    }
}

/// The destinations of one message by dest_index. Almost always one row: a sorted Vec,
/// because a BTreeMap leaf is sized for eleven rows (about 4 KB per message, which made
/// memory, and page faults, the cost of the embedded pipeline).
#[derive(Debug, Default)]
struct Dests(Vec<(u32, Expiring<StoredMessage>)>);

impl Dests {
    fn get(&self, k: &u32) -> Option<&Expiring<StoredMessage>> {
        self.0.iter().find(|(i, _)| i == k).map(|(_, r)| r)
    }
    fn get_mut(&mut self, k: &u32) -> Option<&mut Expiring<StoredMessage>> {
        self.0.iter_mut().find(|(i, _)| i == k).map(|(_, r)| r)
    }
    fn remove(&mut self, k: &u32) {
        self.0.retain(|(i, _)| i != k);
    }
    fn insert(&mut self, k: u32, v: Expiring<StoredMessage>) {
        match self.0.binary_search_by_key(&k, |(i, _)| *i) {
            Ok(at) => self.0[at].1 = v,
            Err(at) => self.0.insert(at, (k, v)),
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn values(&self) -> impl Iterator<Item = &Expiring<StoredMessage>> {
        self.0.iter().map(|(_, r)| r)
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// message_id → dest_index → row.
    messages: HashMap<String, Dests, foldhash::fast::RandomState>,
    /// (expires_at, seq) → (message_id, dest_index) of every row, in expiry order. An
    /// ordered map rather than a queue: a row made final moves to its shorter
    /// `final_ttl`, and its old entry must go with it, or the entries of freed rows would
    /// pile up for the whole `message_ttl` (days) under load. The row's unique `seq`
    /// keeps keys distinct and integer-compared (thousands of rows share a millisecond).
    message_expiry: BTreeMap<(UnixMillis, u64), (String, u32)>,
    next_seq: u64,
    /// system_id → session_id → lease.
    sessions: HashMap<String, BTreeMap<String, Expiring<SessionLease>>>,
    /// system_id → notification id → notification; ids sort in time order.
    pending: HashMap<String, BTreeMap<String, Expiring<PendingNotification>>>,
    /// (expires_at, system_id, id) in push order.
    /// An ordered set, like `message_expiry`, so a delivered (deleted) notification
    /// takes its entry with it.
    pending_expiry: BTreeSet<(UnixMillis, String, String)>,
    /// (connector, upstream_id) → link and parked receipt, each expiring on its own.
    upstream: HashMap<(String, String), UpstreamRow>,
    /// (expires_at, connector, upstream_id), one per write; popped when due, so that
    /// rows nobody reads again are freed too.
    upstream_expiry: BTreeSet<(UnixMillis, String, String)>,
    /// (pool, slot) → holder; an expired lease is a free slot.
    slots: HashMap<(String, u32), Expiring<String>>,
    /// system_id → period → used; an account's expired periods go at its next write.
    quotas: HashMap<String, BTreeMap<String, Expiring<u64>>>,
}

#[derive(Debug, Default)]
struct UpstreamRow {
    link: Option<Expiring<UpstreamLink>>,
    receipt: Option<Expiring<bytes::Bytes>>,
}

impl UpstreamRow {
    /// The live parts, or `None` when nothing is.
    fn live(&self, now: UnixMillis) -> Option<UpstreamEntry> {
        let link = self.link.as_ref().filter(|l| l.live(now)).map(|l| l.value.clone());
        let parked_receipt = self.receipt.as_ref().filter(|r| r.live(now)).map(|r| r.value.clone());
        (link.is_some() || parked_receipt.is_some())
            .then_some(UpstreamEntry { link, parked_receipt })
    }
}

/// Below this many rows the message table is not worth shrinking.
const SHRINK_FLOOR: usize = 1024;

fn millis(d: Duration) -> UnixMillis {
    UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX)
}

impl Inner {
    /// Brings a row's expiry forward to `until` (never later).
    fn shorten(&mut self, message_id: &str, dest_index: u32, until: UnixMillis) {
        if let Some(row) = self.messages.get_mut(message_id).and_then(|d| d.get_mut(&dest_index))
            && until < row.expires_at
        {
            let entry = self.message_expiry.remove(&(row.expires_at, row.seq));
            row.expires_at = until;
            if let Some(entry) = entry {
                self.message_expiry.insert((until, row.seq), entry);
            }
        }
    }

    /// Frees rows whose time has come. Each queue entry is popped once, so the cost is
    /// amortized over the inserts. A row is removed only if it is the one the entry was
    /// queued for (same `seq`): the key may have been written again since.
    fn purge(&mut self, now: UnixMillis) {
        while let Some(entry) = self.message_expiry.first_entry()
            && entry.key().0 <= now
        {
            let ((_, seq), (id, dest)) = entry.remove_entry();
            if let Some(rows) = self.messages.get_mut(&id) {
                if rows.get(&dest).is_some_and(|r| r.seq == seq) {
                    rows.remove(&dest);
                }
                if rows.is_empty() {
                    self.messages.remove(&id);
                }
            }
        }
        // A burst leaves the table sized for its peak; hand that back once it drained.
        if self.messages.capacity() > 4 * self.messages.len().max(SHRINK_FLOOR) {
            self.messages.shrink_to(2 * self.messages.len());
        }
        self.purge_pending(now);
        self.purge_upstream(now);
    }

    /// Sets the live counter of `system_id` for `period` (0 when none) to what `change`
    /// makes of it, living `ttl` from now.
    fn change_quota<T>(
        &mut self,
        system_id: String,
        period: String,
        now: UnixMillis,
        ttl: Duration,
        change: impl FnOnce(u64) -> (u64, T),
    ) -> T {
        let periods = self.quotas.entry(system_id).or_default();
        periods.retain(|_, used| used.live(now));
        let used = periods.get(&period).map_or(0, |u| u.value);
        let (used, out) = change(used);
        let expires_at = now.saturating_add(millis(ttl));
        periods.insert(period, Expiring { value: used, expires_at, seq: 0 });
        out
    }

    fn purge_upstream(&mut self, now: UnixMillis) {
        while let Some((at, _, _)) = self.upstream_expiry.first()
            && *at <= now
        {
            let Some((_, connector, id)) = self.upstream_expiry.pop_first() else { break };
            let key = (connector, id);
            if self.upstream.get(&key).is_some_and(|row| row.live(now).is_none()) {
                self.upstream.remove(&key);
            }
        }
    }

    /// The row of `key`, made ready for a write of a part expiring at `expires_at`.
    fn upstream_row(&mut self, key: (String, String), expires_at: UnixMillis) -> &mut UpstreamRow {
        self.upstream_expiry.insert((expires_at, key.0.clone(), key.1.clone()));
        self.upstream.entry(key).or_default()
    }

    fn purge_pending(&mut self, now: UnixMillis) {
        while let Some((at, _, _)) = self.pending_expiry.first()
            && *at <= now
        {
            let Some((_, system_id, id)) = self.pending_expiry.pop_first() else { break };
            if let Some(queue) = self.pending.get_mut(&system_id) {
                if queue.get(&id).is_some_and(|n| !n.live(now)) {
                    queue.remove(&id);
                }
                if queue.is_empty() {
                    self.pending.remove(&system_id);
                }
            }
        }
    }

    /// The live leases of `system_id`, with expired ones freed.
    fn leases(
        &mut self,
        system_id: &str,
        now: UnixMillis,
    ) -> Option<&mut BTreeMap<String, Expiring<SessionLease>>> {
        let leases = self.sessions.get_mut(system_id)?;
        leases.retain(|_, lease| lease.live(now));
        if leases.is_empty() {
            self.sessions.remove(system_id);
            return None;
        }
        self.sessions.get_mut(system_id)
    }

    fn live_row(
        &mut self,
        message_id: &str,
        dest_index: u32,
        now: UnixMillis,
    ) -> Option<&mut StoredMessage> {
        let row = self.messages.get_mut(message_id)?.get_mut(&dest_index)?;
        row.live(now).then_some(&mut row.value)
    }

    /// `INSERT … IF NOT EXISTS`, living `ttl` ms.
    fn insert(&mut self, message: StoredMessage, now: UnixMillis, ttl: UnixMillis) -> Applied {
        let rows = self.messages.entry(message.message_id.clone()).or_default();
        if let Some(row) = rows.get(&message.dest_index)
            && row.live(now)
        {
            return Applied::No(Some(row.value.clone()));
        }
        let expires_at = now.saturating_add(ttl);
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = (message.message_id.clone(), message.dest_index);
        rows.insert(message.dest_index, Expiring { value: message, expires_at, seq });
        self.message_expiry.insert((expires_at, seq), entry);
        Applied::Yes
    }

    /// Every live destination of `message_id`.
    fn get(&self, message_id: &str, now: UnixMillis) -> Vec<StoredMessage> {
        let Some(rows) = self.messages.get(message_id) else { return Vec::new() };
        rows.values().filter(|r| r.live(now)).map(|r| r.value.clone()).collect()
    }
}

fn apply(row: &mut StoredMessage, update: Update) {
    let Update {
        state,
        error_code,
        attempts,
        final_at,
        payload,
        data_coding,
        registered_delivery,
        schedule_at,
        expire_at,
        event,
        first_attempt_at,
        connector,
    } = update;
    if let Some(v) = first_attempt_at {
        row.first_attempt_at = Some(v);
    }
    if let Some(v) = connector {
        row.connector = v;
    }
    if let Some(v) = state {
        row.state = v;
    }
    if let Some(v) = error_code {
        row.error_code = v;
    }
    if let Some(v) = attempts {
        row.attempts = v;
    }
    if let Some(v) = final_at {
        row.final_at = Some(v);
    }
    if let Some(v) = payload {
        row.payload = v;
    }
    if let Some(v) = data_coding {
        row.data_coding = v;
    }
    if let Some(v) = registered_delivery {
        row.registered_delivery = v;
    }
    if let Some(v) = schedule_at {
        row.schedule_at = v;
    }
    if let Some(v) = expire_at {
        row.expire_at = v;
    }
    if let Some(v) = event {
        row.event = v;
    }
}

impl EmbeddedStore {
    pub fn new(config: EmbeddedStoreConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A store that measures TTLs on `clock` (tests inject a manual one).
    pub fn with_clock(config: EmbeddedStoreConfig, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock, inner: Mutex::new(Inner::default()) }
    }

    pub fn config(&self) -> EmbeddedStoreConfig {
        self.config
    }

    /// Runs `f` on the data as of now, expired rows purged.
    fn with<T>(&self, f: impl FnOnce(&mut Inner, UnixMillis) -> T) -> T {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        inner.purge(now);
        f(&mut inner, now)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No update panics halfway, so a poisoned state is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes one part of the upstream row of (`connector`, `upstream_id`), expiring
    /// `ttl` from now on its own.
    fn put_upstream(
        &self,
        connector: &str,
        upstream_id: &str,
        ttl: Duration,
        set: impl FnOnce(&mut UpstreamRow, UnixMillis) + Send + 'static,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let key = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            self.with(|inner, now| {
                let expires_at = now.saturating_add(millis(ttl));
                set(inner.upstream_row(key, expires_at), expires_at);
            });
            Ok(())
        })
    }
}

impl Default for EmbeddedStore {
    fn default() -> Self {
        Self::new(EmbeddedStoreConfig::default())
    }
}

impl Store for EmbeddedStore {
    fn insert_message(&self, message: StoredMessage) -> BoxFuture<'_, StoreResult<Applied>> {
        let ttl = millis(self.config.message_ttl);
        Box::pin(async move { Ok(self.with(|inner, now| inner.insert(message, now, ttl))) })
    }

    fn get_message(&self, message_id: &str) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>> {
        let message_id = message_id.to_owned();
        Box::pin(async move { Ok(self.with(|inner, now| inner.get(&message_id, now))) })
    }

    /// One lock for the batch.
    fn insert_messages<'a>(
        &'a self,
        messages: &'a [StoredMessage],
    ) -> BoxFuture<'a, StoreResult<Vec<Applied>>> {
        let ttl = millis(self.config.message_ttl);
        Box::pin(async move {
            Ok(self.with(|inner, now| {
                messages.iter().map(|m| inner.insert(m.clone(), now, ttl)).collect()
            }))
        })
    }

    /// One lock for the batch.
    fn get_messages<'a>(
        &'a self,
        message_ids: &'a [&'a str],
    ) -> BoxFuture<'a, StoreResult<Vec<Vec<StoredMessage>>>> {
        Box::pin(async move {
            Ok(self.with(|inner, now| message_ids.iter().map(|id| inner.get(id, now)).collect()))
        })
    }

    fn transition(
        &self,
        message_id: &str,
        dest_index: u32,
        from: DeliveryState,
        update: Update,
    ) -> BoxFuture<'_, StoreResult<Applied>> {
        let message_id = message_id.to_owned();
        Box::pin(async move {
            Ok(self.with(|inner, now| match inner.live_row(&message_id, dest_index, now) {
                None => Applied::No(None),
                Some(row) if row.state != from => Applied::No(Some(row.clone())),
                Some(row) => {
                    apply(row, update);
                    if row.state.is_final() {
                        let until = now.saturating_add(millis(self.config.final_ttl));
                        inner.shorten(&message_id, dest_index, until);
                    }
                    Applied::Yes
                }
            }))
        })
    }

    fn put_session(&self, lease: SessionLease, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.with(|inner, now| {
                let expires_at = now.saturating_add(millis(ttl));
                // Frees the account's expired leases while we are here.
                inner.leases(&lease.system_id, now);
                let leases = inner.sessions.entry(lease.system_id.clone()).or_default();
                leases.insert(
                    lease.session_id.clone(),
                    Expiring { value: lease, expires_at, seq: 0 },
                );
            });
            Ok(())
        })
    }

    fn remove_session(&self, system_id: &str, session_id: &str) -> BoxFuture<'_, StoreResult<()>> {
        let (system_id, session_id) = (system_id.to_owned(), session_id.to_owned());
        Box::pin(async move {
            self.with(|inner, now| {
                if let Some(leases) = inner.leases(&system_id, now) {
                    leases.remove(&session_id);
                    if leases.is_empty() {
                        inner.sessions.remove(&system_id);
                    }
                }
            });
            Ok(())
        })
    }

    /// Ordered by session_id.
    fn sessions(&self, system_id: &str) -> BoxFuture<'_, StoreResult<Vec<SessionLease>>> {
        let system_id = system_id.to_owned();
        Box::pin(async move {
            Ok(self.with(|inner, now| {
                let Some(leases) = inner.leases(&system_id, now) else { return Vec::new() };
                leases.values().map(|l| l.value.clone()).collect()
            }))
        })
    }

    /// Pushing an id that is queued already replaces it (an upsert, as in ScyllaDB).
    fn push_pending(
        &self,
        system_id: &str,
        notification: PendingNotification,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let system_id = system_id.to_owned();
        let ttl = millis(self.config.message_ttl);
        Box::pin(async move {
            self.with(|inner, now| {
                let expires_at = now.saturating_add(ttl);
                let id = notification.id.clone();
                let queue = inner.pending.entry(system_id.clone()).or_default();
                if let Some(old) =
                    queue.insert(id.clone(), Expiring { value: notification, expires_at, seq: 0 })
                {
                    inner.pending_expiry.remove(&(old.expires_at, system_id.clone(), id.clone()));
                }
                inner.pending_expiry.insert((expires_at, system_id, id));
            });
            Ok(())
        })
    }

    /// `next` is the last id of the page when live notifications follow it, else `None`.
    /// A `limit` of 0 gives an empty page whose `next` is `after`, unchanged.
    fn pending(
        &self,
        system_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        let system_id = system_id.to_owned();
        let after = after.map(str::to_owned);
        Box::pin(async move {
            Ok(self.with(|inner, now| {
                if limit == 0 {
                    return Page { items: Vec::new(), next: after };
                }
                let Some(queue) = inner.pending.get(&system_id) else { return Page::default() };
                let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut live = queue
                    .range::<str, _>((from, Bound::Unbounded))
                    .map(|(_, n)| n)
                    .filter(|n| n.live(now));
                let items: Vec<PendingNotification> =
                    live.by_ref().take(limit).map(|n| n.value.clone()).collect();
                let more = live.next().is_some();
                let next = if more { items.last().map(|n| n.id.clone()) } else { None };
                Page { items, next }
            }))
        })
    }

    fn delete_pending(&self, system_id: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (system_id, id) = (system_id.to_owned(), id.to_owned());
        Box::pin(async move {
            Ok(self.with(|inner, now| {
                let Some(queue) = inner.pending.get_mut(&system_id) else { return false };
                let old = queue.remove(&id);
                if let Some(n) = &old {
                    inner.pending_expiry.remove(&(n.expires_at, system_id.clone(), id.clone()));
                }
                let removed = old.is_some_and(|n| n.live(now));
                if queue.is_empty() {
                    inner.pending.remove(&system_id);
                }
                removed
            }))
        })
    }

    fn put_upstream_link(
        &self,
        connector: &str,
        upstream_id: &str,
        link: UpstreamLink,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.put_upstream(connector, upstream_id, ttl, |row, expires_at| {
            row.link = Some(Expiring { value: link, expires_at, seq: 0 });
        })
    }

    fn park_upstream_receipt(
        &self,
        connector: &str,
        upstream_id: &str,
        deliver_sm: bytes::Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.put_upstream(connector, upstream_id, ttl, |row, expires_at| {
            row.receipt = Some(Expiring { value: deliver_sm, expires_at, seq: 0 });
        })
    }

    fn upstream_entry(
        &self,
        connector: &str,
        upstream_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<UpstreamEntry>>> {
        let key = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            Ok(self.with(|inner, now| inner.upstream.get(&key).and_then(|row| row.live(now))))
        })
    }

    fn claim_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<SlotClaim>> {
        let (key, holder) = ((pool.to_owned(), slot), holder.to_owned());
        Box::pin(async move {
            Ok(self.with(|inner, now| {
                if let Some(lease) = inner.slots.get(&key).filter(|l| l.live(now))
                    && lease.value != holder
                {
                    return SlotClaim::Busy { holder: lease.value.clone() };
                }
                let expires_at = now.saturating_add(millis(ttl));
                inner.slots.insert(key, Expiring { value: holder, expires_at, seq: 0 });
                SlotClaim::Held
            }))
        })
    }

    fn release_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (key, holder) = ((pool.to_owned(), slot), holder.to_owned());
        Box::pin(async move {
            Ok(self.with(|inner, now| {
                let mine = inner.slots.get(&key).is_some_and(|l| l.live(now) && l.value == holder);
                if mine {
                    inner.slots.remove(&key);
                }
                mine
            }))
        })
    }

    fn take_quota(
        &self,
        system_id: &str,
        period: &str,
        want: u64,
        limit: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        let (system_id, period) = (system_id.to_owned(), period.to_owned());
        Box::pin(async move {
            Ok(self.with(|inner, now| {
                inner.change_quota(system_id, period, now, ttl, |used| {
                    crate::quota_take(used, want, limit)
                })
            }))
        })
    }

    fn give_back_quota(
        &self,
        system_id: &str,
        period: &str,
        n: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (system_id, period) = (system_id.to_owned(), period.to_owned());
        Box::pin(async move {
            self.with(|inner, now| {
                inner.change_quota(system_id, period, now, ttl, |used| (used.saturating_sub(n), ()))
            });
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::contract::{self, ManualTime, TimeControl};
    use crate::{ManualClock, NotificationKind};

    const TTL: Duration = Duration::from_secs(60);

    fn store() -> (Arc<EmbeddedStore>, ManualTime) {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let config = EmbeddedStoreConfig { message_ttl: TTL, ..EmbeddedStoreConfig::default() };
        (Arc::new(EmbeddedStore::with_clock(config, clock.clone())), ManualTime::new(clock))
    }

    fn notification(id: &str) -> PendingNotification {
        PendingNotification {
            id: id.to_owned(),
            kind: NotificationKind::Receipt,
            message_id: format!("m-{id}"),
            pdu: Bytes::from_static(b"pdu"),
            created_at: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn contract_suite() {
        let (store, time) = store();
        contract::run_all(store, &time, TTL).await;
    }

    #[test]
    fn default_message_ttl_is_three_days() {
        assert_eq!(EmbeddedStoreConfig::default().message_ttl, Duration::from_secs(259_200));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_rows_are_freed_not_only_hidden() {
        let (store, time) = store();
        for i in 0..3 {
            let message = contract::sample_message(&format!("m{i}"), 0, "acct");
            assert!(store.insert_message(message).await.expect("insert").applied());
            store.push_pending("acct", notification(&format!("{i}"))).await.expect("push");
        }
        time.advance(TTL).await;
        // Any call purges; this one touches neither row.
        assert!(store.get_message("other").await.expect("get").is_empty());
        let inner = store.lock();
        assert!(inner.messages.is_empty() && inner.message_expiry.is_empty());
        assert!(inner.pending.is_empty() && inner.pending_expiry.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_table_gives_back_the_memory_of_its_peak() {
        let (store, time) = store();
        for i in 0..20_000 {
            let message = contract::sample_message(&format!("m{i}"), 0, "acct");
            assert!(store.insert_message(message).await.expect("insert").applied());
        }
        assert!(store.lock().messages.capacity() >= 20_000);
        time.advance(TTL).await;
        assert!(store.get_message("other").await.expect("get").is_empty());
        let capacity = store.lock().messages.capacity();
        assert!(capacity <= 4 * SHRINK_FLOOR, "capacity {capacity} kept");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_upstream_rows_are_freed_not_only_hidden() {
        let (store, time) = store();
        let link = UpstreamLink { message_id: "m".into(), dest_index: 0 };
        store.put_upstream_link("up", "1", link.clone(), TTL).await.expect("link");
        store.park_upstream_receipt("up", "2", Bytes::from_static(b"r"), TTL).await.expect("park");
        store.put_upstream_link("up", "2", link, TTL * 2).await.expect("link");
        time.advance(TTL).await;
        assert!(store.upstream_entry("up", "1").await.expect("entry").is_none());
        let inner = store.lock();
        assert_eq!(inner.upstream.len(), 1, "the row with a live link is kept");
        assert_eq!(inner.upstream_expiry.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_row_written_again_after_expiry_outlives_the_old_entry() {
        let (store, time) = store();
        let message = contract::sample_message("m", 0, "acct");
        store.insert_message(message.clone()).await.expect("insert");
        time.advance(TTL).await;
        assert!(store.insert_message(message.clone()).await.expect("insert").applied());
        time.advance(TTL / 2).await;
        assert_eq!(store.get_message("m").await.expect("get"), vec![message]);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_notifications_expire_with_the_message_ttl() {
        let (store, time) = store();
        store.push_pending("acct", notification("1")).await.expect("push");
        time.advance(TTL / 2).await;
        store.push_pending("acct", notification("2")).await.expect("push");
        time.advance(TTL / 2).await;
        let page = store.pending("acct", None, 10).await.expect("pending");
        assert_eq!(page.items, vec![notification("2")]);
        assert!(!store.delete_pending("acct", "1").await.expect("delete"));
    }

    #[tokio::test]
    async fn a_zero_limit_keeps_the_cursor() {
        let (store, _) = store();
        store.push_pending("acct", notification("1")).await.expect("push");
        let page = store.pending("acct", Some("0"), 0).await.expect("pending");
        assert_eq!(page, Page { items: Vec::new(), next: Some("0".to_owned()) });
    }

    #[tokio::test]
    async fn next_is_none_when_a_full_page_is_the_last() {
        let (store, _) = store();
        for id in ["1", "2"] {
            store.push_pending("acct", notification(id)).await.expect("push");
        }
        let page = store.pending("acct", None, 2).await.expect("pending");
        assert_eq!((page.items.len(), page.next), (2, None));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_leases_of_an_account_are_freed_when_it_is_touched() {
        let (store, time) = store();
        let lease = contract::sample_lease("acct", "s1");
        store.put_session(lease, Duration::from_secs(1)).await.expect("put");
        time.advance(Duration::from_secs(1)).await;
        assert!(store.sessions("acct").await.expect("sessions").is_empty());
        assert!(store.lock().sessions.is_empty());
    }
}

#[cfg(test)]
mod final_ttl_tests {
    use super::*;
    use crate::ManualClock;
    use crate::contract::sample_message;

    #[tokio::test]
    async fn final_rows_are_freed_after_the_final_ttl() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = EmbeddedStoreConfig {
            message_ttl: Duration::from_secs(3600),
            final_ttl: Duration::from_secs(60),
        };
        let store = EmbeddedStore::with_clock(config, clock.clone());
        let (done, open) = (sample_message("done", 0, "acme"), sample_message("open", 0, "acme"));
        for m in [done.clone(), open.clone()] {
            assert!(store.insert_message(m).await.expect("insert").applied());
        }
        let fin = Update { state: Some(DeliveryState::Delivered), ..Update::default() };
        let applied = store.transition("done", 0, done.state, fin).await.expect("transition");
        assert!(applied.applied());
        clock.advance(Duration::from_secs(61));
        assert!(store.get_message("done").await.expect("get").is_empty(), "final row freed");
        assert_eq!(store.get_message("open").await.expect("get").len(), 1, "pending row kept");
        let inner = store.inner.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!inner.messages.contains_key("done"));
    }
}

#[cfg(test)]
mod pending_expiry_tests {
    use super::*;

    #[tokio::test]
    async fn a_delivered_notification_leaves_nothing_behind() {
        let store = EmbeddedStore::new(EmbeddedStoreConfig::default());
        let n = PendingNotification {
            id: "0001".into(),
            kind: crate::NotificationKind::Receipt,
            message_id: "m".into(),
            pdu: bytes::Bytes::from_static(b"pdu"),
            created_at: 0,
        };
        store.push_pending("acme", n.clone()).await.expect("push");
        store.push_pending("acme", n).await.expect("push again (replaces)");
        assert!(store.delete_pending("acme", "0001").await.expect("delete"));
        let inner = store.inner.lock().unwrap_or_else(|e| e.into_inner());
        assert!(inner.pending.is_empty() && inner.pending_expiry.is_empty());
    }
}
