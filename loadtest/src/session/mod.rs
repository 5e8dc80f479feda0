//! One SMPP session: one task that owns the socket and drives both directions with
//! non-blocking reads and writes.
//!
//! Each pass of the loop reads whatever is there (up to [`READ_CHUNK`]) and handles every
//! whole PDU in it (in place for submit_sm_resp and deliver_sm, through
//! [`smsc_smpp::split_frame`] otherwise), then refills the window from the
//! pre-encoded templates, then writes everything queued with one `write`. Submits in
//! flight live in a ring indexed by sequence_number; message_ids waiting for a receipt
//! in a per-session map. A receipt that arrives on another session (a receiver, or
//! another transceiver of the account) is kept with its arrival time and matched by the
//! runner at the end, so sessions never share a lock.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use smsc_smpp::pdu::{Bind, MessageIdResp};
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::{
    Body, COctetString, CommandId, CommandStatus, DEFAULT_MAX_COMMAND_LENGTH, EsmClass, HEADER_LEN,
    Header, Pdu, split_frame,
};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::{IdMap, Live, Stats, id_key};
use crate::pattern::Rng;
use crate::scan::{self, DeliverView};
use crate::schedule::Schedule;
use crate::template::Templates;

/// Octets read per `read` at most.
const READ_CHUNK: usize = 128 * 1024;
/// How often an idle session looks at the clock anyway.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// How long the SMSC gets to answer our unbind.
const UNBIND_WAIT: Duration = Duration::from_secs(2);
/// Sequence numbers run 1..=0x7FFFFFFF (SMPP 3.4 §5.1.4).
const MAX_SEQ: u32 = 0x7FFF_FFFF;

/// A scenario as its sessions see it.
#[derive(Debug)]
pub(crate) struct ScenarioRun {
    pub index: usize,
    pub start_ns: u64,
    pub end_ns: u64,
    pub graceful_ns: u64,
    /// Arrival-rate schedule; `None` for a closed loop.
    pub schedule: Option<Schedule>,
    /// shared-iterations: iterations not yet claimed by a session.
    pub budget: Option<AtomicI64>,
    pub vus: usize,
    pub window: usize,
    pub templates: Templates,
}

/// What the whole run shares.
#[derive(Debug)]
pub(crate) struct RunShared {
    pub t0: Instant,
    /// Stop starting iterations (Ctrl-C).
    pub abort: CancellationToken,
    /// Unbind and end.
    pub stop: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindAs {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindAs {
    fn body(self, b: Bind) -> Body {
        match self {
            Self::Transmitter => Body::BindTransmitter(b),
            Self::Receiver => Body::BindReceiver(b),
            Self::Transceiver => Body::BindTransceiver(b),
        }
    }

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Transmitter => "bind_transmitter",
            Self::Receiver => "bind_receiver",
            Self::Transceiver => "bind_transceiver",
        }
    }
}

/// PDUs the session answers with, encoded once; only sequence_number changes.
#[derive(Debug)]
struct Canned {
    deliver_sm_resp: Vec<u8>,
    enquire_link_resp: Vec<u8>,
    unbind: Vec<u8>,
    unbind_resp: Vec<u8>,
    generic_nack: Vec<u8>,
}

fn encoded(pdu: Pdu) -> Vec<u8> {
    let mut b = BytesMut::new();
    // Bodies without counts or long fields: encoding cannot fail.
    let _ = pdu.encode(&mut b);
    b.to_vec()
}

impl Canned {
    fn new() -> Self {
        Self {
            deliver_sm_resp: encoded(Pdu::new(0, Body::DeliverSmResp(MessageIdResp::default()))),
            enquire_link_resp: encoded(Pdu::new(0, Body::EnquireLinkResp)),
            unbind: encoded(Pdu::new(0, Body::Unbind)),
            unbind_resp: encoded(Pdu::new(0, Body::UnbindResp)),
            generic_nack: encoded(Pdu::generic_nack(0, CommandStatus::ESME_RINVCMDID)),
        }
    }
}

