//! Reaching the bus and the store at start-up. A role whose Kafka or CQL store is not
//! reachable yet keeps trying (0.5 s, doubling to 10 s) with its admin port open: `/live`
//! answers 200 and `/ready` 503 naming what it waits for (`bus`, `store`), so Kubernetes
//! keeps the pod out of its Service instead of restarting it in a CrashLoopBackOff. A
//! config error is not retried: it fails the start at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use smsc_bus::Bus;
use smsc_bus::BusKind;
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_store::config::StoreKind;

use crate::config::Config;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{Clock, Store};
use tracing::{info, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One connection attempt per call.
pub(crate) type Connect<T> = Box<dyn FnMut() -> BoxFuture<'static, anyhow::Result<T>> + Send>;

/// Calls `attempt` until it succeeds; `None` when `shutdown` resolves first.
pub(crate) async fn connect<T, S: Future<Output = ()>>(
    what: &'static str,
    shutdown: &mut Pin<&mut S>,
    mut attempt: Connect<T>,
) -> Option<T> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let result = tokio::select! {
            () = shutdown.as_mut() => return None,
            r = attempt() => r,
        };
        match result {
            Ok(connected) => {
                if attempts > 1 {
                    info!(what, attempts, "reached");
                }
                return Some(connected);
            }
            Err(e) => warn!(
                what,
                attempts,
                retry_in = ?backoff,
                error = format!("{e:#}"),
                "not reachable yet; /ready answers 503 until it is"
            ),
        }
        tokio::select! {
            () = shutdown.as_mut() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How to reach `bus.*`; an error here is the config's (or the build's).
pub(crate) fn bus(
    config: &Config,
    topics: &smsc_bus::Topics,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Connect<Arc<dyn Bus>>> {
    #[cfg(not(feature = "kafka"))]
    let _ = topics; // the embedded bus makes topics as they are used
    match config.bus.kind {
        BusKind::Embedded => {
            let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::with_clock(
                EmbeddedBusConfig {
                    partitions: config.bus.partitions,
                    max_lag: usize::try_from(config.bus.max_lag).unwrap_or(usize::MAX),
                },
                clock.clone(),
            ));
            Ok(ready(bus))
        }
        #[cfg(feature = "kafka")]
        BusKind::Kafka => {
            use smsc_bus::kafka::{KafkaBus, KafkaBusConfig};
            let mut k = KafkaBusConfig::from_config(&config.bus, &config.node_id);
            // Every topic the pipeline uses: created when missing, or checked to exist.
            k.topics = topics.all();
            Ok(Box::new(move || {
                let k = k.clone();
                Box::pin(async move {
                    let bus = KafkaBus::connect(k).await.context("kafka")?;
                    Ok(Arc::new(bus) as Arc<dyn Bus>)
                })
            }))
        }
        other => {
            anyhow::bail!("bus.kind {other:?} is not supported by this build (features: kafka)")
        }
    }
}

/// How to reach `store.*`; an error here is the config's (or the build's).
pub(crate) fn store(
    config: &Config,
    clock: &Arc<dyn Clock>,
    client_tls: Option<tonic::transport::ClientTlsConfig>,
) -> anyhow::Result<Connect<Arc<dyn Store>>> {
    match config.store.kind {
        StoreKind::Embedded => {
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::with_clock(
                EmbeddedStoreConfig {
                    message_ttl: config.store.message_ttl,
                    final_ttl: config.store.final_ttl,
                },
                clock.clone(),
            ));
            Ok(ready(store))
        }
        #[cfg(feature = "scylla")]
        StoreKind::Scylla => {
            use smsc_store::scylla::{ScyllaConfig, ScyllaStore};
            let c = ScyllaConfig::from_config(&config.store)?;
            Ok(Box::new(move || {
                let c = c.clone();
                Box::pin(async move {
                    let store = ScyllaStore::connect(c).await.context("scylla")?;
                    Ok(Arc::new(store) as Arc<dyn Store>)
                })
            }))
        }
        StoreKind::Remote => {
            use smsc_store::remote::{RemoteStore, RemoteStoreConfig};
            let c = RemoteStoreConfig {
                request_timeout: config.store.request_timeout,
                tls: client_tls,
                ..RemoteStoreConfig::new(config.store.endpoint.clone())
            };
            Ok(Box::new(move || {
                let c = c.clone();
                Box::pin(async move {
                    let endpoint = c.endpoint.clone();
                    let store = RemoteStore::connect(c)
                        .await
                        .with_context(|| format!("remote store {endpoint}"))?;
                    Ok(Arc::new(store) as Arc<dyn Store>)
                })
            }))
        }
        other => {
            anyhow::bail!("store.kind {other:?} is not supported by this build (features: scylla)")
        }
    }
}

/// An in-process engine: there from the first attempt.
fn ready<T: Clone + Send + 'static>(engine: T) -> Connect<T> {
    Box::new(move || {
        let engine = engine.clone();
        Box::pin(async move { Ok(engine) })
    })
}
