//! `bus:` and `retry:`: the bus and its delayed retry tiers, as written.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fair::Shares;
use serde::Deserialize;
use smsc_runtime::config::{ClientTls, ConfigError, duration, durations, invalid};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub kind: BusKind,
    /// What every topic's name starts with: `<topic_prefix>.submit`, ... ([`crate::Topics`]).
    /// Two releases on one Kafka each need their own.
    pub topic_prefix: String,
    /// What every consumer group's name starts with: `<group_prefix>-router`, ...
    pub group_prefix: String,
    /// Partitions per topic (created when missing).
    pub partitions: u32,
    /// Embedded: consumer lag (records) above which producers see backpressure.
    pub max_lag: u64,
    /// Kafka: `bootstrap.servers`.
    pub brokers: String,
    /// Kafka: replication factor of the topics it creates (3 in production).
    pub replication_factor: u16,
    /// Kafka: whether the roles create the topics they use when missing (needs the
    /// `Create` ACL). Off, a missing topic stops the role with its name: the topics are
    /// made elsewhere (the chart's Strimzi KafkaTopics).
    pub create_topics: bool,
    /// Kafka: consumer group `session.timeout.ms`.
    #[serde(deserialize_with = "duration")]
    pub session_timeout: Duration,
    /// Kafka: TLS to the brokers (their host names are checked against their
    /// certificates); absent: plaintext. Sets `security.protocol: ssl`; for SASL over
    /// TLS add `extra: {security.protocol: sasl_ssl, sasl.mechanism: ...}`.
    pub tls: Option<ClientTls>,
    /// Kafka: more librdkafka settings (`security.protocol`, SASL, ...), applied after
    /// the others, so they win.
    pub extra: BTreeMap<String, String>,
    /// How the router, the workers and the dispatchers share their lanes among the
    /// traffic classes when all have work (picks out of the sum; none starves).
    pub class_shares: Shares,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            topic_prefix: crate::topics::DEFAULT_PREFIX.into(),
            group_prefix: crate::topics::DEFAULT_PREFIX.into(),
            partitions: 8,
            max_lag: 100_000,
            brokers: "127.0.0.1:9092".into(),
            replication_factor: 3,
            create_topics: true,
            session_timeout: Duration::from_secs(10),
            tls: None,
            extra: BTreeMap::new(),
            class_shares: Shares::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BusKind {
    /// In-process, for `smsc all`.
    Embedded,
    /// Apache Kafka (or a Kafka-protocol broker); needs the `kafka` build feature.
    Kafka,
}

/// Delays of the retry tiers, in order: attempt n waits `tiers[min(n, len) - 1]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    #[serde(deserialize_with = "durations")]
    pub tiers: Vec<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let m = |mins: u64| Duration::from_secs(60 * mins);
        Self { tiers: vec![Duration::from_secs(10), m(1), m(5), m(30), m(120)] }
    }
}

impl RetryConfig {
    /// Topic suffix of a tier: `10s`, `1m`, `2h`.
    pub fn tier_name(d: Duration) -> String {
        let s = d.as_secs();
        match s {
            0 => format!("{}ms", d.as_millis()),
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    }
}

impl BusConfig {
    /// The rules of `bus.*` that deserialising does not check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls {
            tls.validate("bus.tls")?;
        }
        if self.partitions == 0 {
            return Err(invalid("bus.partitions", "must be at least 1"));
        }
        if self.max_lag == 0 {
            return Err(invalid("bus.max_lag", "must be at least 1"));
        }
        Ok(())
    }
}
