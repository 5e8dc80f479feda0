//! Spreading sessions over the edge pods after a scale-out.
//!
//! SMPP sessions live for days, so a new edge pod behind the Service gets no traffic
//! until ESMEs reconnect. Every `interval` each edge compares the sessions it holds with
//! its fair share and unbinds the excess, a few at a time; the ESMEs bind again through
//! the Service, which spreads them over the ready pods.
//!
//! - **Ready pods** come from a [`PeerSource`]: the addresses of a headless Service that
//!   lists only ready pods ([`DnsPeers`]), the pods' `/ready` endpoints ([`AdminPeers`],
//!   local clusters), or anything else behind the trait (tests, EndpointSlices).
//! - **Sessions in the cluster** come from the session directory the edges already keep
//!   (the store's leases, refreshed every third of `session_lease_ttl`, expiring with
//!   their pod): the leases of the other pods plus this pod's own registry. No new
//!   protocol between edges, and a dead pod's sessions drop out by TTL.
//! - **Fair share** = `ceil(total / ready pods)`. An edge above `fair + slack` unbinds
//!   `min(local - fair, max_shed_per_interval)`: never below its fair share. A session
//!   just shed counts as still in the cluster until its account is back to its count
//!   (or [`RECONNECT_GRACE`] passed), so ESMEs that take a while to reconnect do not make
//!   the others shed more than they should.
//! - **Which sessions**: idle ones (no request since the last round) and
//!   transmitter-only ones first, from the accounts with the most sessions above their
//!   own fair share here. The unbind is the graceful one of shutdown: in-flight submits
//!   are answered first (`Outbound::Unbind`).
//! - Nothing is shed once shutdown started (the drain unbinds everyone anyway), while
//!   the peer count or the directory is unknown, or with one ready pod.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::{PeersConfig, RebalanceConfig};
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use prometheus::IntCounterVec;
use smsc_store::BindKind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::Edge;
use crate::registry::{Outbound, SessionHandle};

/// How long a shed session counts as on its way to another pod at most.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(60);

/// Directory reads in flight at once (one per account).
const LOOKUPS_IN_FLIGHT: usize = 16;

/// How many edge pods are ready now, this one included.
pub trait PeerSource: Send + Sync + std::fmt::Debug {
    /// `None` when it cannot tell (a failed lookup): nothing is shed then.
    fn ready_peers(&self) -> BoxFuture<'_, Option<usize>>;
}

/// The addresses a name resolves to: a headless Service without
/// `publishNotReadyAddresses` has one per ready pod.
#[derive(Debug, Clone)]
pub struct DnsPeers {
    pub name: String,
}

impl PeerSource for DnsPeers {
    fn ready_peers(&self) -> BoxFuture<'_, Option<usize>> {
        async move {
            match tokio::net::lookup_host((self.name.as_str(), 0)).await {
                Ok(addrs) => {
                    let mut ips: Vec<_> = addrs.map(|a| a.ip()).collect();
                    ips.sort_unstable();
                    ips.dedup();
                    Some(ips.len())
                }
                Err(e) => {
                    debug!(name = %self.name, error = %e, "peer lookup failed");
                    None
                }
            }
        }
        .boxed()
    }
}

/// Edges' admin addresses; one counts while its `/ready` answers 200.
#[derive(Debug, Clone)]
pub struct AdminPeers {
    pub addrs: Vec<String>,
    /// Per probe.
    pub timeout: Duration,
}

impl AdminPeers {
    async fn probe(addr: &str) -> std::io::Result<bool> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 16];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut head[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(head.starts_with(b"HTTP/1.") && head.get(8..12) == Some(b" 200".as_slice()))
    }
}

impl PeerSource for AdminPeers {
    fn ready_peers(&self) -> BoxFuture<'_, Option<usize>> {
        async move {
            let probes = self.addrs.iter().map(|addr| async move {
                matches!(tokio::time::timeout(self.timeout, Self::probe(addr)).await, Ok(Ok(true)))
            });
            Some(futures::future::join_all(probes).await.into_iter().filter(|up| *up).count())
        }
        .boxed()
    }
}

/// A count from a function: tests, or a source the caller keeps up to date.
pub struct FnPeers<F>(pub F);

impl<F> std::fmt::Debug for FnPeers<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnPeers")
    }
}

impl<F: Fn() -> Option<usize> + Send + Sync> PeerSource for FnPeers<F> {
    fn ready_peers(&self) -> BoxFuture<'_, Option<usize>> {
        futures::future::ready((self.0)()).boxed()
    }
}

