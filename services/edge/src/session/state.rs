//! What a session holds, and the helpers every part of it uses to answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use smsc_accounts::Account;
use smsc_bus::{BusError, Record};
use smsc_smpp::pdu::{Bind, UnsuccessSme};
use smsc_smpp::{CommandId, Pdu};
use smsc_store::BindKind;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

use super::{READ_CHUNK, Status};
use crate::Edge;
use crate::registry::{DeliverResult, Outbound, SessionHandle};

#[derive(Debug)]
pub(super) enum State {
    /// Connected, not bound.
    Open,
    /// A bind is being checked.
    Binding,
    Bound(Box<Bound>),
    /// An unbind was sent or received: no new requests.
    Unbinding,
}

#[derive(Debug)]
pub(super) struct Bound {
    pub(super) account: Arc<Account>,
    pub(super) kind: BindKind,
    pub(super) interface_version: u8,
    pub(super) limiter: Arc<crate::RateLimiter>,
    pub(super) handle: Arc<SessionHandle>,
    pub(super) outbound: mpsc::Receiver<Outbound>,
}

/// What a finished piece of asynchronous work asks the session to do.
pub(super) enum Done {
    Bind {
        seq: u32,
        command: CommandId,
        bind: Bind,
        result: Result<Arc<Account>, Status>,
    },
    /// Responses to write, and how many requests they close.
    Responses(Vec<Pdu>),
    /// One outcome per record, in the order of the items' records.
    Published {
        items: Vec<Accepted>,
        started: Instant,
        /// When, on the edge's clock, the batch went out (its quota was taken before).
        at: smsc_store::UnixMillis,
        results: Vec<Result<(), BusError>>,
    },
}

/// A submit waiting for its publish to be confirmed.
pub(super) struct Accepted {
    pub(super) seq: u32,
    pub(super) command: CommandId,
    pub(super) message_id: [u8; 32],
    pub(super) unsuccess: Vec<UnsuccessSme>,
    /// Its records in the batch: 1, or for submit_multi the destinations published.
    pub(super) records: usize,
    /// submit_multi: those destinations, to report any whose record the bus refused.
    pub(super) dests: Vec<smsc_smpp::Address<21>>,
}

/// A PDU the edge sent and awaits the response to.
pub(super) enum Awaiting {
    Deliver { reply: oneshot::Sender<DeliverResult>, sent: Instant, kind: &'static str },
    EnquireLink,
    Unbind,
}

pub(super) struct Outstanding {
    pub(super) what: Awaiting,
    pub(super) deadline: Instant,
}

pub(super) struct Session {
    pub(super) edge: Arc<Edge>,
    pub(super) peer: SocketAddr,
    pub(super) id: u64,
    pub(super) span: tracing::Span,
    pub(super) state: State,
    pub(super) started: Instant,
    pub(super) last_rx: Instant,
    /// When the first octet of the PDU now partly in `inbuf` arrived: the rest must
    /// follow within `pdu_read_timeout` (a client trickling a PDU a byte at a time
    /// would otherwise hold the session, since every byte resets the inactivity timer).
    pub(super) pdu_started: Option<Instant>,
    pub(super) inbuf: BytesMut,
    pub(super) out: BytesMut,
    pub(super) inflight: FuturesUnordered<BoxFuture<'static, Done>>,
    /// ESME requests received and not answered yet (the window in use).
    pub(super) in_process: usize,
    pub(super) batch: Vec<Accepted>,
    pub(super) records: Vec<Record>,
    /// Each record's topic (its class's): shared names, no allocation per record.
    pub(super) topics: Vec<Arc<str>>,
    pub(super) batch_started: Instant,
    /// Events and keys of a batch are written here and split off: one allocation per
    /// batch instead of several per message.
    pub(super) arena: BytesMut,
    /// `submit_total{status="ESME_ROK"}` for submit_sm, data_sm, submit_multi, resolved
    /// once: a label lookup per message would cost more than the counter.
    pub(super) ok: [prometheus::IntCounter; 3],
    pub(super) next_seq: u32,
    pub(super) outstanding: HashMap<u32, Outstanding>,
    pub(super) enquire_pending: bool,
    /// Answer unbind_resp to this sequence once in-flight work is answered.
    pub(super) unbind_from_peer: Option<u32>,
    /// The peer answered our unbind: close once in-flight work is answered.
    pub(super) unbound: bool,
    /// The edge is shutting down and this session was not bound: binds are refused
    /// until then, when it closes ([`Session::on_shutdown`]).
    pub(super) refusing_binds_until: Option<Instant>,
    pub(super) close: bool,
    /// Changes of the account set, checked at each read ([`Session::refresh_account`]).
    pub(super) accounts: tokio::sync::watch::Receiver<u64>,
}

impl Session {
    pub(super) fn new(edge: Arc<Edge>, peer: SocketAddr, id: u64, span: tracing::Span) -> Self {
        let now = Instant::now();
        let accounts = edge.accounts.changes();
        let ok = ["submit_sm", "data_sm", "submit_multi"]
            .map(|c| edge.metrics.submit_total.with_label_values(&[c, "ESME_ROK"]));
        Self {
            edge,
            peer,
            id,
            span,
            state: State::Open,
            started: now,
            last_rx: now,
            pdu_started: None,
            inbuf: BytesMut::with_capacity(READ_CHUNK),
            out: BytesMut::with_capacity(READ_CHUNK),
            inflight: FuturesUnordered::new(),
            in_process: 0,
            batch: Vec::new(),
            records: Vec::new(),
            topics: Vec::new(),
            batch_started: now,
            arena: BytesMut::with_capacity(READ_CHUNK),
            ok,
            next_seq: 1,
            outstanding: HashMap::new(),
            enquire_pending: false,
            unbind_from_peer: None,
            unbound: false,
            refusing_binds_until: None,
            close: false,
            accounts,
        }
    }

    pub(super) fn next_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
        s
    }

    pub(super) fn push(&mut self, pdu: &Pdu) {
        if let Err(e) = pdu.encode(&mut self.out) {
            warn!(error = %e, command = pdu.command_id().name(), "response could not be encoded");
        }
    }

    pub(super) fn respond(&mut self, seq: u32, command: CommandId, status: Status) {
        let id = command.response().unwrap_or(CommandId::GenericNack);
        self.push(&Pdu::error_response(id, seq, status));
    }

    pub(super) fn window(&self) -> usize {
        match &self.state {
            State::Bound(b) => b.account.window.max(1) as usize,
            _ => 1,
        }
    }

    /// The interface_version the ESME bound with (3.4 until it has bound).
    pub(super) fn interface_version(&self) -> u8 {
        match &self.state {
            State::Bound(b) => b.interface_version,
            _ => smsc_smpp::types::INTERFACE_VERSION_34,
        }
    }
}