fn put(out: &mut Vec<u8>, pdu: &[u8], seq: u32) {
    let start = out.len();
    out.extend_from_slice(pdu);
    out[start + 12..start + 16].copy_from_slice(&seq.to_be_bytes());
}

/// Connects and binds; returns the socket and anything read past the bind response.
pub(crate) async fn connect(
    target: &str,
    bind_as: BindAs,
    system_id: &str,
    password: &str,
    system_type: &str,
    timeout: Duration,
) -> Result<(TcpStream, BytesMut), String> {
    let work = async {
        let stream =
            TcpStream::connect(target).await.map_err(|e| format!("connect {target}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("{target}: TCP_NODELAY: {e}"))?;
        let bind = Bind {
            system_id: cstr(system_id)?,
            password: cstr(password)?,
            system_type: cstr(system_type)?,
            interface_version: smsc_smpp::types::INTERFACE_VERSION_34,
            ..Bind::default()
        };
        let out = encoded(Pdu::new(1, bind_as.body(bind)));
        write_all(&stream, &out)
            .await
            .map_err(|e| format!("{target}: write {}: {e}", bind_as.name()))?;
        let mut rbuf = BytesMut::with_capacity(4096);
        loop {
            while let Some(frame) = split_frame(&mut rbuf, DEFAULT_MAX_COMMAND_LENGTH)
                .map_err(|e| format!("{target}: framing lost during the bind: {e}"))?
            {
                let Some(h) = Header::peek(&frame) else { continue };
                match h.command() {
                    Some(CommandId::EnquireLink) => {
                        let mut o = Vec::new();
                        put(
                            &mut o,
                            &encoded(Pdu::new(0, Body::EnquireLinkResp)),
                            h.sequence_number,
                        );
                        write_all(&stream, &o).await.map_err(|e| format!("{target}: {e}"))?;
                    }
                    Some(CommandId::GenericNack) => {
                        return Err(format!(
                            "{target}: {} answered by generic_nack {}",
                            bind_as.name(),
                            h.command_status
                        ));
                    }
                    Some(c) if c.is_response() && h.sequence_number == 1 => {
                        if !h.command_status.is_ok() {
                            return Err(format!(
                                "{target}: {} as {system_id:?} refused: {}",
                                bind_as.name(),
                                h.command_status
                            ));
                        }
                        return Ok((stream, rbuf));
                    }
                    _ => {}
                }
            }
            rbuf.reserve(4096);
            stream.readable().await.map_err(|e| format!("{target}: {e}"))?;
            match stream.try_read_buf(&mut rbuf) {
                Ok(0) => {
                    return Err(format!("{target}: connection closed during {}", bind_as.name()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("{target}: read: {e}")),
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("{target}: no {}_resp within {timeout:?}", bind_as.name())),
    }
}

fn cstr<const N: usize>(s: &str) -> Result<COctetString<N>, String> {
    COctetString::new(s.as_bytes()).map_err(|e| format!("{s:?}: {e}"))
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A submit in flight.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// 0: free.
    seq: u32,
    receipt: bool,
    t_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the scenario's startTime.
    Waiting,
    Load,
    /// Load over; waiting for the last responses until `until` (gracefulStop).
    Draining {
        until: u64,
    },
    Done,
}

/// What a session hands back to the runner.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub scenario: usize,
    pub stats: Stats,
    /// message_id key → submit time, for receipts not yet seen here.
    pub pending: IdMap<u64>,
    /// (message_id key, arrival time) of receipts that matched nothing here.
    pub orphans: Vec<(u64, u64)>,
}

pub(crate) struct Session {
    sc: Arc<ScenarioRun>,
    shared: Arc<RunShared>,
    live: Arc<Live>,
    canned: Canned,
    /// Index among the scenario's VUs; `None` for a receiver.
    vu: Option<usize>,
    label: String,
    wbuf: Vec<u8>,
    wpos: usize,
    ring: Vec<Slot>,
    mask: usize,
    next_seq: u32,
    in_flight: usize,
    rng: Rng,
    phase: Phase,
    /// Iterations this session started (closed loop) or took, started or dropped
    /// (arrival rate).
    taken: u64,
    /// shared-iterations: iterations claimed from the budget and not yet started.
    claimed: u64,
    /// The kind of the next iteration, picked before we know it fits.
    next_kind: Option<usize>,
    unbind_seq: Option<u32>,
    unbind_deadline: Option<u64>,
    unbind_acked: bool,
    peer_unbound: bool,
    closed: bool,
    stats: Stats,
    pending: IdMap<u64>,
    orphans: Vec<(u64, u64)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("label", &self.label)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(
        sc: Arc<ScenarioRun>,
        shared: Arc<RunShared>,
        live: Arc<Live>,
        vu: Option<usize>,
        label: String,
        seed: u64,
    ) -> Self {
        let slots = (sc.window * 2).next_power_of_two().max(16);
        let phase = if vu.is_some() { Phase::Waiting } else { Phase::Done };
        let mut stats = Stats::new();
        stats.sessions = 1;
        Self {
            sc,
            shared,
            live,
            canned: Canned::new(),
            vu,
            label,
            wbuf: Vec::with_capacity(64 * 1024),
            wpos: 0,
            ring: vec![Slot::default(); slots],
            mask: slots - 1,
            next_seq: 2,
            in_flight: 0,
            rng: Rng::new(seed),
            phase,
            taken: 0,
            claimed: 0,
            next_kind: None,
            unbind_seq: None,
            unbind_deadline: None,
            unbind_acked: false,
            peer_unbound: false,
            closed: false,
            stats,
            pending: IdMap::default(),
            orphans: Vec::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.shared.t0.elapsed().as_nanos() as u64
    }

    fn alloc_seq(&mut self) -> u32 {
        loop {
            let s = self.next_seq;
            self.next_seq = if s >= MAX_SEQ { 1 } else { s + 1 };
            // A slot still held by a very old submit: skip its number.
            if self.ring[s as usize & self.mask].seq == 0 {
                return s;
            }
        }
    }

    /// A sequence number for a PDU that holds no slot (unbind).
    fn plain_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = if s >= MAX_SEQ { 1 } else { s + 1 };
        s
    }

    fn take_slot(&mut self, seq: u32) -> Option<Slot> {
        let slot = self.ring.get_mut(seq as usize & self.mask)?;
        if slot.seq != seq || seq == 0 {
            return None;
        }
        let s = *slot;
        slot.seq = 0;
        self.in_flight -= 1;
        Some(s)
    }

    /// Starts one iteration of kind `k`: its submits go into the write buffer.
    fn start_iteration(&mut self, sc: &ScenarioRun, k: usize, iteration: u64, now_ns: u64) {
        let t = &sc.templates;
        let receipt = t.wants_receipt(&mut self.rng);
        let first = self.wbuf.len();
        let parts = t.parts(k);
        for p in 0..parts {
            let seq = self.alloc_seq();
            self.ring[seq as usize & self.mask] = Slot { seq, receipt, t_ns: now_ns };
            let first = (p > 0).then_some(first);
            t.write(k, p, &mut self.wbuf, seq, iteration, receipt, first, &mut self.rng);
        }
        self.in_flight += parts;
        self.stats.submits += parts as u64;
        self.stats.iterations += 1;
    }

    /// Fills the window as the executor allows. Returns when the next arrival falls
    /// due (ns since the start of the run), for the arrival-rate executors.
    fn generate(&mut self, now_ns: u64) -> Option<u64> {
        let vu = self.vu?;
        // One clone per batch, not per message: the count is shared by every session.
        let sc = Arc::clone(&self.sc);
        let window = sc.window;
        match &sc.schedule {
            // One kind of one part, no shared budget: the window's free slots in one go.
            None if sc.budget.is_none() && sc.templates.is_single() => {
                let free = window.saturating_sub(self.in_flight);
                let t = &sc.templates;
                self.wbuf.reserve(free * t.single_len());
                for _ in 0..free {
                    let seq = self.alloc_seq();
                    let receipt = t.wants_receipt(&mut self.rng);
                    self.ring[seq as usize & self.mask] = Slot { seq, receipt, t_ns: now_ns };
                    let iteration = self.taken * sc.vus as u64 + vu as u64;
                    self.taken += 1;
                    t.write_single(&mut self.wbuf, seq, iteration, receipt, &mut self.rng);
                }
                self.in_flight += free;
                self.stats.submits += free as u64;
                self.stats.iterations += free as u64;
                None
            }
            None => loop {
                let k = *self.next_kind.get_or_insert_with(|| sc.templates.pick(&mut self.rng));
                if self.in_flight + sc.templates.parts(k) > window {
                    return None;
                }
                if let Some(budget) = &sc.budget
                    && self.claimed == 0
                {
                    // Claim a window's worth at a time, so sessions rarely touch the atomic.
                    let want = window as i64;
                    let got = budget
                        .fetch_update(Relaxed, Relaxed, |left| {
                            (left > 0).then(|| left - left.min(want))
                        })
                        .map_or(0, |left| left.min(want));
                    if got == 0 {
                        return None;
                    }
                    self.claimed = got as u64;
                }
                self.claimed = self.claimed.saturating_sub(1);
                self.next_kind = None;
                let iteration = self.taken * sc.vus as u64 + vu as u64;
                self.taken += 1;
                self.start_iteration(&sc, k, iteration, now_ns);
            },
            Some(schedule) => {
                let t = Duration::from_nanos(now_ns.saturating_sub(sc.start_ns));
                let due = schedule.due_for(t, vu, sc.vus);
                while self.taken < due {
                    let k = *self.next_kind.get_or_insert_with(|| sc.templates.pick(&mut self.rng));
                    if self.in_flight + sc.templates.parts(k) > window {
                        // No free slot in the window: like k6 with no idle VU, the
                        // iterations due now are dropped rather than queued.
                        self.stats.dropped_iterations += due - self.taken;
                        self.taken = due;
                        break;
                    }
                    self.next_kind = None;
                    let iteration = self.taken * sc.vus as u64 + vu as u64;
                    self.taken += 1;
                    self.start_iteration(&sc, k, iteration, now_ns);
                }
                schedule.next_for(self.taken, vu, sc.vus).map(|d| sc.start_ns + d.as_nanos() as u64)
            }
        }
    }

    /// Whether the load phase is over for this session.
    fn load_over(&self, now_ns: u64) -> bool {
        if self.shared.abort.is_cancelled() || now_ns >= self.sc.end_ns {
            return true;
        }
        match (&self.sc.budget, &self.sc.schedule) {
            (Some(b), _) => self.claimed == 0 && b.load(Relaxed) <= 0,
            (None, Some(s)) => {
                self.vu.is_some_and(|vu| s.next_for(self.taken, vu, self.sc.vus).is_none())
            }
            (None, None) => false,
        }
    }

    /// Gives up on every submit still in flight.
    fn abandon(&mut self) {
        for slot in &mut self.ring {
            if slot.seq != 0 {
                slot.seq = 0;
                self.stats.no_response += 1;
            }
        }
        self.in_flight = 0;
    }

    /// Moves the session through its phases; returns the next time it must look.
    fn step(&mut self, now_ns: u64) -> u64 {
        let mut wake = now_ns + IDLE_TICK.as_nanos() as u64;
        if self.phase == Phase::Waiting {
            if now_ns >= self.sc.start_ns {
                self.phase = Phase::Load;
                self.stats.load_start_ns = self.sc.start_ns;
            } else {
                wake = wake.min(self.sc.start_ns);
            }
        }
        if self.phase == Phase::Load {
            if self.load_over(now_ns) {
                if self.sc.schedule.is_some() && !self.shared.abort.is_cancelled() {
                    // Iterations due up to the very end (the last one falls due at it).
                    self.generate(now_ns.min(self.sc.end_ns));
                }
                self.stats.load_end_ns = now_ns.min(self.sc.end_ns);
                if let Some(b) = &self.sc.budget {
                    b.fetch_add(std::mem::take(&mut self.claimed) as i64, Relaxed);
                }
                self.phase = Phase::Draining { until: now_ns + self.sc.graceful_ns };
            } else {
                if let Some(due) = self.generate(now_ns) {
                    wake = wake.min(due);
                }
                wake = wake.min(self.sc.end_ns);
            }
        }
        if let Phase::Draining { until } = self.phase {
            if self.in_flight == 0 || self.shared.stop.is_cancelled() {
                self.phase = Phase::Done;
            } else if now_ns >= until {
                self.abandon();
                self.phase = Phase::Done;
            } else {
                wake = wake.min(until);
            }
        }
        if self.phase == Phase::Done && !self.live.drained.load(Relaxed) {
            self.live.drained.store(true, Relaxed);
        }
        if self.shared.stop.is_cancelled() && self.unbind_seq.is_none() && !self.closed {
            if self.phase != Phase::Done {
                self.abandon();
                self.phase = Phase::Done;
            }
            let seq = self.plain_seq();
            put(&mut self.wbuf, &self.canned.unbind, seq);
            self.unbind_seq = Some(seq);
            self.unbind_deadline = Some(now_ns + UNBIND_WAIT.as_nanos() as u64);
        }
        if let Some(d) = self.unbind_deadline {
            wake = wake.min(d);
        }
        wake
    }

    fn finished(&self, now_ns: u64) -> bool {
        self.closed
            || self.unbind_acked
            || self.unbind_deadline.is_some_and(|d| now_ns >= d)
            || (self.peer_unbound && self.wpos == self.wbuf.len())
    }

    fn fail(&mut self, why: String) {
        if !self.closed {
            self.stats.failures.push(format!("{}: {why}", self.label));
        }
        self.closed = true;
    }

    /// Handles every whole PDU in `rbuf`.
    fn process(&mut self, rbuf: &mut BytesMut, now_ns: u64) {
        loop {
            // The two PDUs that come once per message are read in place, without
            // splitting a reference-counted frame off the buffer: a third of the
            // framing's cost at these rates. The codec's framer takes everything else,
            // and judges any length that is not plainly valid.
            if let Some(h) = Header::peek(rbuf)
                && (HEADER_LEN as u32..=DEFAULT_MAX_COMMAND_LENGTH).contains(&h.command_length)
                && h.command_length as usize <= rbuf.len()
            {
                let len = h.command_length as usize;
                let frame = &rbuf[..len];
                let handled = match h.command() {
                    Some(CommandId::SubmitSmResp) => {
                        self.on_submit_resp(h, frame, now_ns);
                        true
                    }
                    Some(CommandId::DeliverSm) => match scan::deliver_sm(frame) {
                        Some(v) => {
                            put(&mut self.wbuf, &self.canned.deliver_sm_resp, h.sequence_number);
                            self.on_deliver(v, now_ns);
                            true
                        }
                        None => false,
                    },
                    _ => false,
                };
                if handled {
                    rbuf.advance(len);
                    continue;
                }
            }
            match split_frame(rbuf, DEFAULT_MAX_COMMAND_LENGTH) {
                Ok(Some(frame)) => self.on_pdu(frame, now_ns),
                Ok(None) => return,
                Err(e) => {
                    self.fail(format!("framing lost: {e}"));
                    return;
                }
            }
        }
    }

    fn on_pdu(&mut self, frame: Bytes, now_ns: u64) {
        let Some(h) = Header::peek(&frame) else { return };
        let seq = h.sequence_number;
        match h.command() {
            Some(CommandId::SubmitSmResp) => self.on_submit_resp(h, &frame, now_ns),
            Some(CommandId::DeliverSm) => self.on_deliver_sm(seq, frame, now_ns),
            Some(CommandId::EnquireLink) => {
                put(&mut self.wbuf, &self.canned.enquire_link_resp, seq)
            }
            Some(CommandId::EnquireLinkResp) => {}
            Some(CommandId::GenericNack) => match self.take_slot(seq) {
                Some(slot) => {
                    self.stats.responses += 1;
                    self.stats
                        .submit_latency
                        .saturating_record(now_ns.saturating_sub(slot.t_ns).max(1));
                    self.stats.count_status(h.command_status);
                }
                None => self.stats.protocol_errors += 1,
            },
            Some(CommandId::Unbind) => {
                // Answered; the loop ends once the answer is written.
                put(&mut self.wbuf, &self.canned.unbind_resp, seq);
                self.peer_unbound = true;
                if self.unbind_seq.is_none() && self.phase != Phase::Done {
                    self.stats
                        .failures
                        .push(format!("{}: the SMSC unbound during the test", self.label));
                    self.abandon();
                    self.phase = Phase::Done;
                }
            }
            Some(CommandId::UnbindResp) => self.unbind_acked |= self.unbind_seq == Some(seq),
            // alert_notification and outbind have no response.
            Some(CommandId::AlertNotification | CommandId::Outbind) => {}
            Some(c) if !c.is_response() => {
                put(&mut self.wbuf, &self.canned.generic_nack, seq);
                self.stats.protocol_errors += 1;
            }
            Some(_) => self.stats.protocol_errors += 1,
            None => {
                if h.command_id & 0x8000_0000 == 0 {
                    put(&mut self.wbuf, &self.canned.generic_nack, seq);
                }
                self.stats.protocol_errors += 1;
            }
        }
    }

    #[inline]
    fn on_submit_resp(&mut self, h: Header, frame: &[u8], now_ns: u64) {
        let Some(slot) = self.take_slot(h.sequence_number) else {
            self.stats.protocol_errors += 1;
            return;
        };
        self.stats.responses += 1;
        self.stats.submit_latency.saturating_record(now_ns.saturating_sub(slot.t_ns).max(1));
        if !h.command_status.is_ok() {
            self.stats.count_status(h.command_status);
            return;
        }
        if !slot.receipt {
            return;
        }
        match scan::message_id(frame) {
            Some(id) if !id.is_empty() => {
                self.stats.receipts_requested += 1;
                let key = id_key(id);
                if self.pending.insert(key, slot.t_ns).is_some() {
                    // The SMSC gave the same id twice.
                    self.stats.protocol_errors += 1;
                }
            }
            _ => self.stats.protocol_errors += 1,
        }
    }

    fn on_deliver_sm(&mut self, seq: u32, frame: Bytes, now_ns: u64) {
        if let Some(v) = scan::deliver_sm(&frame) {
            put(&mut self.wbuf, &self.canned.deliver_sm_resp, seq);
            self.on_deliver(v, now_ns);
            return;
        }
        // Something the fast reader does not vouch for: the codec decides.
        match smsc_smpp::decode(frame) {
            Ok(Pdu { body: Body::DeliverSm(d), .. }) => {
                put(&mut self.wbuf, &self.canned.deliver_sm_resp, seq);
                let v = DeliverView {
                    esm_class: d.esm_class.0,
                    short_message: d.short_message.as_bytes(),
                    receipted_message_id: d.tlvs.receipted_message_id().map(|t| t.value()),
                    message_state: d.tlvs.message_state(),
                };
                self.on_deliver(v, now_ns);
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(resp) = e.response() {
                    self.wbuf.extend_from_slice(&encoded(resp));
                }
                self.stats.protocol_errors += 1;
            }
        }
    }

    /// A deliver_sm, answered: an MO, or a receipt to match.
    fn on_deliver(&mut self, d: DeliverView<'_>, now_ns: u64) {
        let receipt = EsmClass(d.esm_class).is_delivery_receipt();
        if !receipt && d.receipted_message_id.is_none() {
            self.stats.mo += 1;
            return;
        }
        self.stats.receipts_received += 1;
        // The TLVs when present; the text (`id:... stat:...`) otherwise.
        let state = d.message_state.and_then(ReceiptStat::from_message_state);
        let (key, stat) = match (d.receipted_message_id, state) {
            (Some(id), Some(stat)) => (id_key(id), stat),
            (tlv_id, _) => match Receipt::parse_bytes(d.short_message) {
                Ok(r) => (tlv_id.map_or_else(|| id_key(r.id.as_bytes()), id_key), r.stat),
                Err(_) => match tlv_id {
                    Some(id) => (id_key(id), ReceiptStat::Unknown),
                    None => {
                        self.stats.protocol_errors += 1;
                        return;
                    }
                },
            },
        };
        self.stats.count_state(stat.as_str());
        match self.pending.remove(&key) {
            Some(t) => {
                self.stats.receipts_matched += 1;
                self.stats.receipt_latency.saturating_record(now_ns.saturating_sub(t).max(1));
            }
            None => self.orphans.push((key, now_ns)),
        }
    }

    fn flush(&mut self, stream: &TcpStream) {
        while self.wpos < self.wbuf.len() {
            match stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(n) => {
                    self.wpos += n;
                    self.stats.bytes_sent += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.fail(format!("write: {e}"));
                    break;
                }
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
    }

    fn read(&mut self, stream: &TcpStream, rbuf: &mut BytesMut) {
        rbuf.reserve(READ_CHUNK);
        match stream.try_read_buf(rbuf) {
            Ok(0) => {
                if self.unbind_seq.is_none() && !self.peer_unbound {
                    let n = self.in_flight;
                    self.fail(format!("connection closed by the SMSC ({n} submits in flight)"));
                }
                self.closed = true;
            }
            Ok(n) => {
                self.stats.bytes_received += n as u64;
                let now_ns = self.now_ns();
                self.process(rbuf, now_ns);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => self.fail(format!("read: {e}")),
        }
    }

    /// Runs the session until the runner stops it or the connection ends.
    pub(crate) async fn run(mut self, stream: TcpStream, mut rbuf: BytesMut) -> Outcome {
        let t0 = self.shared.t0;
        // The runner's tokens are looked at on every pass and at least every IDLE_TICK,
        // not awaited: polling their futures takes a lock shared by every session.
        let sleep = tokio::time::sleep(IDLE_TICK);
        tokio::pin!(sleep);
        // Resetting the timer takes the timer driver's lock: only when it must fire sooner.
        let mut timer_at = u64::MAX;
        if !rbuf.is_empty() {
            let now_ns = self.now_ns();
            self.process(&mut rbuf, now_ns);
        }
        loop {
            let now_ns = self.now_ns();
            let wake = self.step(now_ns);
            self.live.publish(&self.stats, self.in_flight);
            self.flush(&stream);
            if self.finished(now_ns) {
                break;
            }
            if wake < timer_at || timer_at <= now_ns {
                sleep.as_mut().reset((t0 + Duration::from_nanos(wake)).into());
                timer_at = wake;
            }
            let pending = self.wpos < self.wbuf.len();
            tokio::select! {
                biased;
                r = stream.readable() => match r {
                    Ok(()) => self.read(&stream, &mut rbuf),
                    Err(e) => self.fail(format!("readable: {e}")),
                },
                r = stream.writable(), if pending => {
                    if let Err(e) = r {
                        self.fail(format!("writable: {e}"));
                    }
                }
                () = &mut sleep => {}
            }
        }
        if self.phase != Phase::Done {
            self.abandon();
            if self.stats.load_end_ns == 0 && self.phase == Phase::Load {
                self.stats.load_end_ns = self.now_ns();
            }
        }
        if self.in_flight > 0 {
            self.abandon();
        }
        self.live.publish(&self.stats, 0);
        self.live.drained.store(true, Relaxed);
        self.live.closed.store(true, Relaxed);
        Outcome {
            scenario: self.sc.index,
            stats: self.stats,
            pending: self.pending,
            orphans: self.orphans,
        }
    }
}
