//! The timers: session init (no bind yet), inactivity, a PDU read that does not
//! finish, enquire_link, and the response timer of what the edge sent.

use smsc_smpp::{Body, Pdu};
use tokio::time::Instant;
use tracing::{debug, info};

use super::state::{Awaiting, Outstanding, Session, State};
use crate::registry::DeliverResult;

impl Session {
    pub(super) fn next_deadline(&self) -> Instant {
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
        if let Some(t) = self.refusing_binds_until
            && matches!(self.state, State::Open)
        {
            d = d.min(t);
        }
        if !self.enquire_pending {
            d = d.min(self.last_rx + s.enquire_link_interval);
        }
        self.outstanding.values().map(|o| o.deadline).fold(d, Instant::min)
    }

    pub(super) fn on_timer(&mut self) {
        let now = Instant::now();
        let s = self.edge.settings.clone();
        if matches!(self.state, State::Open | State::Binding)
            && now >= self.started + s.session_init_timeout
        {
            info!("no bind within the session init timer; closing");
            self.close = true;
            return;
        }
        if self.refusing_binds_until.is_some_and(|t| now >= t) && matches!(self.state, State::Open)
        {
            debug!("shutting down, and no bind came to refuse; closing");
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
}
