//! The Kafka [`Bus`] on librdkafka (the `rdkafka` crate, bundled build; feature `kafka`).
//!
//! **Producer.** One idempotent producer per bus, `acks=all`: [`Bus::publish`] enqueues
//! every record and resolves when every delivery report is in. A full local queue is
//! backpressure ([`BusError::Full`], at once); a delivery that fails is
//! [`BusError::Unavailable`], one that outlives `message.timeout.ms` is
//! [`BusError::Timeout`]. Records enqueued before the failing one are still delivered:
//! as the trait says, the caller treats the whole batch as not accepted and downstream
//! writes are idempotent.
//!
//! **Headers.** [`Record::headers`] travel as Kafka headers, in order. `not_before`
//! travels as the header [`NOT_BEFORE_HEADER`] (unix milliseconds in decimal, with a
//! fraction down to the nanosecond so the `SystemTime` comes back exactly); consumers
//! turn it back into [`Record::not_before`] and do not show it as a header.
//!
//! **Trace context** (kept simple): a record that carries a `traceparent` header (W3C
//! trace context, set by the caller) keeps it untouched. A record without one, published
//! from inside a `tracing` span, gets [`PARENT_SPAN_HEADER`] = the span's id in hex: a
//! process-local id, enough to find the publishing span in that pod's logs, not a
//! distributed trace. Such a record comes back with that one extra header.
//!
//! **Consumers.** Each [`Bus::consumer`] is one librdkafka consumer with its own driver
//! thread, which polls continuously so that rebalances are served even while the caller
//! is busy or at `max_in_flight`. Polled records wait in a small buffer per assigned
//! partition until [`Consumer::recv`] takes them:
//! - offsets: `enable.auto.offset.store=false`, `enable.auto.commit=true`; [`Consumer::ack`]
//!   stores (for the next auto-commit) the offset after the contiguous acked prefix of the
//!   partition's handed-out records, never past a record not acked;
//! - a partition whose buffer is full, or whose head has a `not_before` ahead, is paused
//!   (librdkafka drops what it had prefetched and refetches from our position on resume),
//!   and resumed by the `recv` that takes the due head or drains the buffer; `recv`
//!   sleeps until the earliest head is due (a tokio timer, no polling loop, no thread per
//!   record);
//! - on revoke the partitions' buffers and in-flight records are forgotten (the next owner
//!   gets the unacked ones again: at-least-once) and the acked prefix is committed; acks
//!   that come later for them are ignored;
//! - `consumer` returns once the member has its first assignment (bounded by
//!   [`KafkaBusConfig::join_timeout`], else [`BusError::Timeout`]) and blocks the calling
//!   thread until then, as does dropping the consumer, which commits the acked prefix and
//!   leaves the group: call both at start-up and shutdown, or on a blocking thread.
//!
//! **Topics** are created (admin client, [`KafkaBusConfig::partitions`] and
//! [`KafkaBusConfig::replication_factor`]) at [`KafkaBus::connect`] for
//! [`KafkaBusConfig::topics`], and on first use for any other topic.
//!
//! **Readiness**: [`Bus::is_ready`] is true after the first metadata fetch succeeded and
//! turns false when librdkafka reports every broker down; the producer's statistics
//! (every [`STATISTICS_INTERVAL`]) turn it true again once a broker connection is up.
//! Reconnecting is librdkafka's job.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::{Bus, BusError, Consumer, Delivery, Record};
use smsc_runtime::config::ClientTls;

use crate::config::BusConfig;

/// The header that carries [`Record::not_before`].
pub const NOT_BEFORE_HEADER: &str = "smsc-not-before";
/// The header a record published inside a `tracing` span gets when it has no
/// `traceparent`.
pub const PARENT_SPAN_HEADER: &str = "smsc-parent-span";
const TRACEPARENT_HEADER: &str = "traceparent";

