//! The [`Store`] over gRPC (`smsc.v1.StoreService`, `proto/smsc/v1/store.proto`), so
//! that the processes of a local cluster share one in-memory store.
//!
//! - [`StoreServer`] serves any [`Store`] (`smsc store-server` puts an
//!   [`EmbeddedStore`](super::embedded::EmbeddedStore) behind it).
//! - [`RemoteStore`] implements [`Store`] as a client of it: every call is bounded by a
//!   request timeout ([`StoreError::Timeout`]); a transport failure or a server that is
//!   down is [`StoreError::Unavailable`]; a reply that does not convert is
//!   [`StoreError::Corrupt`].
//! - The `*_to_proto` / `*_from_proto` functions convert between the store's types and
//!   the generated ones, checking every narrowing (a `uint32` that must fit a `u8`).
//!
//! A development tool, not a production store: the server keeps everything in the
//! memory of one process, so its restart loses every row. The semantics (conditional
//! writes, TTLs, page order) are the wrapped store's: the server adds none of its own.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use smsc_proto as pb;
use smsc_proto::store_service_client::StoreServiceClient;
use smsc_proto::store_service_server::{StoreService, StoreServiceServer};
use smsc_smpp::MessageState;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use super::{
    Applied, BindKind, DynStore, NotificationKind, Page, PendingNotification, SessionLease,
    SlotClaim, Store, StoreError, StoreResult, StoredAddress, StoredMessage, Update, UpstreamEntry,
    UpstreamLink,
};

/// How long one store call may take, end to end, by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long establishing the connection may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest message either side decodes: a page of pending notifications can exceed
/// tonic's default of 4 MiB.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A field of a gRPC message that does not convert to the store's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    #[error("{field}: {value} is out of range")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("{field}: missing")]
    Missing { field: &'static str },
    #[error("{field}: unknown value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("applied, yet with a current row")]
    AppliedWithRow,
}

fn narrow<T: TryFrom<u32>>(field: &'static str, value: u32) -> Result<T, ConvertError> {
    T::try_from(value).map_err(|_| ConvertError::OutOfRange { field, value: value.into() })
}

fn required<T>(field: &'static str, value: Option<T>) -> Result<T, ConvertError> {
    value.ok_or(ConvertError::Missing { field })
}

fn state_from_proto(field: &'static str, value: u32) -> Result<MessageState, ConvertError> {
    narrow(field, value).map(MessageState)
}

// ---- conversions -------------------------------------------------------------------

pub fn address_to_proto(a: StoredAddress) -> pb::StoredAddress {
    pb::StoredAddress { ton: a.ton.into(), npi: a.npi.into(), addr: a.addr }
}

pub fn address_from_proto(a: pb::StoredAddress) -> Result<StoredAddress, ConvertError> {
    Ok(StoredAddress { ton: narrow("ton", a.ton)?, npi: narrow("npi", a.npi)?, addr: a.addr })
}

pub fn message_to_proto(m: StoredMessage) -> pb::StoredMessage {
    pb::StoredMessage {
        message_id: m.message_id,
        dest_index: m.dest_index,
        system_id: m.system_id,
        source: Some(address_to_proto(m.source)),
        dest: Some(address_to_proto(m.dest)),
        service_type: m.service_type,
        registered_delivery: m.registered_delivery.into(),
        data_coding: m.data_coding.into(),
        esm_class: m.esm_class.into(),
        payload: m.payload.into(),
        state: m.state.0.into(),
        error_code: m.error_code.into(),
        attempts: m.attempts,
        submitted_at: m.submitted_at,
        schedule_at: m.schedule_at,
        expire_at: m.expire_at,
        final_at: m.final_at,
        event: m.event.into(),
    }
}

pub fn message_from_proto(m: pb::StoredMessage) -> Result<StoredMessage, ConvertError> {
    Ok(StoredMessage {
        message_id: m.message_id,
        dest_index: m.dest_index,
        system_id: m.system_id,
        source: address_from_proto(required("source", m.source)?)?,
        dest: address_from_proto(required("dest", m.dest)?)?,
        service_type: m.service_type,
        registered_delivery: narrow("registered_delivery", m.registered_delivery)?,
        data_coding: narrow("data_coding", m.data_coding)?,
        esm_class: narrow("esm_class", m.esm_class)?,
        payload: Bytes::from(m.payload),
        state: state_from_proto("state", m.state)?,
        error_code: narrow("error_code", m.error_code)?,
        attempts: m.attempts,
        submitted_at: m.submitted_at,
        schedule_at: m.schedule_at,
        expire_at: m.expire_at,
        final_at: m.final_at,
        event: Bytes::from(m.event),
    })
}

/// `schedule_at: Option<Option<_>>` becomes a present-or-absent [`pb::ScheduleChange`]
/// whose own `at` is optional, so "leave it", "clear it" and "set it" all survive.
pub fn update_to_proto(u: Update) -> pb::Update {
    pb::Update {
        state: u.state.map(|s| s.0.into()),
        error_code: u.error_code.map(Into::into),
        attempts: u.attempts,
        final_at: u.final_at,
        payload: u.payload.map(Into::into),
        data_coding: u.data_coding.map(Into::into),
        registered_delivery: u.registered_delivery.map(Into::into),
        schedule_at: u.schedule_at.map(|at| pb::ScheduleChange { at }),
        expire_at: u.expire_at,
        event: u.event.map(Into::into),
    }
}

