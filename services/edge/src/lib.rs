//! The SMPP edge: terminates ESME binds, enforces window and rate, publishes submits to
//! the bus, answers query/cancel/replace from the store, and pushes deliver_sm to its
//! sessions for the rest of the cluster over gRPC (`Edge.Deliver`).
//!
//! Stateless: everything it acknowledges is on the bus before the `_resp` goes out,
//! so a pod can die at any moment without losing an acknowledged message.
//!
//! - [`start`]: the entry point `smsc edge` runs: listeners, serving, heartbeat, rebalance.
//! - [`config`]: the `edge:` section; [`metrics`]: the `smsc_edge_*` families.
//! - [`session`]: one task per connection: framing, state machine, timers, window.
//! - [`submit`]: validation of submit_sm / submit_multi / data_sm into bus events.
//! - [`registry`]: the sessions of this pod by account.
//! - [`grpc`]: the `Edge` gRPC service (`Edge.Deliver`).
//! - [`http`]: the HTTP API beside SMPP (`edge.http_listen`).
//! - [`lockout`]: refusing binds after repeated password failures.
//! - [`quota`]: account quotas per day and month, leased from the store.
//! - [`rebalance`]: shedding sessions above this pod's fair share after a scale-out.
//! - [`tls`]: the optional SMPP-over-TLS listener.
//! - [`proxy`]: the PROXY protocol header from trusted load balancers: the client's address.
//!
//! What protects the pod from abusive clients ([`Limits`]): connections per pod, checked
//! at accept, and per client address, checked at accept or, behind a balancer that sends
//! the PROXY protocol, once its header named the client; the bind lockout; a deadline for
//! a started PDU to complete; the session timers (see docs/security.md).
#![forbid(unsafe_code)]

pub mod config;
pub mod grpc;
pub mod http;
pub mod lockout;
pub mod metrics;
pub mod proxy;
pub mod quota;
pub mod rate;
pub mod rebalance;
pub mod registry;
pub mod session;
pub mod start;
pub mod submit;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smsc_accounts::{AccountDirectory, CredentialCache};
use smsc_bus::pressure::Pressure;
use smsc_bus::{Bus, Topics};
use smsc_runtime::ids::IdGenerator;
use smsc_store::{Clock, Store};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use config::EdgeConfig;
pub use lockout::{Lockout, LockoutSettings};
pub use metrics::EdgeMetrics;
pub use proxy::ProxyProtocolConfig;
pub use quota::{QUOTA_EXCEEDED, Quotas};
pub use rate::RateLimiter;
pub use registry::{DeliverResult, Registry};
pub use start::{Deps, StartError, Started, start};

/// What the edge needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This pod's name in the cluster (session ids, logs, the directory).
    pub edge_id: String,
    /// host:port where other pods reach this edge's gRPC server.
    pub grpc_endpoint: String,
    /// system_id the edge answers binds with.
    pub smsc_system_id: String,
    pub session_init_timeout: Duration,
    pub enquire_link_interval: Duration,
    pub inactivity_timeout: Duration,
    pub response_timeout: Duration,
    pub max_command_length: u32,
    pub drain_timeout: Duration,
    pub max_connections: usize,
    pub session_lease_ttl: Duration,
    /// How long `Edge.Deliver` waits for room when every receiver's queue is full,
    /// before answering "busy".
    pub deliver_queue_wait: Duration,
    /// Binds with credentials verified lately skip argon2 (`edge.credential_cache`).
    pub credential_cache: config::CredentialCacheConfig,
}

impl Settings {
    /// The `edge:` keys that set these, for the edge `edge_id` reached at `grpc_endpoint`.
    pub fn from_config(c: &EdgeConfig, edge_id: &str, grpc_endpoint: String) -> Self {
        Self {
            edge_id: edge_id.to_owned(),
            grpc_endpoint,
            smsc_system_id: "smsc".into(),
            session_init_timeout: c.session_init_timeout,
            enquire_link_interval: c.enquire_link_interval,
            inactivity_timeout: c.inactivity_timeout,
            response_timeout: c.response_timeout,
            max_command_length: c.max_command_length,
            drain_timeout: c.drain_timeout,
            max_connections: c.max_connections as usize,
            session_lease_ttl: c.session_lease_ttl,
            deliver_queue_wait: c.deliver_queue_wait,
            credential_cache: c.credential_cache.clone(),
        }
    }
}

