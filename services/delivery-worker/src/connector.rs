//! Network connectors: where a message leaves the SMSC, and what one that also receives
//! (an SMPP upstream) reports back ([`Inbound`], [`UpstreamReceipt`]). The network
//! simulator and the HTTP webhook are here; the SMPP upstream (`upstream`) implements the
//! same trait. The worker builds them from the config (`start::build_connectors`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use smsc_proto::MoEvent;
use smsc_smpp::{CommandStatus, MessageState};
use smsc_store::{Clock, Store, StoredMessage};
use tokio_util::sync::CancellationToken;

use crate::config::SimProfile;
use crate::metrics::UpstreamMetrics;

/// What the network said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Another SMSC took the message (an SMPP upstream's submit_sm_resp OK): its final
    /// state comes later with the upstream's receipt, matched by `upstream_id` (the key
    /// [`crate::upstream`] derives from the upstream's message_id).
    Accepted {
        upstream_id: String,
    },
    /// Try again later (absent subscriber, memory full, connector down).
    Temporary {
        error_code: u16,
    },
    /// Never deliverable (unknown subscriber, barred).
    Permanent {
        error_code: u16,
    },
}

/// GSM MAP error codes the simulator reports (and receipts carry in `err:`).
pub const UNKNOWN_SUBSCRIBER: u16 = 1;
pub const ABSENT_SUBSCRIBER: u16 = 27;

pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Hands one message to the network. `attempt` is 1 for the first try.
    fn deliver<'a>(&'a self, message: &'a StoredMessage, attempt: u32) -> BoxFuture<'a, Outcome>;

    /// Starts what the connector runs in the background (an SMPP upstream's binds with
    /// their receipt and MO listeners) until `ctx.shutdown`; [`crate::run`] calls it
    /// once, before the first delivery.
    fn start(&self, ctx: ConnectorContext) {
        let _ = ctx;
    }

    /// The connector's `rate` ([`crate::pace`]), if it has one: the worker waits for a
    /// turn before it claims a message for it.
    fn pace(&self) -> Option<&crate::pace::Pace> {
        None
    }
}

/// What a connector that receives from the network reports to the worker: receipts of
/// messages it handed over, and MO. Each call returns once what it reports is durable
/// (or could not be made so), with the command_status to answer the network with.
pub trait Inbound: Send + Sync + std::fmt::Debug {
    /// A delivery receipt from upstream `connector`.
    fn receipt<'a>(
        &'a self,
        connector: &'a str,
        receipt: UpstreamReceipt,
    ) -> BoxFuture<'a, CommandStatus>;

    /// A message from a handset, for `smsc.mo`.
    fn mo<'a>(&'a self, connector: &'a str, mo: MoEvent) -> BoxFuture<'a, CommandStatus>;
}

/// Handed to [`Connector::start`].
#[derive(Debug, Clone)]
pub struct ConnectorContext {
    pub inbound: Arc<dyn Inbound>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<UpstreamMetrics>,
    pub shutdown: CancellationToken,
}

/// A receipt from an upstream, as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamReceipt {
    /// Store keys of the upstream message it is about, most likely first.
    pub keys: Vec<String>,
    /// The state it reports: final, or not (ENROUTE, ACCEPTED: nothing to do).
    pub state: MessageState,
    /// The network error code (0 when it gives none).
    pub error_code: u16,
    /// The PDU as received, re-encoded (kept when the id is not known yet).
    pub pdu: Bytes,
    /// How long it is kept for a link that has not come yet (the connector's
    /// `receipt_park_ttl`).
    pub park_ttl: std::time::Duration,
}

impl UpstreamReceipt {
    /// The final state it reports, as stored; `None` while the message is on its way
    /// (ENROUTE, ACCEPTED, or a state SMPP does not name).
    pub fn final_state(&self) -> Option<smsc_store::DeliveryState> {
        smsc_store::DeliveryState::from_smpp(self.state).filter(|s| s.is_final())
    }
}

/// [`UpstreamReceipt::park_ttl`] until the connector sets its own.
pub const DEFAULT_PARK_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The simulated mobile network for demos, tests and load tests.
#[derive(Debug, Default)]
pub struct Simulator {
    /// Longest prefix first.
    profiles: Vec<SimProfile>,
    handed: AtomicU64,
    pub(crate) journal: Option<Journal>,
}

/// The simulator's record of handoffs: one `message_id dest_index` line per message, each
/// a single `write` on an O_APPEND file, so a line survives the process being killed
/// right after, and concurrent writers (other workers) never interleave inside a line.
#[derive(Debug)]
pub struct Journal(std::fs::File);

