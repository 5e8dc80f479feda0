//! The session's task: its loop (read, write, shutdown), the framing and dispatch of
//! each PDU read, the completions of asynchronous work, and the teardown.

use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::stream::StreamExt;
use smsc_smpp::pdu::{MessageIdResp, SubmitMultiResp, UnsuccessSme};
use smsc_smpp::{Body, CommandId, DecodeError, Pdu, Tlvs, split_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::bind::bind_kind;
use super::deliver::{recv_outbound, try_recv_outbound};
use super::state::{Awaiting, Done, Session, State};
use super::submit::publish_status;
use super::{READ_CHUNK, Status, status_name};
use crate::registry::DeliverResult;
use crate::submit;

/// After answering an ESME's unbind, how long the edge leaves the close to the ESME
/// before closing itself. The side that unbinds closes: gosmpp closes its socket once it
/// has read unbind_resp, and an edge closing first races that close (gosmpp then reports
/// its own close as failed).
const UNBIND_LINGER: Duration = Duration::from_secs(1);

/// Reads (and drops) until the peer closes, for at most [`UNBIND_LINGER`].
async fn await_peer_close<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 256];
    let closed = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(UNBIND_LINGER, closed).await;
}

impl Session {
    pub(super) async fn run<S>(mut self, mut stream: S, shutdown: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        debug!("connected");
        let mut draining = false;
        let mut answered_unbind = false;
        loop {
            let deadline = self.next_deadline();
            let outbound_ready = self.outbound_capacity();
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !draining => {
                    draining = true;
                    self.on_shutdown();
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
                answered_unbind = true;
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
                if answered_unbind {
                    await_peer_close(&mut stream).await;
                }
                let _ = stream.shutdown().await;
                break;
            }
        }
        self.teardown().await;
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

    // ---- completions ---------------------------------------------------------------

    fn finish(&mut self, done: Done) {
        match done {
            Done::Bind { seq, command, bind, result } => match result {
                Ok(_) if self.refusing_binds_until.is_some() => {
                    self.state = State::Open;
                    self.refuse_bind_draining(seq, command);
                }
                Ok(account) if matches!(self.state, State::Binding) => {
                    self.edge.lockout.success(bind.system_id.as_bytes(), self.peer.ip());
                    self.bound(seq, command, bind, account)
                }
                Ok(_) => self.refuse_bind(seq, command, Status::ESME_RINVBNDSTS),
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
                    self.refuse_bind(seq, command, status);
                }
            },
            Done::Responses(pdus) => {
                for p in &pdus {
                    self.push(p);
                }
                self.in_process -= pdus.len();
            }
            Done::Published { items, started, at, results } => {
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
                    // Refused by the bus, or never answered: not accepted, not counted.
                    self.refund_quota(a.records - (seen - failed), at);
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