/// How often the producer reports statistics (readiness comes back from them).
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(2);
/// Records a consumer buffers per partition before it pauses the partition.
const BUFFERED_PER_PARTITION: usize = 512;
/// How long the driver thread waits in one poll, so it notices a stop request.
const DRIVER_POLL: Duration = Duration::from_millis(100);
/// The longest `recv` sleeps before looking at the wall clock again, so that a clock
/// step (NTP) delays a due record by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Bound on admin requests (topic creation) and on the first metadata fetch.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach Kafka. Build with [`KafkaBusConfig::new`] and adjust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBusConfig {
    /// `bootstrap.servers`: `host:port,host:port`.
    pub brokers: String,
    /// `client.id`: the pod name is a good one (it shows in broker logs and metrics).
    pub client_id: String,
    /// Partitions of topics this bus creates.
    pub partitions: u32,
    /// Replication factor of topics this bus creates (3 in production; 1 for a single
    /// test broker).
    pub replication_factor: u16,
    /// `session.timeout.ms` of consumer groups (tansu needs 6 s in tests: it hands a
    /// new group its partitions only after half of it).
    pub session_timeout: Duration,
    /// `message.timeout.ms`: how long a publish may wait for the broker before it answers
    /// [`BusError::Timeout`]. Keep it below the ESME's response timeout.
    pub message_timeout: Duration,
    /// How long [`Bus::consumer`] waits for the member's first assignment.
    pub join_timeout: Duration,
    /// Topics created (when missing) at [`KafkaBus::connect`].
    pub topics: Vec<String>,
    /// TLS to the brokers (`security.protocol: ssl` and the `ssl.*` file locations).
    pub tls: Option<ClientTls>,
    /// More librdkafka settings (`security.protocol`, `queue.buffering.max.messages`,
    /// ...), applied to every client after ours, so they override them. A setting of the
    /// other role (a producer setting seen by a consumer) is ignored by librdkafka with
    /// a warning.
    pub extra: BTreeMap<String, String>,
}

impl KafkaBusConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "smsc".to_owned(),
            partitions: 8,
            replication_factor: 3,
            session_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(15),
            join_timeout: Duration::from_secs(30),
            topics: Vec::new(),
            tls: None,
            extra: BTreeMap::new(),
        }
    }

    /// From the config file's `bus` section; `client_id` is the node id.
    pub fn from_config(bus: &BusConfig, client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            partitions: bus.partitions,
            replication_factor: bus.replication_factor,
            session_timeout: bus.session_timeout,
            tls: bus.tls.clone(),
            extra: bus.extra.clone(),
            ..Self::new(bus.brokers.clone())
        }
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set_log_level(RDKafkaLogLevel::Warning);
        if let Some(tls) = &self.tls {
            // librdkafka checks the broker's host name against its certificate by
            // default (`ssl.endpoint.identification.algorithm: https`); said here so
            // that no librdkafka default change can turn it off.
            config
                .set("security.protocol", "ssl")
                .set("ssl.endpoint.identification.algorithm", "https")
                .set("ssl.ca.location", tls.ca.to_string_lossy());
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                config
                    .set("ssl.certificate.location", cert.to_string_lossy())
                    .set("ssl.key.location", key.to_string_lossy());
            }
        }
        config
    }

    fn apply_extra(&self, config: &mut ClientConfig) {
        for (key, value) in &self.extra {
            config.set(key, value);
        }
    }

    fn producer(&self) -> ClientConfig {
        let mut config = self.base();
        config
            // No duplicates from librdkafka's own retries and per-partition order kept
            // across them; implies at most 5 requests in flight per broker.
            .set("enable.idempotence", "true")
            // An OK publish means every in-sync replica has the record (docs/architecture.md:
            // the submit_sm_resp goes out only after that).
            .set("acks", "all")
            // Throughput: wait up to 5 ms to fill a batch. A publish waits for the
            // broker's ack anyway (a few ms), so this adds little latency, and under load
            // batches fill before it expires: one request carries many records.
            .set("linger.ms", "5")
            // Let linger, not size, close batches at our record sizes (~100-500 B).
            .set("batch.num.messages", "10000")
            .set("batch.size", "1048576")
            // lz4: the cheapest codec with a useful ratio on protobuf with repeated
            // addresses and text; it compresses whole batches, so it gains with them.
            // zstd saves more bytes for more CPU on the edge pods; gzip is too slow.
            .set("compression.type", "lz4")
            // The same key -> partition mapping as the Java clients (Streams, Connect).
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", millis(self.message_timeout))
            .set("statistics.interval.ms", millis(STATISTICS_INTERVAL));
        self.apply_extra(&mut config);
        config
    }

    fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            // Offsets are stored only by `ack` (the contiguous acked prefix); librdkafka
            // commits what is stored, periodically and on revoke and close.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            // A new group starts at the beginning (tansu reports wrong high watermarks,
            // and a record published before the first member joined must not be lost).
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", millis(self.session_timeout))
            // A member learns of a rebalance at its next heartbeat: a tenth of the
            // session (librdkafka's 3 s default would add up to 3 s to every rebalance).
            .set("heartbeat.interval.ms", millis(heartbeat(self.session_timeout)))
            // Also the rebalance timeout a join waits for members that never come back
            // (a SIGKILLed one): librdkafka's 5 minutes kept a restarted member out of its
            // group that long on some brokers. The driver thread polls all the time, so
            // a short bound never expels a live member.
            .set(
                "max.poll.interval.ms",
                millis((self.session_timeout * 3).max(Duration::from_secs(10))),
            )
            .set("enable.partition.eof", "false")
            // Consumer lag for the metrics (`Consumer::lag_probe`).
            .set("statistics.interval.ms", millis(STATISTICS_INTERVAL));
        self.apply_extra(&mut config);
        config
    }

    fn admin(&self) -> ClientConfig {
        let mut config = self.base();
        self.apply_extra(&mut config);
        config
    }
}

