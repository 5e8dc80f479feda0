//! The `smsc` binary's library: it loads the whole config ([`config`]), checks what spans
//! roles, and composes the roles into a process: `smsc edge|router|worker` runs one,
//! `smsc all` runs every role in one process on embedded defaults ([`run`]). Each role
//! owns its entry point (`smsc_edge::start`, `smsc_router::start`,
//! `smsc_delivery_worker::start`); this crate only wires them to the engines and to
//! each other. The other commands are in `commands.rs`, `smsc cluster` in [`cluster`].
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use smsc_accounts::{Account, AccountDirectory};
use smsc_bus::pressure::{self, Pressure};
use smsc_bus::{Bus, Topics};
use smsc_delivery_worker::edge_link::{EdgeLink, GrpcEdgeLink};
use smsc_edge::grpc::EdgeGrpc;
use smsc_edge::rebalance::PeerSource;
use smsc_router::config::MoRoute;
use smsc_runtime::admin::{self, Readiness, ReadyCondition};
use smsc_runtime::listen::bind;
use smsc_runtime::telemetry::Metrics;
use smsc_store::{Clock, SystemClock};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};

mod cdr_file;
pub mod cluster;
mod commands;
pub mod config;
mod engines;
#[cfg(feature = "k8s")]
mod k8s;
mod trace;

pub use commands::{StoreServerArgs, api_key, hash_password, inject_mo, migrate, run_store_server};
pub use trace::trace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Edge,
    Router,
    Worker,
}

impl Role {
    fn edge(self) -> bool {
        matches!(self, Role::All | Role::Edge)
    }
    fn router(self) -> bool {
        matches!(self, Role::All | Role::Router)
    }
    fn worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// `Edge.Deliver` to this process's own edge is a function call; other edges get gRPC.
#[derive(Debug)]
struct LocalFirst {
    endpoint: String,
    local: EdgeGrpc,
    remote: GrpcEdgeLink,
}

impl EdgeLink for LocalFirst {
    fn deliver(
        &self,
        endpoint: &str,
        request: smsc_proto::DeliverRequest,
    ) -> futures::future::BoxFuture<'_, Result<smsc_proto::DeliverResponse, tonic::Status>> {
        if endpoint == self.endpoint {
            let local = self.local.clone();
            Box::pin(async move {
                use smsc_proto::edge_server::Edge as _;
                Ok(local.deliver(tonic::Request::new(request)).await?.into_inner())
            })
        } else {
            self.remote.deliver(endpoint, request)
        }
    }
}

/// Flags shared by the roles; each overrides its config key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// The YAML configuration (every key can also be set by env: SMSC_EDGE__SMPP_LISTEN).
    #[arg(long, short, env = "SMSC_CONFIG")]
    pub config: Option<PathBuf>,
    /// SMPP listen address (edge.smpp_listen).
    #[arg(long)]
    pub smpp_listen: Option<SocketAddr>,
    /// Admin HTTP address: /metrics, /live, /ready (admin_listen).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// gRPC listen address (edge.grpc_listen).
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// The HTTP API's listen address (edge.http_listen; `smsc all`: 127.0.0.1:8080
    /// unless set).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
}

/// Where `smsc all` serves the HTTP API when the config does not say.
pub const ALL_HTTP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

pub fn load_config(role: Role, args: &RunArgs) -> Result<Config, ConfigError> {
    if role == Role::Edge && args.config.is_none() {
        warn!("no --config given: the edge runs on defaults");
    }
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(a) = args.smpp_listen {
        config.edge.smpp_listen = a;
    }
    if let Some(a) = args.admin_listen {
        config.admin_listen = a;
    }
    if let Some(a) = args.grpc_listen {
        config.edge.grpc_listen = a;
    }
    if let Some(a) = args.http_listen {
        config.edge.http_listen = Some(a);
    }
    if role == Role::All && config.edge.http_listen.is_none() {
        config.edge.http_listen = Some(ALL_HTTP_LISTEN);
    }
    Ok(config)
}

/// SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    match smsc_runtime::shutdown::signal() {
        Ok(s) => {
            let sig = s.await;
            info!(signal = sig.as_str(), "shutting down");
        }
        Err(e) => {
            warn!(error = %e, "no signal handler; running until killed");
            std::future::pending::<()>().await;
        }
    }
}

