//! Store-and-forward state: ScyllaDB in a cluster, [`embedded::EmbeddedStore`] in
//! `smsc all` and tests.
//!
//! Semantics every implementation keeps (the contract suite checks them):
//! - `insert_message` is `INSERT ... IF NOT EXISTS`: a second insert of the same key is
//!   not applied and leaves the first row as it was.
//! - `transition` is `UPDATE ... IF state = from`: applied only when the stored state is
//!   `from`; otherwise it returns the current row untouched. Every state change goes
//!   through it, so a redelivered bus record can never move a message twice.
//! - Rows expire after their TTL, measured on the store's [`Clock`].
//! - Session leases expire after their TTL unless refreshed by `put_session`.
//! - Pending notifications come back per system_id in the order they were pushed.
//! - Upstream links and parked receipts expire after their TTL, each on its own.
//! - A bind slot has at most one live holder: `claim_slot` is `INSERT … IF NOT EXISTS`
//!   or, for its holder, `UPDATE … IF holder = me`.
//! - A quota counter never passes its limit, however many callers take from it at once:
//!   `take_quota` is `INSERT … IF NOT EXISTS` or `UPDATE … IF used = seen`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::warn;

// Time as the store sees it is the process's clock.
pub use smsc_runtime::clock::{Clock, ManualClock, SystemClock, UnixMillis};

/// An address as stored: the codec's SMPP address, in the widest field a submit can
/// fill (data_sm's 64 characters). A deliver_sm's 20 take [`smsc_smpp::Address::resized`].
pub type Address = smsc_smpp::Address<65>;

/// One destination of one accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: String,
    /// 0 for submit_sm / data_sm; the destination's index for submit_multi.
    pub dest_index: u32,
    pub system_id: String,
    pub source: Address,
    pub dest: Address,
    pub service_type: String,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub esm_class: u8,
    pub payload: Bytes,
    pub state: DeliveryState,
    /// Network error code of a failed delivery (0 when none).
    pub error_code: u16,
    pub attempts: u32,
    pub submitted_at: UnixMillis,
    pub schedule_at: Option<UnixMillis>,
    pub expire_at: UnixMillis,
    pub final_at: Option<UnixMillis>,
    /// The `SubmitEvent` protobuf as accepted, so later stages can rebuild the task.
    pub event: Bytes,
    /// When a worker first claimed it to hand it to a connector; `None` before (CDRs).
    pub first_attempt_at: Option<UnixMillis>,
    /// The connector of its latest attempt; empty before the first.
    pub connector: String,
    /// The route the router chose for it; empty when none matched.
    pub route: String,
}

/// What a transition writes. `None` fields are left as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub state: Option<DeliveryState>,
    pub error_code: Option<u16>,
    pub attempts: Option<u32>,
    pub final_at: Option<UnixMillis>,
    pub payload: Option<Bytes>,
    pub data_coding: Option<u8>,
    pub registered_delivery: Option<u8>,
    pub schedule_at: Option<Option<UnixMillis>>,
    pub expire_at: Option<UnixMillis>,
    pub event: Option<Bytes>,
    pub first_attempt_at: Option<UnixMillis>,
    pub connector: Option<String>,
}

/// The outcome of a conditional write.
// Boxing the row would save a move of ~260 bytes per store call, which is nothing next
// to the call itself, and would change the type every caller matches on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Yes,
    /// Not applied; the row as it is now (`None`: no such row).
    No(Option<StoredMessage>),
}

impl Applied {
    pub fn applied(&self) -> bool {
        matches!(self, Self::Yes)
    }

    /// Applied now, or by an earlier attempt of the same final write whose answer was
    /// lost: a conditional write that times out on the client (an LWT under load, a CQL
    /// node restarting) may still apply, and its retry then finds the row already holding
    /// it. For writes of a final state, whose `final_at` (the writer's clock, to the
    /// millisecond) tells that write from another writer's.
    pub fn applied_or_already(&self, update: &Update) -> bool {
        match self {
            Self::Yes => true,
            Self::No(Some(row)) => {
                update.final_at.is_some()
                    && row.final_at == update.final_at
                    && Some(row.state) == update.state
                    && update.error_code.is_none_or(|e| e == row.error_code)
            }
            Self::No(None) => false,
        }
    }
}

