//! What the edge sends: deliver_sm taken from the session's queue, and the responses
//! to what it sent (deliver_sm_resp, enquire_link_resp, unbind_resp).

use bytes::Bytes;
use smsc_smpp::{Body, Pdu, Tlvs};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::state::{Awaiting, Outstanding, Session, State};
use super::{Status, status_name};
use crate::registry::{DeliverResult, Outbound};

impl Session {
    pub(super) fn outbound(&mut self, cmd: Outbound) {
        match cmd {
            Outbound::Deliver { pdu, reply } => self.send_deliver(pdu, reply),
            Outbound::Unbind => self.begin_unbind(),
        }
    }

    /// Whether the session can take another deliver_sm from its queue.
    pub(super) fn outbound_capacity(&self) -> bool {
        match &self.state {
            State::Bound(b) => self.outstanding.len() < b.account.window as usize && !self.close,
            _ => false,
        }
    }

    fn send_deliver(&mut self, pdu: Bytes, reply: oneshot::Sender<DeliverResult>) {
        if reply.is_closed() {
            // The caller gave up while this waited in the queue and has retried or made
            // it pending: sending it now would deliver it twice.
            return;
        }
        let v33 = matches!(&self.state, State::Bound(_))
            && self.interface_version() < smsc_smpp::types::INTERFACE_VERSION_34;
        let seq = self.next_seq();
        let kind = match smsc_smpp::decode(pdu) {
            Ok(Pdu { body: Body::DeliverSm(mut d), .. }) => {
                let kind = if d.esm_class.is_delivery_receipt() { "receipt" } else { "mo" };
                if v33 {
                    d.tlvs = Tlvs::new();
                }
                self.push(&Pdu::new(seq, Body::DeliverSm(d)));
                kind
            }
            _ => {
                warn!("Edge.Deliver carried something other than a deliver_sm");
                let _ = reply.send(DeliverResult::Answered(Status::ESME_RINVCMDID));
                return;
            }
        };
        let deadline = Instant::now() + self.edge.settings.response_timeout;
        self.outstanding.insert(
            seq,
            Outstanding { what: Awaiting::Deliver { reply, sent: Instant::now(), kind }, deadline },
        );
    }

    pub(super) fn on_response(&mut self, seq: u32, status: Status, body: Body) {
        let Some(o) = self.outstanding.remove(&seq) else {
            debug!(seq, command = body.command_id().name(), "response to nothing outstanding");
            return;
        };
        match o.what {
            Awaiting::Deliver { reply, sent, kind } => {
                self.edge.metrics.deliver_sm_seconds.observe(sent.elapsed().as_secs_f64());
                self.edge
                    .metrics
                    .deliver_sm_total
                    .with_label_values(&[kind, status_name(status)])
                    .inc();
                let _ = reply.send(DeliverResult::Answered(status));
            }
            Awaiting::EnquireLink => self.enquire_pending = false,
            Awaiting::Unbind => self.unbound = true,
        }
    }
}

pub(super) async fn recv_outbound(state: &mut State) -> Option<Outbound> {
    match state {
        State::Bound(b) => b.outbound.recv().await,
        _ => std::future::pending().await,
    }
}

pub(super) fn try_recv_outbound(state: &mut State) -> Option<Outbound> {
    match state {
        State::Bound(b) => b.outbound.try_recv().ok(),
        _ => None,
    }
}
