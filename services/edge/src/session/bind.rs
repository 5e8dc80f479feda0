//! Binds and unbinds: the bind check and its lockout, the registry entry and the
//! session directory's lease, and the bound account's changes.

use std::sync::Arc;
use std::time::Duration;

use smsc_accounts::Account;
use smsc_smpp::pdu::{Bind, BindResp};
use smsc_smpp::{Body, CommandId, Pdu, Tlv, Tlvs};
use smsc_store::BindKind;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::state::{Awaiting, Bound, Done, Outstanding, Session, State};
use super::{OUTBOUND_QUEUE, Status, lease, status_name};
use crate::Edge;
use crate::lockout::Failure;
use crate::registry::SessionHandle;

/// How long a session not yet bound at shutdown waits for a bind to refuse.
const BIND_REFUSAL_GRACE: Duration = Duration::from_secs(1);

impl Session {
    /// A bound session follows its account's changes (window, max_submit_rate, source
    /// addresses) from the next read on. One the new set no longer admits is told
    /// to unbind by [`crate::Edge::unbind_revoked`] and keeps what it had meanwhile.
    pub(super) fn refresh_account(&mut self) {
        let State::Bound(b) = &mut self.state else { return };
        let Some(account) = self.edge.accounts.get(&b.account.system_id) else { return };
        if Arc::ptr_eq(&account, &b.account) || !account.enabled {
            return;
        }
        b.limiter = self.edge.limiter(&account.system_id, account.max_submit_rate);
        b.account = account;
    }