impl Journal {
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        std::fs::OpenOptions::new().create(true).append(true).open(path).map(Self)
    }

    fn record(&self, m: &StoredMessage) {
        use std::io::Write as _;
        let line = format!("{} {}\n", m.message_id, m.dest_index);
        if let Err(e) = (&self.0).write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "simulator journal write failed");
        }
    }
}

impl Simulator {
    pub fn new(mut profiles: Vec<SimProfile>) -> Self {
        profiles.sort_by_key(|p| std::cmp::Reverse(p.prefix.len()));
        Self { profiles, handed: AtomicU64::new(0), journal: None }
    }

    /// Messages handed to the simulated network so far.
    pub fn handed(&self) -> u64 {
        self.handed.load(Ordering::Relaxed)
    }

    fn profile(&self, dest: &str) -> Option<&SimProfile> {
        self.profiles.iter().find(|p| dest.starts_with(p.prefix.as_str()))
    }
}

impl Connector for Simulator {
    fn deliver<'a>(&'a self, m: &'a StoredMessage, attempt: u32) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.handed.fetch_add(1, Ordering::Relaxed);
            if let Some(j) = &self.journal {
                j.record(m);
            }
            let Some(p) = self.profile(m.dest.addr.as_str().unwrap_or_default()) else {
                return Outcome::Delivered;
            };
            if !p.latency.is_zero() {
                tokio::time::sleep(p.latency).await;
            }
            let code = |default| if p.error_code != 0 { p.error_code } else { default };
            if p.permanent {
                Outcome::Permanent { error_code: code(UNKNOWN_SUBSCRIBER) }
            } else if p.unreachable || attempt <= p.temporary_failures {
                Outcome::Temporary { error_code: code(ABSENT_SUBSCRIBER) }
            } else {
                Outcome::Delivered
            }
        })
    }
}

/// Connectors by configured name.
pub type Connectors = BTreeMap<String, Arc<dyn Connector>>;