pub fn update_from_proto(u: pb::Update) -> Result<Update, ConvertError> {
    Ok(Update {
        state: u.state.map(|s| state_from_proto("update.state", s)).transpose()?,
        error_code: u.error_code.map(|v| narrow("update.error_code", v)).transpose()?,
        attempts: u.attempts,
        final_at: u.final_at,
        payload: u.payload.map(Bytes::from),
        data_coding: u.data_coding.map(|v| narrow("update.data_coding", v)).transpose()?,
        registered_delivery: u
            .registered_delivery
            .map(|v| narrow("update.registered_delivery", v))
            .transpose()?,
        schedule_at: u.schedule_at.map(|change| change.at),
        expire_at: u.expire_at,
        event: u.event.map(Bytes::from),
    })
}

pub fn applied_to_proto(a: Applied) -> pb::Applied {
    match a {
        Applied::Yes => pb::Applied { applied: true, current: None },
        Applied::No(current) => {
            pb::Applied { applied: false, current: current.map(message_to_proto) }
        }
    }
}

pub fn applied_from_proto(a: pb::Applied) -> Result<Applied, ConvertError> {
    match (a.applied, a.current) {
        (true, None) => Ok(Applied::Yes),
        (true, Some(_)) => Err(ConvertError::AppliedWithRow),
        (false, current) => Ok(Applied::No(current.map(message_from_proto).transpose()?)),
    }
}

pub fn bind_to_proto(b: BindKind) -> pb::BindKind {
    match b {
        BindKind::Transmitter => pb::BindKind::Transmitter,
        BindKind::Receiver => pb::BindKind::Receiver,
        BindKind::Transceiver => pb::BindKind::Transceiver,
    }
}

pub fn bind_from_proto(value: i32) -> Result<BindKind, ConvertError> {
    match pb::BindKind::try_from(value) {
        Ok(pb::BindKind::Transmitter) => Ok(BindKind::Transmitter),
        Ok(pb::BindKind::Receiver) => Ok(BindKind::Receiver),
        Ok(pb::BindKind::Transceiver) => Ok(BindKind::Transceiver),
        Ok(pb::BindKind::Unspecified) | Err(_) => {
            Err(ConvertError::UnknownEnum { field: "bind", value })
        }
    }
}

pub fn lease_to_proto(l: SessionLease) -> pb::SessionLease {
    pb::SessionLease {
        system_id: l.system_id,
        session_id: l.session_id,
        edge_id: l.edge_id,
        endpoint: l.endpoint,
        bind: bind_to_proto(l.bind).into(),
        bound_at: l.bound_at,
    }
}

pub fn lease_from_proto(l: pb::SessionLease) -> Result<SessionLease, ConvertError> {
    Ok(SessionLease {
        bind: bind_from_proto(l.bind)?,
        system_id: l.system_id,
        session_id: l.session_id,
        edge_id: l.edge_id,
        endpoint: l.endpoint,
        bound_at: l.bound_at,
    })
}

pub fn notification_to_proto(n: PendingNotification) -> pb::PendingNotification {
    let kind = match n.kind {
        NotificationKind::Receipt => pb::NotificationKind::Receipt,
        NotificationKind::Mo => pb::NotificationKind::Mo,
    };
    pb::PendingNotification {
        id: n.id,
        kind: kind.into(),
        message_id: n.message_id,
        pdu: n.pdu.into(),
        created_at: n.created_at,
    }
}

pub fn notification_from_proto(
    n: pb::PendingNotification,
) -> Result<PendingNotification, ConvertError> {
    let kind = match pb::NotificationKind::try_from(n.kind) {
        Ok(pb::NotificationKind::Receipt) => NotificationKind::Receipt,
        Ok(pb::NotificationKind::Mo) => NotificationKind::Mo,
        Ok(pb::NotificationKind::Unspecified) | Err(_) => {
            return Err(ConvertError::UnknownEnum { field: "kind", value: n.kind });
        }
    };
    Ok(PendingNotification {
        id: n.id,
        kind,
        message_id: n.message_id,
        pdu: Bytes::from(n.pdu),
        created_at: n.created_at,
    })
}

pub fn page_to_proto(p: Page) -> pb::Page {
    pb::Page { items: p.items.into_iter().map(notification_to_proto).collect(), next: p.next }
}

pub fn page_from_proto(p: pb::Page) -> Result<Page, ConvertError> {
    let items = p.items.into_iter().map(notification_from_proto).collect::<Result<_, _>>()?;
    Ok(Page { items, next: p.next })
}

pub fn upstream_link_to_proto(l: UpstreamLink) -> pb::UpstreamLink {
    pb::UpstreamLink { message_id: l.message_id, dest_index: l.dest_index }
}

