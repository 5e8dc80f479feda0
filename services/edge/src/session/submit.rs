//! submit_sm, data_sm and submit_multi: admission to the window and the rate, the
//! checks, and the batch of a read published to the bus as one.

use std::sync::Arc;

use smsc_accounts::Account;
use smsc_bus::BusError;
use smsc_smpp::pdu::{DataSm, DestAddress, SubmitMulti, SubmitSm, UnsuccessSme};
use smsc_smpp::{CommandId, Pdu};

use super::state::{Accepted, Done, Session, State};
use super::{READ_CHUNK, Status, status_name};
use smsc_store::{Address, UnixMillis};

use crate::quota::{QUOTA_EXCEEDED, Verdict};
use crate::submit::{self, Message, Submit};

/// How long an ESME_RTHROTTLED is held when waiting, not the ESME's window, is the cause
/// (an account crowding the pipeline, a quota lease on its way).
const THROTTLE_HOLD: std::time::Duration = std::time::Duration::from_millis(20);

impl Session {
    /// The account of a session that may submit, or the status that refuses it.
    fn transmitter(&self) -> Result<(Arc<Account>, Arc<crate::RateLimiter>), Status> {
        match &self.state {
            State::Bound(b) if b.kind.transmits() => Ok((b.account.clone(), b.limiter.clone())),
            _ => Err(Status::ESME_RINVBNDSTS),
        }
    }

    /// Admits one more request into the window (and, for submits, the rate).
    pub(super) fn admit(
        &mut self,
        seq: u32,
        command: CommandId,
        rated: bool,
    ) -> Option<Arc<Account>> {
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
        if rated && self.edge.pressure.is_over(account.system_id.as_bytes()) {
            // The account crowds a hop that falls behind.
            self.edge.metrics.backlog_throttled_total.inc();
            self.in_process += 1;
            self.throttle_held(seq, command);
            return None;
        }
        self.in_process += 1;
        self.edge.metrics.window_in_use.observe(self.in_process as f64);
        if let State::Bound(b) = &self.state {
            b.handle.note_request();
        }
        Some(account)
    }

    /// Answers a request in the window ESME_RTHROTTLED after a moment, its window slot
    /// taken meanwhile: an ESME that resubmits at once would otherwise spin, taking CPU
    /// from the very hops (or the store) it waits for.
    fn throttle_held(&mut self, seq: u32, command: CommandId) {
        self.edge.metrics.throttled_total.inc();
        self.count_submit(command, Status::ESME_RTHROTTLED);
        let id = command.response().unwrap_or(CommandId::GenericNack);
        let pdu = Pdu::error_response(id, seq, Status::ESME_RTHROTTLED);
        self.inflight.push(Box::pin(async move {
            tokio::time::sleep(THROTTLE_HOLD).await;
            Done::Responses(vec![pdu])
        }));
    }

    fn reject(&mut self, seq: u32, command: CommandId, status: Status) {
        self.in_process -= 1;
        self.count_submit(command, status);
        self.respond(seq, command, status);
    }

