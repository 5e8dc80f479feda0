//! [`StoreServer`]: `smsc.v1.StoreService` over any [`Store`].

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use smsc_proto as pb;
use smsc_proto::store_service_server::{StoreService, StoreServiceServer};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::MAX_MESSAGE_BYTES;
use super::convert::{
    ConvertError, applied_to_proto, error_to_status, invalid, lease_from_proto, lease_to_proto,
    message_from_proto, message_to_proto, notification_from_proto, page_to_proto, required,
    slot_claim_to_proto, state_from_proto, update_from_proto, upstream_entry_to_proto,
    upstream_link_from_proto,
};
#[cfg(doc)]
use crate::Store;
use crate::{DynStore, StoreError, StoreResult};

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

    async fn take_quota(
        &self,
        request: Request<pb::TakeQuotaRequest>,
    ) -> Result<Response<pb::TakeQuotaResponse>, Status> {
        let req = request.into_inner();
        let ttl = Duration::from_millis(req.ttl_ms);
        let taken =
            self.store.take_quota(&req.system_id, &req.period, req.want, req.limit, ttl).await;
        reply(taken.map(|taken| pb::TakeQuotaResponse { taken }))
    }

    async fn give_back_quota(
        &self,
        request: Request<pb::GiveBackQuotaRequest>,
    ) -> Result<Response<pb::StoreAck>, Status> {
        let req = request.into_inner();
        let ttl = Duration::from_millis(req.ttl_ms);
        let given = self.store.give_back_quota(&req.system_id, &req.period, req.n, ttl).await;
        reply(given.map(|()| pb::StoreAck {}))
    }
}
