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
use smsc_common::accounts::{Account, AccountDirectory};
use smsc_common::admin::{self, Readiness};
use smsc_common::bus::Bus;
use smsc_common::bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_common::config::{BusKind, Config, ConfigError, StoreKind};
use smsc_common::store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_common::store::{Clock, Store, SystemClock};
use smsc_common::telemetry::Metrics;
use smsc_edge::grpc::{DirectoryGrpc, EdgeGrpc};
use smsc_edge::{Edge, Settings};
use smsc_proto::edge_server::EdgeServer;
use smsc_proto::session_directory_server::SessionDirectoryServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Edge,
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
    match smsc_common::accounts::hash_password(&password) {
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
    match smsc_common::shutdown::signal() {
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
    }
}

/// Runs `role` until `shutdown` resolves, then drains.
pub async fn run(
    role: Role,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let ready = Readiness::new();
    let listening = ready.condition("listening");
    let token = CancellationToken::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let bus: Arc<dyn Bus> = match config.bus.kind {
        BusKind::Embedded => Arc::new(EmbeddedBus::with_clock(
            EmbeddedBusConfig {
                partitions: config.bus.partitions,
                max_lag: usize::try_from(config.bus.max_lag).unwrap_or(usize::MAX),
            },
            clock.clone(),
        )),
        other => anyhow::bail!("bus.kind {other:?} is not supported by this build"),
    };
    let store: Arc<dyn Store> = match config.store.kind {
        StoreKind::Embedded => Arc::new(EmbeddedStore::with_clock(
            EmbeddedStoreConfig { message_ttl: config.store.message_ttl },
            clock.clone(),
        )),
        other => anyhow::bail!("store.kind {other:?} is not supported by this build"),
    };

    let accounts = Arc::new(AccountDirectory::from_config(&config)?);
    if role == Role::All && accounts.is_empty() {
        // Only in the embedded all-in-one mode: a laptop demo needs no config at all.
        accounts.replace(vec![Account::demo()]);
        info!("no accounts configured: demo account `demo` / password `demo` enabled");
    }
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(source) = config.accounts_source() {
        let watch = accounts.clone().watch(source, token.clone()).context("watching accounts")?;
        tasks.spawn(watch);
    }

    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding admin_listen {}", config.admin_listen))?;
    let grpc_listener = TcpListener::bind(config.edge.grpc_listen)
        .await
        .with_context(|| format!("binding edge.grpc_listen {}", config.edge.grpc_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let advertised = config.edge.grpc_advertise.clone().unwrap_or_else(|| grpc_addr.to_string());
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
    info!(smpp = %smpp.local_addr()?, grpc = %grpc_addr, admin = %config.admin_listen, node = %config.node_id, "smsc {role:?} starting");

    let edge = Edge::new(
        edge_settings(&config, advertised),
        accounts.clone(),
        bus.clone(),
        store.clone(),
        metrics.clone(),
        clock.clone(),
    );

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
    let grpc_token = token.clone();
    tasks.spawn({
        let (edge, store) = (edge.clone(), store.clone());
        async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
            let served = tonic::transport::Server::builder()
                .add_service(EdgeServer::new(EdgeGrpc(edge)))
                .add_service(SessionDirectoryServer::new(DirectoryGrpc(store)))
                .serve_with_incoming_shutdown(incoming, grpc_token.cancelled_owned())
                .await;
            if let Err(e) = served {
                warn!(error = %e, "gRPC server stopped");
            }
        }
    });
    tasks.spawn(smsc_edge::heartbeat(edge.clone(), token.clone()));
    let edge_token = token.clone();
    let serving = tokio::spawn(smsc_edge::serve(edge, smpp, tls, edge_token));
    listening.set(true);

    shutdown.await;
    // Not ready first, so the Service stops sending new connections here.
    ready.start_draining();
    token.cancel();
    if let Err(e) = serving.await {
        warn!(error = %e, "edge task ended abnormally");
    }
    tasks.shutdown().await;
    info!("stopped");
    Ok(())
}
