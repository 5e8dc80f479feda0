//! One SMPP session: a task that owns its connection.
//!
//! The loop reads as much as the socket has, decodes every whole PDU in the buffer,
//! answers what it can at once, and gathers the submits of that read into one bus
//! publish; the responses go out together when the bus confirms. One read, one publish,
//! one write per batch: that is what lets a window of 64 cost little more than one PDU.
//!
//! Requests in process (submits being published, store queries) are bounded by the
//! account's window; past it a request is answered ESME_RTHROTTLED at once, so nothing
//! queues without bound and the session stays responsive (enquire_link, unbind).
//!
//! A session is one `Session` value and its methods, one file per part of the protocol:
//! - `state.rs`: what a session holds (its state, the bound account, the window, what
//!   awaits a response) and the small helpers every part uses to answer.
//! - `conn.rs`: the task's loop (read, write, shutdown), framing and dispatch of each
//!   PDU read, the completions of asynchronous work, and the teardown.
//! - `bind.rs`: bind and unbind, the registry and the session directory's lease, the
//!   bind lockout, and the account's changes while bound.
//! - `submit.rs`: submit_sm, data_sm and submit_multi: the window and the rate, checks,
//!   and the batch published to the bus once per read.
//! - `query.rs`: query_sm, cancel_sm and replace_sm, answered from the store.
//! - `deliver.rs`: what the edge sends (deliver_sm from its queue) and the responses to it.
//! - `timers.rs`: the session init, inactivity, PDU read, enquire_link and response timers.

mod bind;
mod conn;
mod deliver;
pub(crate) mod query;
mod state;
mod submit;
pub(crate) use submit::publish_status;
mod timers;

use std::net::SocketAddr;
use std::sync::Arc;

use smsc_smpp::CommandStatus;
use smsc_store::{BindKind, SessionLease};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use crate::Edge;
use state::Session;

type Status = CommandStatus;

/// Reads take up to this much at once: a full 16 x 256 window of submits.
const READ_CHUNK: usize = 64 * 1024;

/// deliver_sm queued for a session beyond what it has outstanding.
const OUTBOUND_QUEUE: usize = 64;

/// The directory entry of a session.
pub fn lease(edge: &Edge, system_id: &str, session_id: &str, bind: BindKind) -> SessionLease {
    SessionLease {
        system_id: system_id.to_owned(),
        session_id: session_id.to_owned(),
        edge_id: edge.settings.edge_id.clone(),
        endpoint: edge.settings.grpc_endpoint.clone(),
        bind,
        bound_at: edge.clock.now_ms(),
    }
}

/// Runs one connection to its end.
pub async fn run<S>(edge: Arc<Edge>, stream: S, peer: SocketAddr, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = edge.next_session_id();
    let span = info_span!("session", %peer, id, system_id = tracing::field::Empty);
    let session = Session::new(edge, peer, id, span.clone());
    session.run(stream, shutdown).instrument(span).await;
}

/// The label for a status: its spec name, or "other" (labels stay low-cardinality).
pub fn status_name(s: Status) -> &'static str {
    match s.name() {
        Some(name) => name,
        None if s == crate::QUOTA_EXCEEDED => "QUOTA_EXCEEDED",
        None => "other",
    }
}
