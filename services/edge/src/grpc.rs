//! The edge's gRPC service: `Edge.Deliver` pushes a deliver_sm to one of this pod's
//! sessions. Which edges hold an account's receivers is the store's session leases,
//! which the workers read directly.

use std::sync::Arc;

use bytes::Bytes;
use smsc_proto::edge_server::Edge as EdgeService;
use smsc_proto::{DeliverOutcome, DeliverRequest, DeliverResponse};
use smsc_smpp::CommandStatus;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use crate::Edge;
use crate::registry::{DeliverResult, Outbound, SessionHandle};

/// Implements `smsc.v1.Edge`.
#[derive(Debug, Clone)]
pub struct EdgeGrpc(pub Arc<Edge>);

fn outcome(o: DeliverOutcome, status: CommandStatus, detail: &str) -> DeliverResponse {
    DeliverResponse { outcome: o as i32, command_status: status.0, detail: detail.to_owned() }
}

/// How a deliver_sm_resp status classifies (SMPP 3.4 §5.1.3: RX_T is temporary, RX_P
/// and RX_R permanent; anything else unexpected is retried).
pub fn classify(status: CommandStatus) -> DeliverOutcome {
    match status {
        CommandStatus::ESME_ROK => DeliverOutcome::Delivered,
        CommandStatus::ESME_RX_P_APPN | CommandStatus::ESME_RX_R_APPN => DeliverOutcome::Permanent,
        _ => DeliverOutcome::Temporary,
    }
}

#[tonic::async_trait]
impl EdgeService for EdgeGrpc {
    async fn deliver(
        &self,
        req: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let req = req.into_inner();
        let receivers = self.0.registry.receivers(&req.system_id);
        if receivers.is_empty() {
            let detail = "no receiver session on this edge";
            return Ok(Response::new(temporary(CommandStatus::ESME_RMSGQFUL, detail)));
        }
        let (reply, rx) = oneshot::channel();
        let msg = Outbound::Deliver { pdu: Bytes::from(req.deliver_sm), reply };
        if let Err(msg) = offer(&receivers, msg) {
            // Every queue is full: the ESME reads slower than receipts arrive for now.
            // Waiting here holds the dispatcher back (and the notify topic absorbs the
            // burst); answering "busy" at once would spill the notification into the
            // pending queue, which is swept far more slowly.
            let room = receivers.iter().map(|s| Box::pin(s.tx.reserve()));
            let wait = self.0.settings.deliver_queue_wait;
            match tokio::time::timeout(wait, futures::future::select_ok(room)).await {
                Ok(Ok((permit, _))) => permit.send(msg),
                Ok(Err(_)) => {
                    return Ok(Response::new(temporary(CommandStatus::ESME_ROK, "session closed")));
                }
                Err(_) => {
                    let detail = "every receiver session is busy";
                    return Ok(Response::new(temporary(CommandStatus::ESME_RMSGQFUL, detail)));
                }
            }
        }
        let resp = match rx.await {
            Ok(DeliverResult::Answered(st)) => outcome(classify(st), st, st.name().unwrap_or("")),
            Ok(DeliverResult::Timeout) => temporary(CommandStatus::ESME_ROK, "timeout"),
            Ok(DeliverResult::Closed) | Err(_) => {
                temporary(CommandStatus::ESME_ROK, "session closed")
            }
        };
        Ok(Response::new(resp))
    }
}

fn temporary(status: CommandStatus, detail: &str) -> DeliverResponse {
    outcome(DeliverOutcome::Temporary, status, detail)
}

/// Queues `msg` on the first of `receivers` (already rotated) with room.
fn offer(receivers: &[Arc<SessionHandle>], mut msg: Outbound) -> Result<(), Outbound> {
    for s in receivers {
        match s.tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => {
                msg = m;
            }
        }
    }
    Err(msg)
}
