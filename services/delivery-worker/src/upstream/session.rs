//! One bind to an upstream: connect (over TLS when configured), bind, then serve until
//! stopped or broken: submits taken from the connector's queue within the window and
//! the rate, their responses matched by sequence_number, the upstream's requests
//! answered (deliver_sm and data_sm only after the worker made them durable),
//! enquire_link after idle time, unbind on the way out. [`run_bind`] reconnects with
//! exponential backoff for as long as the worker holds the bind's slot.
//!
//! Every PDU from the upstream is hostile until decoded: a body that does not decode is
//! answered with the spec's error status and the session goes on; broken framing, an
//! unanswered enquire_link or an unbind closes it. Nothing here panics on input.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::config::SmppUpstreamConfig;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use smsc_runtime::ids::IdGenerator;
use smsc_smpp::codec::{CodecError, SmppCodec};
use smsc_smpp::pdu::{Bind, MessageIdResp, SubmitSm};
use smsc_smpp::{Body, COctetString, CommandStatus, Pdu};
use smsc_store::BindKind;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ConnectorContext;
use super::inbound::{self, Incoming};
use super::tls::Tls;

/// Largest PDU accepted from an upstream (a 64 KiB message_payload and change).
const MAX_COMMAND_LENGTH: u32 = smsc_smpp::DEFAULT_MAX_COMMAND_LENGTH;
/// PDUs waiting for the socket.
const WRITE_QUEUE: usize = 256;
/// How long an unbind may wait for its unbind_resp when the slot is lost.
const UNBIND_WAIT: Duration = Duration::from_secs(2);

/// What the binds of one connector share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub config: Arc<SmppUpstreamConfig>,
    pub tls: Option<Tls>,
    pub queue: Arc<tokio::sync::Mutex<mpsc::Receiver<SubmitRequest>>>,
    /// Binds that can transmit, up now.
    pub tx_up: watch::Sender<usize>,
    pub ctx: ConnectorContext,
    pub ids: IdGenerator,
    /// submit_sm per second per transmitting bind (0: unlimited).
    pub rate_per_bind: f64,
}

/// A submit waiting for a bind with room in its window.
#[derive(Debug)]
pub(crate) struct SubmitRequest {
    pub submit: SubmitSm,
    /// Not sent after this: the caller has given up waiting.
    pub deadline: Instant,
    pub reply: oneshot::Sender<SubmitResult>,
}

#[derive(Debug)]
pub(crate) enum SubmitResult {
    /// The upstream answered (submit_sm_resp, or a generic_nack for it).
    Resp { status: CommandStatus, message_id: String, took: Duration },
    /// Sent, no answer within the response timeout: the upstream may have it.
    Timeout,
    /// Sent, and the connection went before the answer: the upstream may have it.
    ConnectionLost,
    /// Never sent: no bind had room before the deadline.
    NotSent,
}

/// Why a bind could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(#[source] std::io::Error),
    #[error("no answer in time")]
    Timeout,
    #[error("connection closed during the bind")]
    Closed,
    #[error("bytes that are not SMPP during the bind")]
    Protocol,
    #[error("bind refused: {}", .0.name().unwrap_or("vendor status"))]
    Refused(CommandStatus),
}

