//! The SMPP upstream connector (`kind: smpp`): interconnect with another SMSC or an
//! aggregator as an ESME of it. See `docs/upstreams.md`.
//!
//! - MT: [`SmppUpstream::deliver`] builds a submit_sm from the stored message
//!   ([`submit_sm`]), queues it for the connector's binds and maps the answer
//!   ([`outcome_of`]): OK is [`Outcome::Accepted`] with the upstream's id (the worker
//!   records the link and waits for the receipt), throttling, a full queue, a system
//!   error, a timeout or no bind are temporary, other statuses permanent.
//! - Binds: the cluster may hold `max_binds` binds to the upstream. They are grouped in
//!   slots (a transceiver, or a transmitter and a receiver); a worker holds a slot by a
//!   lease in the store ([`Store::claim_slot`], refreshed at a third of its TTL), keeps
//!   its binds up while it holds it ([`session::run_bind`]), and closes them when it
//!   cannot refresh it, before the lease can pass to another worker.
//! - Receipts and MO arrive on the receiving binds; [`inbound`] reads them and the
//!   worker's [`Inbound`] makes them durable before they are answered.
//!
//! [`Store::claim_slot`]: smsc_store::Store::claim_slot

pub mod inbound;
mod session;
pub mod tls;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{SmppUpstreamConfig, UpstreamBindMode};
use bytes::Bytes;
use futures::future::BoxFuture;
use prost::Message as _;
use smsc_proto::SubmitEvent;
use smsc_smpp::pdu::{ShortMessage, SubmitSm, TimeString};
use smsc_smpp::time::SmppTime;
use smsc_smpp::{
    Body, COctetString, CommandStatus, DataCoding, EsmClass, Pdu, RegisteredDelivery, Tlv, Tlvs,
};
use smsc_store::{BindKind, SlotClaim, StoredMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::connector::{Connector, ConnectorContext, Outcome};
pub use inbound::link_key;
use session::{Shared, SubmitRequest, SubmitResult};

/// Why an upstream connector cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The network error code a receipt carries for a failure the upstream gave no status
/// for (timeout, connection lost, no bind): ESME_RSYSERR's value.
const NO_ANSWER: u16 = 0x08;

/// An upstream SMSC over SMPP. See the module docs.
#[derive(Debug)]
pub struct SmppUpstream {
    name: String,
    config: Arc<SmppUpstreamConfig>,
    tls: Option<tls::Tls>,
    queue: mpsc::Sender<SubmitRequest>,
    queue_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<SubmitRequest>>>,
    tx_up: watch::Sender<usize>,
    shared: OnceLock<Arc<Shared>>,
}

impl SmppUpstream {
    pub fn new(name: &str, config: &SmppUpstreamConfig) -> Result<Self, UpstreamError> {
        let tls = config.tls.as_ref().map(|t| tls::client(t, &config.address)).transpose()?;
        let depth =
            (config.window as usize).saturating_mul(config.binds_per_worker as usize).max(1) * 2;
        let (queue, rx) = mpsc::channel(depth);
        Ok(Self {
            name: name.to_owned(),
            config: Arc::new(config.clone()),
            tls,
            queue,
            queue_rx: Arc::new(tokio::sync::Mutex::new(rx)),
            tx_up: watch::Sender::new(0),
            shared: OnceLock::new(),
        })
    }

    /// Binds that can transmit, up in this worker now.
    pub fn transmitters_up(&self) -> usize {
        *self.tx_up.borrow()
    }

    /// The store's name for the upstream account's bind slots: every connector (of any
    /// name) binding as this system_id to this address shares them.
    fn pool(&self) -> String {
        format!("{}@{}", self.config.system_id, self.config.address)
    }

    fn metric(&self, status: &str) {
        if let Some(s) = self.shared.get() {
            s.ctx.metrics.submits_total.with_label_values(&[&self.name, status]).inc();
        }
    }

    async fn submit(&self, m: &StoredMessage) -> Outcome {
        let timeout = self.config.response_timeout;
        let sm = match submit_sm(m) {
            Some(sm) => sm,
            None => {
                self.metric("refused");
                warn!(connector = %self.name, message_id = %m.message_id, "message does not fit a submit_sm");
                return Outcome::Permanent { error_code: CommandStatus::ESME_RSYSERR.0 as u16 };
            }
        };
        // A message arriving as the worker starts waits for the first bind a little.
        let mut up = self.tx_up.subscribe();
        if tokio::time::timeout(timeout, up.wait_for(|n| *n > 0)).await.is_err() {
            self.metric("no_bind");
            return Outcome::Temporary { error_code: NO_ANSWER };
        }
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        let queued = tokio::time::timeout_at(
            deadline,
            self.queue.send(SubmitRequest { submit: sm, deadline, reply }),
        );
        if !matches!(queued.await, Ok(Ok(()))) {
            self.metric("queue_full");
            return Outcome::Temporary { error_code: NO_ANSWER };
        }
        // The bind answers by the deadline plus the response timeout; this bound only
        // matters if a bind is stuck (its upstream stopped reading).
        let bound = timeout.saturating_mul(2) + Duration::from_secs(1);
        let result = match tokio::time::timeout(bound, answer).await {
            Ok(answered) => answered.unwrap_or(SubmitResult::ConnectionLost),
            Err(_) => SubmitResult::Timeout,
        };
        match result {
            SubmitResult::Resp { status, message_id, took } => {
                self.metric(status.name().unwrap_or("vendor_status"));
                if let Some(s) = self.shared.get() {
                    s.ctx
                        .metrics
                        .submit_seconds
                        .with_label_values(&[&self.name])
                        .observe(took.as_secs_f64());
                }
                outcome_of(status, &message_id, self.config.receipt_id)
            }
            SubmitResult::Timeout => {
                self.metric("timeout");
                Outcome::Temporary { error_code: NO_ANSWER }
            }
            SubmitResult::ConnectionLost => {
                self.metric("connection_lost");
                Outcome::Temporary { error_code: NO_ANSWER }
            }
            SubmitResult::NotSent => {
                self.metric("queue_full");
                Outcome::Temporary { error_code: NO_ANSWER }
            }
        }
    }
}

impl Connector for SmppUpstream {
    fn deliver<'a>(&'a self, m: &'a StoredMessage, _attempt: u32) -> BoxFuture<'a, Outcome> {
        Box::pin(self.submit(m))
    }

    fn start(&self, ctx: ConnectorContext) {
        // One transmitting bind per slot, cluster-wide: each gets its share of the rate.
        let slots = self.config.slots();
        let rate_per_bind = if self.config.rate == 0 {
            0.0
        } else {
            f64::from(self.config.rate) / f64::from(slots.max(1))
        };
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            config: self.config.clone(),
            tls: self.tls.clone(),
            queue: self.queue_rx.clone(),
            tx_up: self.tx_up.clone(),
            ctx,
            ids: smsc_runtime::ids::IdGenerator::new(),
            rate_per_bind,
        });
        if self.shared.set(shared.clone()).is_err() {
            return;
        }
        let base = holder_base();
        let pool = self.pool();
        for k in 0..self.config.binds_per_worker.min(slots) {
            let holder = format!("{base}/{k}");
            tokio::spawn(hold_slots(shared.clone(), pool.clone(), holder));
        }
    }
}