fn heartbeat(session_timeout: Duration) -> Duration {
    (session_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(3))
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// The Kafka bus. Cheap to clone: clones share the producer and the admin client.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaBusConfig,
    producer: FutureProducer<ProducerContext>,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist (created by us or found existing).
    known_topics: Mutex<HashSet<String>>,
    health: Arc<Health>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.inner.config.brokers)
            .field("client_id", &self.inner.config.client_id)
            .field("ready", &self.inner.health.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Health {
    ready: AtomicBool,
}

/// The producer's callbacks: readiness and librdkafka's log into `tracing`.
struct ProducerContext {
    health: Arc<Health>,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn stats(&self, statistics: Statistics) {
        if statistics.brokers.values().any(|b| b.state == "UP") {
            self.health.ready.store(true, Ordering::Relaxed);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.ready.store(false, Ordering::Relaxed);
        }
        tracing::warn!(%error, reason, "kafka producer error");
    }
}

fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(fac, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(fac, "librdkafka: {message}"),
    }
}

fn unavailable(error: &KafkaError) -> BusError {
    BusError::Unavailable(error.to_string())
}

impl KafkaBus {
    /// Creates the clients, checks that a broker answers (within 10 s) and creates the
    /// configured topics that are missing.
    pub async fn connect(config: KafkaBusConfig) -> Result<Self, BusError> {
        let health = Arc::new(Health::default());
        let producer: FutureProducer<ProducerContext> = config
            .producer()
            .create_with_context(ProducerContext { health: Arc::clone(&health) })
            .map_err(|e| unavailable(&e))?;
        let admin: AdminClient<DefaultClientContext> =
            config.admin().create().map_err(|e| unavailable(&e))?;

        let probe = producer.clone();
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, ADMIN_TIMEOUT))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?
            .map_err(|e| unavailable(&e))?;
        health.ready.store(true, Ordering::Relaxed);

        let topics = config.topics.clone();
        let inner = Inner { config, producer, admin, known_topics: Mutex::default(), health };
        let bus = Self { inner: Arc::new(inner) };
        bus.inner.ensure_topics(&topics).await?;
        Ok(bus)
    }

    pub fn config(&self) -> &KafkaBusConfig {
        &self.inner.config
    }

    /// Creates `topics` when missing (the first use of a topic does it too).
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        self.inner.ensure_topics(topics).await
    }

    /// Waits until every record enqueued so far is delivered or failed, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.inner.producer.flush(timeout).map_err(|e| match e {
            KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => BusError::Timeout,
            e => unavailable(&e),
        })
    }
}

impl Inner {
    fn lock_topics(&self) -> MutexGuard<'_, HashSet<String>> {
        self.known_topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        let missing: Vec<&String> = {
            let known = self.lock_topics();
            topics.iter().filter(|t| !known.contains(t.as_str())).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let partitions = i32::try_from(self.config.partitions.max(1)).unwrap_or(i32::MAX);
        let replication = i32::from(self.config.replication_factor.max(1));
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT));
        let results =
            self.admin.create_topics(&new_topics, &options).await.map_err(|e| unavailable(&e))?;
        let mut known = self.lock_topics();
        for result in results {
            match result {
                Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    known.insert(topic);
                }
                Err((topic, code)) => {
                    return Err(BusError::Unavailable(format!("creating topic {topic}: {code}")));
                }
            }
        }
        Ok(())
    }
}

/// The Kafka headers of `record`: its own, then `not_before`, then the parent span.
fn encode_headers(record: &Record, parent_span: Option<u64>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 2);
    let mut has_traceparent = false;
    for (key, value) in &record.headers {
        if key == NOT_BEFORE_HEADER {
            // Reserved: `not_before` says it.
            continue;
        }
        has_traceparent |= key.eq_ignore_ascii_case(TRACEPARENT_HEADER);
        headers = headers.insert(Header { key, value: Some(&value[..]) });
    }
    if let Some(at) = record.not_before {
        let value = encode_not_before(at);
        headers = headers.insert(Header { key: NOT_BEFORE_HEADER, value: Some(&value) });
    }
    if let (false, Some(id)) = (has_traceparent, parent_span) {
        let value = format!("{id:016x}");
        headers = headers.insert(Header { key: PARENT_SPAN_HEADER, value: Some(&value) });
    }
    headers
}

