//! The notification dispatcher: receipts and MO (`smsc.notify`) to the edge that holds
//! a receiver bind of the account, over `Edge.Deliver`. Success is recorded only on
//! deliver_sm_resp OK; with no receiver bound (or every edge failing) the notification
//! goes to the store's pending queue, which a sweeper retries until a receiver binds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use smsc_common::accounts::AccountDirectory;
use smsc_common::bus::{Bus, BusError, Delivery, topics};
use smsc_common::pipeline::{DynEdgeLink, join, run_lanes, store_until_ok};
use smsc_common::store::{Clock, NotificationKind as StoredKind, PendingNotification, Store};
use smsc_common::telemetry::Metrics;
use smsc_proto::{DeliverOutcome, DeliverRequest, Notification, NotificationKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub const GROUP: &str = "smsc-dispatcher";

/// How long the edges of an account are remembered: binds change rarely, and a stale
/// entry only costs one failed call before the lookup is refreshed.
const DIRECTORY_TTL: Duration = Duration::from_secs(1);

/// Pending notifications delivered per account per sweep page.
const PAGE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The ESME refused it for good (ESME_RX_P_APPN / ESME_RX_R_APPN): dropped.
    Refused,
    /// No receiver took it now.
    NotNow,
}

#[derive(Debug)]
pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub link: DynEdgeLink,
    pub accounts: Arc<AccountDirectory>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    edges: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    ids: smsc_common::ids::IdGenerator,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        link: DynEdgeLink,
        accounts: Arc<AccountDirectory>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            link,
            accounts,
            clock,
            metrics,
            shutdown,
            edges: Mutex::new(HashMap::new()),
            ids: smsc_common::ids::IdGenerator::new(),
        }
    }

    /// Edges with a receiver bind of `system_id`, from the session directory.
    async fn edges(&self, system_id: &str, fresh: bool) -> Vec<String> {
        if !fresh {
            let m = self.edges.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = m.get(system_id)
                && at.elapsed() < DIRECTORY_TTL
            {
                return v.clone();
            }
        }
        let mut v: Vec<String> = match self.store.sessions(system_id).await {
            Ok(leases) => {
                leases.into_iter().filter(|l| l.bind.receives()).map(|l| l.endpoint).collect()
            }
            Err(e) => {
                warn!(error = %e, "session directory unavailable");
                Vec::new()
            }
        };
        v.sort();
        v.dedup();
        let mut m = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(system_id.to_owned(), (Instant::now(), v.clone()));
        v
    }

    /// Tries each edge of the account once.
    pub async fn send(
        &self,
        system_id: &str,
        kind: NotificationKind,
        message_id: &str,
        pdu: &Bytes,
    ) -> Sent {
        for fresh in [false, true] {
            let edges = self.edges(system_id, fresh).await;
            for endpoint in &edges {
                let req = DeliverRequest {
                    system_id: system_id.to_owned(),
                    deliver_sm: pdu.to_vec(),
                    message_id: message_id.to_owned(),
                    kind: kind as i32,
                };
                match self.link.deliver(endpoint, req).await {
                    Ok(r) if r.outcome == DeliverOutcome::Delivered as i32 => {
                        return Sent::Delivered;
                    }
                    Ok(r) if r.outcome == DeliverOutcome::Permanent as i32 => {
                        warn!(
                            system_id,
                            message_id,
                            status = r.command_status,
                            "ESME refused a notification for good"
                        );
                        return Sent::Refused;
                    }
                    Ok(r) => {
                        debug!(system_id, endpoint, detail = %r.detail, "edge could not deliver now")
                    }
                    Err(e) => debug!(system_id, endpoint, error = %e, "edge unreachable"),
                }
            }
            if edges.is_empty() && !fresh {
                continue;
            }
        }
        Sent::NotNow
    }

    /// One notification from the bus: delivered now, or made pending (durably) first.
    pub async fn notification(&self, payload: &Bytes) -> bool {
        let n = match Notification::decode(payload.clone()) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "undecodable notification dropped");
                return true;
            }
        };
        let kind = NotificationKind::try_from(n.kind).unwrap_or(NotificationKind::Receipt);
        let pdu = Bytes::from(n.deliver_sm);
        let sent = self.send(&n.system_id, kind, &n.message_id, &pdu).await;
        let label = kind_label(kind);
        if sent != Sent::NotNow {
            let outcome = if sent == Sent::Delivered { "delivered" } else { "refused" };
            self.metrics.worker.notifications_total.with_label_values(&[label, outcome]).inc();
            return true;
        }
        let pending = PendingNotification {
            id: self.ids.next_at(self.clock.now_ms()).to_string(),
            kind: if kind == NotificationKind::Mo { StoredKind::Mo } else { StoredKind::Receipt },
            message_id: n.message_id,
            pdu,
            created_at: n.created_at_ms,
        };
        let pushed = store_until_ok("push_pending", &self.shutdown, || {
            self.store.push_pending(&n.system_id, pending.clone())
        })
        .await
        .is_some();
        if pushed {
            self.metrics.worker.notifications_total.with_label_values(&[label, "pending"]).inc();
        }
        pushed
    }

    /// Delivers what is pending for every account that has a receiver now.
    pub async fn sweep(&self) {
        'accounts: for system_id in self.accounts.system_ids() {
            let mut after: Option<String> = None;
            loop {
                let page = match self.store.pending(&system_id, after.as_deref(), PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(error = %e, "pending queue unavailable");
                        return;
                    }
                };
                if page.items.is_empty() || self.edges(&system_id, false).await.is_empty() {
                    break;
                }
                for p in &page.items {
                    let kind = match p.kind {
                        StoredKind::Mo => NotificationKind::Mo,
                        _ => NotificationKind::Receipt,
                    };
                    match self.send(&system_id, kind, &p.message_id, &p.pdu).await {
                        // This account cannot take it now; the others still can.
                        Sent::NotNow => continue 'accounts,
                        sent => {
                            let outcome =
                                if sent == Sent::Delivered { "delivered" } else { "refused" };
                            self.metrics
                                .worker
                                .notifications_total
                                .with_label_values(&[kind_label(kind), outcome])
                                .inc();
                            let _ = self.store.delete_pending(&system_id, &p.id).await;
                        }
                    }
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
    }
}

fn kind_label(k: NotificationKind) -> &'static str {
    if k == NotificationKind::Mo { "mo" } else { "receipt" }
}

/// Consumes `smsc.notify` (per account in order) and sweeps the pending queues every
/// `interval`, until shutdown.
pub async fn run(
    d: Arc<Dispatcher>,
    bus: Arc<dyn Bus>,
    lanes: usize,
    max_in_flight: usize,
    interval: Duration,
) -> Result<(), BusError> {
    let Some(consumer) =
        join(&bus, GROUP, &[topics::NOTIFY], max_in_flight, &d.shutdown, Some(&d.metrics)).await
    else {
        return Ok(());
    };
    let sweeper = {
        let d = d.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = d.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => d.sweep().await,
                }
            }
        })
    };
    let shutdown = d.shutdown.clone();
    run_lanes(consumer, lanes, shutdown, move |m: Delivery| {
        let d = d.clone();
        async move { d.notification(&m.record.payload).await }
    })
    .await;
    let _ = sweeper.await;
    Ok(())
}