pub fn upstream_link_from_proto(l: pb::UpstreamLink) -> UpstreamLink {
    UpstreamLink { message_id: l.message_id, dest_index: l.dest_index }
}

pub fn upstream_entry_to_proto(e: Option<UpstreamEntry>) -> pb::GetUpstreamEntryResponse {
    match e {
        None => pb::GetUpstreamEntryResponse::default(),
        Some(e) => pb::GetUpstreamEntryResponse {
            found: true,
            link: e.link.map(upstream_link_to_proto),
            parked_receipt: e.parked_receipt.map(Into::into),
        },
    }
}

/// `found` without either part, or a part without `found`, is malformed.
pub fn upstream_entry_from_proto(
    r: pb::GetUpstreamEntryResponse,
) -> Result<Option<UpstreamEntry>, ConvertError> {
    let entry = UpstreamEntry {
        link: r.link.map(upstream_link_from_proto),
        parked_receipt: r.parked_receipt.map(Bytes::from),
    };
    let empty = entry.link.is_none() && entry.parked_receipt.is_none();
    match (r.found, empty) {
        (true, false) => Ok(Some(entry)),
        (false, true) => Ok(None),
        (true, true) => Err(ConvertError::Missing { field: "link or parked_receipt" }),
        (false, false) => Err(ConvertError::Missing { field: "found" }),
    }
}

pub fn slot_claim_to_proto(c: SlotClaim) -> pb::ClaimSlotResponse {
    match c {
        SlotClaim::Held => pb::ClaimSlotResponse { held: true, holder: String::new() },
        SlotClaim::Busy { holder } => pb::ClaimSlotResponse { held: false, holder },
    }
}

pub fn slot_claim_from_proto(r: pb::ClaimSlotResponse) -> SlotClaim {
    if r.held { SlotClaim::Held } else { SlotClaim::Busy { holder: r.holder } }
}

fn ttl_to_proto(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

// ---- errors on the wire --------------------------------------------------------------

/// The status a server answers for a store error; [`error_from_status`] undoes it.
pub fn error_to_status(e: &StoreError) -> Status {
    match e {
        StoreError::Unavailable(m) => Status::unavailable(m.clone()),
        StoreError::Timeout => Status::deadline_exceeded("store operation timed out"),
        StoreError::Corrupt(m) => Status::data_loss(m.clone()),
    }
}

/// A failed call as the client sees it. A request the server could not convert is a
/// malformed message too ([`StoreError::Corrupt`]); whatever else went wrong between
/// the two (connection refused, reset, server stopping) is [`StoreError::Unavailable`].
pub fn error_from_status(s: &Status) -> StoreError {
    match s.code() {
        Code::DeadlineExceeded => StoreError::Timeout,
        // tonic's own client-side timeout.
        Code::Cancelled if s.message().contains("Timeout expired") => StoreError::Timeout,
        Code::DataLoss => StoreError::Corrupt(s.message().to_owned()),
        Code::InvalidArgument => {
            StoreError::Corrupt(format!("the store server rejected the request: {}", s.message()))
        }
        Code::Unavailable => StoreError::Unavailable(s.message().to_owned()),
        code => StoreError::Unavailable(format!("{code:?}: {}", s.message())),
    }
}

fn corrupt(e: ConvertError) -> StoreError {
    StoreError::Corrupt(format!("store server reply: {e}"))
}

fn invalid(e: ConvertError) -> Status {
    Status::invalid_argument(e.to_string())
}

// ---- client --------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RemoteStoreConfig {
    /// `host:port` of the store server, or a URL (`http://host:port`).
    pub endpoint: String,
    /// Bound on each call, connection included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Mutual TLS to the server (`grpc_tls`); `None`: plaintext.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl RemoteStoreConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
        }
    }
}

/// A [`Store`] that is a client of a [`StoreServer`]. Cheap to clone (one HTTP/2
/// connection, re-established by tonic after it drops).
///
/// The message-path calls (insert, get, transition) made concurrently are coalesced
/// into `Batch` calls: a worker with hundreds of messages in progress pays one round
/// trip per batch rather than three per message, which is what bounded a local
/// cluster's throughput. An idle client sends a lone call at once, as a batch of one.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    client: StoreServiceClient<Channel>,
    request_timeout: Duration,
    batcher: Arc<Batcher>,
}

/// Ops waiting to join the next batch, and the task that sends batches (started at the
/// first call, inside the runtime; it ends when the last clone of the store is dropped).
#[derive(Debug, Default)]
struct Batcher {
    queue: OnceLock<mpsc::Sender<(pb::batch_op::Op, BatchReply)>>,
}

type BatchReply = oneshot::Sender<Result<pb::batch_result::Result, Status>>;

/// Most ops in one `Batch` call.
const MAX_BATCH: usize = 512;
/// `Batch` calls in flight at once; ops arriving meanwhile wait and form the next batch.
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Ops queued for a batch beyond which callers wait (backpressure on the pipeline).
const BATCH_QUEUE: usize = 8 * MAX_BATCH;

