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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use smsc_accounts::Account;
use smsc_bus::{BusError, Record, topics};
use smsc_smpp::pdu::{
    Bind, BindResp, CancelSm, DataSm, DestAddress, MessageIdResp, QuerySm, QuerySmResp, ReplaceSm,
    SubmitMulti, SubmitMultiResp, SubmitSm, TimeString, UnsuccessSme,
};
use smsc_smpp::{
    Body, CommandId, CommandStatus, DecodeError, MessageState, Pdu, Tlv, Tlvs, split_frame,
};
use smsc_store::{Applied, BindKind, SessionLease, Update};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Edge;
use crate::lockout::Failure;
use crate::registry::{DeliverResult, Outbound, SessionHandle};
use crate::submit::{self, Addr, Message};

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

#[derive(Debug)]
enum State {
    /// Connected, not bound.
    Open,
    /// A bind is being checked.
    Binding,
    Bound(Box<Bound>),
    /// An unbind was sent or received: no new requests.
    Unbinding,
}

#[derive(Debug)]
struct Bound {
    account: Arc<Account>,
    kind: BindKind,
    interface_version: u8,
    limiter: Arc<crate::RateLimiter>,
    handle: Arc<SessionHandle>,
    outbound: mpsc::Receiver<Outbound>,
}

/// What a finished piece of asynchronous work asks the session to do.
enum Done {
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
        results: Vec<Result<(), BusError>>,
    },
}

/// A submit waiting for its publish to be confirmed.
struct Accepted {
    seq: u32,
    command: CommandId,
    message_id: [u8; 32],
    unsuccess: Vec<UnsuccessSme>,
    /// Its records in the batch: 1, or for submit_multi the destinations published.
    records: usize,
    /// submit_multi: those destinations, to report any whose record the bus refused.
    dests: Vec<smsc_smpp::Address<21>>,
}

/// A PDU the edge sent and awaits the response to.
enum Awaiting {
    Deliver { reply: oneshot::Sender<DeliverResult>, sent: Instant, kind: &'static str },
    EnquireLink,
    Unbind,
}

struct Outstanding {
    what: Awaiting,
    deadline: Instant,
}

struct Session {
    edge: Arc<Edge>,
    peer: SocketAddr,
    id: u64,
    span: tracing::Span,
    state: State,
    started: Instant,
    last_rx: Instant,
    /// When the first octet of the PDU now partly in `inbuf` arrived: the rest must
    /// follow within `pdu_read_timeout` (a client trickling a PDU a byte at a time
    /// would otherwise hold the session, since every byte resets the inactivity timer).
    pdu_started: Option<Instant>,
    inbuf: BytesMut,
    out: BytesMut,
    inflight: FuturesUnordered<BoxFuture<'static, Done>>,
    /// ESME requests received and not answered yet (the window in use).
    in_process: usize,
    batch: Vec<Accepted>,
    records: Vec<Record>,
    batch_started: Instant,
    /// Events and keys of a batch are written here and split off: one allocation per
    /// batch instead of several per message.
    arena: BytesMut,
    /// `submit_total{status="ESME_ROK"}` for submit_sm, data_sm, submit_multi, resolved
    /// once: a label lookup per message would cost more than the counter.
    ok: [prometheus::IntCounter; 3],
    next_seq: u32,
    outstanding: HashMap<u32, Outstanding>,
    enquire_pending: bool,
    /// Answer unbind_resp to this sequence once in-flight work is answered.
    unbind_from_peer: Option<u32>,
    /// The peer answered our unbind: close once in-flight work is answered.
    unbound: bool,
    close: bool,
    /// Changes of the account set, checked at each read ([`Session::refresh_account`]).
    accounts: tokio::sync::watch::Receiver<u64>,
}

impl Session {
    fn new(edge: Arc<Edge>, peer: SocketAddr, id: u64, span: tracing::Span) -> Self {
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
            batch_started: now,
            arena: BytesMut::with_capacity(READ_CHUNK),
            ok,
            next_seq: 1,
            outstanding: HashMap::new(),
            enquire_pending: false,
            unbind_from_peer: None,
            unbound: false,
            close: false,
            accounts,
        }
    }

