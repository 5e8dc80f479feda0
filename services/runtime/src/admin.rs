//! The admin HTTP server every role runs: `/metrics`, `/live`, `/ready`.
//!
//! `/live` answers 200 as long as the process serves HTTP at all: a liveness probe
//! should restart a wedged process, not one that is merely waiting for Kafka.
//! `/ready` answers 200 only while every registered [`ReadyCondition`] holds and the
//! process is not draining, so Kubernetes stops sending new ESMEs to a pod that cannot
//! take them or is shutting down.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::telemetry::Metrics;

/// Whether the process should receive traffic: named conditions, all of which must
/// hold, and a draining flag that, once set, fails readiness for good.
///
/// Cheap to clone; every clone sees the same state. Register conditions before the
/// admin server starts: with none registered the process is ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug, Default)]
struct ReadinessInner {
    conditions: Mutex<Vec<ReadyCondition>>,
    draining: AtomicBool,
}

/// One named condition of a [`Readiness`], starting unmet. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadyCondition {
    name: &'static str,
    met: Arc<AtomicBool>,
}

impl ReadyCondition {
    pub fn set(&self, met: bool) {
        self.met.store(met, Ordering::Release);
    }

    pub fn is_met(&self) -> bool {
        self.met.load(Ordering::Acquire)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// The condition called `name` (e.g. `bus`, `listening`), created unmet on first
    /// use; asking again returns the same one.
    pub fn condition(&self, name: &'static str) -> ReadyCondition {
        let mut conditions = self.inner.conditions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = conditions.iter().find(|c| c.name == name) {
            return c.clone();
        }
        let c = ReadyCondition { name, met: Arc::new(AtomicBool::new(false)) };
        conditions.push(c.clone());
        c
    }

    /// Shutting down: not ready from now on, whatever the conditions say.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    pub fn is_ready(&self) -> bool {
        self.unmet().is_empty()
    }

    /// What stands in the way: unmet condition names, and `draining`.
    pub fn unmet(&self) -> Vec<&'static str> {
        let conditions = self.inner.conditions.lock().unwrap_or_else(PoisonError::into_inner);
        let mut unmet: Vec<&'static str> =
            conditions.iter().filter(|c| !c.is_met()).map(|c| c.name).collect();
        if self.is_draining() {
            unmet.push("draining");
        }
        unmet
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    ready: Readiness,
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves, then lets
/// requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin HTTP listening");
    }
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready_page))
        .with_state(AdminState { metrics, ready });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// [`serve`] as a task of its own, until `shutdown` is cancelled; a failure is logged.
pub async fn serve_until(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Readiness,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if let Err(e) = serve(listener, metrics, ready, shutdown.cancelled_owned()).await {
        tracing::warn!(error = %e, "admin server stopped");
    }
}

async fn metrics_page(State(state): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode())
}

async fn ready_page(State(state): State<AdminState>) -> impl IntoResponse {
    let unmet = state.ready.unmet();
    if unmet.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", unmet.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::SocketAddr;

    use super::*;

    /// One HTTP/1.1 request over a fresh connection: (status, body).
    async fn get(addr: SocketAddr, path: &'static str) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
            write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .expect("write");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("read");
            let status =
                response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
            let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).expect("body");
            (status, body)
        })
        .await
        .expect("client thread")
    }

    #[test]
    fn readiness_conditions_and_draining() {
        let ready = Readiness::new();
        assert!(ready.is_ready(), "nothing registered");
        let bus = ready.condition("bus");
        let listening = ready.clone().condition("listening");
        assert_eq!(ready.unmet(), vec!["bus", "listening"]);
        bus.set(true);
        ready.condition("listening").set(true);
        assert!(listening.is_met());
        assert!(ready.is_ready());
        bus.set(false);
        assert_eq!(ready.unmet(), vec!["bus"]);
        bus.set(true);
        ready.start_draining();
        assert!(ready.is_draining());
        assert_eq!(ready.unmet(), vec!["draining"]);
    }

    #[tokio::test]
    async fn serves_live_ready_metrics_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Metrics::new();
        metrics.consumer_lag.with_label_values(&["smsc-router", "smsc.submit"]).set(4);
        let ready = Readiness::new();
        let bus = ready.condition("bus");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, ready.clone(), async {
            let _ = stopped.await;
        }));

        assert_eq!(get(addr, "/live").await.0, 200);
        assert_eq!(get(addr, "/ready").await, (503, "not ready: bus\n".to_owned()));
        bus.set(true);
        assert_eq!(get(addr, "/ready").await, (200, "ready\n".to_owned()));
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains(
                r#"smsc_bus_consumer_lag_records{group="smsc-router",topic="smsc.submit"} 4"#
            ),
            "{body}"
        );
        assert!(body.contains("# TYPE smsc_bus_consumer_lag_records gauge"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);

        ready.start_draining();
        assert_eq!(get(addr, "/ready").await, (503, "not ready: draining\n".to_owned()));
        assert_eq!(get(addr, "/live").await.0, 200, "draining is still alive");

        stop.send(()).expect("server running");
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("stops on shutdown")
            .expect("no panic")
            .expect("no io error");
        assert!(std::net::TcpStream::connect(addr).is_err(), "listener closed");
    }
}