/// The bind a session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    /// Can deliver_sm be sent on it.
    pub fn receives(self) -> bool {
        matches!(self, Self::Receiver | Self::Transceiver)
    }
    pub fn transmits(self) -> bool {
        matches!(self, Self::Transmitter | Self::Transceiver)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transmitter => "transmitter",
            Self::Receiver => "receiver",
            Self::Transceiver => "transceiver",
        }
    }
}

/// A session registered in the directory (`sessions` table, TTL lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLease {
    pub system_id: String,
    /// Unique across the cluster: the edge id and the session's number on it.
    pub session_id: String,
    pub edge_id: String,
    /// host:port of the edge's gRPC server.
    pub endpoint: String,
    pub bind: BindKind,
    pub bound_at: UnixMillis,
}

/// Kind of a queued notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    Receipt,
    Mo,
    /// A receipt of an HTTP API submit: for the account's webhook.
    WebhookReceipt,
}

/// A receipt or MO waiting for a receiver bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotification {
    /// Time-ordered and unique within the system_id.
    pub id: String,
    pub kind: NotificationKind,
    /// The message it is about (receipt) or the MO's id.
    pub message_id: String,
    /// The encoded deliver_sm.
    pub pdu: Bytes,
    pub created_at: UnixMillis,
}

/// One page of pending notifications; `next` continues after the last one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<PendingNotification>,
    pub next: Option<String>,
}

/// Our message behind an upstream SMSC's message_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLink {
    pub message_id: String,
    pub dest_index: u32,
}

/// What the store holds for one upstream message_id of one connector (`upstream_ids`,
/// each part with its own TTL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamEntry {
    /// Our message, recorded once the upstream's submit_sm_resp was.
    pub link: Option<UpstreamLink>,
    /// A receipt that came before the link (its encoded deliver_sm), kept for whoever
    /// records the link next.
    pub parked_receipt: Option<Bytes>,
}

/// The outcome of [`Store::claim_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotClaim {
    /// The caller holds the slot for the TTL from now (taken, or refreshed).
    Held,
    /// Someone else holds it.
    Busy { holder: String },
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or refused the operation: `what` failed, and why is
    /// the source (the driver's error; none when only a message came, from a store server).
    #[error("store unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("store operation timed out")]
    Timeout,
    /// A stored row (or a store server's reply) that does not make what it should.
    #[error("stored row is malformed: {what}")]
    Corrupt {
        what: String,
        #[source]
        source: Option<Cause>,
    },
}

/// The error behind a [`StoreError`], shared so that the error stays `Clone`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

impl StoreError {
    pub fn unavailable(what: impl Into<String>) -> Self {
        Self::Unavailable { what: what.into(), source: None }
    }

    /// `what` failed because of `source`.
    pub fn unavailable_by(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable { what: what.into(), source: Some(Arc::new(source)) }
    }

