//! [`KafkaBusConfig`]: where and how to reach Kafka, and the librdkafka settings of the
//! producer, the consumers and the admin client built from it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use smsc_runtime::config::ClientTls;

#[cfg(doc)]
use super::KafkaBus;
use super::{CONSUMER_STATISTICS_INTERVAL, STATISTICS_INTERVAL};
use crate::config::BusConfig;
#[cfg(doc)]
use crate::{Bus, BusError};

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
    /// Topics created (when missing) at [`KafkaBus::connect`], or with `create_topics`
    /// off, checked to exist.
    pub topics: Vec<String>,
    /// Whether this bus creates the topics it uses (Kafka ACL `Create`); off, a missing
    /// topic is an error naming it (topics made by Strimzi's KafkaTopics, say).
    pub create_topics: bool,
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
            create_topics: true,
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
            create_topics: bus.create_topics,
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

    pub(super) fn producer(&self) -> ClientConfig {
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

    pub(super) fn consumer(&self, group: &str) -> ClientConfig {
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
            // Consumer lag for the metrics and for the hops' backpressure
            // (`Consumer::lag_probe`): the edges slow a crowding account this much later
            // at most, so it is short.
            .set("statistics.interval.ms", millis(CONSUMER_STATISTICS_INTERVAL));
        self.apply_extra(&mut config);
        config
    }

    pub(super) fn admin(&self) -> ClientConfig {
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