impl BindError {
    fn label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect_failed",
            Self::Tls(_) => "tls_failed",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Protocol => "protocol_error",
            Self::Refused(s) => s.name().unwrap_or("vendor_status"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Reader = FramedRead<ReadHalf<Box<dyn Io>>, SmppCodec>;
type Writer = WriteHalf<Box<dyn Io>>;

/// Keeps one bind of kind `kind` up until `stop`, reconnecting with exponential backoff
/// (from `reconnect_min`, doubling to `reconnect_max`, with jitter; back to the minimum
/// after a bind succeeds).
pub(crate) async fn run_bind(shared: Arc<Shared>, kind: BindKind, stop: CancellationToken) {
    let c = shared.config.clone();
    let metrics = &shared.ctx.metrics;
    let bind_type = kind.as_str();
    let mut backoff = c.reconnect_min;
    while !stop.is_cancelled() {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return,
            r = connect_and_bind(&shared, kind) => r,
        };
        match attempt {
            Ok((reader, writer)) => {
                metrics.bind_attempts_total.with_label_values(&[&shared.name, "ESME_ROK"]).inc();
                info!(connector = %shared.name, bind_type, address = %c.address, "bound to the upstream");
                backoff = c.reconnect_min;
                let up = metrics.binds.with_label_values(&[&shared.name, bind_type]);
                up.inc();
                if kind.transmits() {
                    shared.tx_up.send_modify(|n| *n += 1);
                }
                let why = serve(&shared, kind, reader, writer, &stop).await;
                if kind.transmits() {
                    shared.tx_up.send_modify(|n| *n = n.saturating_sub(1));
                }
                up.dec();
                if stop.is_cancelled() {
                    info!(connector = %shared.name, bind_type, why, "bind closed");
                } else {
                    warn!(connector = %shared.name, bind_type, why, "bind lost; reconnecting");
                }
            }
            Err(e) => {
                metrics.bind_attempts_total.with_label_values(&[&shared.name, e.label()]).inc();
                warn!(connector = %shared.name, bind_type, address = %c.address, error = %e, retry_in = ?backoff, "bind failed");
            }
        }
        let wait = backoff.mul_f64(0.75 + rand::random::<f64>() / 2.0);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        backoff = backoff.saturating_mul(2).min(c.reconnect_max);
    }
}

async fn write_pdu(w: &mut Writer, pdu: &Pdu) -> std::io::Result<()> {
    let bytes = pdu.to_bytes().map_err(std::io::Error::other)?;
    w.write_all(&bytes).await
}

async fn connect_and_bind(shared: &Shared, kind: BindKind) -> Result<(Reader, Writer), BindError> {
    let c = &shared.config;
    let connect = TcpStream::connect(c.address.as_str());
    let tcp = tokio::time::timeout(c.connect_timeout, connect)
        .await
        .map_err(|_| BindError::Timeout)?
        .map_err(BindError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &shared.tls {
        None => Box::new(tcp),
        Some(t) => {
            let handshake = t.connector.connect(t.server_name.clone(), tcp);
            let tls = tokio::time::timeout(c.connect_timeout, handshake)
                .await
                .map_err(|_| BindError::Timeout)?
                .map_err(BindError::Tls)?;
            Box::new(tls)
        }
    };
    let (r, mut w) = tokio::io::split(io);
    let mut reader = FramedRead::new(r, SmppCodec::new(MAX_COMMAND_LENGTH));
    let bind = Bind {
        system_id: COctetString::new(c.system_id.as_bytes()).map_err(|_| BindError::Protocol)?,
        password: COctetString::new(c.password.as_bytes()).map_err(|_| BindError::Protocol)?,
        system_type: COctetString::new(c.system_type.as_bytes())
            .map_err(|_| BindError::Protocol)?,
        interface_version: smsc_smpp::types::INTERFACE_VERSION_34,
        ..Bind::default()
    };
    let body = match kind {
        BindKind::Transmitter => Body::BindTransmitter(bind),
        BindKind::Receiver => Body::BindReceiver(bind),
        BindKind::Transceiver => Body::BindTransceiver(bind),
    };
    write_pdu(&mut w, &Pdu::new(1, body)).await.map_err(BindError::Connect)?;
    let deadline = Instant::now() + c.response_timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, reader.next())
            .await
            .map_err(|_| BindError::Timeout)?;
        let pdu = match frame {
            None => return Err(BindError::Closed),
            Some(Err(_)) | Some(Ok(Err(_))) => return Err(BindError::Protocol),
            Some(Ok(Ok(pdu))) => pdu,
        };
        match pdu.body {
            Body::BindTransmitterResp(_)
            | Body::BindReceiverResp(_)
            | Body::BindTransceiverResp(_)
            | Body::GenericNack
                if pdu.sequence_number == 1 =>
            {
                if pdu.status.is_ok() && !matches!(pdu.body, Body::GenericNack) {
                    return Ok((reader, w));
                }
                let status =
                    if pdu.status.is_ok() { CommandStatus::ESME_RBINDFAIL } else { pdu.status };
                return Err(BindError::Refused(status));
            }
            Body::EnquireLink => {
                let resp = Pdu::new(pdu.sequence_number, Body::EnquireLinkResp);
                write_pdu(&mut w, &resp).await.map_err(BindError::Connect)?;
            }
            // Nothing else is expected before the bind completes; it is not answered.
            _ => {
                debug!(connector = %shared.name, command = ?pdu.command_id(), "PDU before bind_resp ignored")
            }
        }
    }
}

