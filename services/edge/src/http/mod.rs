//! The HTTP API beside SMPP (docs/http-api.md), for senders that never speak SMPP:
//! `POST /v1/messages` (and `/v1/messages/batch`), `GET` and `DELETE /v1/messages/{id}`,
//! and the OpenAPI document at `/v1/openapi.json`.
//!
//! The guarantees are SMPP's, through the same code: the same checks
//! ([`crate::submit::check`]), message ids, rate limiter, quota leases, classes and
//! backlog throttling; a 202 only once every record of the request is on the bus. An
//! account's requests in flight on this pod are capped at its `window`, as one
//! session's are. Errors are `application/problem+json` naming the SMPP status they
//! correspond to.
//!
//! - [`auth`]: HTTP Basic with the account's system_id and password (the bind check).
//! - [`submit`]: the JSON message into the records SMPP would have made.
//! - [`messages`]: a message's state, and cancelling it, from the store.
//! - [`problem`]: the error responses.

mod auth;
mod messages;
mod problem;
mod submit;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::extract::connect_info::Connected;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::Edge;
use crate::config::HttpConfig;

pub use problem::Problem;

impl Api {
    /// The response to a request of `route`, counted.
    fn answer(&self, route: &str, result: Result<impl IntoResponse, Problem>) -> Response {
        let response = match result {
            Ok(r) => r.into_response(),
            Err(p) => p.into_response(),
        };
        let code = response.status();
        self.edge.metrics.http_requests_total.with_label_values(&[route, code.as_str()]).inc();
        response
    }
}

/// The OpenAPI 3.1 document of this API, served as is.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The address a request came from (`ConnectInfo`), over either listener.
#[derive(Debug, Clone, Copy)]
struct Client(SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Client {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for Client {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// What every request handler shares.
#[derive(Debug)]
struct Api {
    edge: Arc<Edge>,
    config: HttpConfig,
    /// Each account's requests in flight on this pod: its `window` permits (and that
    /// size, which a semaphore does not tell).
    windows: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
}

impl Api {
    /// The account's window on this pod; rebuilt when its configured size changes.
    fn window(&self, system_id: &str, size: u32) -> Arc<Semaphore> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        match windows.get(system_id) {
            Some((s, w)) if *s == size => w.clone(),
            _ => {
                let w = Arc::new(Semaphore::new(size.max(1) as usize));
                windows.insert(system_id.to_owned(), (size, w.clone()));
                w
            }
        }
    }
}

/// The API's routes over `edge`.
pub fn router(edge: Arc<Edge>, config: HttpConfig) -> Router {
    let api = Arc::new(Api { edge, config, windows: Mutex::new(HashMap::new()) });
    Router::new()
        .route("/v1/messages", post(submit::single))
        .route("/v1/messages/batch", post(submit::batch))
        .route("/v1/messages/{id}", get(messages::get).delete(messages::delete))
        .route("/v1/openapi.json", get(openapi))
        .fallback(not_found)
        .with_state(api)
}

async fn openapi(State(api): State<Arc<Api>>) -> Response {
    api.answer("openapi", Ok::<_, Problem>(([(header::CONTENT_TYPE, "application/json")], OPENAPI)))
}

async fn not_found(State(api): State<Arc<Api>>) -> Response {
    api.answer("other", Err::<(), _>(Problem::new(StatusCode::NOT_FOUND, "no such resource")))
}

/// Serves the API on `listener` (over TLS with `tls`) until `shutdown`, then lets the
/// requests in progress finish (their records are on their way to the bus).
pub async fn serve(
    listener: TcpListener,
    tls: Option<crate::tls::Acceptor>,
    edge: Arc<Edge>,
    config: HttpConfig,
    shutdown: CancellationToken,
) {
    let app = router(edge, config).into_make_service_with_connect_info::<Client>();
    let stop = shutdown.cancelled_owned();
    let served = match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(stop).await,
        Some(acceptor) => match tls::TlsListener::new(listener, acceptor) {
            Ok(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        warn!(error = %e, "HTTP API server stopped");
    }
}