/// The source `edge.peers` describes; `None` for `service` (EndpointSlices), which
/// the binary builds with the Kubernetes client.
pub fn peer_source(c: &PeersConfig) -> Option<Arc<dyn PeerSource>> {
    if let Some(name) = &c.dns {
        return Some(Arc::new(DnsPeers { name: name.trim().to_owned() }));
    }
    if !c.admin.is_empty() {
        return Some(Arc::new(AdminPeers {
            addrs: c.admin.clone(),
            timeout: Duration::from_secs(1),
        }));
    }
    None
}

/// `edge.rebalance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub max_shed_per_interval: usize,
    pub slack: usize,
}

impl Settings {
    pub fn from_config(c: &RebalanceConfig) -> Self {
        Self {
            interval: c.interval,
            max_shed_per_interval: c.max_shed_per_interval as usize,
            slack: c.slack as usize,
        }
    }
}

/// How many sessions an edge holding `local` of `total` with `peers` ready pods sheds.
pub fn to_shed(local: usize, total: usize, peers: usize, settings: &Settings) -> usize {
    if peers <= 1 {
        return 0;
    }
    let fair = total.max(local).div_ceil(peers);
    if local <= fair + settings.slack {
        return 0;
    }
    (local - fair).min(settings.max_shed_per_interval)
}

/// Rebalances `edge` every `settings.interval` until `shutdown`.
pub async fn run(
    edge: Arc<Edge>,
    peers: Arc<dyn PeerSource>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    if settings.max_shed_per_interval == 0 {
        return;
    }
    let mut r = Rebalancer::new(edge, peers, settings);
    let mut tick =
        tokio::time::interval_at(Instant::now() + r.settings.interval, r.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        r.round(&shutdown).await;
    }
}

/// Sessions shed of one account, until they show up again in the directory.
#[derive(Debug)]
struct Transit {
    /// The account's sessions in the cluster before the shed.
    expected: usize,
    shed: usize,
    until: Instant,
}

struct Rebalancer {
    edge: Arc<Edge>,
    peers: Arc<dyn PeerSource>,
    settings: Settings,
    shed_total: IntCounterVec,
    /// Requests each session had at the last round.
    seen: HashMap<u64, u64>,
    transit: HashMap<String, Transit>,
}

impl Rebalancer {
    fn new(edge: Arc<Edge>, peers: Arc<dyn PeerSource>, settings: Settings) -> Self {
        let shed_total = edge.metrics.sessions_shed_total.clone();
        Self { edge, peers, settings, shed_total, seen: HashMap::new(), transit: HashMap::new() }
    }

    async fn round(&mut self, shutdown: &CancellationToken) {
        let sessions = self.edge.registry.all();
        let idle = self.idle(&sessions);
        // At most one more than any fair share: nothing to shed, no directory reads.
        if sessions.len() <= self.settings.slack + 1 {
            return;
        }
        let Some(peers) = self.peers.ready_peers().await else { return };
        if peers <= 1 {
            return;
        }
        let Some(accounts) = self.count(&sessions).await else { return };
        let total: usize = accounts.values().map(|a| a.total + a.transit).sum();
        let n = to_shed(sessions.len(), total, peers, &self.settings);
        debug!(local = sessions.len(), total, peers, shed = n, "rebalance round");
        if n == 0 {
            return;
        }
        let mut candidates: Vec<(usize, isize, u64, &Arc<SessionHandle>)> = sessions
            .iter()
            .map(|h| {
                let busy = usize::from(!idle.get(&h.id).copied().unwrap_or(false));
                let receives = usize::from(h.bind != BindKind::Transmitter);
                let a = &accounts[&h.system_id];
                let fair = (a.total + a.transit).div_ceil(peers);
                let excess = a.local as isize - fair as isize;
                (busy + receives, -excess, h.id, h)
            })
            .collect();
        candidates.sort_by_key(|(score, excess, id, _)| (*score, *excess, *id));
        let mut shed = 0;
        for (_, _, _, h) in candidates {
            if shed == n || shutdown.is_cancelled() {
                break;
            }
            // A session whose queue is full is busy delivering: leave it be.
            if h.tx.try_send(Outbound::Unbind).is_err() {
                continue;
            }
            shed += 1;
            self.shed_total.with_label_values(&[h.bind.as_str()]).inc();
            let a = &accounts[&h.system_id];
            let t = self.transit.entry(h.system_id.clone()).or_insert(Transit {
                expected: a.total + a.transit,
                shed: 0,
                until: Instant::now(),
            });
            t.shed += 1;
            t.until = Instant::now() + RECONNECT_GRACE;
            info!(system_id = %h.system_id, session = %h.session_id, bind = h.bind.as_str(), peers, total, "unbinding a session to rebalance");
        }
    }