    async fn run<S>(mut self, mut stream: S, shutdown: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        debug!("connected");
        let mut draining = false;
        loop {
            let deadline = self.next_deadline();
            let outbound_ready = self.outbound_capacity();
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !draining => {
                    draining = true;
                    self.begin_unbind();
                }
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.finish(done);
                    // Whatever else is done already is answered in the same write.
                    while let Some(Some(done)) = self.inflight.next().now_or_never() {
                        self.finish(done);
                    }
                }
                Some(cmd) = recv_outbound(&mut self.state), if outbound_ready => {
                    self.outbound(cmd);
                    // A burst of receipts goes out in one write, not one send per PDU.
                    while self.outbound_capacity()
                        && let Some(cmd) = try_recv_outbound(&mut self.state)
                    {
                        self.outbound(cmd);
                    }
                }
                // Reading goes on while unbinding: deliver_sm_resp may still come, and new
                // requests are refused (ESME_RINVBNDSTS) rather than left unread.
                r = stream.read_buf(&mut self.inbuf) => {
                    match r {
                        Ok(0) => { debug!("peer closed"); break; }
                        Ok(_) => self.on_read(),
                        Err(e) => { debug!(error = %e, "read failed"); break; }
                    }
                }
                _ = sleep_until(deadline) => self.on_timer(),
            }
            // Both unbind directions wait for the submits in flight to be answered (an
            // answer the ESME never reads would make it resubmit); a peer unbind also
            // waits for its outstanding deliver_sm to be answered.
            let idle = self.inflight.is_empty() && self.batch.is_empty();
            let delivering =
                self.outstanding.values().any(|o| matches!(o.what, Awaiting::Deliver { .. }));
            if let Some(seq) = self.unbind_from_peer
                && idle
                && !delivering
            {
                self.push(&Pdu::new(seq, Body::UnbindResp));
                self.close = true;
            }
            if self.unbound && idle {
                self.close = true;
            }
            if !self.out.is_empty() {
                // A peer that stops reading must not hold the session (and its registry
                // entry) forever.
                let timeout = self.edge.settings.response_timeout;
                match tokio::time::timeout(timeout, stream.write_all(&self.out)).await {
                    Ok(Ok(())) => self.out.clear(),
                    Ok(Err(e)) => {
                        debug!(error = %e, "write failed");
                        break;
                    }
                    Err(_) => {
                        info!("peer not reading within the response timer; closing");
                        break;
                    }
                }
            }
            if self.close {
                let _ = stream.shutdown().await;
                break;
            }
        }
        self.teardown().await;
    }

    /// A bound session follows its account's changes (window, max_submit_rate, source
    /// addresses) from the next read on. One the new set no longer admits is told
    /// to unbind by [`crate::Edge::unbind_revoked`] and keeps what it had meanwhile.
    fn refresh_account(&mut self) {
        let State::Bound(b) = &mut self.state else { return };
        let Some(account) = self.edge.accounts.get(&b.account.system_id) else { return };
        if Arc::ptr_eq(&account, &b.account) || !account.enabled {
            return;
        }
        b.limiter = self.edge.limiter(&account.system_id, account.max_submit_rate);
        b.account = account;
    }

    fn outbound(&mut self, cmd: Outbound) {
        match cmd {
            Outbound::Deliver { pdu, reply } => self.send_deliver(pdu, reply),
            Outbound::Unbind => self.begin_unbind(),
        }
    }

    /// Whether the session can take another deliver_sm from its queue.
    fn outbound_capacity(&self) -> bool {
        match &self.state {
            State::Bound(b) => self.outstanding.len() < b.account.window as usize && !self.close,
            _ => false,
        }
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
        s
    }

    fn push(&mut self, pdu: &Pdu) {
        if let Err(e) = pdu.encode(&mut self.out) {
            warn!(error = %e, command = pdu.command_id().name(), "response could not be encoded");
        }
    }

    fn respond(&mut self, seq: u32, command: CommandId, status: Status) {
        let id = command.response().unwrap_or(CommandId::GenericNack);
        self.push(&Pdu::error_response(id, seq, status));
    }

    fn window(&self) -> usize {
        match &self.state {
            State::Bound(b) => b.account.window.max(1) as usize,
            _ => 1,
        }
    }

    // ---- reading -------------------------------------------------------------------

    fn on_read(&mut self) {
        // An atomic load per read: waiting on the channel in the select would register
        // every session's waker on one shared notifier at every turn of its loop.
        if self.accounts.has_changed().unwrap_or(false) {
            self.accounts.mark_unchanged();
            self.refresh_account();
        }
        let now = Instant::now();
        self.last_rx = now;
        self.batch_started = now;
        let max = self.edge.settings.max_command_length;
        let mut framed = false;
        loop {
            match split_frame(&mut self.inbuf, max) {
                Ok(Some(frame)) => {
                    framed = true;
                    self.on_frame(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    // Framing is lost: answer with what the header allows, then close.
                    self.decode_error(&e);
                    self.close = true;
                    break;
                }
            }
            if self.close {
                break;
            }
        }
        // What is left is the start of a PDU: it began in this read if a PDU ended in
        // it, else it is the one that was already waiting.
        self.pdu_started = match (self.inbuf.is_empty(), framed) {
            (true, _) => None,
            (false, true) => Some(now),
            (false, false) => self.pdu_started.or(Some(now)),
        };
        self.flush_batch();
        self.inbuf.reserve(READ_CHUNK.saturating_sub(self.inbuf.capacity()));
    }

    fn decode_error(&mut self, e: &DecodeError) {
        self.edge.metrics.decode_errors_total.with_label_values(&[status_name(e.status())]).inc();
        debug!(error = %e, "undecodable PDU");
        if let Some(resp) = e.response() {
            self.push(&resp);
        }
    }

    fn on_frame(&mut self, frame: Bytes) {
        let pdu = match smsc_smpp::decode(frame) {
            Ok(p) => p,
            Err(e) => {
                // A request whose body is wrong counts as answered here.
                self.decode_error(&e);
                return;
            }
        };
        let seq = pdu.sequence_number;
        match pdu.body {
            Body::EnquireLink => self.push(&Pdu::new(seq, Body::EnquireLinkResp)),
            Body::BindTransmitter(b) => self.on_bind(seq, CommandId::BindTransmitter, b),
            Body::BindReceiver(b) => self.on_bind(seq, CommandId::BindReceiver, b),
            Body::BindTransceiver(b) => self.on_bind(seq, CommandId::BindTransceiver, b),
            Body::Unbind => self.on_unbind(seq),
            Body::SubmitSm(sm) => self.on_submit(seq, sm),
            Body::DataSm(d) => self.on_data_sm(seq, d),
            Body::SubmitMulti(m) => self.on_submit_multi(seq, m),
            Body::QuerySm(q) => self.on_query(seq, q),
            Body::CancelSm(c) => self.on_cancel(seq, c),
            Body::ReplaceSm(r) => self.on_replace(seq, r),
            Body::EnquireLinkResp
            | Body::UnbindResp
            | Body::DeliverSmResp(_)
            | Body::GenericNack => {
                self.on_response(seq, pdu.status, pdu.body);
            }
            // Requests only an SMSC sends, and responses the edge never asked for.
            Body::DeliverSm(_) | Body::Outbind(_) | Body::AlertNotification(_) => {
                self.push(&Pdu::generic_nack(seq, Status::ESME_RINVCMDID));
            }
            other => {
                debug!(command = other.command_id().name(), "unexpected response ignored");
            }
        }
    }

    // ---- binds ---------------------------------------------------------------------

    fn on_bind(&mut self, seq: u32, command: CommandId, bind: Bind) {
        match self.state {
            State::Open => {}
            State::Binding | State::Bound(_) => {
                return self.respond(seq, command, Status::ESME_RALYBND);
            }
            State::Unbinding => return self.respond(seq, command, Status::ESME_RINVBNDSTS),
        }
        let ip = self.peer.ip();
        if self.edge.lockout.is_locked(bind.system_id.as_bytes(), ip, Instant::now()) {
            // Refused before the password is looked at: no argon2 work, and the same
            // answer whether or not the system_id exists. Then closed: each try costs
            // the client a new connection.
            let m = &self.edge.metrics;
            m.connections_refused_total.with_label_values(&["lockout"]).inc();
            m.binds_total
                .with_label_values(&[
                    bind_kind(command).as_str(),
                    status_name(Status::ESME_RBINDFAIL),
                ])
                .inc();
            debug!(system_id = %bind.system_id, "bind refused: system_id locked out from this address");
            self.respond(seq, command, Status::ESME_RBINDFAIL);
            self.close = true;
            return;
        }
        self.state = State::Binding;
        let kind = bind_kind(command);
        let edge = self.edge.clone();
        self.inflight.push(Box::pin(async move {
            let result = authenticate(&edge, &bind, kind, ip).await;
            Done::Bind { seq, command, bind, result }
        }));
    }

    fn bound(&mut self, seq: u32, command: CommandId, bind: Bind, account: Arc<Account>) {
        let kind = bind_kind(command);
        let (tx, outbound) = mpsc::channel(OUTBOUND_QUEUE);
        let session_id = format!("{}/{}", self.edge.settings.edge_id, self.id);
        let handle = Arc::new(SessionHandle {
            id: self.id,
            session_id: session_id.clone(),
            system_id: account.system_id.clone(),
            bind: kind,
            peer: self.peer.ip(),
            tx,
            requests: Default::default(),
            revoked: Default::default(),
        });
        self.edge.registry.add(handle.clone());
        self.span.record("system_id", account.system_id.as_str());
        let limiter = self.edge.limiter(&account.system_id, account.max_submit_rate);
        let mut resp = BindResp {
            system_id: smsc_smpp::COctetString::new(self.edge.settings.smsc_system_id.as_bytes())
                .unwrap_or_default(),
            tlvs: Tlvs::new(),
        };
        // A 3.3 peer does not understand TLVs (3.4 §2.2.1 interface_version).
        if bind.interface_version >= smsc_smpp::types::INTERFACE_VERSION_34 {
            resp.tlvs.push(Tlv::ScInterfaceVersion(smsc_smpp::types::INTERFACE_VERSION_34));
        }
        let body = match command {
            CommandId::BindTransmitter => Body::BindTransmitterResp(resp),
            CommandId::BindReceiver => Body::BindReceiverResp(resp),
            _ => Body::BindTransceiverResp(resp),
        };
        self.push(&Pdu::new(seq, body));
        self.edge.metrics.binds_total.with_label_values(&[kind.as_str(), "ok"]).inc();
        self.edge.metrics.sessions.with_label_values(&[kind.as_str()]).inc();
        info!(system_id = %account.system_id, bind = kind.as_str(), "bound");
        let lease = lease(&self.edge, &account.system_id, &session_id, kind);
        let (store, ttl) = (self.edge.store.clone(), self.edge.settings.session_lease_ttl);
        tokio::spawn(async move {
            if let Err(e) = store.put_session(lease, ttl).await {
                warn!(error = %e, "session lease not registered; the heartbeat retries");
            }
        });
        self.state = State::Bound(Box::new(Bound {
            account,
            kind,
            interface_version: bind.interface_version,
            limiter,
            handle,
            outbound,
        }));
    }

    fn on_unbind(&mut self, seq: u32) {
        // In-flight requests are answered first; then unbind_resp and close. Out of the
        // registry at once: no new deliveries to a session that is leaving.
        self.unbind_from_peer = Some(seq);
        match self.state {
            State::Bound(_) => self.leave_bound(),
            _ => self.state = State::Unbinding,
        }
    }

    fn begin_unbind(&mut self) {
        if matches!(self.state, State::Unbinding) || self.close {
            return;
        }
        if !matches!(self.state, State::Bound(_)) {
            self.close = true;
            return;
        }
        let seq = self.next_seq();
        self.push(&Pdu::new(seq, Body::Unbind));
        let deadline = Instant::now() + self.edge.settings.response_timeout;
        self.outstanding.insert(seq, Outstanding { what: Awaiting::Unbind, deadline });
        self.leave_bound();
    }

    /// Leaves the bound state: no new requests, no more deliveries to this session.
    fn leave_bound(&mut self) {
        if let State::Bound(b) = std::mem::replace(&mut self.state, State::Unbinding) {
            self.unregister(&b);
        }
    }

    fn unregister(&self, b: &Bound) {
        self.edge.registry.remove(&b.account.system_id, self.id);
        self.edge.metrics.sessions.with_label_values(&[b.kind.as_str()]).dec();
        let (store, system_id, session_id) =
            (self.edge.store.clone(), b.account.system_id.clone(), b.handle.session_id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.remove_session(&system_id, &session_id).await {
                debug!(error = %e, "lease removal failed; it expires by TTL");
            }
        });
    }

    // ---- submits -------------------------------------------------------------------

    /// The account of a session that may submit, or the status that refuses it.
    fn transmitter(&self) -> Result<(Arc<Account>, Arc<crate::RateLimiter>), Status> {
        match &self.state {
            State::Bound(b) if b.kind.transmits() => Ok((b.account.clone(), b.limiter.clone())),
            _ => Err(Status::ESME_RINVBNDSTS),
        }
    }

    /// Admits one more request into the window (and, for submits, the rate).
    fn admit(&mut self, seq: u32, command: CommandId, rated: bool) -> Option<Arc<Account>> {
        let (account, limiter) = match self.transmitter() {
            Ok(a) => a,
            Err(s) => {
                self.respond(seq, command, s);
                return None;
            }
        };
        if self.in_process >= self.window() || (rated && limiter.take(1) == 0) {
            self.edge.metrics.throttled_total.inc();
            self.count_submit(command, Status::ESME_RTHROTTLED);
            self.respond(seq, command, Status::ESME_RTHROTTLED);
            return None;
        }
        self.in_process += 1;
        self.edge.metrics.window_in_use.observe(self.in_process as f64);
        if let State::Bound(b) = &self.state {
            b.handle.note_request();
        }
        Some(account)
    }

    fn reject(&mut self, seq: u32, command: CommandId, status: Status) {
        self.in_process -= 1;
        self.count_submit(command, status);
        self.respond(seq, command, status);
    }

    fn count_submit(&self, command: CommandId, status: Status) {
        if status.is_ok() {
            match command {
                CommandId::SubmitSm => self.ok[0].inc(),
                CommandId::DataSm => self.ok[1].inc(),
                CommandId::SubmitMulti => self.ok[2].inc(),
                _ => {}
            }
        } else if matches!(
            command,
            CommandId::SubmitSm | CommandId::DataSm | CommandId::SubmitMulti
        ) {
            self.edge
                .metrics
                .submit_total
                .with_label_values(&[command.name(), status_name(status)])
                .inc();
        }
    }

    fn on_submit(&mut self, seq: u32, sm: SubmitSm) {
        let command = CommandId::SubmitSm;
        let Some(account) = self.admit(seq, command, true) else { return };
        let now = self.edge.clock.now_ms();
        let checked = (|| {
            submit::check_flags(
                sm.esm_class,
                sm.priority_flag,
                sm.registered_delivery,
                sm.replace_if_present_flag,
                sm.data_coding,
            )?;
            submit::check_source(&account, Addr::from(&sm.source))?;
            submit::check_dest(Addr::from(&sm.dest))?;
            let payload = submit::payload(&sm.short_message, &sm.tlvs)?;
            let (schedule_at, expire_at) =
                submit::times(&account, &sm.schedule_delivery_time, &sm.validity_period, now)?;
            Ok(Message {
                command: command.name(),
                service_type: sm.service_type.as_bytes(),
                source: Addr::from(&sm.source),
                esm_class: sm.esm_class,
                protocol_id: sm.protocol_id,
                priority_flag: sm.priority_flag,
                registered_delivery: sm.registered_delivery,
                data_coding: sm.data_coding,
                payload,
                tlvs: &sm.tlvs,
                schedule_at,
                expire_at,
            })
        })();
        self.accept_single(seq, command, checked, Addr::from(&sm.dest), &account, now);
    }

    fn on_data_sm(&mut self, seq: u32, d: DataSm) {
        let command = CommandId::DataSm;
        let Some(account) = self.admit(seq, command, true) else { return };
        let now = self.edge.clock.now_ms();
        let checked = (|| {
            submit::check_flags(d.esm_class, 0, d.registered_delivery, 0, d.data_coding)?;
            submit::check_source(&account, Addr::from(&d.source))?;
            submit::check_dest(Addr::from(&d.dest))?;
            let payload = submit::payload(&Default::default(), &d.tlvs)?;
            let (schedule_at, expire_at) =
                submit::times(&account, &TimeString::EMPTY, &TimeString::EMPTY, now)?;
            Ok(Message {
                command: command.name(),
                service_type: d.service_type.as_bytes(),
                source: Addr::from(&d.source),
                esm_class: d.esm_class,
                protocol_id: 0,
                priority_flag: 0,
                registered_delivery: d.registered_delivery,
                data_coding: d.data_coding,
                payload,
                tlvs: &d.tlvs,
                schedule_at,
                expire_at,
            })
        })();
        self.accept_single(seq, command, checked, Addr::from(&d.dest), &account, now);
    }

    fn on_submit_multi(&mut self, seq: u32, m: SubmitMulti) {
        let command = CommandId::SubmitMulti;
        let Some(account) = self.admit(seq, command, true) else { return };
        let now = self.edge.clock.now_ms();
        let checked = (|| {
            submit::check_flags(
                m.esm_class,
                m.priority_flag,
                m.registered_delivery,
                m.replace_if_present_flag,
                m.data_coding,
            )?;
            submit::check_source(&account, Addr::from(&m.source))?;
            let payload = submit::payload(&m.short_message, &m.tlvs)?;
            let (schedule_at, expire_at) =
                submit::times(&account, &m.schedule_delivery_time, &m.validity_period, now)?;
            Ok(Message {
                command: command.name(),
                service_type: m.service_type.as_bytes(),
                source: Addr::from(&m.source),
                esm_class: m.esm_class,
                protocol_id: m.protocol_id,
                priority_flag: m.priority_flag,
                registered_delivery: m.registered_delivery,
                data_coding: m.data_coding,
                payload,
                tlvs: &m.tlvs,
                schedule_at,
                expire_at,
            })
        })();
        let msg = match checked {
            Ok(msg) => msg,
            Err(status) => return self.reject(seq, command, status),
        };
        let hex = self.new_id(now);
        let mut unsuccess = Vec::new();
        let mut dests = Vec::new();
        for (i, d) in m.dests.iter().enumerate() {
            match d {
                DestAddress::Sme(a) => match submit::check_dest(Addr::from(a)) {
                    Ok(()) => {
                        self.publish(&msg, &hex, i as u32, Addr::from(a), &account);
                        dests.push(*a);
                    }
                    Err(status) => {
                        unsuccess.push(UnsuccessSme { dest: *a, error_status_code: status })
                    }
                },
                // Distribution lists are an SMSC-side feature this SMSC does not offer.
                DestAddress::DistributionList(_) => unsuccess.push(UnsuccessSme {
                    dest: smsc_smpp::Address::default(),
                    error_status_code: Status::ESME_RINVDLNAME,
                }),
            }
        }
        if dests.is_empty() {
            let status = unsuccess.first().map_or(Status::ESME_RINVDSTADR, |u| u.error_status_code);
            return self.reject(seq, command, status);
        }
        let records = dests.len();
        self.batch.push(Accepted { seq, command, message_id: hex, unsuccess, records, dests });
    }

    /// A validated submit_sm or data_sm (one destination) joins the batch; a refused one
    /// is answered at once.
    fn accept_single(
        &mut self,
        seq: u32,
        command: CommandId,
        checked: Result<Message<'_>, Status>,
        dest: Addr<'_>,
        account: &Account,
        now: i64,
    ) {
        let msg = match checked {
            Ok(msg) => msg,
            Err(status) => return self.reject(seq, command, status),
        };
        let hex = self.new_id(now);
        self.publish(&msg, &hex, 0, dest, account);
        let (unsuccess, dests) = (Vec::new(), Vec::new());
        self.batch.push(Accepted { seq, command, message_id: hex, unsuccess, records: 1, dests });
    }

    fn new_id(&self, now: i64) -> [u8; 32] {
        let mut hex = [0u8; 32];
        self.edge.ids.next_at(now).write_hex(&mut hex);
        hex
    }

    /// Adds one destination's event to the batch being gathered.
    fn publish(
        &mut self,
        msg: &Message<'_>,
        id: &[u8; 32],
        dest_index: u32,
        dest: Addr<'_>,
        account: &Account,
    ) {
        if self.arena.capacity() - self.arena.len() < 1024 {
            self.arena.reserve(READ_CHUNK);
        }
        let now = self.edge.clock.now_ms();
        let payload = msg.event(
            &mut self.arena,
            id,
            dest_index,
            dest,
            &account.system_id,
            &self.edge.settings.edge_id,
            now,
        );
        self.arena.extend_from_slice(dest.addr);
        let key = self.arena.split().freeze();
        self.records.push(Record::new(key, payload));
    }

    /// Publishes the submits of this read as one batch.
    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.batch);
        let records = std::mem::take(&mut self.records);
        let started = self.batch_started;
        let publish = self.edge.bus.publish_each(topics::SUBMIT, records);
        self.inflight.push(Box::pin(async move {
            let results = publish.await;
            Done::Published { items, started, results }
        }));
    }

    // ---- query, cancel, replace ------------------------------------------------------

    fn on_query(&mut self, seq: u32, q: QuerySm) {
        let Some(account) = self.admit(seq, CommandId::QuerySm, false) else { return };
        let store = self.edge.store.clone();
        self.inflight.push(Box::pin(async move {
            let resp = match store
                .get_message(&String::from_utf8_lossy(q.message_id.as_bytes()))
                .await
            {
                Ok(rows) => match rows.into_iter().find(|m| owned(m, &account, &q.source)) {
                    Some(m) => Pdu::new(
                        seq,
                        Body::QuerySmResp(QuerySmResp {
                            message_id: q.message_id,
                            final_date: m.final_at.map(final_date).unwrap_or_default(),
                            // Being handed to the network, or handed to an upstream
                            // that has not reported yet: still en route.
                            message_state: smsc_store::public_state(m.state),
                            error_code: m.error_code.min(255) as u8,
                        }),
                    ),
                    None => {
                        Pdu::error_response(CommandId::QuerySmResp, seq, Status::ESME_RQUERYFAIL)
                    }
                },
                Err(e) => {
                    warn!(error = %e, "query_sm: store unavailable");
                    Pdu::error_response(CommandId::QuerySmResp, seq, Status::ESME_RSYSERR)
                }
            };
            Done::Responses(vec![resp])
        }));
    }

    fn on_cancel(&mut self, seq: u32, c: CancelSm) {
        let Some(account) = self.admit(seq, CommandId::CancelSm, false) else { return };
        let store = self.edge.store.clone();
        let now = self.edge.clock.now_ms();
        self.inflight.push(Box::pin(async move {
            let status = cancel(&*store, &account, &c, now).await;
            let pdu = if status.is_ok() {
                Pdu::new(seq, Body::CancelSmResp)
            } else {
                Pdu::error_response(CommandId::CancelSmResp, seq, status)
            };
            Done::Responses(vec![pdu])
        }));
    }

    fn on_replace(&mut self, seq: u32, r: ReplaceSm) {
        let Some(account) = self.admit(seq, CommandId::ReplaceSm, false) else { return };
        let store = self.edge.store.clone();
        let now = self.edge.clock.now_ms();
        self.inflight.push(Box::pin(async move {
            let status = replace(&*store, &account, &r, now).await;
            let pdu = if status.is_ok() {
                Pdu::new(seq, Body::ReplaceSmResp)
            } else {
                Pdu::error_response(CommandId::ReplaceSmResp, seq, status)
            };
            Done::Responses(vec![pdu])
        }));
    }

    // ---- completions ---------------------------------------------------------------

    fn finish(&mut self, done: Done) {
        match done {
            Done::Bind { seq, command, bind, result } => match result {
                Ok(account) if matches!(self.state, State::Binding) => {
                    self.edge.lockout.success(bind.system_id.as_bytes(), self.peer.ip());
                    self.bound(seq, command, bind, account)
                }
                Ok(_) => self.respond(seq, command, Status::ESME_RINVBNDSTS),
                Err(status) => {
                    if matches!(status, Status::ESME_RINVSYSID | Status::ESME_RINVPASWD) {
                        self.count_bind_failure(&bind);
                    }
                    let kind = bind_kind(command);
                    self.edge
                        .metrics
                        .binds_total
                        .with_label_values(&[kind.as_str(), status_name(status)])
                        .inc();
                    info!(system_id = %bind.system_id, status = %status, "bind refused");
                    if matches!(self.state, State::Binding) {
                        self.state = State::Open;
                    }
                    self.respond(seq, command, status);
                }
            },
            Done::Responses(pdus) => {
                for p in &pdus {
                    self.push(p);
                }
                self.in_process -= pdus.len();
            }
            Done::Published { items, started, results } => {
                let elapsed = started.elapsed().as_secs_f64();
                let mut results = results.into_iter();
                for mut a in items {
                    self.in_process -= 1;
                    self.edge.metrics.submit_seconds.observe(elapsed);
                    // Each item is answered from its own records' outcomes: a refusal
                    // later in the batch does not turn an accepted submit into an error
                    // (the ESME would resubmit a message already on its way).
                    // No allocation here: this runs once per message.
                    let (mut seen, mut failed, mut first) = (0, 0, None);
                    for (i, r) in results.by_ref().take(a.records).enumerate() {
                        seen += 1;
                        if let Err(e) = r {
                            let status = publish_status(&e);
                            failed += 1;
                            first.get_or_insert(status);
                            // submit_multi: the destinations the bus refused are reported
                            // in unsuccess_sme; the rest are accepted.
                            if let Some(dest) = a.dests.get(i) {
                                a.unsuccess
                                    .push(UnsuccessSme { dest: *dest, error_status_code: status });
                            }
                        }
                    }
                    if seen < a.records || (failed > 0 && failed == seen) {
                        let status = first.unwrap_or(Status::ESME_RSYSERR);
                        debug!(status = %status, "publish failed; submit refused");
                        self.count_submit(a.command, status);
                        self.respond(a.seq, a.command, status);
                        continue;
                    }
                    self.count_submit(a.command, Status::ESME_ROK);
                    let message_id = submit::message_id(&a.message_id);
                    let body = match a.command {
                        CommandId::SubmitSm => {
                            Body::SubmitSmResp(MessageIdResp { message_id, tlvs: Tlvs::new() })
                        }
                        CommandId::DataSm => {
                            Body::DataSmResp(MessageIdResp { message_id, tlvs: Tlvs::new() })
                        }
                        _ => Body::SubmitMultiResp(SubmitMultiResp {
                            message_id,
                            unsuccess: a.unsuccess,
                            tlvs: Tlvs::new(),
                        }),
                    };
                    self.push(&Pdu::new(a.seq, body));
                }
            }
        }
    }

    /// A bind refused for its credentials counts towards the lockout of its system_id
    /// from this address.
    fn count_bind_failure(&self, bind: &Bind) {
        let ip = self.peer.ip();
        let lockout = &self.edge.lockout;
        if let Failure::LockedOut { failures } =
            lockout.failure(bind.system_id.as_bytes(), ip, Instant::now())
        {
            self.edge.metrics.lockouts_total.with_label_values(&["bind_failures"]).inc();
            // The system_id as sent (escaped), never the password.
            warn!(
                system_id = %bind.system_id,
                %ip,
                failures,
                locked_for = %humantime_secs(lockout.settings().duration),
                "bind lockout: too many failed binds for this system_id from this address"
            );
        }
    }

    // ---- what the edge sends ---------------------------------------------------------

    fn send_deliver(&mut self, pdu: Bytes, reply: oneshot::Sender<DeliverResult>) {
        if reply.is_closed() {
            // The caller gave up while this waited in the queue and has retried or made
            // it pending: sending it now would deliver it twice.
            return;
        }
        let v33 = matches!(&self.state, State::Bound(b) if b.interface_version < smsc_smpp::types::INTERFACE_VERSION_34);
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

    fn on_response(&mut self, seq: u32, status: Status, body: Body) {
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

    // ---- timers --------------------------------------------------------------------

    fn next_deadline(&self) -> Instant {
        let s = &self.edge.settings;
        // Once an unbind is out, its response timer ends the session. The inactivity
        // deadline must not count then: when it is what sent the unbind it is already
        // past, and the loop would wake on it at once, over and over.
        let unbind_sent = self.outstanding.values().any(|o| matches!(o.what, Awaiting::Unbind));
        let mut d = if unbind_sent {
            Instant::now() + s.response_timeout
        } else {
            self.last_rx + s.inactivity_timeout
        };
        if matches!(self.state, State::Open | State::Binding) {
            d = d.min(self.started + s.session_init_timeout);
        }
        if let Some(t) = self.pdu_started {
            d = d.min(t + self.edge.limits.pdu_read_timeout);
        }
        if !self.enquire_pending {
            d = d.min(self.last_rx + s.enquire_link_interval);
        }
        self.outstanding.values().map(|o| o.deadline).fold(d, Instant::min)
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        let s = self.edge.settings.clone();
        if matches!(self.state, State::Open | State::Binding)
            && now >= self.started + s.session_init_timeout
        {
            info!("no bind within the session init timer; closing");
            self.close = true;
            return;
        }
        if self.pdu_started.is_some_and(|t| now >= t + self.edge.limits.pdu_read_timeout) {
            info!(buffered = self.inbuf.len(), "PDU incomplete at pdu_read_timeout; closing");
            self.edge.metrics.pdu_read_timeouts_total.inc();
            self.close = true;
            return;
        }
        if now >= self.last_rx + s.inactivity_timeout {
            info!("inactivity timer expired; unbinding");
            self.begin_unbind();
            if !matches!(self.state, State::Bound(_)) && self.outstanding.is_empty() {
                self.close = true;
            }
        }
        let expired: Vec<u32> =
            self.outstanding.iter().filter(|(_, o)| o.deadline <= now).map(|(k, _)| *k).collect();
        for seq in expired {
            let Some(o) = self.outstanding.remove(&seq) else { continue };
            match o.what {
                Awaiting::Deliver { reply, kind, .. } => {
                    self.edge.metrics.deliver_sm_total.with_label_values(&[kind, "timeout"]).inc();
                    let _ = reply.send(DeliverResult::Timeout);
                }
                Awaiting::EnquireLink => {
                    info!("enquire_link unanswered; closing");
                    self.close = true;
                }
                Awaiting::Unbind => self.close = true,
            }
        }
        if !self.enquire_pending && !self.close && now >= self.last_rx + s.enquire_link_interval {
            let seq = self.next_seq();
            self.push(&Pdu::new(seq, Body::EnquireLink));
            self.enquire_pending = true;
            self.outstanding.insert(
                seq,
                Outstanding { what: Awaiting::EnquireLink, deadline: now + s.response_timeout },
            );
        }
    }

    async fn teardown(mut self) {
        if let State::Bound(b) = std::mem::replace(&mut self.state, State::Unbinding) {
            self.unregister(&b);
        }
        for (_, o) in self.outstanding.drain() {
            if let Awaiting::Deliver { reply, .. } = o.what {
                let _ = reply.send(DeliverResult::Closed);
            }
        }
        debug!("closed");
    }
}

async fn recv_outbound(state: &mut State) -> Option<Outbound> {
    match state {
        State::Bound(b) => b.outbound.recv().await,
        _ => std::future::pending().await,
    }
}

fn try_recv_outbound(state: &mut State) -> Option<Outbound> {
    match state {
        State::Bound(b) => b.outbound.try_recv().ok(),
        _ => None,
    }
}

fn bind_kind(command: CommandId) -> BindKind {
    match command {
        CommandId::BindTransmitter => BindKind::Transmitter,
        CommandId::BindReceiver => BindKind::Receiver,
        _ => BindKind::Transceiver,
    }
}

/// What the ESME gets when the bus refused its message: ESME_RMSGQFUL for backpressure
/// (try again shortly), ESME_RSYSERR for a broker failure.
fn publish_status(e: &BusError) -> Status {
    match e {
        BusError::Full => Status::ESME_RMSGQFUL,
        _ => Status::ESME_RSYSERR,
    }
}

/// `15m`, `1h` for a log line.
fn humantime_secs(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s > 0 => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// The label for a status: its spec name, or "other" (labels stay low-cardinality).
pub fn status_name(s: Status) -> &'static str {
    s.name().unwrap_or("other")
}

/// Checks a bind against the account directory. The password check is CPU-heavy by
/// design (argon2) and runs on the blocking pool.
async fn authenticate(
    edge: &Edge,
    bind: &Bind,
    kind: BindKind,
    ip: std::net::IpAddr,
) -> Result<Arc<Account>, Status> {
    use smsc_accounts::AuthError;
    let system_id = String::from_utf8_lossy(bind.system_id.as_bytes()).into_owned();
    let password = bind.password.as_bytes().to_vec();
    let accounts = edge.accounts.clone();
    // The directory's check costs an unknown system_id the same argon2 time as a known
    // one, so response times do not tell which ids exist.
    let account = tokio::task::spawn_blocking(move || accounts.authenticate(&system_id, &password))
        .await
        .map_err(|_| Status::ESME_RSYSERR)?
        .map_err(|e| match e {
            AuthError::UnknownSystemId => Status::ESME_RINVSYSID,
            AuthError::BadPassword => Status::ESME_RINVPASWD,
            _ => Status::ESME_RBINDFAIL,
        })?;
    if !account.allows_bind(kind) || !account.client_allowed(ip) {
        return Err(Status::ESME_RBINDFAIL);
    }
    // Binds across the cluster, as the directory knows them (leases of this pod included).
    let bound = match edge.store.sessions(&account.system_id).await {
        Ok(s) => s.len(),
        Err(e) => {
            warn!(error = %e, "session directory unavailable; counting this pod only");
            edge.registry.count(&account.system_id)
        }
    };
    if bound.max(edge.registry.count(&account.system_id)) >= account.max_binds as usize {
        return Err(Status::ESME_RBINDFAIL);
    }
    Ok(account)
}

/// A stored message belongs to the asking account and source (query/cancel/replace).
/// Anything else looks exactly like "no such message", so ids do not leak.
fn owned(
    m: &smsc_store::StoredMessage,
    account: &Account,
    source: &smsc_smpp::Address<21>,
) -> bool {
    m.system_id == account.system_id
        && (source.addr.is_empty() || m.source.addr.as_bytes() == source.addr.as_bytes())
}

fn final_date(ms: i64) -> TimeString {
    match chrono::DateTime::from_timestamp_millis(ms)
        .and_then(|t| smsc_smpp::time::SmppTime::absolute(t.fixed_offset()).ok())
    {
        Some(t) => TimeString::from_time(&t),
        None => TimeString::EMPTY,
    }
}

fn pending(state: MessageState) -> bool {
    matches!(state, MessageState::ENROUTE | MessageState::SCHEDULED | MessageState::ACCEPTED)
}

async fn cancel(
    store: &dyn smsc_store::Store,
    account: &Account,
    c: &CancelSm,
    now: i64,
) -> Status {
    if c.message_id.is_empty() {
        // Cancel-by-address needs an index the store does not keep.
        return Status::ESME_RCANCELFAIL;
    }
    let id = String::from_utf8_lossy(c.message_id.as_bytes());
    let rows = match store.get_message(&id).await {
        Ok(r) => r,
        Err(_) => return Status::ESME_RSYSERR,
    };
    let mut cancelled = 0;
    for m in rows.iter().filter(|m| owned(m, account, &c.source) && pending(m.state)) {
        if !c.dest.addr.is_empty() && m.dest.addr.as_bytes() != c.dest.addr.as_bytes() {
            continue;
        }
        let update =
            Update { state: Some(MessageState::DELETED), final_at: Some(now), ..Update::default() };
        // Conditional on the state read: a delivery that got there first wins.
        match store.transition(&m.message_id, m.dest_index, m.state, update).await {
            Ok(Applied::Yes) => cancelled += 1,
            Ok(Applied::No(_)) => {}
            Err(_) => return Status::ESME_RSYSERR,
        }
    }
    if cancelled > 0 { Status::ESME_ROK } else { Status::ESME_RCANCELFAIL }
}

async fn replace(
    store: &dyn smsc_store::Store,
    account: &Account,
    r: &ReplaceSm,
    now: i64,
) -> Status {
    let id = String::from_utf8_lossy(r.message_id.as_bytes());
    let rows = match store.get_message(&id).await {
        Ok(rows) => rows,
        Err(_) => return Status::ESME_RSYSERR,
    };
    let Some(m) = rows.iter().find(|m| owned(m, account, &r.source)) else {
        return Status::ESME_RREPLACEFAIL;
    };
    if !pending(m.state) {
        return Status::ESME_RREPLACEFAIL;
    }
    let payload = match submit::payload(&r.short_message, &r.tlvs) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if !r.registered_delivery.is_valid() {
        return Status::ESME_RINVREGDLVFLG;
    }
    let (schedule_at, expire_at) =
        match (r.schedule_delivery_time.is_empty(), r.validity_period.is_empty()) {
            (true, true) => (m.schedule_at, m.expire_at),
            _ => match submit::times(account, &r.schedule_delivery_time, &r.validity_period, now) {
                Ok((s, e)) => (
                    s.or(m.schedule_at),
                    if r.validity_period.is_empty() { m.expire_at } else { e },
                ),
                Err(s) => return s,
            },
        };
    let update = Update {
        payload: Some(payload),
        registered_delivery: Some(r.registered_delivery.0),
        schedule_at: Some(schedule_at),
        expire_at: Some(expire_at),
        ..Update::default()
    };
    let mut replaced = 0;
    for m in rows.iter().filter(|m| owned(m, account, &r.source) && pending(m.state)) {
        match store.transition(&m.message_id, m.dest_index, m.state, update.clone()).await {
            Ok(Applied::Yes) => replaced += 1,
            Ok(Applied::No(_)) => {}
            Err(_) => return Status::ESME_RSYSERR,
        }
    }
    if replaced > 0 { Status::ESME_ROK } else { Status::ESME_RREPLACEFAIL }
}