impl Batcher {
    fn queue(
        &self,
        client: &StoreServiceClient<Channel>,
        request_timeout: Duration,
    ) -> &mpsc::Sender<(pb::batch_op::Op, BatchReply)> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(BATCH_QUEUE);
            tokio::spawn(send_batches(client.clone(), rx, request_timeout));
            tx
        })
    }
}

/// Takes what is queued (up to [`MAX_BATCH`]) whenever a batch slot is free, and
/// answers each op from its result.
async fn send_batches(
    client: StoreServiceClient<Channel>,
    mut rx: mpsc::Receiver<(pb::batch_op::Op, BatchReply)>,
    request_timeout: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    let mut taken = Vec::with_capacity(MAX_BATCH);
    loop {
        // A slot first: while every slot is busy, ops pile up into a bigger batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        if rx.recv_many(&mut taken, MAX_BATCH).await == 0 {
            return;
        }
        let (ops, replies): (Vec<_>, Vec<_>) =
            taken.drain(..).map(|(op, reply)| (pb::BatchOp { op: Some(op) }, reply)).unzip();
        let mut client = client.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let call = client.batch(pb::BatchRequest { ops });
            let results = match tokio::time::timeout(request_timeout, call).await {
                Err(_) => Err(Status::deadline_exceeded("store batch timed out")),
                Ok(Err(status)) => Err(status),
                Ok(Ok(reply)) => Ok(reply.into_inner().results),
            };
            match results {
                Ok(results) if results.len() == replies.len() => {
                    for (result, reply) in results.into_iter().zip(replies) {
                        let result = match result.result {
                            Some(pb::batch_result::Result::Error(e)) => {
                                Err(Status::new(Code::from_i32(e.code), e.message))
                            }
                            Some(r) => Ok(r),
                            None => Err(Status::data_loss("batch result: missing")),
                        };
                        let _ = reply.send(result);
                    }
                }
                other => {
                    let status = other.err().unwrap_or_else(|| {
                        Status::data_loss("the store answered a batch with the wrong count")
                    });
                    for reply in replies {
                        let _ = reply.send(Err(status.clone()));
                    }
                }
            }
        });
    }
}

impl RemoteStore {
    /// Connects now: a server that cannot be reached is an error here rather than at
    /// the first call. The connection is re-established later if it drops.
    pub async fn connect(config: RemoteStoreConfig) -> StoreResult<Self> {
        let endpoint = Self::endpoint(&config)?;
        let channel = match tokio::time::timeout(config.connect_timeout, endpoint.connect()).await {
            Err(_) => return Err(StoreError::Timeout),
            Ok(Err(e)) => {
                return Err(StoreError::Unavailable(format!(
                    "connecting to {}: {}",
                    config.endpoint,
                    smsc_runtime::telemetry::error_chain(&e)
                )));
            }
            Ok(Ok(channel)) => channel,
        };
        Ok(Self::with_channel(channel, config.request_timeout))
    }

    /// Connects at the first call (and fails that call while the server is down).
    pub fn connect_lazy(config: RemoteStoreConfig) -> StoreResult<Self> {
        let endpoint = Self::endpoint(&config)?;
        Ok(Self::with_channel(endpoint.connect_lazy(), config.request_timeout))
    }

    fn endpoint(config: &RemoteStoreConfig) -> StoreResult<Endpoint> {
        let endpoint = smsc_runtime::grpc_tls::endpoint(&config.endpoint, config.tls.as_ref())
            .map_err(|e| {
                StoreError::Unavailable(format!("store endpoint `{}`: {e}", config.endpoint))
            })?;
        Ok(endpoint.connect_timeout(config.connect_timeout).tcp_nodelay(true))
    }

    fn with_channel(channel: Channel, request_timeout: Duration) -> Self {
        let client = StoreServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Self { client, request_timeout, batcher: Arc::default() }
    }

    /// One message-path op, sent in the next batch; bounded by the request timeout like
    /// a unary call.
    async fn batched(&self, op: pb::batch_op::Op) -> StoreResult<pb::batch_result::Result> {
        let queue = self.batcher.queue(&self.client, self.request_timeout);
        let (reply, answer) = oneshot::channel();
        let call = async move {
            queue
                .send((op, reply))
                .await
                .map_err(|_| Status::unavailable("store client closed"))?;
            answer.await.map_err(|_| Status::unavailable("store batch dropped"))?
        };
        match tokio::time::timeout(self.request_timeout, call).await {
            Err(_) => Err(StoreError::Timeout),
            Ok(Err(status)) => Err(error_from_status(&status)),
            Ok(Ok(result)) => Ok(result),
        }
    }

    /// One call, bounded by the request timeout.
    async fn call<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(StoreServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        match tokio::time::timeout(self.request_timeout, f(self.client.clone())).await {
            Err(_) => Err(StoreError::Timeout),
            Ok(Err(status)) => Err(error_from_status(&status)),
            Ok(Ok(reply)) => Ok(reply.into_inner()),
        }
    }
}

