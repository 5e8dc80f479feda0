//! What a session holds: what the runner gives it ([`ScenarioRun`], [`RunShared`]) and
//! gets back ([`Outcome`]), its state ([`Session`]: the ring of submits in flight, the
//! phase, the unbind), and the helpers every part of it uses to answer.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use bytes::BytesMut;
use smsc_smpp::pdu::MessageIdResp;
use smsc_smpp::{Body, CommandStatus, Pdu};
use tokio_util::sync::CancellationToken;

use super::MAX_SEQ;
use crate::metrics::{IdMap, Live, Stats};
use crate::pattern::Rng;
use crate::schedule::Schedule;
use crate::template::Templates;

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

/// PDUs the session answers with, encoded once; only sequence_number changes.
#[derive(Debug)]
pub(super) struct Canned {
    pub(super) deliver_sm_resp: Vec<u8>,
    pub(super) enquire_link_resp: Vec<u8>,
    pub(super) unbind: Vec<u8>,
    pub(super) unbind_resp: Vec<u8>,
    pub(super) generic_nack: Vec<u8>,
}

pub(super) fn encoded(pdu: Pdu) -> Vec<u8> {
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

pub(super) fn put(out: &mut Vec<u8>, pdu: &[u8], seq: u32) {
    let start = out.len();
    out.extend_from_slice(pdu);
    out[start + 12..start + 16].copy_from_slice(&seq.to_be_bytes());
}

/// A submit in flight.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Slot {
    /// 0: free.
    pub(super) seq: u32,
    pub(super) receipt: bool,
    pub(super) t_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
    pub(super) sc: Arc<ScenarioRun>,
    pub(super) shared: Arc<RunShared>,
    pub(super) live: Arc<Live>,
    pub(super) canned: Canned,
    /// Index among the scenario's VUs; `None` for a receiver.
    pub(super) vu: Option<usize>,
    pub(super) label: String,
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    pub(super) ring: Vec<Slot>,
    pub(super) mask: usize,
    next_seq: u32,
    pub(super) in_flight: usize,
    pub(super) rng: Rng,
    pub(super) phase: Phase,
    /// Iterations this session started (closed loop) or took, started or dropped
    /// (arrival rate).
    pub(super) taken: u64,
    /// shared-iterations: iterations claimed from the budget and not yet started.
    pub(super) claimed: u64,
    /// The kind of the next iteration, picked before we know it fits.
    pub(super) next_kind: Option<usize>,
    pub(super) unbind_seq: Option<u32>,
    pub(super) unbind_deadline: Option<u64>,
    pub(super) unbind_acked: bool,
    pub(super) peer_unbound: bool,
    pub(super) closed: bool,
    pub(super) stats: Stats,
    pub(super) pending: IdMap<u64>,
    pub(super) orphans: Vec<(u64, u64)>,
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

    pub(super) fn now_ns(&self) -> u64 {
        self.shared.t0.elapsed().as_nanos() as u64
    }

    pub(super) fn alloc_seq(&mut self) -> u32 {
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
    pub(super) fn plain_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = if s >= MAX_SEQ { 1 } else { s + 1 };
        s
    }

    pub(super) fn take_slot(&mut self, seq: u32) -> Option<Slot> {
        let slot = self.ring.get_mut(seq as usize & self.mask)?;
        if slot.seq != seq || seq == 0 {
            return None;
        }
        let s = *slot;
        slot.seq = 0;
        self.in_flight -= 1;
        Some(s)
    }

    /// Gives up on every submit still in flight.
    pub(super) fn abandon(&mut self) {
        for slot in &mut self.ring {
            if slot.seq != 0 {
                slot.seq = 0;
                self.stats.no_response += 1;
            }
        }
        self.in_flight = 0;
    }

    pub(super) fn fail(&mut self, why: String) {
        if !self.closed {
            self.stats.failures.push(format!("{}: {why}", self.label));
        }
        self.closed = true;
    }
}