/// This worker's name in slot leases: the pod (or host) and a random part, so that a
/// restarted pod of the same name never mistakes its predecessor's lease for its own.
fn holder_base() -> String {
    let node = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "worker".to_owned());
    format!("{node}-{:08x}", rand::random::<u32>())
}

/// Holds one slot of `pool` at a time as `holder`, for as long as the worker runs:
/// claims a free one, keeps its binds up, refreshes the lease, and when the lease is
/// lost (or cannot be confirmed in time) closes the binds and claims again.
async fn hold_slots(shared: Arc<Shared>, pool: String, holder: String) {
    let c = shared.config.clone();
    let store = shared.ctx.store.clone();
    let shutdown = shared.ctx.shutdown.clone();
    let slots = c.slots();
    let first = rand::random::<u32>() % slots.max(1);
    let retry = c.lease_ttl / 3;
    while !shutdown.is_cancelled() {
        let mut held = None;
        for i in 0..slots {
            let slot = (first + i) % slots;
            match store.claim_slot(&pool, slot, &holder, c.lease_ttl).await {
                Ok(SlotClaim::Held) => {
                    held = Some(slot);
                    break;
                }
                Ok(SlotClaim::Busy { .. }) => {}
                Err(e) => {
                    warn!(connector = %shared.name, error = %smsc_runtime::telemetry::error_chain(&e), "cannot claim a bind slot");
                    break;
                }
            }
        }
        let Some(slot) = held else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry) => continue,
            }
        };
        info!(connector = %shared.name, slot, %holder, "holding a bind slot");
        run_slot(&shared, &pool, slot, &holder).await;
    }
}