/// Runs `role` until `shutdown` resolves, then drains.
pub async fn run(
    role: Role,
    mut config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // What the config names but only opening it tells (files, URLs, certificates) is
    // checked before anything starts: a ConfigError exits 64 like a bad key.
    let connectors = role
        .worker()
        .then(|| smsc_delivery_worker::build_connectors(&config.connectors))
        .transpose()?;
    // Mutual TLS for the gRPC this process dials (edges, the store server).
    let client_tls = config
        .grpc_tls
        .as_ref()
        .map(smsc_runtime::grpc_tls::client_tls_config)
        .transpose()
        .map_err(|e| ConfigError::Unusable { key: "grpc_tls".into(), source: e.into() })?;
    let metrics = Metrics::new();
    let ready = Readiness::new();
    let listening = ready.condition("listening");
    let token = CancellationToken::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    // The admin port opens before the engines are reached: /live answers and /ready says
    // what is awaited, instead of an exit that Kubernetes would turn into CrashLoopBackOff.
    let admin_listener = bind("admin_listen", config.admin_listen).await?;
    tasks.spawn(admin::serve_until(admin_listener, metrics.clone(), ready.clone(), token.clone()));
    let bus_ready = ready.condition("bus");
    let store_ready = ready.condition("store");
    // The release's topics and groups, named once (`bus.topic_prefix`, `bus.group_prefix`).
    let topics = Topics::from_config(&config.bus, &config.retry)?;
    let bus = engines::bus(&config, &topics, &clock)?;
    let Some(bus) = engines::connect("bus", &mut shutdown, bus).await else {
        return stop(tasks, token).await;
    };
    let store = engines::store(&config, &clock, client_tls.clone())?;
    let Some(store) = engines::connect("store", &mut shutdown, store).await else {
        return stop(tasks, token).await;
    };
    store_ready.set(true);

    let accounts = accounts(role, &mut config, &mut tasks, &token)?;
    // The accounts crowding the hops, which the edge slows: this process's own, and
    // in a cluster the others' too, over <prefix>.pressure (below).
    let pressure = Pressure::default();
    let shares = config.bus.class_shares;
    let edge = match role.edge() {
        true => {
            let peers = peer_source(&config, &mut tasks, &token).await?;
            let deps = smsc_edge::Deps {
                accounts: accounts.clone(),
                bus: bus.clone(),
                store: store.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
                pressure: pressure.clone(),
                topics: topics.clone(),
            };
            let tls = config.grpc_tls.as_ref();
            let started = smsc_edge::start(
                &config.edge,
                &config.node_id,
                tls,
                peers,
                deps,
                &mut tasks,
                token.clone(),
            )
            .await?;
            deletion_cost(&config, &started.edge, &mut tasks, &token).await?;
            Some(started)
        }
        false => None,
    };
    if let Some(crd) = config.accounts_crd.as_ref().filter(|_| role.edge() || role.worker()) {
        // Not ready until the resources are listed: no binds against an empty directory.
        let loaded = ready.condition("accounts");
        #[cfg(feature = "k8s")]
        {
            let edge = edge.as_ref().map(|s| s.edge.clone());
            let watch =
                k8s::accounts(crd, &config, accounts.clone(), edge, loaded, token.clone()).await?;
            tasks.spawn(watch);
        }
        #[cfg(not(feature = "k8s"))]
        {
            let _ = (crd, loaded);
            anyhow::bail!("accounts_crd needs a build with the `k8s` feature");
        }
    }
    if role.router() {
        let routes = Arc::new(ArcSwap::from_pointee(smsc_router::Routes::new(&config.routing)));
        if let Some(path) = config.path.clone() {
            tasks.spawn(reload_routes(path, routes.clone(), token.clone()));
        }
        let deps = smsc_router::Deps {
            bus: bus.clone(),
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            pressure: pressure.clone(),
            shares,
        };
        // As many records in progress as the consumer may hold: through Kafka each one
        // waits milliseconds for its acks=all publish, so 64 lanes capped a router at a
        // few thousand messages/s.
        let lanes = config.worker.max_in_flight.max(1);
        smsc_router::start(routes, topics.clone(), lanes, deps, &mut tasks, token.clone());
    }
    if let Some(connectors) = connectors {
        let remote = GrpcEdgeLink::new(client_tls);
        let link: Arc<dyn EdgeLink> = match &edge {
            Some(e) => Arc::new(LocalFirst {
                endpoint: e.endpoint.clone(),
                local: EdgeGrpc(e.edge.clone()),
                remote,
            }),
            None => Arc::new(remote),
        };
        let deps = smsc_delivery_worker::Deps {
            accounts,
            bus: bus.clone(),
            store,
            clock,
            metrics,
            link,
            pressure: pressure.clone(),
            shares,
        };
        smsc_delivery_worker::start(
            &config.worker,
            &config.node_id,
            connectors,
            topics.clone(),
            deps,
            &mut tasks,
            token.clone(),
        )
        .await?;
    }
    if role != Role::All {
        // Between processes, the hops' reports of crowding accounts go to the edges.
        if role.edge() {
            let group = topics.group(&format!("edge-pressure-{}", config.node_id));
            let topic = topics.pressure().clone();
            tasks.spawn(pressure::follow(
                bus.clone(),
                pressure.clone(),
                topic,
                group,
                token.clone(),
            ));
        } else {
            let source = format!("{}/{role:?}", config.node_id);
            let topic = topics.pressure().clone();
            tasks.spawn(pressure::share(bus.clone(), pressure, topic, source, token.clone()));
        }
    }
    if let Some(path) = config.cdr.file.clone() {
        let (topic, group) = (topics.cdr().clone(), topics.group("cdr-file"));
        tasks.spawn(cdr_file::run(bus.clone(), topic, group, path, token.clone()));
    }
    info!(admin = %config.admin_listen, node = %config.node_id, "smsc {role:?} started");
    listening.set(true);
    // Readiness follows the bus: a pod that cannot publish must not get new binds.
    tasks.spawn(follow_bus(bus, bus_ready, token.clone()));

    shutdown.await;
    // Not ready first, so the Service stops sending new connections here.
    ready.start_draining();
    token.cancel();
    if let Some(edge) = edge
        && let Err(e) = edge.serving.await
    {
        warn!(error = %e, "edge task ended abnormally");
    }
    // Every task watches `token`, and the consumers finish the records in hand (for up
    // to lanes::DRAIN). Aborting them at once would cut a worker off between its claim
    // and its final write, which ends that message UNKNOWN.
    let grace = smsc_bus::lanes::DRAIN + std::time::Duration::from_secs(2);
    let finished = tokio::time::timeout(grace, async {
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                warn!(error = %e, "task ended abnormally");
            }
        }
    });
    if finished.await.is_err() {
        warn!(?grace, "tasks still running after the drain; stopping them");
    }
    tasks.shutdown().await;
    info!("stopped");
    Ok(())
}

