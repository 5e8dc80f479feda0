//! What the SMSC sends: submit_sm_resp and deliver_sm read in place on the hot path,
//! every other PDU through the codec's framer; receipts matched to their submits.

use bytes::{Buf as _, Bytes, BytesMut};
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::{
    Body, CommandId, DEFAULT_MAX_COMMAND_LENGTH, EsmClass, HEADER_LEN, Header, Pdu, split_frame,
};

use super::state::{Phase, Session, encoded, put};
use crate::metrics::id_key;
use crate::scan::{self, DeliverView};

impl Session {
    /// Handles every whole PDU in `rbuf`.
    pub(super) fn process(&mut self, rbuf: &mut BytesMut, now_ns: u64) {
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
}