/// Unix milliseconds, with the sub-millisecond rest as a decimal fraction when there is
/// one (`1700000000123.456789`). Instants before 1970 are taken as 0 (due at once).
fn encode_not_before(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ms = since.as_millis();
    let rest_ns = since.subsec_nanos() % 1_000_000;
    if rest_ns == 0 { ms.to_string() } else { format!("{ms}.{rest_ns:06}") }
}

fn decode_not_before(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let (ms, fraction) = match text.split_once('.') {
        Some((ms, fraction)) => (ms, Some(fraction)),
        None => (text, None),
    };
    let ms: u64 = ms.parse().ok()?;
    let ns: u32 = match fraction {
        None => 0,
        Some(fraction)
            if (1..=6).contains(&fraction.len())
                && fraction.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let digits: u32 = fraction.parse().ok()?;
            digits * 10u32.pow(6 - u32::try_from(fraction.len()).ok()?)
        }
        _ => return None,
    };
    UNIX_EPOCH.checked_add(Duration::from_millis(ms) + Duration::from_nanos(u64::from(ns)))
}

/// The delivery of a polled message: headers back to the record, `not_before` out of them.
fn decode(message: &BorrowedMessage<'_>) -> Delivery {
    let mut record = Record {
        key: message.key().map(Bytes::copy_from_slice).unwrap_or_default(),
        payload: message.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        headers: Vec::new(),
        not_before: None,
    };
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header.value.unwrap_or_default();
            if header.key == NOT_BEFORE_HEADER {
                record.not_before = decode_not_before(value);
                if record.not_before.is_none() {
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        "unreadable {NOT_BEFORE_HEADER} header: the record is due at once"
                    );
                }
            } else {
                record.headers.push((header.key.to_owned(), Bytes::copy_from_slice(value)));
            }
        }
    }
    Delivery {
        topic: message.topic().to_owned(),
        partition: u32::try_from(message.partition()).unwrap_or_default(),
        offset: u64::try_from(message.offset()).unwrap_or_default(),
        record,
    }
}

fn delivery_error(error: &KafkaError) -> BusError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => BusError::Timeout,
        Some(RDKafkaErrorCode::QueueFull) => BusError::Full,
        _ => unavailable(error),
    }
}

impl Bus for KafkaBus {
    fn publish(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        let inner = Arc::clone(&self.inner);
        let topic = topic.to_owned();
        // Taken now: the future may be polled outside the caller's span.
        let parent_span = tracing::Span::current().id().map(|id| id.into_u64());
        Box::pin(async move {
            inner.ensure_topics(std::slice::from_ref(&topic)).await?;
            let mut pending = Vec::with_capacity(records.len());
            for record in &records {
                let kafka_record = FutureRecord::to(&topic)
                    .key(&record.key[..])
                    .payload(&record.payload[..])
                    .headers(encode_headers(record, parent_span));
                match inner.producer.send_result(kafka_record) {
                    Ok(delivery) => pending.push(delivery),
                    // The local queue (queue.buffering.max.*) is full: backpressure, at
                    // once. What was enqueued before still goes out (see the module doc).
                    Err((error, _)) => return Err(delivery_error(&error)),
                }
            }
            let mut first_error = None;
            for delivery in pending {
                let error = match delivery.await {
                    Ok(Ok(_)) => continue,
                    Ok(Err((error, _))) => delivery_error(&error),
                    // The producer went away with the record.
                    Err(_canceled) => BusError::Closed,
                };
                first_error.get_or_insert(error);
            }
            match first_error {
                None => Ok(()),
                Some(error) => {
                    tracing::debug!(%topic, %error, "publish failed");
                    Err(error)
                }
            }
        })
    }

    fn publish_each(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> BoxFuture<'static, Vec<Result<(), BusError>>> {
        let inner = Arc::clone(&self.inner);
        let topic = topic.to_owned();
        let parent_span = tracing::Span::current().id().map(|id| id.into_u64());
        Box::pin(async move {
            let n = records.len();
            if let Err(e) = inner.ensure_topics(std::slice::from_ref(&topic)).await {
                return vec![Err(e); n];
            }
            let mut pending = Vec::with_capacity(n);
            let mut refused = None;
            for record in &records {
                let kafka_record = FutureRecord::to(&topic)
                    .key(&record.key[..])
                    .payload(&record.payload[..])
                    .headers(encode_headers(record, parent_span));
                match inner.producer.send_result(kafka_record) {
                    Ok(delivery) => pending.push(delivery),
                    // Queue full: this record and the rest are refused at once; the ones
                    // already queued still go out and get their own outcome.
                    Err((error, _)) => {
                        refused = Some(delivery_error(&error));
                        break;
                    }
                }
            }
            let mut out = Vec::with_capacity(n);
            for delivery in pending {
                out.push(match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(delivery_error(&error)),
                    Err(_canceled) => Err(BusError::Closed),
                });
            }
            let refused = refused.unwrap_or(BusError::Closed);
            out.resize(n, Err(refused));
            out
        })
    }

    fn consumer(
        &self,
        group: &str,
        topics: &[&str],
        max_in_flight: usize,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let owned: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        block_on(self.inner.ensure_topics(&owned))?;
        let consumer = KafkaConsumer::join(&self.inner.config, group, topics, max_in_flight)?;
        Ok(Box::new(consumer))
    }

    fn is_ready(&self) -> bool {
        self.inner.health.ready.load(Ordering::Relaxed)
    }
}