    pub fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt { what: what.into(), source: None }
    }

    /// `what` does not read back, because of `source`.
    pub fn corrupt_by(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Corrupt { what: what.into(), source: Some(Arc::new(source)) }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// `INSERT ... IF NOT EXISTS` with the store's message TTL.
    fn insert_message(&self, message: StoredMessage) -> BoxFuture<'_, StoreResult<Applied>>;

    /// Every destination of `message_id`, by dest_index.
    fn get_message(&self, message_id: &str) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>>;

    /// [`Store::insert_message`] for a batch (a hop's): one outcome per message, in order.
    /// The default runs the inserts at once (a CQL conditional write cannot be batched
    /// across partitions); a store that can do the batch in one step does.
    fn insert_messages<'a>(
        &'a self,
        messages: &'a [StoredMessage],
    ) -> BoxFuture<'a, StoreResult<Vec<Applied>>> {
        let inserts = messages.iter().map(|m| self.insert_message(m.clone()));
        Box::pin(futures::future::try_join_all(inserts))
    }

    /// [`Store::get_message`] for a batch: each id's destinations, in order. The default
    /// runs the reads at once.
    fn get_messages<'a>(
        &'a self,
        message_ids: &'a [&'a str],
    ) -> BoxFuture<'a, StoreResult<Vec<Vec<StoredMessage>>>> {
        Box::pin(futures::future::try_join_all(message_ids.iter().map(|id| self.get_message(id))))
    }

    /// `UPDATE ... IF state = from`.
    fn transition(
        &self,
        message_id: &str,
        dest_index: u32,
        from: DeliveryState,
        update: Update,
    ) -> BoxFuture<'_, StoreResult<Applied>>;

    /// Registers or refreshes a session lease for `ttl`.
    fn put_session(&self, lease: SessionLease, ttl: Duration) -> BoxFuture<'_, StoreResult<()>>;

    fn remove_session(&self, system_id: &str, session_id: &str) -> BoxFuture<'_, StoreResult<()>>;

    /// Live leases of an account.
    fn sessions(&self, system_id: &str) -> BoxFuture<'_, StoreResult<Vec<SessionLease>>>;

    fn push_pending(
        &self,
        system_id: &str,
        notification: PendingNotification,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Up to `limit` pending notifications after `after` (exclusive), oldest first.
    fn pending(
        &self,
        system_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>>;

    /// Removes a pending notification once delivered. `Applied::No` if it was gone
    /// already (another worker delivered it).
    fn delete_pending(&self, system_id: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>>;

    /// Records that `upstream_id` of `connector` is our `link`, for `ttl` (an upsert:
    /// the last write wins; a parked receipt of the same id is left in place).
    fn put_upstream_link(
        &self,
        connector: &str,
        upstream_id: &str,
        link: UpstreamLink,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Keeps a receipt for `upstream_id` of `connector` that came before its link, for
    /// `ttl` (an upsert; the link, if any, is left in place).
    fn park_upstream_receipt(
        &self,
        connector: &str,
        upstream_id: &str,
        deliver_sm: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// What is live for `upstream_id` of `connector`; `None` when nothing is.
    fn upstream_entry(
        &self,
        connector: &str,
        upstream_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<UpstreamEntry>>>;

    /// Takes slot `slot` of `pool` for `holder` for `ttl` if nobody holds it (`INSERT …
    /// IF NOT EXISTS`), or refreshes it for `ttl` if `holder` holds it already (`UPDATE …
    /// IF holder = holder`). A lease nobody refreshes frees the slot after its TTL.
    fn claim_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<SlotClaim>>;

    /// Frees the slot if `holder` holds it (`DELETE … IF holder = holder`); whether it did.
    fn release_slot(&self, pool: &str, slot: u32, holder: &str)
    -> BoxFuture<'_, StoreResult<bool>>;

    /// Takes up to `want` of what is left below `limit` on the counter of `system_id`'s
    /// quota for `period`, and returns how many it took (0: the limit is reached). The
    /// counter lives `ttl` from its last change.
    fn take_quota(
        &self,
        system_id: &str,
        period: &str,
        want: u64,
        limit: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>>;

    /// Gives back `n` taken by [`Store::take_quota`] and never used (the counter never
    /// goes below 0; nothing happens when it has expired).
    fn give_back_quota(
        &self,
        system_id: &str,
        period: &str,
        n: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>>;
}

/// Shared handles.
pub type DynStore = Arc<dyn Store>;

/// What [`Store::take_quota`] takes of `want` from a counter at `used`: what is left
/// below `limit`, no more. The counter's new value and the units taken.
pub fn quota_take(used: u64, want: u64, limit: u64) -> (u64, u64) {
    let taken = want.min(limit.saturating_sub(used));
    (used + taken, taken)
}

/// Retries a store operation until it succeeds or `shutdown` fires (then `None`).
pub async fn store_until_ok<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut backoff = std::time::Duration::from_millis(20);
    loop {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) => {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), what, "store operation failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}

pub mod cdr;
pub mod config;
pub mod embedded;
mod state;

pub use state::DeliveryState;
pub mod remote;
#[cfg(feature = "scylla")]
pub mod scylla;

// The properties every `Store` keeps, as functions a test of any implementation calls.
#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