/// The config's defaults, as edge `edge` at `127.0.0.1:50051`.
impl Default for Settings {
    fn default() -> Self {
        let c = EdgeConfig::default();
        Self::from_config(&c, "edge", c.advertised_grpc_addr())
    }
}

/// What protects the pod from abusive clients, beyond [`Settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections from one client address (IPv6: per /64, see
    /// [`lockout::client_key`]); past it a connection is closed at accept (behind a
    /// PROXY protocol balancer, once the header named the client).
    pub max_connections_per_ip: usize,
    /// A PDU whose first octet has arrived must be complete within this; so must a
    /// PROXY header, from accept.
    pub pdu_read_timeout: Duration,
    pub lockout: LockoutSettings,
    /// The balancers whose connections begin with a PROXY header.
    pub proxy_protocol: ProxyProtocolConfig,
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&EdgeConfig::default())
    }
}

impl Limits {
    /// The `edge:` keys that set these.
    pub fn from_config(c: &EdgeConfig) -> Self {
        Self {
            max_connections_per_ip: c.max_connections_per_ip as usize,
            pdu_read_timeout: c.pdu_read_timeout,
            lockout: c.lockout.clone(),
            proxy_protocol: c.proxy_protocol.clone(),
        }
    }
}

/// State shared by every session of the pod.
#[derive(Debug)]
pub struct Edge {
    pub settings: Settings,
    pub limits: Limits,
    pub lockout: Lockout,
    /// The bind credentials this pod verified lately.
    pub credentials: CredentialCache,
    pub accounts: Arc<AccountDirectory>,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<EdgeMetrics>,
    pub clock: Arc<dyn Clock>,
    /// The accounts crowding the hops behind this edge: their submits are throttled.
    pub pressure: Pressure,
    /// The release's topics: where the submits go.
    pub topics: Topics,
    /// This edge's leases of the accounts' quotas.
    pub quotas: Arc<Quotas>,
    pub ids: IdGenerator,
    pub registry: Registry,
    limiters: Mutex<HashMap<String, Arc<RateLimiter>>>,
    next_session: AtomicU64,
    /// Connections accepted and not closed yet (TLS handshakes included).
    connections: AtomicUsize,
    /// The same, by [`lockout::client_key`]; an address leaves when its last one closes.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refusals: RefusalLog,
    /// WARN lines about bad PROXY headers (a balancer misconfigured sends none at all).
    proxy_errors: RefusalLog,
}

impl Edge {
    /// An edge with the default [`Limits`].
    pub fn new(settings: Settings, deps: Deps) -> Arc<Self> {
        Self::with_limits(settings, Limits::default(), deps)
    }

    pub fn with_limits(settings: Settings, limits: Limits, deps: Deps) -> Arc<Self> {
        let Deps { accounts, bus, store, clock, metrics, pressure, topics } = deps;
        let cache = &settings.credential_cache;
        let credentials = CredentialCache::new(cache.ttl, cache.max_entries);
        Arc::new(Self {
            settings,
            lockout: Lockout::new(limits.lockout.clone()),
            credentials,
            limits,
            accounts,
            bus,
            quotas: Quotas::new(store.clone(), clock.clone()),
            store,
            metrics: metrics.family::<EdgeMetrics>(),
            clock,
            pressure,
            topics,
            ids: IdGenerator::new(),
            registry: Registry::default(),
            limiters: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refusals: RefusalLog::default(),
            proxy_errors: RefusalLog::default(),
        })
    }

    /// The account's rate limiter on this pod, shared by its sessions. Rebuilt when the
    /// configured rate changes (an account reload).
    pub fn limiter(&self, system_id: &str, per_second: u32) -> Arc<RateLimiter> {
        let mut m = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(system_id) {
            Some(l) if l.per_second() == per_second => l.clone(),
            _ => {
                let l = Arc::new(RateLimiter::new(per_second));
                m.insert(system_id.to_owned(), l.clone());
                l
            }
        }
    }

    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections open on this pod now (accepted, TLS handshakes included).
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Takes a connection slot, counted for the client at `ip` when it is known (not yet
    /// behind a PROXY protocol balancer: see [`ConnectionSlot::count_client`]), or names
    /// the limit that refuses it. Only the accept loop calls this, so the pod-wide check
    /// cannot race itself.
    fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnectionSlot, &'static str> {
        if self.connections.load(Ordering::Relaxed) >= self.settings.max_connections {
            return Err("per_pod");
        }
        self.connections.fetch_add(1, Ordering::Relaxed);
        let mut slot = ConnectionSlot { edge: self.clone(), key: None };
        if let Some(ip) = ip {
            // Refused: the slot's drop gives the pod-wide place back.
            slot.count_client(ip)?;
        }
        Ok(slot)
    }

