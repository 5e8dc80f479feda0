//! [`KafkaBus`]: one idempotent producer (`acks=all`) and an admin client per bus,
//! shared by its clones; topic creation, readiness, and the [`Bus`] implementation.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::Statistics;

use super::headers::encode_headers;
use super::{ADMIN_TIMEOUT, KafkaBusConfig, KafkaConsumer, log_to_tracing, unavailable};
use crate::{Bus, BusError, Consumer, Record};

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

impl KafkaBus {
    /// Creates the clients, checks that a broker answers (within 10 s) and creates the
    /// configured topics that are missing.
    pub async fn connect(config: KafkaBusConfig) -> Result<Self, BusError> {
        let health = Arc::new(Health::default());
        let producer: FutureProducer<ProducerContext> = config
            .producer()
            .create_with_context(ProducerContext { health: Arc::clone(&health) })
            .map_err(|e| unavailable("creating the producer", &e))?;
        let admin: AdminClient<DefaultClientContext> =
            config.admin().create().map_err(|e| unavailable("creating the admin client", &e))?;

        let probe = producer.clone();
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, ADMIN_TIMEOUT))
            .await
            .map_err(|e| BusError::unavailable_by("fetching the cluster's metadata", e))?
            .map_err(|e| unavailable("fetching the cluster's metadata", &e))?;
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
            e => unavailable("flushing the producer", &e),
        })
    }
}

impl Inner {
    fn lock_topics(&self) -> MutexGuard<'_, HashSet<String>> {
        self.known_topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// With `create_topics` off: the topics must exist (the `Describe` ACL is enough).
    async fn check_topics(&self, missing: &[&String]) -> Result<(), BusError> {
        let probe = self.producer.clone();
        let metadata =
            tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, ADMIN_TIMEOUT))
                .await
                .map_err(|e| BusError::unavailable_by("fetching the cluster's metadata", e))?
                .map_err(|e| unavailable("fetching the cluster's metadata", &e))?;
        let existing: HashSet<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.name())
            .collect();
        let mut known = self.lock_topics();
        for topic in missing {
            if !existing.contains(topic.as_str()) {
                return Err(BusError::unavailable(format!(
                    "topic {topic} does not exist and bus.create_topics is off: create it \
                     (the chart's kafkaTopics, or kafka-topics.sh) or turn bus.create_topics on"
                )));
            }
            known.insert((*topic).clone());
        }
        Ok(())
    }

    async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        let missing: Vec<&String> = {
            let known = self.lock_topics();
            topics.iter().filter(|t| !known.contains(t.as_str())).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        if !self.config.create_topics {
            return self.check_topics(&missing).await;
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
        let results = self
            .admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| unavailable("creating topics", &e))?;
        let mut known = self.lock_topics();
        for result in results {
            match result {
                Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    known.insert(topic);
                }
                Err((topic, code)) => {
                    return Err(BusError::unavailable_by(format!("creating topic {topic}"), code));
                }
            }
        }
        Ok(())
    }
}

fn delivery_error(error: &KafkaError) -> BusError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => BusError::Timeout,
        Some(RDKafkaErrorCode::QueueFull) => BusError::Full,
        _ => unavailable("publishing", error),
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