    pub(super) fn count_submit(&self, command: CommandId, status: Status) {
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

    pub(super) fn on_submit(&mut self, seq: u32, sm: SubmitSm) {
        let dest = sm.dest.resized();
        self.accept_single(seq, Submit::from(&sm), dest);
    }

    pub(super) fn on_data_sm(&mut self, seq: u32, d: DataSm) {
        let dest = d.dest.resized();
        self.accept_single(seq, Submit::from(&d), dest);
    }

    pub(super) fn on_submit_multi(&mut self, seq: u32, m: SubmitMulti) {
        let command = CommandId::SubmitMulti;
        let Some(account) = self.admit(seq, command, true) else { return };
        let now = self.edge.clock.now_ms();
        let checked = submit::check(Submit::from(&m), None, &account, now);
        let msg = match checked {
            Ok(msg) => msg,
            Err(status) => return self.reject(seq, command, status),
        };
        let mut unsuccess = Vec::new();
        let mut dests = Vec::new();
        for (i, d) in m.dests.iter().enumerate() {
            match d {
                DestAddress::Sme(a) => match submit::check_dest(&a.resized()) {
                    Ok(()) => dests.push((i as u32, *a)),
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
        if !self.take_quota(seq, command, &account, dests.len() as u64) {
            return;
        }
        let hex = self.new_id(now);
        for (i, dest) in &dests {
            self.publish(&msg, &hex, *i, &dest.resized(), &account, now);
        }
        let records = dests.len();
        let dests = dests.into_iter().map(|(_, a)| a).collect();
        self.batch.push(Accepted { seq, command, message_id: hex, unsuccess, records, dests });
    }

    /// A submit_sm or data_sm (one destination) that passes the checks joins the batch;
    /// a refused one is answered at once.
    fn accept_single(&mut self, seq: u32, sm: Submit<'_>, dest: Address) {
        let Some(account) = self.admit(seq, sm.command, true) else { return };
        let now = self.edge.clock.now_ms();
        let msg = match submit::check(sm, Some(&dest), &account, now) {
            Ok(msg) => msg,
            Err(status) => return self.reject(seq, sm.command, status),
        };
        if !self.take_quota(seq, sm.command, &account, 1) {
            return;
        }
        let hex = self.new_id(now);
        self.publish(&msg, &hex, 0, &dest, &account, now);
        let (unsuccess, dests) = (Vec::new(), Vec::new());
        let command = sm.command;
        self.batch.push(Accepted { seq, command, message_id: hex, unsuccess, records: 1, dests });
    }

    /// Takes `n` messages of the account's quota for a submit in the window; false when
    /// the submit is answered instead (past the quota, or no lease yet).
    fn take_quota(&mut self, seq: u32, command: CommandId, account: &Account, n: u64) -> bool {
        match self.edge.quotas.take(account, n) {
            Verdict::Granted => true,
            Verdict::Pending => {
                self.throttle_held(seq, command);
                false
            }
            Verdict::Exhausted(period) => {
                self.edge.metrics.quota_refused_total.with_label_values(&[period.name()]).inc();
                self.reject(seq, command, QUOTA_EXCEEDED);
                false
            }
        }
    }

    /// Gives back quota taken (before `at`) for messages that were not accepted after all.
    pub(super) fn refund_quota(&self, n: usize, at: UnixMillis) {
        if let (State::Bound(b), 1..) = (&self.state, n) {
            self.edge.quotas.refund(&b.account, n as u64, at);
        }
    }

    fn new_id(&self, now: i64) -> [u8; 32] {
        let mut hex = [0u8; 32];
        self.edge.ids.next_at(now).write_hex(&mut hex);
        hex
    }

    /// Adds one destination's event, accepted at `now`, to the batch being gathered.
    fn publish(
        &mut self,
        msg: &Message<'_>,
        id: &[u8; 32],
        dest_index: u32,
        dest: &Address,
        account: &Account,
        now: UnixMillis,
    ) {
        if self.arena.capacity() - self.arena.len() < 1024 {
            self.arena.reserve(READ_CHUNK);
        }
        let at = submit::Accepted { id, dest_index, dest, account, now };
        let (record, topic) = at.record(&self.edge, &mut self.arena, msg);
        self.records.push(record);
        self.topics.push(topic);
    }

    /// Publishes the submits of this read as one batch.
    pub(super) fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.batch);
        let records = std::mem::take(&mut self.records);
        let started = self.batch_started;
        let at = self.edge.clock.now_ms();
        let publish = smsc_bus::publish_each_to(&*self.edge.bus, &self.topics, records);
        self.topics.clear();
        self.inflight.push(Box::pin(async move {
            let results = publish.await;
            Done::Published { items, started, at, results }
        }));
    }
}

/// What the ESME gets when the bus refused its message: ESME_RMSGQFUL for backpressure
/// (try again shortly), ESME_RSYSERR for a broker failure.
pub(crate) fn publish_status(e: &BusError) -> Status {
    match e {
        BusError::Full => Status::ESME_RMSGQFUL,
        _ => Status::ESME_RSYSERR,
    }
}