    fn refused(&self, peer: SocketAddr, reason: &'static str) {
        self.metrics.connections_refused_total.with_label_values(&[reason]).inc();
        if let Some(suppressed) = self.refusals.allow() {
            let limit = match reason {
                "per_pod" => self.settings.max_connections,
                _ => self.limits.max_connections_per_ip,
            };
            warn!(%peer, reason, limit, suppressed, "connection refused at accept");
        }
    }

    /// A trusted balancer's connection closed without a usable PROXY header.
    fn proxy_failed(&self, peer: SocketAddr, e: &proxy::ReadError) {
        let error = smsc_runtime::telemetry::error_chain(e);
        let Some(reason) = e.reason() else {
            debug!(%peer, %error, "connection from a trusted balancer closed");
            return;
        };
        self.metrics.proxy_protocol_errors_total.with_label_values(&[reason]).inc();
        match self.proxy_errors.allow() {
            Some(suppressed) => {
                warn!(%peer, reason, %error, suppressed, "no valid PROXY header from a trusted balancer; connection closed")
            }
            None => debug!(%peer, reason, %error, "no valid PROXY header; connection closed"),
        }
    }

    /// The client of a connection from `peer`: `peer` itself, or for a `trusted`
    /// balancer the address of the PROXY header the connection begins with, which only
    /// then counts against `max_connections_per_ip`. `None`: the connection is closed
    /// (counted and logged here).
    async fn client(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        trusted: bool,
        slot: &mut ConnectionSlot,
    ) -> Option<(proxy::Rewind<TcpStream>, SocketAddr)> {
        if !trusted {
            return Some((proxy::Rewind::plain(stream), peer));
        }
        match proxy::read_header(stream, self.limits.pdu_read_timeout).await {
            Ok(proxy::Proxied { client, stream }) => {
                let client = client.unwrap_or(peer);
                if let Err(reason) = slot.count_client(client.ip()) {
                    self.refused(client, reason);
                    return None;
                }
                debug!(%peer, %client, "PROXY header read");
                Some((stream, client))
            }
            Err(e) => {
                self.proxy_failed(peer, &e);
                None
            }
        }
    }

    /// Unbinds the sessions the account set no longer admits: their account was
    /// removed or disabled, or no longer allows their bind type or client address. A
    /// bind is checked once, so without this a customer cut off would keep sending over
    /// the sessions it holds for as long as it keeps them open.
    pub fn unbind_revoked(&self) {
        for h in self.registry.all() {
            if self.accounts.admits(&h.system_id, h.bind, h.peer)
                || h.revoked.swap(true, Ordering::Relaxed)
            {
                continue;
            }
            warn!(
                system_id = %h.system_id,
                session = %h.session_id,
                peer = %h.peer,
                "the account no longer admits this session; unbinding it"
            );
            self.metrics.sessions_revoked.inc();
            // Behind queued deliver_sm if need be; a session already closing is gone.
            let tx = h.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(registry::Outbound::Unbind).await;
            });
        }
    }
}

/// Calls [`Edge::unbind_revoked`] after every change of the account set, until
/// `shutdown`, and drops the cached credentials of accounts removed or rehashed.
async fn watch_accounts(edge: Arc<Edge>, shutdown: CancellationToken) {
    let mut changes = edge.accounts.changes();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                edge.credentials.forget_stale(&edge.accounts);
                edge.unbind_revoked();
            }
        }
    }
}

/// A connection's place in the pod and per-address counts, given back on drop.
#[derive(Debug)]
struct ConnectionSlot {
    edge: Arc<Edge>,
    /// The client's [`lockout::client_key`], once counted.
    key: Option<IpAddr>,
}

