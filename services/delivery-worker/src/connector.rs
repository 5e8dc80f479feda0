//! Network connectors: where a message leaves the SMSC. The built-in network simulator
//! is here; an SMPP upstream and an HTTP webhook implement the same trait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use smsc_runtime::config::ConfigError;

use crate::config::{ConnectorConfig, SimProfile};
use smsc_store::StoredMessage;

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
    fn start(&self, ctx: crate::upstream::ConnectorContext) {
        let _ = ctx;
    }
}

/// The simulated mobile network for demos, tests and load tests.
#[derive(Debug, Default)]
pub struct Simulator {
    /// Longest prefix first.
    profiles: Vec<SimProfile>,
    handed: AtomicU64,
    journal: Option<Journal>,
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

/// Builds the configured connectors. One that cannot be built (a journal that does not
/// open, a URL that does not parse, TLS material that does not load) is a config error
/// naming its key: a worker never runs with a connector quietly left out.
pub fn build(config: &BTreeMap<String, ConnectorConfig>) -> Result<Connectors, ConfigError> {
    let unusable = |name: &str, field: &str, source: Box<dyn std::error::Error + Send + Sync>| {
        ConfigError::Unusable { key: format!("connectors.{name}.{field}"), source }
    };
    let mut out = Connectors::new();
    for (name, c) in config {
        let connector: Arc<dyn Connector> = match c {
            ConnectorConfig::Simulator { profiles, journal } => {
                let mut sim = Simulator::new(profiles.clone());
                if let Some(path) = journal {
                    let j = Journal::open(path).map_err(|e| unusable(name, "journal", e.into()))?;
                    sim.journal = Some(j);
                }
                Arc::new(sim)
            }
            ConnectorConfig::Webhook { url, timeout } => {
                Arc::new(Webhook::new(url, *timeout).map_err(|e| unusable(name, "url", e.into()))?)
            }
            ConnectorConfig::Smpp(u) => Arc::new(
                crate::upstream::SmppUpstream::new(name, u)
                    .map_err(|e| unusable(name, "tls", e.into()))?,
            ),
        };
        out.insert(name.clone(), connector);
    }
    Ok(out)
}

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

    /// Every configured kind this build runs is built: a webhook route must not fall
    /// back to "no connector" (that turned every message into a retry).
    #[tokio::test]
    async fn build_makes_every_configured_connector() {
        let config = BTreeMap::from([
            ("sim".to_owned(), ConnectorConfig::default()),
            (
                "hook".to_owned(),
                ConnectorConfig::Webhook {
                    url: "http://127.0.0.1:9/sms".into(),
                    timeout: Duration::from_millis(100),
                },
            ),
        ]);
        let built = build(&config).expect("every connector builds");
        assert_eq!(built.keys().collect::<Vec<_>>(), ["hook", "sim"]);
        // Nothing listens on port 9 (discard): a temporary failure, not a panic.
        let outcome = built["hook"].deliver(&msg("1"), 1).await;
        assert!(matches!(outcome, Outcome::Temporary { .. }), "{outcome:?}");
    }

    #[tokio::test]
    async fn the_journal_records_every_handoff() {
        let dir = std::env::temp_dir().join(format!("smsc-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("handed");
        let _ = std::fs::remove_file(&path);
        let config = BTreeMap::from([(
            "sim".to_owned(),
            ConnectorConfig::Simulator { profiles: Vec::new(), journal: Some(path.clone()) },
        )]);
        let built = build(&config).expect("the journal opens");
        let mut m = msg("1");
        for (id, dest) in [("a1", 0), ("b2", 3)] {
            (m.message_id, m.dest_index) = (id.to_owned(), dest);
            assert_eq!(built["sim"].deliver(&m, 1).await, Outcome::Delivered);
        }
        let text = std::fs::read_to_string(&path).expect("journal");
        assert_eq!(text, "a1 0\nb2 3\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A connector that cannot be built is a config error naming its key, never a
    /// connector quietly left out.
    #[test]
    fn a_connector_that_cannot_be_built_is_a_config_error_naming_its_key() {
        let cases = [
            (
                ConnectorConfig::Webhook {
                    url: "not a url".into(),
                    timeout: Duration::from_secs(1),
                },
                "connectors.bad.url",
            ),
            (
                ConnectorConfig::Simulator {
                    profiles: Vec::new(),
                    journal: Some("/nonexistent-dir/journal".into()),
                },
                "connectors.bad.journal",
            ),
        ];
        for (connector, key) in cases {
            let config = BTreeMap::from([("bad".to_owned(), connector)]);
            match build(&config) {
                Err(ConfigError::Unusable { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {:?}", other.map(|c| c.len())),
            }
        }
    }
}