/// Runs `future` on the calling thread. For the admin futures in the synchronous
/// [`Bus::consumer`]: librdkafka's own threads complete them, so no runtime is needed
/// (and none may be entered from a runtime thread).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

// ---------------------------------------------------------------------------------------
// Consumer

/// What a consumer knows about one assigned partition.
#[derive(Debug, Default)]
struct PartitionState {
    /// Polled, not handed out yet; the head may not be due.
    buffered: VecDeque<Delivery>,
    /// Handed out, in offset order, with whether each is acked. The acked prefix is
    /// popped as its offsets are stored.
    handed: VecDeque<(u64, bool)>,
    /// The offset after the last polled record: anything below is a refetch.
    next_fetch: u64,
    /// Whether we asked librdkafka to pause it.
    paused: bool,
}

impl PartitionState {
    /// When the head of the buffer is due, if it is not yet.
    fn head_not_due(&self, now: SystemTime) -> Option<SystemTime> {
        let at = self.buffered.front()?.record.not_before?;
        (at > now).then_some(at)
    }

    fn should_pause(&self, now: SystemTime) -> bool {
        self.buffered.len() >= BUFFERED_PER_PARTITION || self.head_not_due(now).is_some()
    }
}

#[derive(Debug, Default)]
struct ConsumerState {
    /// Assigned partitions by topic, then partition.
    partitions: HashMap<String, BTreeMap<i32, PartitionState>>,
    /// The same, in a fixed order for round-robin.
    order: Vec<(String, i32)>,
    /// Handed out and not acked, over the assigned partitions.
    in_flight: usize,
    /// The first assignment came (the member has joined).
    joined: bool,
    /// A fatal consumer error: `recv` reports it.
    fatal: Option<String>,
    /// Lag per topic over the assigned partitions, from librdkafka's statistics.
    lag: Vec<(String, u64)>,
}

impl ConsumerState {
    fn partition(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        self.partitions.get_mut(topic)?.get_mut(&partition)
    }

    fn reorder(&mut self) {
        self.order = self
            .partitions
            .iter()
            .flat_map(|(t, ps)| ps.keys().map(move |p| (t.clone(), *p)))
            .collect();
        self.order.sort();
    }
}

#[derive(Debug)]
struct ConsumerShared {
    group: String,
    state: Mutex<ConsumerState>,
    /// Signalled with `state` when `joined` turns true.
    joined: Condvar,
    /// Wakes a waiting `recv`: records came, or the assignment changed.
    notify: Notify,
    stop: AtomicBool,
}

impl ConsumerShared {
    fn lock(&self) -> MutexGuard<'_, ConsumerState> {
        // Every update completes without panicking, so a poisoned state is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type KafkaBaseConsumer = BaseConsumer<GroupContext>;

/// Pauses or resumes one partition, as `state` says it should be. Called with the state
/// locked so that the pause/resume calls reach librdkafka in the order they were decided.
fn set_paused(
    consumer: &KafkaBaseConsumer,
    topic: &str,
    partition: i32,
    state: &mut PartitionState,
    pause: bool,
) {
    if state.paused == pause {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let result = if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    match result {
        Ok(()) => state.paused = pause,
        Err(error) => tracing::warn!(topic, partition, pause, %error, "pause/resume failed"),
    }
}

/// The rebalance callbacks, run on the driver thread inside `poll`.
struct GroupContext {
    shared: Arc<ConsumerShared>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(group = %self.shared.group, %error, reason, "kafka consumer error");
    }

    /// Keeps the lag of the partitions this member holds (librdkafka reports -1 while
    /// it does not know it yet: left out).
    fn stats(&self, statistics: Statistics) {
        let mut state = self.shared.lock();
        let mut lag = Vec::new();
        for (topic, t) in &statistics.topics {
            let Some(assigned) = state.partitions.get(topic) else { continue };
            let sum: u64 = t
                .partitions
                .iter()
                .filter(|(p, _)| assigned.contains_key(p))
                .filter_map(|(_, p)| u64::try_from(p.consumer_lag).ok())
                .sum();
            lag.push((topic.clone(), sum));
        }
        state.lag = lag;
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &KafkaBaseConsumer, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let mut state = self.shared.lock();
        for elem in revoked.elements() {
            let removed =
                state.partitions.get_mut(elem.topic()).and_then(|ps| ps.remove(&elem.partition()));
            if let Some(removed) = removed {
                // Its unacked records go to the next owner; later acks are ignored.
                let unacked = removed.handed.iter().filter(|(_, acked)| !acked).count();
                state.in_flight = state.in_flight.saturating_sub(unacked);
            }
        }
        state.partitions.retain(|_, ps| !ps.is_empty());
        state.reorder();
        // Commit the acked prefix now, before the partitions move (librdkafka would
        // on unassign too; a sync commit makes the order certain). Nothing stored is
        // not an error.
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(error) => tracing::warn!(group = %self.shared.group, %error, "commit on revoke"),
        }
        drop(state);
        self.shared.notify.notify_one();
    }