impl ConnectionSlot {
    /// Counts the connection against its client's address, or refuses it ("per_ip").
    fn count_client(&mut self, ip: IpAddr) -> Result<(), &'static str> {
        debug_assert!(self.key.is_none(), "a connection has one client");
        let key = lockout::client_key(ip);
        let mut m = self.edge.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= self.edge.limits.max_connections_per_ip {
            return Err("per_ip");
        }
        *n += 1;
        self.key = Some(key);
        Ok(())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut m = self.edge.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = m.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&key);
                }
            }
        }
        self.edge.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// At most one "connection refused" line per second: a connection flood must not
/// become a log flood. The line carries how many were not logged since the last one.
#[derive(Debug, Default)]
struct RefusalLog {
    /// Seconds since `epoch` of the last line, plus one (0: none yet).
    last: AtomicU64,
    suppressed: AtomicU64,
    epoch: std::sync::OnceLock<std::time::Instant>,
}

impl RefusalLog {
    fn allow(&self) -> Option<u64> {
        let epoch = *self.epoch.get_or_init(std::time::Instant::now);
        let now = epoch.elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        if now > last
            && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Accepts SMPP connections on `listener` (and, when given, TLS ones on `tls`) until
/// `shutdown` fires; then unbinds every session and waits for them up to the drain
/// deadline. A submit in flight at shutdown is either answered or never acknowledged.
pub async fn serve(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: Option<(TcpListener, tls::Acceptor)>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    tokio::spawn(watch_accounts(edge.clone(), shutdown.clone()));
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(l), Some(a)),
        None => (None, None),
    };
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r.map(|(s, p)| (s, p, false)),
            r = accept_opt(tls_listener.as_ref()) => r.map(|(s, p)| (s, p, true)),
        };
        let (stream, peer, is_tls) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Behind a PROXY protocol balancer every client comes from the balancer's
        // address: the per-address count waits for the header to name the client.
        let trusted = edge.limits.proxy_protocol.trusts(peer.ip());
        let mut slot = match edge.admit((!trusted).then_some(peer.ip())) {
            Ok(slot) => slot,
            Err(reason) => {
                edge.refused(peer, reason);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let token = shutdown.child_token();
        let acceptor = if is_tls { acceptor.clone() } else { None };
        // In the connection's own task: a balancer slow to send its header holds no one
        // else up.
        tracker.spawn(async move {
            // Nor the drain: a connection still without its header is simply closed.
            let client = tokio::select! {
                c = edge.client(stream, peer, trusted, &mut slot) => c,
                _ = token.cancelled() => None,
            };
            let Some((stream, client)) = client else {
                return;
            };
            match acceptor {
                // The session's init timer only starts once the handshake is done: bound
                // the handshake by it too, or a peer that never sends a ClientHello holds
                // this task (and, at shutdown, the drain) forever.
                Some(acceptor) => {
                    let init = edge.settings.session_init_timeout;
                    match tokio::time::timeout(init, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => connection(edge, s, client, token).await,
                        Ok(Err(e)) => warn!(peer = %client, error = %e, "TLS handshake failed"),
                        Err(_) => {
                            info!(peer = %client, "no TLS handshake within the session init timer")
                        }
                    }
                }
                None => connection(edge, stream, client, token).await,
            }
            drop(slot);
        });
    }
    info!("SMPP listeners closed; draining sessions");
    tracker.close();
    if tokio::time::timeout(edge.settings.drain_timeout, tracker.wait()).await.is_err() {
        warn!("drain deadline passed with sessions still open");
    }
    // Sessions are done submitting: what they did not spend of the quotas goes back.
    edge.quotas.give_back().await;
}

async fn accept_opt(
    l: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn connection<S>(edge: Arc<Edge>, stream: S, peer: SocketAddr, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    edge.metrics.connections.inc();
    session::run(edge.clone(), stream, peer, shutdown).await;
    edge.metrics.connections.dec();
}

/// Refreshes the directory leases of every bound session, every third of the TTL, so a
/// pod that dies stops being looked up once its leases expire.
pub async fn heartbeat(edge: Arc<Edge>, shutdown: CancellationToken) {
    let period = edge.settings.session_lease_ttl / 3;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for h in edge.registry.all() {
            let lease = session::lease(&edge, &h.system_id, &h.session_id, h.bind);
            if let Err(e) = edge.store.put_session(lease, edge.settings.session_lease_ttl).await {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), system_id = %h.system_id, "session lease refresh failed");
            }
        }
    }
}