async fn run_slot(shared: &Arc<Shared>, pool: &str, slot: u32, holder: &str) {
    let c = shared.config.clone();
    let store = shared.ctx.store.clone();
    let shutdown = shared.ctx.shutdown.clone();
    let stop = shutdown.child_token();
    let kinds: &[BindKind] = match c.bind {
        UpstreamBindMode::Transceiver => &[BindKind::Transceiver],
        UpstreamBindMode::TransmitterReceiver => &[BindKind::Transmitter, BindKind::Receiver],
    };
    let binds: Vec<_> = kinds
        .iter()
        .map(|kind| tokio::spawn(session::run_bind(shared.clone(), *kind, stop.clone())))
        .collect();
    let refresh = c.lease_ttl / 3;
    // A lease not confirmed for this long may be about to pass to another worker.
    let give_up = c.lease_ttl * 2 / 3;
    let mut confirmed = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(refresh) => {}
        }
        match store.claim_slot(pool, slot, holder, c.lease_ttl).await {
            Ok(SlotClaim::Held) => confirmed = Instant::now(),
            Ok(SlotClaim::Busy { holder: other }) => {
                warn!(connector = %shared.name, slot, %other, "bind slot lost to another worker; closing its binds");
                break;
            }
            Err(e) => {
                warn!(connector = %shared.name, slot, error = %smsc_runtime::telemetry::error_chain(&e), "bind slot lease not refreshed");
                if confirmed.elapsed() >= give_up {
                    warn!(connector = %shared.name, slot, "bind slot lease unconfirmed too long; closing its binds");
                    break;
                }
            }
        }
    }
    stop.cancel();
    for b in binds {
        let _ = b.await;
    }
    match store.release_slot(pool, slot, holder).await {
        Ok(_) => {}
        Err(e) => {
            warn!(connector = %shared.name, slot, error = %smsc_runtime::telemetry::error_chain(&e), "bind slot not released; it frees at its TTL")
        }
    }
}

/// Statuses worth trying again later: the upstream is busy or broken, or our bind is.
pub fn is_temporary(status: CommandStatus) -> bool {
    matches!(
        status,
        CommandStatus::ESME_RTHROTTLED
            | CommandStatus::ESME_RMSGQFUL
            | CommandStatus::ESME_RSYSERR
            | CommandStatus::ESME_RX_T_APPN
            | CommandStatus::ESME_RINVBNDSTS
    )
}

/// What a submit_sm_resp means for the message. The error code recorded (and put in
/// receipts' `err:`) is the command_status.
pub fn outcome_of(
    status: CommandStatus,
    message_id: &str,
    format: crate::config::ReceiptIdFormat,
) -> Outcome {
    let error_code = u16::try_from(status.0).unwrap_or(u16::MAX);
    if status.is_ok() {
        let id = message_id.trim();
        if id.is_empty() {
            // Accepted, but no receipt can ever name it: as far as we can know, delivered.
            warn!("upstream accepted a submit without a message_id; counted delivered");
            return Outcome::Delivered;
        }
        return Outcome::Accepted { upstream_id: link_key(format, id) };
    }
    if is_temporary(status) {
        Outcome::Temporary { error_code }
    } else {
        Outcome::Permanent { error_code }
    }
}

/// The submit_sm that hands `m` to an upstream: its addresses, data_coding, UDHI and
/// payload (message_payload past 254 octets), protocol_id and priority as submitted, a
/// validity ending with ours, the concatenation and port TLVs passed on, and always a
/// final receipt asked for (it is how the message's fate comes back). `None` when the
/// result cannot be encoded.
pub fn submit_sm(m: &StoredMessage) -> Option<SubmitSm> {
    let ev = SubmitEvent::decode(m.event.clone()).ok();
    let mut tlvs = Tlvs::new();
    if let Some(passed) = ev.as_ref().and_then(|e| Tlvs::from_bytes(Bytes::from(e.tlvs.clone()))) {
        for t in passed.iter().filter(|t| inbound::forwarded_tlv(t)) {
            tlvs.set(t.clone());
        }
    }
    let short_message = if m.payload.len() <= ShortMessage::MAX {
        ShortMessage::new(m.payload.clone()).ok()?
    } else {
        tlvs.set(Tlv::MessagePayload(m.payload.clone()));
        ShortMessage::empty()
    };
    let validity = chrono::DateTime::from_timestamp_millis(m.expire_at)
        .and_then(|t| SmppTime::absolute(t.fixed_offset()).ok())
        .map_or(TimeString::EMPTY, |t| TimeString::from_time(&t));
    let sm = SubmitSm {
        service_type: COctetString::new(m.service_type.as_bytes()).unwrap_or_default(),
        source: m.source.resized(),
        dest: m.dest.resized(),
        esm_class: EsmClass(m.esm_class & (EsmClass::UDHI | EsmClass::REPLY_PATH)),
        protocol_id: ev.as_ref().map_or(0, |e| e.protocol_id as u8),
        priority_flag: ev.as_ref().map_or(0, |e| e.priority_flag as u8),
        validity_period: validity,
        registered_delivery: RegisteredDelivery::FINAL,
        data_coding: DataCoding(m.data_coding),
        short_message,
        tlvs,
        ..SubmitSm::default()
    };
    // Checked here so that the bind never holds a PDU it cannot write.
    Pdu::new(1, Body::SubmitSm(sm.clone())).to_bytes().ok()?;
    Some(sm)
}

/// How long the link between an upstream id and our message is kept: as long as the
/// message can still change (its validity) and an hour more for late receipts.
pub fn link_ttl(m: &StoredMessage, now: i64) -> Duration {
    let left = u64::try_from(m.expire_at.saturating_sub(now)).unwrap_or(0);
    Duration::from_millis(left) + Duration::from_secs(3600)
}

#[cfg(test)]
mod tests;
