//! The sessions this pod holds, by account, and their leases in the session directory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use smsc_smpp::CommandStatus;
use smsc_store::BindKind;
use tokio::sync::{mpsc, oneshot};

/// What a session's deliver_sm came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverResult {
    /// deliver_sm_resp with this status (ESME_ROK or an error).
    Answered(CommandStatus),
    /// No deliver_sm_resp within the response timer.
    Timeout,
    /// The session closed before it answered.
    Closed,
}

/// Work pushed into a session from outside its task.
#[derive(Debug)]
pub enum Outbound {
    /// Send this encoded deliver_sm (its sequence_number is replaced) and report.
    Deliver { pdu: Bytes, reply: oneshot::Sender<DeliverResult> },
    /// Unbind gracefully (shutdown, rebalancing, an account that no longer admits it).
    Unbind,
}

/// A bound session as the rest of the pod sees it.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: u64,
    pub session_id: String,
    pub system_id: String,
    pub bind: BindKind,
    /// The client's address, which the account's `allowed_cidrs` must keep admitting.
    pub peer: std::net::IpAddr,
    pub tx: mpsc::Sender<Outbound>,
    /// ESME requests admitted so far: rebalancing tells idle sessions from busy ones.
    pub requests: AtomicU64,
    /// Told to unbind because its account no longer admits it (once).
    pub revoked: AtomicBool,
}

impl SessionHandle {
    /// Counts one ESME request (submit, query, cancel, replace).
    pub fn note_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    by_account: Mutex<HashMap<String, Vec<Arc<SessionHandle>>>>,
    rotate: AtomicUsize,
}

impl Registry {
    pub fn add(&self, h: Arc<SessionHandle>) {
        let mut m = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(h.system_id.clone()).or_default().push(h);
    }

    pub fn remove(&self, system_id: &str, id: u64) {
        let mut m = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = m.get_mut(system_id) {
            v.retain(|h| h.id != id);
            if v.is_empty() {
                m.remove(system_id);
            }
        }
    }

    /// Bound sessions of the account on this pod.
    pub fn count(&self, system_id: &str) -> usize {
        let m = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        m.get(system_id).map_or(0, Vec::len)
    }

    /// Bound sessions on this pod, every account.
    pub fn total(&self) -> usize {
        let m = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        m.values().map(Vec::len).sum()
    }

    /// The account's RX/TRX sessions, starting from a different one each call so that
    /// notifications spread over the binds.
    pub fn receivers(&self, system_id: &str) -> Vec<Arc<SessionHandle>> {
        let m = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        let Some(all) = m.get(system_id) else { return Vec::new() };
        let mut v: Vec<_> = all.iter().filter(|h| h.bind.receives()).cloned().collect();
        if !v.is_empty() {
            let k = self.rotate.fetch_add(1, Ordering::Relaxed) % v.len();
            v.rotate_left(k);
        }
        v
    }

    /// Every session (for shutdown and lease heartbeats).
    pub fn all(&self) -> Vec<Arc<SessionHandle>> {
        let m = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        m.values().flatten().cloned().collect()
    }
}