/// Writes PDUs as they come, several per write when they queue up. An upstream that
/// does not read for `stall` (its socket buffer full) ends the connection.
async fn write_loop(mut w: Writer, mut rx: mpsc::Receiver<Pdu>, stall: Duration) {
    let mut buf = BytesMut::with_capacity(4096);
    while let Some(pdu) = rx.recv().await {
        buf.clear();
        let mut next = Some(pdu);
        while let Some(pdu) = next.take() {
            if let Err(e) = pdu.encode(&mut buf) {
                warn!(error = %e, command = ?pdu.command_id(), "PDU not encodable; not sent");
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !matches!(tokio::time::timeout(stall, w.write_all(&buf)).await, Ok(Ok(()))) {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// A token bucket: `rate` per second, bursts of up to a second of it.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        let burst = rate.max(1.0);
        Self { rate, burst, tokens: burst, at: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// How long until a token is there (zero: now, or no limit).
    fn wait(&mut self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    fn take(&mut self, now: Instant) {
        if self.rate > 0.0 {
            self.refill(now);
            self.tokens -= 1.0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Bound,
    /// Shutting down: no new submits; waiting for the outstanding ones until then.
    Draining(Instant),
    /// unbind sent; waiting for unbind_resp until then.
    Unbinding(Instant),
}

#[derive(Debug)]
struct Pending {
    reply: oneshot::Sender<SubmitResult>,
    sent_at: Instant,
}

fn next_seq(seq: &mut u32) -> u32 {
    let s = *seq;
    *seq = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
    s
}

async fn take(queue: &tokio::sync::Mutex<mpsc::Receiver<SubmitRequest>>) -> Option<SubmitRequest> {
    queue.lock().await.recv().await
}

/// Serves one bound connection; returns why it ended.
async fn serve(
    shared: &Arc<Shared>,
    kind: BindKind,
    mut reader: Reader,
    writer: Writer,
    stop: &CancellationToken,
) -> &'static str {
    let c = shared.config.clone();
    let (wtx, wrx) = mpsc::channel::<Pdu>(WRITE_QUEUE);
    let mut writer_task = tokio::spawn(write_loop(writer, wrx, c.response_timeout));
    let mut writer_done = false;
    let window = c.window as usize;
    let inbound_slots = Arc::new(Semaphore::new(window.max(16)));
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut timeouts: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut seq = 2u32;
    let mut last_rx = Instant::now();
    let mut enquire: Option<(u32, Instant)> = None;
    let mut phase = Phase::Bound;
    let mut bucket = Bucket::new(shared.rate_per_bind);
    let why = loop {
        let now = Instant::now();
        let room = kind.transmits() && phase == Phase::Bound && pending.len() < window;
        let rate_wait = if room { bucket.wait(now) } else { Duration::ZERO };
        let can_take = room && rate_wait.is_zero();
        let mut wake = match enquire {
            Some((_, deadline)) => deadline,
            None => last_rx + c.enquire_link_interval,
        };
        if let Some((deadline, _)) = timeouts.front() {
            wake = wake.min(*deadline);
        }
        if room && !rate_wait.is_zero() {
            wake = wake.min(now + rate_wait);
        }
        if let Phase::Draining(d) | Phase::Unbinding(d) = phase {
            wake = wake.min(d);
        }
        tokio::select! {
            biased;
            _ = stop.cancelled(), if phase == Phase::Bound => {
                if shared.ctx.shutdown.is_cancelled() {
                    // Orderly: the submits in flight get their answers first.
                    phase = Phase::Draining(now + c.response_timeout);
                } else {
                    // The slot is lost: another worker may take it soon.
                    let _ = wtx.send(Pdu::new(next_seq(&mut seq), Body::Unbind)).await;
                    phase = Phase::Unbinding(now + UNBIND_WAIT.min(c.response_timeout));
                }
            }
            _ = &mut writer_task, if !writer_done => {
                writer_done = true;
                break WRITE_FAILED;
            }
            frame = reader.next() => {
                let pdu = match frame {
                    None => break "closed by the upstream",
                    Some(Err(CodecError::Framing(e))) => {
                        if let Some(resp) = e.response() {
                            let _ = wtx.try_send(resp);
                        }
                        break "framing lost (bad command_length)";
                    }
                    Some(Err(_)) => break "read failed",
                    Some(Ok(Err(e))) => {
                        debug!(connector = %shared.name, error = %e, "undecodable PDU from the upstream");
                        if let Some(resp) = e.response() {
                            let _ = wtx.send(resp).await;
                        }
                        continue;
                    }
                    Some(Ok(Ok(pdu))) => pdu,
                };
                last_rx = Instant::now();
                let seq_in = pdu.sequence_number;
                match pdu.body {
                    Body::SubmitSmResp(_) => {
                        answer(&mut pending, &pdu);
                    }
                    Body::GenericNack => {
                        if !answer(&mut pending, &pdu) && enquire.is_some_and(|(s, _)| s == seq_in) {
                            enquire = None;
                        }
                    }
                    Body::EnquireLinkResp => {
                        if enquire.is_some_and(|(s, _)| s == seq_in) {
                            enquire = None;
                        }
                    }
                    Body::EnquireLink => {
                        let _ = wtx.send(Pdu::new(seq_in, Body::EnquireLinkResp)).await;
                    }
                    Body::Unbind => {
                        let _ = wtx.send(Pdu::new(seq_in, Body::UnbindResp)).await;
                        break "unbound by the upstream";
                    }
                    Body::UnbindResp => {
                        if matches!(phase, Phase::Unbinding(_)) {
                            break "unbound";
                        }
                    }
                    Body::DeliverSm(_) | Body::DataSm(_) => {
                        let data = matches!(pdu.body, Body::DataSm(_));
                        let resp_body = if data {
                            Body::DataSmResp(MessageIdResp::default())
                        } else {
                            Body::DeliverSmResp(MessageIdResp::default())
                        };
                        if !kind.receives() {
                            let resp = Pdu { sequence_number: seq_in, status: CommandStatus::ESME_RINVBNDSTS, body: resp_body };
                            let _ = wtx.send(resp).await;
                            continue;
                        }
                        // Bounded: past it, reading waits (backpressure to the upstream).
                        let Ok(permit) = inbound_slots.clone().acquire_owned().await else { continue };
                        let (shared, wtx) = (shared.clone(), wtx.clone());
                        // Spawned: it runs to the end even if this connection drops, so
                        // what it writes is complete; the upstream resends what we did not
                        // answer, and handling is idempotent.
                        tokio::spawn(async move {
                            let _permit = permit;
                            let status = incoming(&shared, pdu).await;
                            let _ = wtx.send(Pdu { sequence_number: seq_in, status, body: resp_body }).await;
                        });
                    }
                    other if other.command_id().is_response() => {
                        debug!(connector = %shared.name, command = ?other.command_id(), "stray response ignored");
                    }
                    other => {
                        // A request an SMSC does not send an ESME (submit_sm, bind, ...).
                        if let Some(resp) = other.command_id().response() {
                            let status = CommandStatus::ESME_RINVBNDSTS;
                            let _ = wtx.send(Pdu::error_response(resp, seq_in, status)).await;
                        }
                    }
                }
            }
            req = take(&shared.queue), if can_take => {
                let Some(req) = req else { break "connector dropped" };
                let now = Instant::now();
                if now >= req.deadline {
                    let _ = req.reply.send(SubmitResult::NotSent);
                    continue;
                }
                if req.reply.is_closed() {
                    continue;
                }
                bucket.take(now);
                let s = next_seq(&mut seq);
                if wtx.send(Pdu::new(s, Body::SubmitSm(req.submit))).await.is_err() {
                    let _ = req.reply.send(SubmitResult::ConnectionLost);
                    break WRITE_FAILED;
                }
                pending.insert(s, Pending { reply: req.reply, sent_at: now });
                timeouts.push_back((now + c.response_timeout, s));
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        // Housekeeping, whatever woke us.
        let now = Instant::now();
        while let Some(&(deadline, s)) = timeouts.front()
            && deadline <= now
        {
            timeouts.pop_front();
            if let Some(p) = pending.remove(&s) {
                let _ = p.reply.send(SubmitResult::Timeout);
            }
        }
        if let Some((_, deadline)) = enquire
            && deadline <= now
        {
            break "enquire_link unanswered";
        }
        if enquire.is_none() && phase == Phase::Bound && now >= last_rx + c.enquire_link_interval {
            let s = next_seq(&mut seq);
            let _ = wtx.send(Pdu::new(s, Body::EnquireLink)).await;
            enquire = Some((s, now + c.response_timeout));
        }
        if let Phase::Draining(d) = phase
            && (pending.is_empty() || now >= d)
        {
            let _ = wtx.send(Pdu::new(next_seq(&mut seq), Body::Unbind)).await;
            phase = Phase::Unbinding(now + UNBIND_WAIT.min(c.response_timeout));
        }
        if let Phase::Unbinding(d) = phase
            && now >= d
        {
            break "unbind unanswered";
        }
    };
    if why == WRITE_FAILED && !pending.is_empty() {
        read_last_answers(&mut reader, &mut pending, c.response_timeout.min(UNBIND_WAIT)).await;
    }
    for (_, p) in pending.drain() {
        let _ = p.reply.send(SubmitResult::ConnectionLost);
    }
    drop(wtx);
    if !writer_done {
        // Flushes what is queued (an unbind_resp, say); handlers still running hold the
        // queue open, and the connection is done with them.
        if tokio::time::timeout(Duration::from_secs(1), &mut writer_task).await.is_err() {
            writer_task.abort();
        }
    }
    why
}

const WRITE_FAILED: &str = "write failed";

/// Settles the pending submit a submit_sm_resp or generic_nack answers; false when it
/// answers none.
fn answer(pending: &mut HashMap<u32, Pending>, pdu: &Pdu) -> bool {
    let (status, message_id) = match &pdu.body {
        Body::SubmitSmResp(r) => {
            (pdu.status, String::from_utf8_lossy(r.message_id.as_bytes()).into_owned())
        }
        // A generic_nack with status 0 would be no answer at all.
        Body::GenericNack if pdu.status.is_ok() => (CommandStatus::ESME_RSYSERR, String::new()),
        Body::GenericNack => (pdu.status, String::new()),
        _ => return false,
    };
    let Some(p) = pending.remove(&pdu.sequence_number) else { return false };
    let took = p.sent_at.elapsed();
    let _ = p.reply.send(SubmitResult::Resp { status, message_id, took });
    true
}

/// After a failed write, the answers the upstream sent before it closed (an upstream
/// that drops the connection right after answering, say) may still wait unread: they
/// are read, until the upstream's close or `within`, so that only the submits really
/// unanswered are failed. A submit failed after the upstream took it would be sent, and
/// delivered, twice.
async fn read_last_answers(
    reader: &mut Reader,
    pending: &mut HashMap<u32, Pending>,
    within: Duration,
) {
    let answers = async {
        while let Some(Ok(frame)) = reader.next().await {
            if let Ok(pdu) = frame {
                answer(pending, &pdu);
            }
            if pending.is_empty() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(within, answers).await;
}

/// A deliver_sm or data_sm from the upstream: the command_status to answer it with,
/// once what it says is durable.
async fn incoming(shared: &Shared, pdu: Pdu) -> CommandStatus {
    let now = shared.ctx.clock.now_ms();
    let raw: Bytes = inbound::reencode(&pdu);
    let format = shared.config.receipt_id;
    let id = || shared.ids.next_at(now).to_string();
    match inbound::classify(&shared.name, &pdu.body, raw, format, id, now) {
        Some(Incoming::Receipt(Ok(mut r))) => {
            r.park_ttl = shared.config.receipt_park_ttl;
            shared.ctx.inbound.receipt(&shared.name, r).await
        }
        Some(Incoming::Receipt(Err(problem))) => {
            let metrics = &shared.ctx.metrics;
            metrics.receipts_total.with_label_values(&[&shared.name, "malformed"]).inc();
            warn!(connector = %shared.name, %problem, "receipt from the upstream not usable");
            // Permanent: resending it would not make it readable.
            CommandStatus::ESME_RX_P_APPN
        }
        Some(Incoming::Mo(mo)) => shared.ctx.inbound.mo(&shared.name, *mo).await,
        Some(Incoming::Ignored) | None => CommandStatus::ESME_ROK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    /// An upstream that answered and closed: every write fails, and what it wrote before
    /// closing (`answers`) can be read only once a write has failed, so the session sees
    /// the failed write first, as when it sends into a connection the upstream just shut.
    #[derive(Default)]
    struct AnsweredThenClosed {
        failed: bool,
        answers: BytesMut,
        reader: Option<Waker>,
    }

    #[derive(Clone, Default)]
    struct Conn(Arc<Mutex<AnsweredThenClosed>>);

    impl AsyncRead for Conn {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let mut c = self.0.lock().expect("lock");
            if !c.failed {
                c.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = c.answers.len().min(buf.remaining());
            buf.put_slice(&c.answers.split_to(n));
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Conn {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut c = self.0.lock().expect("lock");
            c.failed = true;
            if let Some(w) = c.reader.take() {
                w.wake();
            }
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Debug)]
    struct NoInbound;

    impl crate::connector::Inbound for NoInbound {
        fn receipt<'a>(
            &'a self,
            _: &'a str,
            _: crate::connector::UpstreamReceipt,
        ) -> futures::future::BoxFuture<'a, CommandStatus> {
            unreachable!("no receipt in this test")
        }
        fn mo<'a>(
            &'a self,
            _: &'a str,
            _: smsc_proto::MoEvent,
        ) -> futures::future::BoxFuture<'a, CommandStatus> {
            unreachable!("no MO in this test")
        }
    }

    #[tokio::test]
    async fn answers_read_after_a_failed_write_settle_their_submits() {
        let (queue, rx) = mpsc::channel(4);
        let config = r#"{"address": "127.0.0.1:1", "system_id": "acme", "password": "secret"}"#;
        let config: SmppUpstreamConfig = serde_json::from_str(config).expect("valid");
        let shared = Arc::new(Shared {
            name: "up".into(),
            config: Arc::new(config),
            tls: None,
            queue: Arc::new(tokio::sync::Mutex::new(rx)),
            tx_up: watch::Sender::new(0),
            ctx: ConnectorContext {
                inbound: Arc::new(NoInbound),
                store: Arc::new(smsc_store::embedded::EmbeddedStore::default()),
                clock: Arc::new(smsc_store::SystemClock),
                metrics: smsc_runtime::telemetry::Metrics::new().family(),
                shutdown: CancellationToken::new(),
            },
            ids: IdGenerator::new(),
            rate_per_bind: 0.0,
        });
        // The first submit of a session has sequence number 2 (the bind had 1).
        let resp = MessageIdResp {
            message_id: COctetString::new(b"up-1").expect("fits"),
            ..Default::default()
        };
        let conn = Conn::default();
        Pdu::new(2, Body::SubmitSmResp(resp))
            .encode(&mut conn.0.lock().expect("lock").answers)
            .expect("encodes");
        let (reply, answered) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(5);
        queue
            .send(SubmitRequest { submit: SubmitSm::default(), deadline, reply })
            .await
            .expect("queued");

        let (r, w) = tokio::io::split(Box::new(conn) as Box<dyn Io>);
        let stop = CancellationToken::new();
        let why = serve(
            &shared,
            BindKind::Transceiver,
            FramedRead::new(r, SmppCodec::default()),
            w,
            &stop,
        )
        .await;
        assert_eq!(why, WRITE_FAILED);
        match answered.await.expect("settled") {
            SubmitResult::Resp { status, message_id, .. } => {
                assert_eq!((status, message_id.as_str()), (CommandStatus::ESME_ROK, "up-1"));
            }
            other => panic!("the upstream's answer was lost: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_paces_to_the_rate_after_a_burst() {
        let mut b = Bucket::new(2.0);
        let now = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.wait(now), Duration::ZERO);
            b.take(now);
        }
        assert_eq!(b.wait(now), Duration::from_millis(500));
        assert_eq!(b.wait(now + Duration::from_millis(500)), Duration::ZERO);
        let mut unlimited = Bucket::new(0.0);
        for _ in 0..1000 {
            unlimited.take(now);
        }
        assert_eq!(unlimited.wait(now), Duration::ZERO);
        let mut seq = 0x7FFF_FFFF;
        assert_eq!((next_seq(&mut seq), next_seq(&mut seq)), (0x7FFF_FFFF, 1));
    }
}