    pub(super) fn on_bind(&mut self, seq: u32, command: CommandId, bind: Bind) {
        if self.refusing_binds_until.is_some() {
            return self.refuse_bind_draining(seq, command);
        }
        match self.state {
            State::Open => {}
            State::Binding | State::Bound(_) => {
                return self.refuse_bind(seq, command, Status::ESME_RALYBND);
            }
            State::Unbinding => return self.refuse_bind(seq, command, Status::ESME_RINVBNDSTS),
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
            self.refuse_bind(seq, command, Status::ESME_RBINDFAIL);
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

    pub(super) fn bound(
        &mut self,
        seq: u32,
        command: CommandId,
        bind: Bind,
        account: Arc<Account>,
    ) {
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
        if kind.transmits() {
            self.edge.quotas.prepare(&account);
        }
        let mut resp = self.bind_resp();
        // A 3.3 peer does not understand TLVs (3.4 §2.2.1 interface_version).
        if bind.interface_version >= smsc_smpp::types::INTERFACE_VERSION_34 {
            resp.tlvs.push(Tlv::ScInterfaceVersion(smsc_smpp::types::INTERFACE_VERSION_34));
        }
        self.push(&Pdu::new(seq, bind_resp_body(command, resp)));
        self.edge.metrics.binds_total.with_label_values(&[kind.as_str(), "ok"]).inc();
        self.edge.metrics.sessions.with_label_values(&[kind.as_str()]).inc();
        info!(system_id = %account.system_id, bind = kind.as_str(), "bound");
        let lease = lease(&self.edge, &account.system_id, &session_id, kind);
        let (store, ttl) = (self.edge.store.clone(), self.edge.settings.session_lease_ttl);
        tokio::spawn(async move {
            if let Err(e) = store.put_session(lease, ttl).await {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), "session lease not registered; the heartbeat retries");
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

    /// Answers a bind with an error `status`. SMPP 3.4 leaves the body out then, and so
    /// does the edge, but for bind_transceiver_resp, which carries the SMSC's system_id
    /// (no TLVs) whatever the status: gosmpp (v0.3.1) reads that field of a
    /// bind_transceiver_resp unconditionally (without it, its user sees "EOF", not the
    /// status), while it reads any body of a refused bind_transmitter_resp or
    /// bind_receiver_resp as TLVs, and fails on it. jSMPP and Cloudhopper take both.
    pub(super) fn refuse_bind(&mut self, seq: u32, command: CommandId, status: Status) {
        let pdu = match command {
            CommandId::BindTransceiver => {
                Pdu { status, ..Pdu::new(seq, bind_resp_body(command, self.bind_resp())) }
            }
            _ => Pdu::error_response(
                command.response().unwrap_or(CommandId::GenericNack),
                seq,
                status,
            ),
        };
        self.push(&pdu);
    }

    fn bind_resp(&self) -> BindResp {
        let system_id = smsc_smpp::COctetString::new(self.edge.settings.smsc_system_id.as_bytes());
        BindResp { system_id: system_id.unwrap_or_default(), tlvs: Tlvs::new() }
    }

    pub(super) fn on_unbind(&mut self, seq: u32) {
        // In-flight requests are answered first; then unbind_resp and close. Out of the
        // registry at once: no new deliveries to a session that is leaving.
        self.unbind_from_peer = Some(seq);
        match self.state {
            State::Bound(_) => self.leave_bound(),
            _ => self.state = State::Unbinding,
        }
    }

    /// The edge is shutting down. A bound session is unbound; one not bound yet may have
    /// a bind on its way (it connected as the listener closed): that bind is answered
    /// ESME_RBINDFAIL rather than the connection closed under it (jSMPP then waits out its
    /// whole bind timeout before it tries again). A session with no bind closes after
    /// [`BIND_REFUSAL_GRACE`]; one whose bind is being checked waits for the check (bound
    /// by the session init timer) and refuses it then.
    pub(super) fn on_shutdown(&mut self) {
        match self.state {
            State::Bound(_) => self.begin_unbind(),
            State::Open | State::Binding => {
                self.refusing_binds_until = Some(Instant::now() + BIND_REFUSAL_GRACE);
            }
            State::Unbinding => {}
        }
    }

    /// Refuses a bind (new, or whose check just ended) while shutting down, and closes
    /// unless another bind's check is still to be answered.
    pub(super) fn refuse_bind_draining(&mut self, seq: u32, command: CommandId) {
        let status = Status::ESME_RBINDFAIL;
        let labels = [bind_kind(command).as_str(), status_name(status)];
        self.edge.metrics.binds_total.with_label_values(&labels).inc();
        debug!("bind refused: shutting down");
        self.refuse_bind(seq, command, status);
        if !matches!(self.state, State::Binding) {
            self.close = true;
        }
    }

    pub(super) fn begin_unbind(&mut self) {
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

    pub(super) fn unregister(&self, b: &Bound) {
        self.edge.registry.remove(&b.account.system_id, self.id);
        self.edge.metrics.sessions.with_label_values(&[b.kind.as_str()]).dec();
        let (store, system_id, session_id) =
            (self.edge.store.clone(), b.account.system_id.clone(), b.handle.session_id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.remove_session(&system_id, &session_id).await {
                debug!(error = %smsc_runtime::telemetry::error_chain(&e), "lease removal failed; it expires by TTL");
            }
        });
    }

    /// A bind refused for its credentials counts towards the lockout of its system_id
    /// from this address.
    pub(super) fn count_bind_failure(&self, bind: &Bind) {
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
}

pub(super) fn bind_kind(command: CommandId) -> BindKind {
    match command {
        CommandId::BindTransmitter => BindKind::Transmitter,
        CommandId::BindReceiver => BindKind::Receiver,
        _ => BindKind::Transceiver,
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

/// Checks a bind against the account directory. The password check is CPU-heavy by
/// design (argon2) and runs on the blocking pool, unless the pod's credential cache
/// verified these credentials lately (or a check of them is under way: it waits for
/// that one).
async fn authenticate(
    edge: &Edge,
    bind: &Bind,
    kind: BindKind,
    ip: std::net::IpAddr,
) -> Result<Arc<Account>, Status> {
    use smsc_accounts::AuthError;
    let system_id = String::from_utf8_lossy(bind.system_id.as_bytes());
    // An unknown system_id costs the same argon2 time as a known one (a decoy hash),
    // so response times do not tell which ids exist.
    let checked =
        edge.credentials.authenticate(&edge.accounts, &system_id, bind.password.as_bytes()).await;
    edge.metrics.bind_password_checks_total.with_label_values(&[checked.via.as_str()]).inc();
    let account = checked.result.map_err(|e| match e {
        AuthError::UnknownSystemId => Status::ESME_RINVSYSID,
        AuthError::BadPassword => Status::ESME_RINVPASWD,
        AuthError::Unavailable => Status::ESME_RSYSERR,
        _ => Status::ESME_RBINDFAIL,
    })?;
    if !account.allows_bind(kind) || !account.client_allowed(ip) {
        return Err(Status::ESME_RBINDFAIL);
    }
    // Binds across the cluster, as the directory knows them (leases of this pod included).
    let bound = match edge.store.sessions(&account.system_id).await {
        Ok(s) => s.len(),
        Err(e) => {
            warn!(error = %smsc_runtime::telemetry::error_chain(&e), "session directory unavailable; counting this pod only");
            edge.registry.count(&account.system_id)
        }
    };
    if bound.max(edge.registry.count(&account.system_id)) >= account.max_binds as usize {
        return Err(Status::ESME_RBINDFAIL);
    }
    Ok(account)
}

/// The response body answering bind `command`.
fn bind_resp_body(command: CommandId, resp: BindResp) -> Body {
    match command {
        CommandId::BindTransmitter => Body::BindTransmitterResp(resp),
        CommandId::BindReceiver => Body::BindReceiverResp(resp),
        _ => Body::BindTransceiverResp(resp),
    }
}