    /// Which sessions had no request since the last round; forgets closed ones.
    fn idle(&mut self, sessions: &[Arc<SessionHandle>]) -> HashMap<u64, bool> {
        let mut idle = HashMap::with_capacity(sessions.len());
        let mut seen = HashMap::with_capacity(sessions.len());
        for h in sessions {
            let now = h.requests.load(Ordering::Relaxed);
            idle.insert(h.id, self.seen.get(&h.id).map_or(now == 0, |before| *before == now));
            seen.insert(h.id, now);
        }
        self.seen = seen;
        idle
    }

    /// Sessions per account across the cluster (the others' leases and this pod's
    /// registry), or `None` if the directory could not be read.
    async fn count(&mut self, sessions: &[Arc<SessionHandle>]) -> Option<HashMap<String, Count>> {
        let mut local: HashMap<String, usize> = HashMap::new();
        for h in sessions {
            *local.entry(h.system_id.clone()).or_default() += 1;
        }
        let mut ids = self.edge.accounts.system_ids();
        ids.extend(local.keys().cloned());
        ids.sort_unstable();
        ids.dedup();
        let me = self.edge.settings.edge_id.clone();
        let store = self.edge.store.clone();
        let remote: Vec<(String, Result<usize, _>)> = futures::stream::iter(ids)
            .map(|id| {
                let (store, me) = (store.clone(), me.clone());
                async move {
                    let leases = store.sessions(&id).await;
                    let remote = leases.map(|l| l.iter().filter(|l| l.edge_id != me).count());
                    (id, remote)
                }
            })
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .collect()
            .await;
        let now = Instant::now();
        let mut counts = HashMap::with_capacity(remote.len());
        for (id, remote) in remote {
            let remote = match remote {
                Ok(n) => n,
                Err(e) => {
                    debug!(system_id = %id, error = %smsc_runtime::telemetry::error_chain(&e), "session directory unavailable; not rebalancing");
                    return None;
                }
            };
            let here = local.get(&id).copied().unwrap_or(0);
            let total = remote + here;
            let transit = match self.transit.get(&id) {
                Some(t) if t.until > now => t.shed.min(t.expected.saturating_sub(total)),
                _ => 0,
            };
            if transit == 0 {
                self.transit.remove(&id);
            }
            counts.insert(id, Count { local: here, total, transit });
        }
        Some(counts)
    }
}

/// One account's sessions as a round sees them.
#[derive(Debug, Clone, Copy)]
struct Count {
    local: usize,
    total: usize,
    /// Shed here and not back in the directory yet.
    transit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(max: usize, slack: usize) -> Settings {
        Settings { interval: Duration::from_secs(1), max_shed_per_interval: max, slack }
    }

    #[test]
    fn sheds_down_to_the_fair_share_at_most_max_per_round() {
        // 10 sessions here, a new empty pod: fair share 5.
        assert_eq!(to_shed(10, 10, 2, &s(2, 1)), 2);
        assert_eq!(to_shed(10, 10, 2, &s(100, 1)), 5);
        // Never below the fair share, and within slack nothing.
        assert_eq!(to_shed(6, 10, 2, &s(100, 1)), 0);
        assert_eq!(to_shed(6, 10, 2, &s(100, 0)), 1);
        assert_eq!(to_shed(5, 10, 2, &s(100, 0)), 0);
        // ceil: 10 over 3 pods is 4 each.
        assert_eq!(to_shed(6, 10, 3, &s(100, 0)), 2);
        // One pod, or none known: nobody to hand sessions to.
        assert_eq!(to_shed(10, 10, 1, &s(100, 0)), 0);
        assert_eq!(to_shed(10, 10, 0, &s(100, 0)), 0);
        // A directory that lags behind this pod's own count never makes it shed more.
        assert_eq!(to_shed(10, 3, 2, &s(100, 0)), 5);
    }

    #[tokio::test]
    async fn sources_count_ready_peers() {
        let fixed = FnPeers(|| Some(3));
        assert_eq!(fixed.ready_peers().await, Some(3));
        let dns = DnsPeers { name: "localhost".into() };
        assert!(dns.ready_peers().await.is_some_and(|n| n >= 1));
        let nowhere = DnsPeers { name: "no-such-host.invalid".into() };
        assert_eq!(nowhere.ready_peers().await, None);

        // One admin endpoint answering 200, one 503, one closed port.
        let ok = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let unready = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addrs: Vec<String> = [&ok, &unready, &closed]
            .iter()
            .map(|l| l.local_addr().expect("addr").to_string())
            .collect();
        drop(closed);
        for (listener, status) in [(ok, "200 OK"), (unready, "503 Service Unavailable")] {
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    let mut buf = [0u8; 256];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes()).await;
                }
            });
        }
        let admin = AdminPeers { addrs, timeout: Duration::from_secs(2) };
        assert_eq!(admin.ready_peers().await, Some(1));
    }
}
