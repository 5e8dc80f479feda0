//! The commands besides the roles: `smsc hash-password`, `smsc store-server`, `smsc mo`
//! and `smsc migrate`.

use std::future::Future;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use smsc_runtime::admin::{self, Readiness};
use smsc_runtime::listen::bind;
use smsc_runtime::telemetry::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};

/// `smsc api-key`: a new HTTP API key on the first line (give it to the customer, once)
/// and its SHA-256 on the second (the account's `api_key_sha256`).
pub fn api_key() -> ExitCode {
    match smsc_accounts::new_api_key() {
        Ok((key, digest)) => {
            println!("{key}");
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!("smsc: the system's random source failed");
            ExitCode::from(70)
        }
    }
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
        Err(e @ smsc_accounts::AccountError::Invalid { .. }) => {
            eprintln!("smsc: {e}");
            ExitCode::from(65)
        }
        Err(e) => {
            eprintln!("smsc: {e}");
            ExitCode::from(70)
        }
    }
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
    let admin_listener = bind("admin_listen", config.admin_listen).await?;
    let listener = bind("--listen", listen).await?;
    let addr = listener.local_addr()?;
    let server = smsc_runtime::grpc_tls::server(config.grpc_tls.as_ref()).context("grpc_tls")?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin::serve_until(admin_listener, metrics, ready.clone(), token.clone()));
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
