//! [`RemoteStore`]: a [`Store`] that is a client of a [`StoreServer`],
//! with the message-path calls coalesced into batches.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::DeliveryState;
use bytes::Bytes;
use futures::future::BoxFuture;
use smsc_proto as pb;
use smsc_proto::store_service_client::StoreServiceClient;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

#[cfg(doc)]
use super::StoreServer;
use super::convert::{
    applied_from_proto, corrupt, error_from_status, lease_from_proto, lease_to_proto,
    message_from_proto, message_to_proto, notification_to_proto, page_from_proto,
    slot_claim_from_proto, ttl_to_proto, update_to_proto, upstream_entry_from_proto,
    upstream_link_to_proto,
};
use super::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, MAX_MESSAGE_BYTES};
use crate::{
    Applied, Page, PendingNotification, SessionLease, SlotClaim, Store, StoreError, StoreResult,
    StoredMessage, Update, UpstreamEntry, UpstreamLink,
};

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
                let what = format!("connecting to {}", config.endpoint);
                return Err(StoreError::unavailable_by(what, e));
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
                StoreError::unavailable_by(format!("store endpoint `{}`", config.endpoint), e)
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
                return Err(StoreError::corrupt("batch result: rows expected"));
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
        from: DeliveryState,
        update: Update,
    ) -> BoxFuture<'_, StoreResult<Applied>> {
        let op = pb::batch_op::Op::Transition(pb::TransitionRequest {
            message_id: message_id.to_owned(),
            dest_index,
            from: from.code().into(),
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

    fn take_quota(
        &self,
        system_id: &str,
        period: &str,
        want: u64,
        limit: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        let req = pb::TakeQuotaRequest {
            system_id: system_id.to_owned(),
            period: period.to_owned(),
            want,
            limit,
            ttl_ms: ttl_to_proto(ttl),
        };
        Box::pin(async move {
            let reply = self.call(|mut c| async move { c.take_quota(req).await }).await?;
            if reply.taken > want {
                return Err(StoreError::corrupt(format!(
                    "take_quota: {} taken of {want} asked",
                    reply.taken
                )));
            }
            Ok(reply.taken)
        })
    }

    fn give_back_quota(
        &self,
        system_id: &str,
        period: &str,
        n: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let req = pb::GiveBackQuotaRequest {
            system_id: system_id.to_owned(),
            period: period.to_owned(),
            n,
            ttl_ms: ttl_to_proto(ttl),
        };
        Box::pin(async move {
            self.call(|mut c| async move { c.give_back_quota(req).await }).await?;
            Ok(())
        })
    }
}

fn applied_from_result(result: pb::batch_result::Result) -> StoreResult<Applied> {
    match result {
        pb::batch_result::Result::Applied(a) => applied_from_proto(a).map_err(corrupt),
        _ => Err(StoreError::corrupt("batch result: applied expected")),
    }
}