/// Hands messages to an HTTP service: `POST url` with a JSON body; 2xx is delivered,
/// 4xx a permanent failure (the service refused it), anything else (5xx, timeout,
/// connection refused) a temporary one, retried on the tiers.
#[derive(Debug)]
pub struct Webhook {
    uri: hyper::Uri,
    timeout: std::time::Duration,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Webhook {
    pub fn new(
        url: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, hyper::http::uri::InvalidUri> {
        let uri: hyper::Uri = url.parse()?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Ok(Self { uri, timeout, client })
    }

    /// The JSON a webhook receives.
    pub fn body(m: &StoredMessage, attempt: u32) -> serde_json::Value {
        let alphabet = smsc_smpp::DataCoding(m.data_coding).alphabet();
        let text = smsc_smpp::text::decode(&m.payload, alphabet).ok();
        serde_json::json!({
            "message_id": m.message_id,
            "dest_index": m.dest_index,
            "system_id": m.system_id,
            "from": { "ton": m.source.ton.0, "npi": m.source.npi.0, "addr": String::from_utf8_lossy(m.source.addr.as_bytes()) },
            "to": { "ton": m.dest.ton.0, "npi": m.dest.npi.0, "addr": String::from_utf8_lossy(m.dest.addr.as_bytes()) },
            "data_coding": m.data_coding,
            "esm_class": m.esm_class,
            "text": text,
            "payload_hex": m.payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "attempt": attempt,
            "submitted_at_ms": m.submitted_at,
            "expire_at_ms": m.expire_at,
        })
    }
}

/// The GSM MAP code reported for a failure the service gave no code for: system failure.
const SYSTEM_FAILURE: u16 = 34;

impl Connector for Webhook {
    fn deliver<'a>(&'a self, m: &'a StoredMessage, attempt: u32) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let body = Self::body(m, attempt).to_string();
            let req = hyper::Request::post(self.uri.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", format!("{}/{}", m.message_id, m.dest_index))
                .body(http_body_util::Full::new(bytes::Bytes::from(body)));
            let Ok(req) = req else { return Outcome::Permanent { error_code: SYSTEM_FAILURE } };
            match tokio::time::timeout(self.timeout, self.client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => Outcome::Delivered,
                Ok(Ok(resp)) if resp.status().is_client_error() => {
                    Outcome::Permanent { error_code: SYSTEM_FAILURE }
                }
                Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                    Outcome::Temporary { error_code: SYSTEM_FAILURE }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(dest: &str) -> StoredMessage {
        StoredMessage {
            message_id: "m".into(),
            dest_index: 0,
            system_id: "a".into(),
            source: Default::default(),
            dest: smsc_store::Address::new(smsc_smpp::Ton(1), smsc_smpp::Npi(1), dest)
                .expect("address"),
            service_type: String::new(),
            registered_delivery: 1,
            data_coding: 0,
            esm_class: 0,
            payload: bytes::Bytes::new(),
            state: smsc_store::DeliveryState::Enroute,
            error_code: 0,
            attempts: 0,
            submitted_at: 0,
            schedule_at: None,
            expire_at: 0,
            final_at: None,
            event: bytes::Bytes::new(),
            first_attempt_at: None,
            connector: String::new(),
            route: String::new(),
        }
    }

    /// A one-connection HTTP server answering with `status`, returning the request body.
    async fn http_once(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/sms", l.local_addr().expect("addr"));
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then the Content-Length body.
            loop {
                let n = s.read(&mut chunk).await.expect("read");
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(at) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= at + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            s.write_all(reply.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&buf).to_string()
        });
        (url, h)
    }

    #[tokio::test]
    async fn webhook_maps_http_statuses() {
        let mut m = msg("447700900123");
        m.payload = bytes::Bytes::from_static(b"hello");
        for (status, expected) in [
            (204, Outcome::Delivered),
            (404, Outcome::Permanent { error_code: SYSTEM_FAILURE }),
            (503, Outcome::Temporary { error_code: SYSTEM_FAILURE }),
        ] {
            let (url, server) = http_once(status).await;
            let w = Webhook::new(&url, Duration::from_secs(5)).expect("url");
            assert_eq!(w.deliver(&m, 1).await, expected, "HTTP {status}");
            let request = server.await.expect("server");
            assert!(request.starts_with("POST /sms HTTP/1.1"), "{request}");
            assert!(request.contains("\"text\":\"hello\""), "{request}");
            assert!(request.contains("idempotency-key: m/0"), "{request}");
        }
        // Nobody listening: temporary.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", l.local_addr().expect("addr"));
        drop(l);
        let w = Webhook::new(&url, Duration::from_secs(5)).expect("url");
        assert_eq!(w.deliver(&m, 1).await, Outcome::Temporary { error_code: SYSTEM_FAILURE });
    }

    #[tokio::test(start_paused = true)]
    async fn profiles_by_longest_prefix() {
        let s = Simulator::new(vec![
            SimProfile { prefix: "1555".into(), temporary_failures: 2, ..Default::default() },
            SimProfile { prefix: "15559".into(), permanent: true, ..Default::default() },
            SimProfile {
                prefix: "15558".into(),
                unreachable: true,
                error_code: 31,
                ..Default::default()
            },
            SimProfile {
                prefix: "1777".into(),
                latency: Duration::from_secs(3),
                ..Default::default()
            },
        ]);
        assert_eq!(s.deliver(&msg("4477"), 1).await, Outcome::Delivered);
        assert_eq!(
            s.deliver(&msg("15551"), 1).await,
            Outcome::Temporary { error_code: ABSENT_SUBSCRIBER }
        );
        assert_eq!(
            s.deliver(&msg("15551"), 2).await,
            Outcome::Temporary { error_code: ABSENT_SUBSCRIBER }
        );
        assert_eq!(s.deliver(&msg("15551"), 3).await, Outcome::Delivered);
        assert_eq!(
            s.deliver(&msg("15559"), 1).await,
            Outcome::Permanent { error_code: UNKNOWN_SUBSCRIBER }
        );
        assert_eq!(s.deliver(&msg("15558"), 50).await, Outcome::Temporary { error_code: 31 });
        let start = tokio::time::Instant::now();
        assert_eq!(s.deliver(&msg("17770"), 1).await, Outcome::Delivered);
        assert!(start.elapsed() >= Duration::from_secs(3));
        assert_eq!(s.handed(), 7);
    }

    #[tokio::test]
    async fn the_journal_records_every_handoff() {
        let dir = std::env::temp_dir().join(format!("smsc-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("handed");
        let _ = std::fs::remove_file(&path);
        let mut sim = Simulator::new(Vec::new());
        sim.journal = Some(Journal::open(&path).expect("the journal opens"));
        let mut m = msg("1");
        for (id, dest) in [("a1", 0), ("b2", 3)] {
            (m.message_id, m.dest_index) = (id.to_owned(), dest);
            assert_eq!(sim.deliver(&m, 1).await, Outcome::Delivered);
        }
        let text = std::fs::read_to_string(&path).expect("journal");
        assert_eq!(text, "a1 0\nb2 3\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