    fn post_rebalance(&self, consumer: &KafkaBaseConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                // librdkafka keeps an application pause across assignments: start clean.
                if let Err(error) = consumer.resume(assigned) {
                    tracing::debug!(%error, "resume on assign");
                }
                let mut state = self.shared.lock();
                for elem in assigned.elements() {
                    state
                        .partitions
                        .entry(elem.topic().to_owned())
                        .or_default()
                        .entry(elem.partition())
                        .or_default();
                }
                state.reorder();
                state.joined = true;
                tracing::debug!(group = %self.shared.group, partitions = ?state.order, "assigned");
                drop(state);
                self.shared.joined.notify_all();
                self.shared.notify.notify_one();
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.shared.group, %error, "rebalance error");
            }
        }
    }
}

/// A member of a consumer group on Kafka. See the module doc.
pub struct KafkaConsumer {
    shared: Arc<ConsumerShared>,
    /// Shared with the driver thread, which drops the last reference (closing the
    /// consumer: final commit, leave group).
    consumer: Option<Arc<KafkaBaseConsumer>>,
    driver_done: mpsc::Receiver<()>,
    max_in_flight: usize,
    next_start: usize,
    close_timeout: Duration,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("group", &self.shared.group)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

enum Step {
    Ready(Delivery),
    /// Nothing to hand out: wait for a notification, or at most this long.
    Wait(Option<Duration>),
    Failed(BusError),
}

impl KafkaConsumer {
    fn join(
        config: &KafkaBusConfig,
        group: &str,
        topics: &[&str],
        max_in_flight: usize,
    ) -> Result<Self, BusError> {
        let shared = Arc::new(ConsumerShared {
            group: group.to_owned(),
            state: Mutex::default(),
            joined: Condvar::new(),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
        });
        let context = GroupContext { shared: Arc::clone(&shared) };
        let consumer: KafkaBaseConsumer =
            config.consumer(group).create_with_context(context).map_err(|e| unavailable(&e))?;
        consumer.subscribe(topics).map_err(|e| unavailable(&e))?;
        let consumer = Arc::new(consumer);

        let (done_tx, driver_done) = mpsc::channel();
        let driver_consumer = Arc::clone(&consumer);
        let driver_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("kafka-{group}"))
            .spawn(move || drive(driver_consumer, driver_shared, done_tx))
            .map_err(|e| BusError::Unavailable(format!("consumer thread: {e}")))?;

        let mut this = Self {
            shared,
            consumer: Some(consumer),
            driver_done,
            max_in_flight: max_in_flight.max(1),
            next_start: 0,
            close_timeout: config.session_timeout + ADMIN_TIMEOUT,
        };
        let joined = {
            let state = this.shared.lock();
            let (state, _) = this
                .shared
                .joined
                .wait_timeout_while(state, config.join_timeout, |s| !s.joined)
                .unwrap_or_else(PoisonError::into_inner);
            state.joined
        };
        if !joined {
            tracing::warn!(group, ?topics, timeout = ?config.join_timeout, "consumer did not join");
            this.close();
            return Err(BusError::Timeout);
        }
        Ok(this)
    }