impl Store for RemoteStore {
    fn insert_message(&self, message: StoredMessage) -> BoxFuture<'_, StoreResult<Applied>> {
        let op = pb::batch_op::Op::InsertMessage(pb::InsertMessageRequest {
            message: Some(message_to_proto(message)),
        });
        Box::pin(async move { applied_from_result(self.batched(op).await?) })
    }

    fn get_message(&self, message_id: &str) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>> {
        let op = pb::batch_op::Op::GetMessage(pb::GetMessageRequest {
            message_id: message_id.to_owned(),
        });
        Box::pin(async move {
            let pb::batch_result::Result::Rows(reply) = self.batched(op).await? else {
                return Err(StoreError::Corrupt("batch result: rows expected".into()));
            };
            reply
                .rows
                .into_iter()
                .map(message_from_proto)
                .collect::<Result<_, _>>()
                .map_err(corrupt)
        })
    }

    fn transition(
        &self,
        message_id: &str,
        dest_index: u32,
        from: MessageState,
        update: Update,
    ) -> BoxFuture<'_, StoreResult<Applied>> {
        let op = pb::batch_op::Op::Transition(pb::TransitionRequest {
            message_id: message_id.to_owned(),
            dest_index,
            from: from.0.into(),
            update: Some(update_to_proto(update)),
        });
        Box::pin(async move { applied_from_result(self.batched(op).await?) })
    }

    fn put_session(&self, lease: SessionLease, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        let req =
            pb::PutSessionRequest { lease: Some(lease_to_proto(lease)), ttl_ms: ttl_to_proto(ttl) };
        Box::pin(async move {
            self.call(|mut c| async move { c.put_session(req).await }).await?;
            Ok(())
        })
    }

    fn remove_session(&self, system_id: &str, session_id: &str) -> BoxFuture<'_, StoreResult<()>> {
        let req = pb::RemoveSessionRequest {
            system_id: system_id.to_owned(),
            session_id: session_id.to_owned(),
        };
        Box::pin(async move {
            self.call(|mut c| async move { c.remove_session(req).await }).await?;
            Ok(())
        })
    }

    fn sessions(&self, system_id: &str) -> BoxFuture<'_, StoreResult<Vec<SessionLease>>> {
        let req = pb::SessionsRequest { system_id: system_id.to_owned() };
        Box::pin(async move {
            let reply = self.call(|mut c| async move { c.sessions(req).await }).await?;
            reply
                .leases
                .into_iter()
                .map(lease_from_proto)
                .collect::<Result<_, _>>()
                .map_err(corrupt)
        })
    }

    fn push_pending(
        &self,
        system_id: &str,
        notification: PendingNotification,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let req = pb::PushPendingRequest {
            system_id: system_id.to_owned(),
            notification: Some(notification_to_proto(notification)),
        };
        Box::pin(async move {
            self.call(|mut c| async move { c.push_pending(req).await }).await?;
            Ok(())
        })
    }

    fn pending(
        &self,
        system_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        let req = pb::PendingRequest {
            system_id: system_id.to_owned(),
            after: after.map(str::to_owned),
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        };
        Box::pin(async move {
            let reply = self.call(|mut c| async move { c.pending(req).await }).await?;
            page_from_proto(reply).map_err(corrupt)
        })
    }

    fn delete_pending(&self, system_id: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let req = pb::DeletePendingRequest { system_id: system_id.to_owned(), id: id.to_owned() };
        Box::pin(async move {
            let reply = self.call(|mut c| async move { c.delete_pending(req).await }).await?;
            Ok(reply.deleted)
        })
    }

    fn put_upstream_link(
        &self,
        connector: &str,
        upstream_id: &str,
        link: UpstreamLink,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let req = pb::PutUpstreamLinkRequest {
            connector: connector.to_owned(),
            upstream_id: upstream_id.to_owned(),
            link: Some(upstream_link_to_proto(link)),
            ttl_ms: ttl_to_proto(ttl),
        };
        Box::pin(async move {
            self.call(|mut c| async move { c.put_upstream_link(req).await }).await?;
            Ok(())
        })
    }

    fn park_upstream_receipt(
        &self,
        connector: &str,
        upstream_id: &str,
        deliver_sm: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let req = pb::ParkUpstreamReceiptRequest {
            connector: connector.to_owned(),
            upstream_id: upstream_id.to_owned(),
            deliver_sm: deliver_sm.into(),
            ttl_ms: ttl_to_proto(ttl),
        };
        Box::pin(async move {
            self.call(|mut c| async move { c.park_upstream_receipt(req).await }).await?;
            Ok(())
        })
    }

    fn upstream_entry(
        &self,
        connector: &str,
        upstream_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<UpstreamEntry>>> {
        let req = pb::GetUpstreamEntryRequest {
            connector: connector.to_owned(),
            upstream_id: upstream_id.to_owned(),
        };
        Box::pin(async move {
            let reply = self.call(|mut c| async move { c.get_upstream_entry(req).await }).await?;
            upstream_entry_from_proto(reply).map_err(corrupt)
        })
    }

    fn claim_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<SlotClaim>> {
        let req = pb::ClaimSlotRequest {
            pool: pool.to_owned(),
            slot,
            holder: holder.to_owned(),
            ttl_ms: ttl_to_proto(ttl),
        };
        Box::pin(async move {
            let reply = self.call(|mut c| async move { c.claim_slot(req).await }).await?;
            Ok(slot_claim_from_proto(reply))
        })
    }

    fn release_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let req = pb::ReleaseSlotRequest { pool: pool.to_owned(), slot, holder: holder.to_owned() };
        Box::pin(async move {
            let reply = self.call(|mut c| async move { c.release_slot(req).await }).await?;
            Ok(reply.released)
        })
    }
}