/// The account directory, and its watcher in `tasks`: the config's accounts, or in
/// `smsc all` with none configured, the demo account (with the MO routes to it).
fn accounts(
    role: Role,
    config: &mut Config,
    tasks: &mut JoinSet<()>,
    token: &CancellationToken,
) -> anyhow::Result<Arc<AccountDirectory>> {
    let accounts =
        Arc::new(AccountDirectory::from_config(&config.accounts, config.store.message_ttl)?);
    if role == Role::All && accounts.is_empty() && config.accounts_crd.is_none() {
        // Only in the embedded all-in-one mode: a laptop demo needs no config at all.
        accounts.replace(vec![Account::demo()]);
        info!("no accounts configured: demo account `demo` / password `demo` enabled");
        if config.routing.mo.is_empty() {
            // Handset replies (`smsc mo`) reach the demo account too.
            config.routing.mo.push(MoRoute { prefix: String::new(), account: "demo".into() });
        }
    }
    if let Some(source) = config.accounts_source() {
        let watch = accounts.clone().watch(source, token.clone()).context("watching accounts")?;
        tasks.spawn(watch);
    }
    Ok(accounts)
}

/// Where the edge learns how many edges are ready (`edge.peers`), if anywhere.
async fn peer_source(
    config: &Config,
    tasks: &mut JoinSet<()>,
    token: &CancellationToken,
) -> anyhow::Result<Option<Arc<dyn PeerSource>>> {
    let Some(peers) = &config.edge.peers else { return Ok(None) };
    if let Some(source) = smsc_edge::rebalance::peer_source(peers) {
        return Ok(Some(source));
    }
    #[cfg(feature = "k8s")]
    {
        Ok(Some(k8s::peers(peers, tasks, token.clone()).await?))
    }
    #[cfg(not(feature = "k8s"))]
    {
        let _ = (tasks, token);
        anyhow::bail!("edge.peers.service needs a build with the `k8s` feature")
    }
}

/// `edge.pod_deletion_cost`: the task keeping this edge pod's deletion cost, in `tasks`.
async fn deletion_cost(
    config: &Config,
    edge: &Arc<smsc_edge::Edge>,
    tasks: &mut JoinSet<()>,
    token: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(cost) = &config.edge.pod_deletion_cost else { return Ok(()) };
    #[cfg(feature = "k8s")]
    {
        let task = k8s::deletion_cost(cost, &config.node_id, edge.clone(), token.clone()).await?;
        tasks.spawn(task);
        Ok(())
    }
    #[cfg(not(feature = "k8s"))]
    {
        let _ = (cost, edge, tasks, token);
        anyhow::bail!("edge.pod_deletion_cost needs a build with the `k8s` feature")
    }
}

/// Sets `bus_ready` from the bus every second until `token`.
async fn follow_bus(bus: Arc<dyn Bus>, bus_ready: ReadyCondition, token: CancellationToken) {
    loop {
        bus_ready.set(bus.is_ready());
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Stopped while still waiting for an engine: nothing was accepted yet, nothing to drain.
async fn stop(mut tasks: JoinSet<()>, token: CancellationToken) -> anyhow::Result<()> {
    token.cancel();
    tasks.shutdown().await;
    info!("stopped before the engines were reached");
    Ok(())
}

/// Reloads the routing tables from the config file on SIGHUP; a broken file keeps the
/// tables in use and says why.
async fn reload_routes(
    path: PathBuf,
    routes: Arc<arc_swap::ArcSwap<smsc_router::Routes>>,
    token: CancellationToken,
) {
    let mut hup = match smsc_runtime::shutdown::sighup() {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "no SIGHUP handler; routes are not reloadable");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = hup.recv() => {}
        }
        match Config::load(Some(&path)) {
            Ok(c) => {
                routes.store(Arc::new(smsc_router::Routes::new(&c.routing)));
                info!(mt = c.routing.mt.len(), mo = c.routing.mo.len(), "routes reloaded");
            }
            Err(e) => warn!(error = %e, "routes not reloaded; keeping the ones in use"),
        }
    }
}