    fn try_next(&mut self) -> Step {
        let Some(consumer) = self.consumer.as_deref() else {
            return Step::Failed(BusError::Closed);
        };
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if let Some(fatal) = &state.fatal {
            return Step::Failed(BusError::Unavailable(fatal.clone()));
        }
        if state.in_flight >= self.max_in_flight {
            // Only an `ack` (not while `recv` borrows us) or a revoke frees a slot.
            return Step::Wait(None);
        }
        let now = SystemTime::now();
        let mut earliest: Option<SystemTime> = None;
        let n = state.order.len();
        for i in 0..n {
            let idx = (self.next_start + i) % n;
            let (topic, p) = &state.order[idx];
            let Some(part) = state.partitions.get_mut(topic).and_then(|ps| ps.get_mut(p)) else {
                continue;
            };
            if let Some(at) = part.head_not_due(now) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                continue;
            }
            let Some(delivery) = part.buffered.pop_front() else { continue };
            part.handed.push_back((delivery.offset, false));
            let pause = part.should_pause(now);
            set_paused(consumer, topic, *p, part, pause);
            state.in_flight += 1;
            self.next_start = idx + 1;
            return Step::Ready(delivery);
        }
        let wait = earliest.map(|at| at.duration_since(now).unwrap_or_default().min(MAX_SLEEP));
        Step::Wait(wait)
    }

    /// Stops the driver and waits (bounded) until it has committed and left the group.
    fn close(&mut self) {
        if self.consumer.take().is_none() {
            return;
        }
        self.shared.stop.store(true, Ordering::Release);
        if self.driver_done.recv_timeout(self.close_timeout).is_err() {
            tracing::warn!(group = %self.shared.group, "consumer did not close in time");
        }
    }
}

/// The driver thread: polls, which also runs the rebalance callbacks, and buffers what
/// comes. On stop: commits, then drops the last reference to the consumer, which closes
/// it (revoke callback, leave group).
fn drive(consumer: Arc<KafkaBaseConsumer>, shared: Arc<ConsumerShared>, done: mpsc::Sender<()>) {
    while !shared.stop.load(Ordering::Acquire) {
        match consumer.poll(DRIVER_POLL) {
            None => {}
            Some(Ok(message)) => buffer(&consumer, &shared, &message),
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                tracing::error!(group = %shared.group, %code, "fatal consumer error");
                shared.lock().fatal = Some(code.to_string());
                shared.notify.notify_one();
            }
            Some(Err(error)) => tracing::warn!(group = %shared.group, %error, "consume error"),
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
        Err(error) => tracing::warn!(group = %shared.group, %error, "commit on close"),
    }
    drop(consumer);
    let _ = done.send(());
}

fn buffer(consumer: &KafkaBaseConsumer, shared: &ConsumerShared, message: &BorrowedMessage<'_>) {
    let (Ok(offset), topic, p) =
        (u64::try_from(message.offset()), message.topic(), message.partition())
    else {
        return;
    };
    let mut state = shared.lock();
    // Not ours any more (revoked since it was fetched), or a refetch after a resume.
    let Some(part) = state.partition(topic, p) else { return };
    if offset < part.next_fetch {
        return;
    }
    part.next_fetch = offset + 1;
    part.buffered.push_back(decode(message));
    let pause = part.should_pause(SystemTime::now());
    set_paused(consumer, topic, p, part, pause);
    drop(state);
    shared.notify.notify_one();
}