fn applied_from_result(result: pb::batch_result::Result) -> StoreResult<Applied> {
    match result {
        pb::batch_result::Result::Applied(a) => applied_from_proto(a).map_err(corrupt),
        _ => Err(StoreError::Corrupt("batch result: applied expected".into())),
    }
}

// ---- server --------------------------------------------------------------------------

/// `smsc.v1.StoreService` over any [`Store`].
#[derive(Debug, Clone)]
pub struct StoreServer {
    store: DynStore,
}

impl StoreServer {
    pub fn new(store: DynStore) -> Self {
        Self { store }
    }

    /// The tonic service, to add to a `Server` with other services.
    pub fn into_service(self) -> StoreServiceServer<Self> {
        StoreServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Serves on `listener` until `shutdown` resolves, then lets calls in progress end.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        self.serve_with(tonic::transport::Server::builder(), listener, shutdown).await
    }

    /// [`StoreServer::serve`] on a prepared server (mutual TLS: `grpc_tls::server`).
    pub async fn serve_with(
        self,
        mut server: tonic::transport::Server,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        server
            .add_service(self.into_service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}

fn reply<T>(result: StoreResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(status)
}

/// The store's error as the gRPC status a client maps back (logged: the client only
/// sees the status).
fn status(e: StoreError) -> Status {
    tracing::debug!(error = %e, "store call failed");
    error_to_status(&e)
}

impl StoreServer {
    async fn insert(&self, req: pb::InsertMessageRequest) -> Result<pb::Applied, Status> {
        let message = required("message", req.message).map_err(invalid)?;
        let message = message_from_proto(message).map_err(invalid)?;
        self.store.insert_message(message).await.map(applied_to_proto).map_err(status)
    }

    async fn get(&self, req: pb::GetMessageRequest) -> Result<pb::GetMessageResponse, Status> {
        let rows = self.store.get_message(&req.message_id).await.map_err(status)?;
        Ok(pb::GetMessageResponse { rows: rows.into_iter().map(message_to_proto).collect() })
    }

    async fn transit(&self, req: pb::TransitionRequest) -> Result<pb::Applied, Status> {
        let from = state_from_proto("from", req.from).map_err(invalid)?;
        let update =
            update_from_proto(required("update", req.update).map_err(invalid)?).map_err(invalid)?;
        let applied = self.store.transition(&req.message_id, req.dest_index, from, update).await;
        applied.map(applied_to_proto).map_err(status)
    }
}

#[tonic::async_trait]
impl StoreService for StoreServer {
    /// In order, one after another: the embedded store answers at once, and ops of one
    /// batch were concurrent at the client, so no order among them is promised anyway.
    async fn batch(
        &self,
        request: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        use pb::batch_op::Op;
        use pb::batch_result::Result as R;
        let ops = request.into_inner().ops;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op.op {
                Some(Op::InsertMessage(req)) => self.insert(req).await.map(R::Applied),
                Some(Op::GetMessage(req)) => self.get(req).await.map(R::Rows),
                Some(Op::Transition(req)) => self.transit(req).await.map(R::Applied),
                None => Err(invalid(ConvertError::Missing { field: "op" })),
            };
            let result = result.unwrap_or_else(|s| {
                R::Error(pb::BatchError { code: s.code() as i32, message: s.message().to_owned() })
            });
            results.push(pb::BatchResult { result: Some(result) });
        }
        Ok(Response::new(pb::BatchResponse { results }))
    }

    async fn put_session(
        &self,
        request: Request<pb::PutSessionRequest>,
    ) -> Result<Response<pb::StoreAck>, Status> {
        let req = request.into_inner();
        let lease =
            lease_from_proto(required("lease", req.lease).map_err(invalid)?).map_err(invalid)?;
        let ttl = Duration::from_millis(req.ttl_ms);
        reply(self.store.put_session(lease, ttl).await.map(|()| pb::StoreAck {}))
    }

    async fn remove_session(
        &self,
        request: Request<pb::RemoveSessionRequest>,
    ) -> Result<Response<pb::StoreAck>, Status> {
        let req = request.into_inner();
        let removed = self.store.remove_session(&req.system_id, &req.session_id).await;
        reply(removed.map(|()| pb::StoreAck {}))
    }

    async fn sessions(
        &self,
        request: Request<pb::SessionsRequest>,
    ) -> Result<Response<pb::SessionsResponse>, Status> {
        let leases = self.store.sessions(&request.into_inner().system_id).await;
        reply(leases.map(|leases| pb::SessionsResponse {
            leases: leases.into_iter().map(lease_to_proto).collect(),
        }))
    }

    async fn push_pending(
        &self,
        request: Request<pb::PushPendingRequest>,
    ) -> Result<Response<pb::StoreAck>, Status> {
        let req = request.into_inner();
        let notification = required("notification", req.notification).map_err(invalid)?;
        let notification = notification_from_proto(notification).map_err(invalid)?;
        let pushed = self.store.push_pending(&req.system_id, notification).await;
        reply(pushed.map(|()| pb::StoreAck {}))
    }

    async fn pending(
        &self,
        request: Request<pb::PendingRequest>,
    ) -> Result<Response<pb::Page>, Status> {
        let req = request.into_inner();
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let page = self.store.pending(&req.system_id, req.after.as_deref(), limit).await;
        reply(page.map(page_to_proto))
    }

    async fn delete_pending(
        &self,
        request: Request<pb::DeletePendingRequest>,
    ) -> Result<Response<pb::DeletePendingResponse>, Status> {
        let req = request.into_inner();
        let deleted = self.store.delete_pending(&req.system_id, &req.id).await;
        reply(deleted.map(|deleted| pb::DeletePendingResponse { deleted }))
    }

    async fn put_upstream_link(
        &self,
        request: Request<pb::PutUpstreamLinkRequest>,
    ) -> Result<Response<pb::StoreAck>, Status> {
        let req = request.into_inner();
        let link = upstream_link_from_proto(required("link", req.link).map_err(invalid)?);
        let ttl = Duration::from_millis(req.ttl_ms);
        let put = self.store.put_upstream_link(&req.connector, &req.upstream_id, link, ttl).await;
        reply(put.map(|()| pb::StoreAck {}))
    }

    async fn park_upstream_receipt(
        &self,
        request: Request<pb::ParkUpstreamReceiptRequest>,
    ) -> Result<Response<pb::StoreAck>, Status> {
        let req = request.into_inner();
        let ttl = Duration::from_millis(req.ttl_ms);
        let pdu = Bytes::from(req.deliver_sm);
        let parked =
            self.store.park_upstream_receipt(&req.connector, &req.upstream_id, pdu, ttl).await;
        reply(parked.map(|()| pb::StoreAck {}))
    }

    async fn get_upstream_entry(
        &self,
        request: Request<pb::GetUpstreamEntryRequest>,
    ) -> Result<Response<pb::GetUpstreamEntryResponse>, Status> {
        let req = request.into_inner();
        let entry = self.store.upstream_entry(&req.connector, &req.upstream_id).await;
        reply(entry.map(upstream_entry_to_proto))
    }

    async fn claim_slot(
        &self,
        request: Request<pb::ClaimSlotRequest>,
    ) -> Result<Response<pb::ClaimSlotResponse>, Status> {
        let req = request.into_inner();
        let ttl = Duration::from_millis(req.ttl_ms);
        let claim = self.store.claim_slot(&req.pool, req.slot, &req.holder, ttl).await;
        reply(claim.map(slot_claim_to_proto))
    }

    async fn release_slot(
        &self,
        request: Request<pb::ReleaseSlotRequest>,
    ) -> Result<Response<pb::ReleaseSlotResponse>, Status> {
        let req = request.into_inner();
        let released = self.store.release_slot(&req.pool, req.slot, &req.holder).await;
        reply(released.map(|released| pb::ReleaseSlotResponse { released }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{sample_lease, sample_message};

    fn notification(kind: NotificationKind) -> PendingNotification {
        PendingNotification {
            id: "0001".into(),
            kind,
            message_id: "m-1".into(),
            pdu: Bytes::from_static(b"\x00\x00\x00\x10deliver"),
            created_at: 1_700_000_000_123,
        }
    }

    /// Every field away from its default, so a field dropped on the way is noticed.
    fn full_message() -> StoredMessage {
        StoredMessage {
            service_type: "CMT".into(),
            registered_delivery: 0x11,
            data_coding: 0x08,
            esm_class: 0x40,
            error_code: 0xffff,
            attempts: 7,
            schedule_at: Some(1_700_000_000_500),
            final_at: Some(-1),
            state: crate::IN_DELIVERY,
            source: StoredAddress { ton: 255, npi: 255, addr: "SHOP".into() },
            ..sample_message("m-1", 3, "acme")
        }
    }

    #[test]
    fn messages_round_trip() {
        for m in [full_message(), sample_message("m-2", 0, "bank")] {
            assert_eq!(message_from_proto(message_to_proto(m.clone())), Ok(m));
        }
    }

    #[test]
    fn updates_round_trip_with_every_schedule_change() {
        let full = Update {
            state: Some(MessageState::DELIVERED),
            error_code: Some(27),
            attempts: Some(2),
            final_at: Some(1_700_000_000_999),
            payload: Some(Bytes::from_static(b"replaced")),
            data_coding: Some(8),
            registered_delivery: Some(1),
            schedule_at: Some(Some(1_700_000_100_000)),
            expire_at: Some(1_700_086_400_000),
            event: Some(Bytes::from_static(b"\x0a\x01x")),
        };
        let cases = [
            Update::default(),
            full,
            Update { schedule_at: Some(None), ..Update::default() },
            Update { schedule_at: Some(Some(0)), ..Update::default() },
            Update { payload: Some(Bytes::new()), ..Update::default() },
        ];
        for u in cases {
            assert_eq!(update_from_proto(update_to_proto(u.clone())), Ok(u));
        }
    }

    #[test]
    fn clearing_the_schedule_differs_from_leaving_it_on_the_wire() {
        let clear = update_to_proto(Update { schedule_at: Some(None), ..Update::default() });
        let leave = update_to_proto(Update::default());
        assert_ne!(clear, leave);
        use prost::Message as _;
        let decoded = pb::Update::decode(clear.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(update_from_proto(decoded).expect("converts").schedule_at, Some(None));
    }

    #[test]
    fn applied_round_trips() {
        for a in [Applied::Yes, Applied::No(None), Applied::No(Some(full_message()))] {
            assert_eq!(applied_from_proto(applied_to_proto(a.clone())), Ok(a));
        }
        let contradiction =
            pb::Applied { applied: true, current: Some(message_to_proto(full_message())) };
        assert_eq!(applied_from_proto(contradiction), Err(ConvertError::AppliedWithRow));
    }

    #[test]
    fn leases_round_trip_with_every_bind_kind() {
        for bind in [BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver] {
            let lease = SessionLease { bind, ..sample_lease("acme", "edge-0/1") };
            assert_eq!(lease_from_proto(lease_to_proto(lease.clone())), Ok(lease));
        }
        let unset = pb::SessionLease { bind: 0, ..lease_to_proto(sample_lease("a", "s")) };
        assert_eq!(
            lease_from_proto(unset),
            Err(ConvertError::UnknownEnum { field: "bind", value: 0 })
        );
    }

    #[test]
    fn notifications_and_pages_round_trip() {
        for kind in [NotificationKind::Receipt, NotificationKind::Mo] {
            let n = notification(kind);
            assert_eq!(notification_from_proto(notification_to_proto(n.clone())), Ok(n));
        }
        let pages = [
            Page::default(),
            Page {
                items: vec![
                    notification(NotificationKind::Mo),
                    notification(NotificationKind::Receipt),
                ],
                next: Some("0001".into()),
            },
        ];
        for p in pages {
            assert_eq!(page_from_proto(page_to_proto(p.clone())), Ok(p));
        }
        let unknown = pb::PendingNotification {
            kind: 9,
            ..notification_to_proto(notification(NotificationKind::Mo))
        };
        assert!(matches!(notification_from_proto(unknown), Err(ConvertError::UnknownEnum { .. })));
    }

    #[test]
    fn upstream_entries_and_slot_claims_round_trip() {
        let link = UpstreamLink { message_id: "m-1".into(), dest_index: 7 };
        let receipt = Bytes::from_static(b"\x00\x00\x00\x10receipt");
        let entries = [
            None,
            Some(UpstreamEntry { link: Some(link.clone()), parked_receipt: None }),
            Some(UpstreamEntry { link: None, parked_receipt: Some(receipt.clone()) }),
            Some(UpstreamEntry { link: Some(link), parked_receipt: Some(Bytes::new()) }),
        ];
        for e in entries {
            assert_eq!(upstream_entry_from_proto(upstream_entry_to_proto(e.clone())), Ok(e));
        }
        let found_empty = pb::GetUpstreamEntryResponse { found: true, ..Default::default() };
        assert!(upstream_entry_from_proto(found_empty).is_err());
        let unfound_part = pb::GetUpstreamEntryResponse {
            parked_receipt: Some(receipt.to_vec()),
            ..Default::default()
        };
        assert!(upstream_entry_from_proto(unfound_part).is_err());
        for c in [SlotClaim::Held, SlotClaim::Busy { holder: "worker-1/0".into() }] {
            assert_eq!(slot_claim_from_proto(slot_claim_to_proto(c.clone())), c);
        }
    }

    #[test]
    fn narrowing_rejects_values_that_do_not_fit() {
        let mut m = message_to_proto(full_message());
        m.data_coding = 256;
        assert_eq!(
            message_from_proto(m),
            Err(ConvertError::OutOfRange { field: "data_coding", value: 256 })
        );
        let mut m = message_to_proto(full_message());
        m.source = None;
        assert_eq!(message_from_proto(m), Err(ConvertError::Missing { field: "source" }));
        let u = pb::Update { error_code: Some(70_000), ..pb::Update::default() };
        assert!(matches!(update_from_proto(u), Err(ConvertError::OutOfRange { .. })));
    }

    #[test]
    fn store_errors_survive_the_status_round_trip() {
        let errors = [
            StoreError::Unavailable("scylla down".into()),
            StoreError::Timeout,
            StoreError::Corrupt("bad row".into()),
        ];
        for e in errors {
            let back = error_from_status(&error_to_status(&e));
            assert_eq!(back.to_string(), e.to_string());
        }
        let refused = Status::unavailable("tcp connect error");
        assert!(matches!(error_from_status(&refused), StoreError::Unavailable(_)));
    }
}
