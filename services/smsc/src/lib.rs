//! Composes the roles into processes: `smsc edge` runs the edge, `smsc all` runs every
//! role that exists in one process on embedded defaults.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use smsc_accounts::{Account, AccountDirectory};
use smsc_bus::Tiers;
use smsc_delivery_worker::edge_link::{EdgeLink, GrpcEdgeLink};
use smsc_runtime::admin::{self, Readiness};

use crate::config::{Config, ConfigError};
use smsc_edge::grpc::{DirectoryGrpc, EdgeGrpc};
use smsc_edge::{Edge, Settings};
use smsc_proto::edge_server::EdgeServer;
use smsc_proto::session_directory_server::SessionDirectoryServer;
use smsc_runtime::telemetry::Metrics;
use smsc_store::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub mod cluster;
pub mod config;
mod engines;
#[cfg(feature = "k8s")]
mod k8s;

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
}

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
    Ok(config)
}

/// `smsc hash-password`.
pub fn hash_password(password: Option<String>) -> ExitCode {
    let password = match password {
        Some(p) => p,
        None => {
            let mut s = String::new();
            if std::io::stdin().read_to_string(&mut s).is_err() {
                eprintln!("smsc: could not read the password from stdin");
                return ExitCode::from(66);
            }
            s.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    match smsc_accounts::hash_password(&password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsc: {e}");
            ExitCode::from(70)
        }
    }
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

fn edge_settings(config: &Config, grpc_endpoint: String) -> Settings {
    let e = &config.edge;
    Settings {
        edge_id: config.node_id.clone(),
        grpc_endpoint,
        smsc_system_id: "smsc".into(),
        session_init_timeout: e.session_init_timeout,
        enquire_link_interval: e.enquire_link_interval,
        inactivity_timeout: e.inactivity_timeout,
        response_timeout: e.response_timeout,
        max_command_length: e.max_command_length,
        drain_timeout: e.drain_timeout,
        max_connections: e.max_connections as usize,
        session_lease_ttl: e.session_lease_ttl,
        deliver_queue_wait: e.deliver_queue_wait,
    }
}

/// Runs `role` until `shutdown` resolves, then drains.
pub async fn run(
    role: Role,
    mut config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // What the config names but only opening it tells (files, URLs, certificates) is
    // checked before anything starts: a ConfigError here exits 64 like a bad key.
    let mut connectors = if role.worker() {
        Some(smsc_delivery_worker::connector::build(&config.connectors)?)
    } else {
        None
    };
    let metrics = Metrics::new();
    let ready = Readiness::new();
    let listening = ready.condition("listening");
    let bus_ready = ready.condition("bus");
    let token = CancellationToken::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    // Mutual TLS for the gRPC this process dials (edges, the store server).
    let client_tls = config
        .grpc_tls
        .as_ref()
        .map(smsc_runtime::grpc_tls::client_tls_config)
        .transpose()
        .context("grpc_tls")?;
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);

    // The admin port opens before the engines are reached: /live answers and /ready says
    // what is awaited, instead of an exit that Kubernetes would turn into CrashLoopBackOff.
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding admin_listen {}", config.admin_listen))?;
    let admin_token = token.clone();
    tasks.spawn({
        let (metrics, ready) = (metrics.clone(), ready.clone());
        async move {
            if let Err(e) =
                admin::serve(admin_listener, metrics, ready, admin_token.cancelled_owned()).await
            {
                warn!(error = %e, "admin server stopped");
            }
        }
    });
    let store_ready = ready.condition("store");
    let bus = engines::bus(&config, &clock)?;
    let Some(bus) = engines::connect("bus", &mut shutdown, bus).await else {
        return stop(tasks, token).await;
    };
    let store = engines::store(&config, &clock, client_tls.clone())?;
    let Some(store) = engines::connect("store", &mut shutdown, store).await else {
        return stop(tasks, token).await;
    };
    store_ready.set(true);

    let accounts =
        Arc::new(AccountDirectory::from_config(&config.accounts, config.store.message_ttl)?);
    if role == Role::All && accounts.is_empty() && config.accounts_crd.is_none() {
        // Only in the embedded all-in-one mode: a laptop demo needs no config at all.
        accounts.replace(vec![Account::demo()]);
        info!("no accounts configured: demo account `demo` / password `demo` enabled");
        if config.routing.mo.is_empty() {
            // Handset replies (`smsc mo`) reach the demo account too.
            config.routing.mo.push(smsc_router::config::MoRoute {
                prefix: String::new(),
                account: "demo".into(),
            });
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(source) = config.accounts_source() {
        let watch = accounts.clone().watch(source, token.clone()).context("watching accounts")?;
        tasks.spawn(watch);
    }

    let grpc_listener = TcpListener::bind(config.edge.grpc_listen)
        .await
        .with_context(|| format!("binding edge.grpc_listen {}", config.edge.grpc_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let advertised = config.edge.grpc_advertise.clone().unwrap_or_else(|| grpc_addr.to_string());
    let tiers = Tiers::new(&config.retry.tiers);

    let mut grpc = smsc_runtime::grpc_tls::server(config.grpc_tls.as_ref())
        .context("grpc_tls")?
        .add_service(SessionDirectoryServer::new(DirectoryGrpc(store.clone())));
    let mut edge_service = None;
    let mut serving = None;
    if role.edge() {
        let smpp = TcpListener::bind(config.edge.smpp_listen)
            .await
            .with_context(|| format!("binding edge.smpp_listen {}", config.edge.smpp_listen))?;
        let tls = match &config.edge.tls {
            Some(t) => {
                let acceptor = smsc_edge::tls::acceptor(&t.cert, &t.key).context("edge.tls")?;
                let l = TcpListener::bind(t.listen)
                    .await
                    .with_context(|| format!("binding edge.tls.listen {}", t.listen))?;
                info!(addr = %t.listen, "SMPP over TLS listening");
                Some((l, acceptor))
            }
            None => None,
        };
        info!(smpp = %smpp.local_addr()?, "SMPP listening");
        let edge = Edge::with_limits(
            edge_settings(&config, advertised.clone()),
            smsc_edge::Limits::from_config(&config.edge),
            accounts.clone(),
            bus.clone(),
            store.clone(),
            metrics.clone(),
            clock.clone(),
        );
        grpc = grpc.add_service(EdgeServer::new(EdgeGrpc(edge.clone())));
        edge_service = Some(EdgeGrpc(edge.clone()));
        tasks.spawn(smsc_edge::heartbeat(edge.clone(), token.clone()));
        if let Some(peers) = &config.edge.peers {
            let rebalance = smsc_edge::rebalance::Settings::from_config(&config.edge.rebalance);
            let source = match smsc_edge::rebalance::peer_source(peers) {
                Some(source) => source,
                #[cfg(feature = "k8s")]
                None => k8s::peers(peers, &mut tasks, token.clone()).await?,
                #[cfg(not(feature = "k8s"))]
                None => anyhow::bail!("edge.peers.service needs a build with the `k8s` feature"),
            };
            tasks.spawn(smsc_edge::rebalance::run(edge.clone(), source, rebalance, token.clone()));
        }
        serving = Some(tokio::spawn(smsc_edge::serve(edge, smpp, tls, token.clone())));
    }
    if let Some(crd) = config.accounts_crd.as_ref().filter(|_| role.edge() || role.worker()) {
        // Not ready until the resources are listed: no binds against an empty directory.
        let loaded = ready.condition("accounts");
        #[cfg(feature = "k8s")]
        {
            let edge = edge_service.as_ref().map(|g| g.0.clone());
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
        let routes =
            Arc::new(arc_swap::ArcSwap::from_pointee(smsc_router::Routes::new(&config.routing)));
        if let Some(path) = config.path.clone() {
            tasks.spawn(reload_routes(path, routes.clone(), token.clone()));
        }
        let router = smsc_router::Router::new(
            bus.clone(),
            store.clone(),
            routes,
            tiers.clone(),
            clock.clone(),
            metrics.clone(),
            token.clone(),
        );
        // As many records in progress as the consumer may hold: through Kafka each one
        // waits milliseconds for its acks=all publish, so 64 lanes capped a router at a
        // few thousand messages/s.
        let lanes = config.worker.max_in_flight.max(1);
        tasks.spawn(async move {
            if let Err(e) = smsc_router::run(router, lanes, lanes).await {
                warn!(error = %e, "router stopped");
            }
        });
    }
    if role.worker() {
        let worker = smsc_delivery_worker::Worker::new(
            bus.clone(),
            store.clone(),
            connectors.take().unwrap_or_default(),
            tiers.clone(),
            clock.clone(),
            metrics.clone(),
            token.clone(),
        );
        let (in_flight, notify_in_flight) =
            (config.worker.max_in_flight, config.worker.notify_in_flight);
        tasks.spawn(async move {
            if let Err(e) = smsc_delivery_worker::run(worker, in_flight, in_flight).await {
                warn!(error = %e, "delivery worker stopped");
            }
        });
        let link: Arc<dyn EdgeLink> = match edge_service.clone() {
            Some(local) => Arc::new(LocalFirst {
                endpoint: advertised.clone(),
                local,
                remote: GrpcEdgeLink::new(client_tls.clone()),
            }),
            None => Arc::new(GrpcEdgeLink::new(client_tls.clone())),
        };
        let dispatcher = Arc::new(smsc_delivery_worker::dispatch::Dispatcher::new(
            store.clone(),
            link,
            accounts.clone(),
            clock.clone(),
            metrics.clone(),
            token.clone(),
            &config.node_id,
        ));
        let (dbus, interval) = (bus.clone(), config.worker.pending_interval);
        tasks.spawn(async move {
            if let Err(e) = smsc_delivery_worker::dispatch::run(
                dispatcher,
                dbus,
                notify_in_flight,
                notify_in_flight,
                interval,
            )
            .await
            {
                warn!(error = %e, "dispatcher stopped");
            }
        });
        let sim = TcpListener::bind(config.worker.simulator_listen).await.with_context(|| {
            format!("binding worker.simulator_listen {}", config.worker.simulator_listen)
        })?;
        let (sim_bus, sim_clock, sim_token) = (bus.clone(), clock.clone(), token.clone());
        tasks.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(sim);
            let served = tonic::transport::Server::builder()
                .add_service(smsc_proto::simulator_server::SimulatorServer::new(
                    smsc_delivery_worker::simulator::SimulatorGrpc::new(sim_bus, sim_clock),
                ))
                .serve_with_incoming_shutdown(incoming, sim_token.cancelled_owned())
                .await;
            if let Err(e) = served {
                warn!(error = %e, "simulator gRPC stopped");
            }
        });
    }
    info!(grpc = %grpc_addr, admin = %config.admin_listen, node = %config.node_id, "smsc {role:?} started");

    let grpc_token = token.clone();
    tasks.spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
        if let Err(e) =
            grpc.serve_with_incoming_shutdown(incoming, grpc_token.cancelled_owned()).await
        {
            warn!(error = %e, "gRPC server stopped");
        }
    });
    listening.set(true);
    // Readiness follows the bus: a pod that cannot publish must not get new binds.
    tasks.spawn({
        let (bus, token) = (bus.clone(), token.clone());
        async move {
            loop {
                bus_ready.set(bus.is_ready());
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    });

    shutdown.await;
    // Not ready first, so the Service stops sending new connections here.
    ready.start_draining();
    token.cancel();
    if let Some(serving) = serving
        && let Err(e) = serving.await
    {
        warn!(error = %e, "edge task ended abnormally");
    }
    // Every task watches `token`, and the consumers finish the records in hand (for up
    // to pipeline::DRAIN). Aborting them at once would cut a worker off between its
    // claim and its final write, which ends that message UNKNOWN.
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

/// Stopped while still waiting for an engine: nothing was accepted yet, nothing to drain.
async fn stop(mut tasks: tokio::task::JoinSet<()>, token: CancellationToken) -> anyhow::Result<()> {
    token.cancel();
    tasks.shutdown().await;
    info!("stopped before the engines were reached");
    Ok(())
}

/// `smsc store-server` flags; each overrides its config key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreServerArgs {
    /// The YAML configuration: `store.message_ttl`, `store.final_ttl`, `admin_listen`,
    /// and `store.endpoint` as the default listen address.
    #[arg(long, short, env = "SMSC_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address (default: store.endpoint, 127.0.0.1:50060).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP address: /metrics, /live, /ready (admin_listen).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
}

impl StoreServerArgs {
    /// The config with the flags applied, and the address to serve on.
    pub fn load(&self) -> Result<(Config, SocketAddr), ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(a) = self.admin_listen {
            config.admin_listen = a;
        }
        let listen = match self.listen {
            Some(a) => a,
            None => config.store.endpoint.parse().map_err(|_| ConfigError::Invalid {
                key: "store.endpoint".into(),
                env_var: None,
                reason: format!(
                    "`{}` is not an IP:port to listen on: pass --listen",
                    config.store.endpoint
                ),
            })?,
        };
        Ok((config, listen))
    }
}

/// `smsc store-server`: one in-memory [`EmbeddedStore`] served over gRPC
/// (`smsc.v1.StoreService`) on `listen`, so that the processes of a local cluster
/// (`store.kind: remote`) share it. For local clusters and tests only: nothing is
/// durable and there is one copy. Runs until `shutdown` resolves.
pub async fn run_store_server(
    listen: SocketAddr,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    use smsc_store::Store;
    use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
    use smsc_store::remote::StoreServer;

    let metrics = Metrics::new();
    let ready = Readiness::new();
    let listening = ready.condition("listening");
    let token = CancellationToken::new();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::new(EmbeddedStoreConfig {
        message_ttl: config.store.message_ttl,
        final_ttl: config.store.final_ttl,
    }));
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding admin_listen {}", config.admin_listen))?;
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("binding --listen {listen}"))?;
    let addr = listener.local_addr()?;
    let server = smsc_runtime::grpc_tls::server(config.grpc_tls.as_ref()).context("grpc_tls")?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let (metrics, ready, stop) = (metrics.clone(), ready.clone(), token.clone());
        async move {
            if let Err(e) =
                admin::serve(admin_listener, metrics, ready, stop.cancelled_owned()).await
            {
                warn!(error = %e, "admin server stopped");
            }
        }
    });
    tasks.spawn({
        let stop = token.clone();
        async move {
            let served =
                StoreServer::new(store).serve_with(server, listener, stop.cancelled_owned());
            if let Err(e) = served.await {
                warn!(error = %e, "store gRPC server stopped");
            }
        }
    });
    listening.set(true);
    info!(grpc = %addr, admin = %config.admin_listen, "store server started (in memory: for local clusters and tests, not production)");

    shutdown.await;
    ready.start_draining();
    token.cancel();
    // Calls in progress are short; a client that holds its stream open is not waited for.
    let drained = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("store server did not drain within 5s");
    }
    tasks.shutdown().await;
    info!("stopped");
    Ok(())
}

/// `smsc mo`: one handset message through the simulator.
pub fn inject_mo(simulator: &str, from: String, to: String, text: String) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsc: {e}");
            return ExitCode::from(70);
        }
    };
    let result = rt.block_on(async {
        let mut client =
            smsc_proto::simulator_client::SimulatorClient::connect(format!("http://{simulator}"))
                .await?;
        let r =
            client.inject_mo(smsc_proto::InjectMoRequest { from, to, text }).await?.into_inner();
        anyhow::Ok(r.ids)
    });
    match result {
        Ok(ids) => {
            for id in ids {
                println!("{id}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsc: mo: {e:#}");
            ExitCode::from(69)
        }
    }
}

/// `smsc migrate`: applies the ScyllaDB schema of `store.*`.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    #[cfg(feature = "scylla")]
    {
        let c = smsc_store::scylla::ScyllaConfig::from_config(&config.store)?;
        let applied = smsc_store::scylla::migrate(&c).await.context("migrating")?;
        info!(keyspace = %c.keyspace, ?applied, "schema up to date");
        Ok(())
    }
    #[cfg(not(feature = "scylla"))]
    {
        let _ = config;
        anyhow::bail!("this build has no ScyllaDB support (feature `scylla`)")
    }
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