impl Consumer for KafkaConsumer {
    /// Cancel-safe: nothing changes until a delivery is returned.
    fn recv(&mut self) -> BoxFuture<'_, Result<Delivery, BusError>> {
        Box::pin(async move {
            loop {
                let wait = match self.try_next() {
                    Step::Ready(delivery) => return Ok(delivery),
                    Step::Failed(error) => return Err(error),
                    Step::Wait(wait) => wait,
                };
                // `notify_one` leaves a permit when nobody waits, so a notification sent
                // since `try_next` looked is not lost.
                let shared = Arc::clone(&self.shared);
                match wait {
                    Some(delay) => {
                        tokio::select! {
                            () = shared.notify.notified() => {}
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    None => shared.notify.notified().await,
                }
            }
        })
    }

    fn lag_probe(&self) -> Option<super::LagProbe> {
        let shared = Arc::clone(&self.shared);
        Some(Box::new(move || shared.lock().lag.clone()))
    }

    /// Acking what this consumer does not hold (twice, never handed out, or revoked
    /// since) does nothing.
    fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let Some(consumer) = self.consumer.as_deref() else { return Err(BusError::Closed) };
        let Ok(p) = i32::try_from(delivery.partition) else { return Ok(()) };
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let Some(part) = state.partition(&delivery.topic, p) else { return Ok(()) };
        let Ok(i) = part.handed.binary_search_by_key(&delivery.offset, |(o, _)| *o) else {
            return Ok(());
        };
        if std::mem::replace(&mut part.handed[i].1, true) {
            return Ok(());
        }
        let mut store = None;
        while let Some(&(offset, true)) = part.handed.front() {
            part.handed.pop_front();
            store = Some(offset + 1);
        }
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(next) = store {
            let next = i64::try_from(next).unwrap_or(i64::MAX);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&delivery.topic, p, Offset::Offset(next))
                .map_err(|e| unavailable(&e))?;
            // Under the state lock: a revoke (which takes it) cannot slip in between the
            // check above and the store.
            consumer.store_offsets(&tpl).map_err(|e| unavailable(&e))?;
        }
        Ok(())
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_tls_becomes_ssl_settings_of_every_client_and_extra_wins() {
        let text = "brokers: k1:9093\ntls: { ca: /t/ca.crt, cert: /t/user.crt, key: /t/user.key }\n\
                    extra: { security.protocol: sasl_ssl, sasl.mechanism: SCRAM-SHA-512 }";
        let bus: BusConfig = serde_yaml::from_str(text).expect("bus section");
        let config = KafkaBusConfig::from_config(&bus, "edge-0");
        for (role, client) in [
            ("producer", config.producer()),
            ("consumer", config.consumer("g")),
            ("admin", config.admin()),
        ] {
            let get = |key| client.get(key).unwrap_or_else(|| panic!("{role}: no {key}"));
            assert_eq!(get("bootstrap.servers"), "k1:9093", "{role}");
            assert_eq!(get("client.id"), "edge-0", "{role}");
            assert_eq!(get("ssl.ca.location"), "/t/ca.crt", "{role}");
            assert_eq!(get("ssl.certificate.location"), "/t/user.crt", "{role}");
            assert_eq!(get("ssl.key.location"), "/t/user.key", "{role}");
            assert_eq!(get("ssl.endpoint.identification.algorithm"), "https", "{role}");
            assert_eq!(get("security.protocol"), "sasl_ssl", "{role}: extra overrides");
            assert_eq!(get("sasl.mechanism"), "SCRAM-SHA-512", "{role}");
        }

        let plain = KafkaBusConfig::from_config(&BusConfig::default(), "n").producer();
        assert_eq!(plain.get("security.protocol"), None);
        let ca_only: BusConfig = serde_yaml::from_str("tls: { ca: /ca.crt }").expect("bus section");
        let ca_only = KafkaBusConfig::from_config(&ca_only, "n").consumer("g");
        assert_eq!(ca_only.get("security.protocol"), Some("ssl"));
        assert_eq!(ca_only.get("ssl.certificate.location"), None);
    }

    #[test]
    fn not_before_round_trips_to_the_nanosecond() {
        for at in [
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH + Duration::new(1_700_000_000, 1),
            UNIX_EPOCH,
        ] {
            let text = encode_not_before(at);
            assert_eq!(decode_not_before(text.as_bytes()), Some(at), "{text}");
        }
        assert_eq!(encode_not_before(UNIX_EPOCH + Duration::new(1, 2_500_000)), "1002.500000");
    }

    #[test]
    fn not_before_is_read_as_unix_millis() {
        let ms = |ms| Some(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(decode_not_before(b"1700000000123"), ms(1_700_000_000_123));
        assert_eq!(decode_not_before(b"5.5"), Some(UNIX_EPOCH + Duration::from_micros(5_500)));
        for bad in [&b""[..], b"x", b"-1", b"1.", b"1.1234567", b"1.-2", b"1e3"] {
            assert_eq!(decode_not_before(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn headers_carry_not_before_and_the_parent_span_only_without_traceparent() {
        let mut record = Record::new("k", "v");
        record.headers.push(("a".to_owned(), Bytes::from_static(b"1")));
        record.headers.push((NOT_BEFORE_HEADER.to_owned(), Bytes::from_static(b"forged")));
        record.not_before = Some(UNIX_EPOCH + Duration::from_millis(42));
        let names = |h: &OwnedHeaders| -> Vec<(String, Vec<u8>)> {
            h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect()
        };
        let h = encode_headers(&record, Some(0xab));
        assert_eq!(
            names(&h),
            vec![
                ("a".to_owned(), b"1".to_vec()),
                (NOT_BEFORE_HEADER.to_owned(), b"42".to_vec()),
                (PARENT_SPAN_HEADER.to_owned(), b"00000000000000ab".to_vec()),
            ]
        );
        record.headers.push(("traceparent".to_owned(), Bytes::from_static(b"00-t-s-01")));
        record.not_before = None;
        let h = encode_headers(&record, Some(0xab));
        assert_eq!(names(&h).len(), 2, "traceparent given: no parent span header");
    }

    #[test]
    fn config_overrides_come_last() {
        let mut config = KafkaBusConfig::new("127.0.0.1:9092");
        config.extra.insert("linger.ms".to_owned(), "50".to_owned());
        assert_eq!(config.producer().get("linger.ms"), Some("50"));
        assert_eq!(config.producer().get("acks"), Some("all"));
        assert_eq!(config.consumer("g").get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.consumer("g").get("session.timeout.ms"), Some("10000"));
        assert_eq!(config.consumer("g").get("heartbeat.interval.ms"), Some("1000"));
    }
}
