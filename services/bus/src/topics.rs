//! The names a release uses on the bus: its topics (`<bus.topic_prefix>.submit`, ...,
//! docs/architecture.md) and its consumer groups (`<bus.group_prefix>-router`, ...). Two
//! releases on one Kafka keep their traffic apart by their prefixes.
//!
//! Built once at start-up ([`Topics::from_config`]) and shared: a name is an `Arc<str>`,
//! so the hot paths borrow or clone a pointer, never format a name per record.

use std::sync::Arc;

use smsc_runtime::config::{ConfigError, invalid};

use crate::config::{BusConfig, RetryConfig};
use crate::{Class, Tiers};

/// The prefix of both kinds of names by default: today's `smsc.submit`, `smsc-router`.
pub const DEFAULT_PREFIX: &str = "smsc";

/// Kafka refuses a topic name longer than this.
const MAX_TOPIC_LEN: usize = 249;

/// The topics of one release, and the prefix of its consumer groups.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Accepted submits, one topic per class (highest first): `<prefix>.submit.interactive`,
    /// `<prefix>.submit` (standard keeps the original name), `<prefix>.submit.bulk`.
    submits: [Arc<str>; 3],
    /// Delivery tasks per class, as `submits`: `<prefix>.deliver...`.
    delivers: [Arc<str>; 3],
    notify: Arc<str>,
    mo: Arc<str>,
    /// The accounts crowding each hop (`pressure.rs`), for the edges.
    pressure: Arc<str>,
    /// Call detail records, one per destination per final state (billing).
    cdr: Arc<str>,
    /// What every retry tier's name starts with: `<prefix>.retry.`.
    retry_prefix: Arc<str>,
    /// The delayed retry tiers, `<prefix>.retry.<tier>`.
    pub tiers: Tiers,
    group_prefix: Arc<str>,
}

impl Default for Topics {
    /// The default prefixes and retry tiers.
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX, DEFAULT_PREFIX, &RetryConfig::default().tiers)
    }
}

impl Topics {
    /// The names under `topic_prefix` and `group_prefix`, with retry tiers of `delays`.
    /// The prefixes are taken as given: [`Topics::from_config`] checks them.
    pub fn new(topic_prefix: &str, group_prefix: &str, delays: &[std::time::Duration]) -> Self {
        let name = |suffix: &str| -> Arc<str> { format!("{topic_prefix}.{suffix}").into() };
        let retry_prefix: Arc<str> = format!("{topic_prefix}.retry.").into();
        Self {
            submits: [name("submit.interactive"), name("submit"), name("submit.bulk")],
            delivers: [name("deliver.interactive"), name("deliver"), name("deliver.bulk")],
            notify: name("notify"),
            mo: name("mo"),
            pressure: name("pressure"),
            cdr: name("cdr"),
            tiers: Tiers::new(&retry_prefix, delays),
            retry_prefix,
            group_prefix: group_prefix.into(),
        }
    }

    /// The names `bus.topic_prefix`, `bus.group_prefix` and `retry.tiers` give, once
    /// checked: Kafka's topic-name characters (`[a-zA-Z0-9._-]`), and no derived name
    /// longer than Kafka takes (249).
    pub fn from_config(bus: &BusConfig, retry: &RetryConfig) -> Result<Self, ConfigError> {
        check_chars("bus.topic_prefix", &bus.topic_prefix)?;
        check_chars("bus.group_prefix", &bus.group_prefix)?;
        let topics = Self::new(&bus.topic_prefix, &bus.group_prefix, &retry.tiers);
        if let Some(longest) = topics.all().into_iter().max_by_key(|t| t.len())
            && longest.len() > MAX_TOPIC_LEN
        {
            let reason =
                format!("too long: topic {longest} is over Kafka's {MAX_TOPIC_LEN} characters");
            return Err(invalid("bus.topic_prefix", reason));
        }
        let longest_group = topics.group("dispatcher");
        if longest_group.len() > MAX_TOPIC_LEN {
            let reason =
                format!("too long: group {longest_group} is over {MAX_TOPIC_LEN} characters");
            return Err(invalid("bus.group_prefix", reason));
        }
        Ok(topics)
    }

    /// The topic of `class`'s accepted submits. Each class has its own partitions, so a
    /// campaign's backlog in `bulk` is not in front of an interactive message: a consumer
    /// takes the partitions it holds in turn.
    pub fn submit(&self, class: Class) -> &Arc<str> {
        &self.submits[class_index(class)]
    }

    /// The topic of `class`'s delivery tasks (as [`Topics::submit`]).
    pub fn deliver(&self, class: Class) -> &Arc<str> {
        &self.delivers[class_index(class)]
    }

    /// Every class's submit topics, highest class first.
    pub fn submits(&self) -> &[Arc<str>; 3] {
        &self.submits
    }

    /// Every class's delivery topics, highest class first.
    pub fn delivers(&self) -> &[Arc<str>; 3] {
        &self.delivers
    }

    pub fn notify(&self) -> &Arc<str> {
        &self.notify
    }

    pub fn mo(&self) -> &Arc<str> {
        &self.mo
    }

    pub fn pressure(&self) -> &Arc<str> {
        &self.pressure
    }

    /// `<prefix>.cdr`: the CDRs (docs/cdr.md).
    pub fn cdr(&self) -> &Arc<str> {
        &self.cdr
    }

    /// What every retry tier's name starts with (`<prefix>.retry.`).
    pub fn retry_prefix(&self) -> &Arc<str> {
        &self.retry_prefix
    }

    /// Every topic of the release, retry tiers included (to create them).
    pub fn all(&self) -> Vec<String> {
        let mut t: Vec<String> = (self.submits.iter().chain(&self.delivers))
            .chain([&self.notify, &self.mo, &self.pressure, &self.cdr])
            .map(|t| t.to_string())
            .collect();
        t.extend(self.tiers.topics());
        t
    }

    /// The consumer group of `role` (`router`, `worker`, `dispatcher`,
    /// `edge-pressure-<node>`): `<group_prefix>-<role>`. Made when a role joins, not per
    /// record.
    pub fn group(&self, role: &str) -> String {
        format!("{}-{role}", self.group_prefix)
    }
}

fn class_index(class: Class) -> usize {
    match class {
        Class::Interactive => 0,
        Class::Standard => 1,
        Class::Bulk => 2,
    }
}

fn check_chars(key: &str, prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if let Some(c) =
        prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let reason = format!("{c:?} is not a Kafka topic-name character ([a-zA-Z0-9._-])");
        return Err(invalid(key, reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(topic_prefix: &str, group_prefix: &str) -> BusConfig {
        BusConfig {
            topic_prefix: topic_prefix.into(),
            group_prefix: group_prefix.into(),
            ..BusConfig::default()
        }
    }

    #[test]
    fn the_defaults_are_the_original_names() {
        let t = Topics::from_config(&BusConfig::default(), &RetryConfig::default()).expect("valid");
        let names: Vec<&str> = t.submits().iter().chain(t.delivers()).map(|t| &**t).collect();
        assert_eq!(
            names,
            [
                "smsc.submit.interactive",
                "smsc.submit",
                "smsc.submit.bulk",
                "smsc.deliver.interactive",
                "smsc.deliver",
                "smsc.deliver.bulk",
            ]
        );
        assert_eq!(&**t.submit(Class::Standard), "smsc.submit");
        assert_eq!(&**t.deliver(Class::Bulk), "smsc.deliver.bulk");
        assert_eq!(&**t.notify(), "smsc.notify");
        assert_eq!(&**t.mo(), "smsc.mo");
        assert_eq!(&**t.pressure(), "smsc.pressure");
        assert_eq!(&**t.cdr(), "smsc.cdr");
        assert_eq!(t.tiers.for_attempt(1).1, "smsc.retry.10s");
        assert_eq!(t.group("router"), "smsc-router");
        assert_eq!(t.group("edge-pressure-pod-0"), "smsc-edge-pressure-pod-0");
        assert_eq!(t.all().len(), 10 + 5, "ten topics and the five default tiers");
    }

    #[test]
    fn every_name_follows_the_prefixes() {
        let retry = RetryConfig { tiers: vec![Duration::from_secs(1), Duration::from_secs(60)] };
        let t = Topics::from_config(&config("blue.sms", "blue"), &retry).expect("valid");
        assert_eq!(
            t.all(),
            [
                "blue.sms.submit.interactive",
                "blue.sms.submit",
                "blue.sms.submit.bulk",
                "blue.sms.deliver.interactive",
                "blue.sms.deliver",
                "blue.sms.deliver.bulk",
                "blue.sms.notify",
                "blue.sms.mo",
                "blue.sms.pressure",
                "blue.sms.cdr",
                "blue.sms.retry.1s",
                "blue.sms.retry.1m",
            ]
        );
        assert_eq!(&**t.retry_prefix(), "blue.sms.retry.");
        assert_eq!(t.tiers.for_wait(Duration::from_secs(90)).1, "blue.sms.retry.1m");
        assert_eq!(t.group("worker"), "blue-worker");
        assert_eq!(t.group("dispatcher"), "blue-dispatcher");
    }

    #[test]
    fn a_bad_prefix_is_named_by_its_key() {
        let retry = RetryConfig::default();
        let key_of = |c: BusConfig| match Topics::from_config(&c, &retry) {
            Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
            other => panic!("expected an invalid key, got {other:?}"),
        };
        let (key, reason) = key_of(config("smsc/a", "smsc"));
        assert_eq!(key, "bus.topic_prefix");
        assert!(reason.contains("'/'"), "{reason}");
        assert_eq!(key_of(config("", "smsc")).0, "bus.topic_prefix");
        assert_eq!(key_of(config("smsc", "a b")).0, "bus.group_prefix");
        assert_eq!(key_of(config("smsc", "")).0, "bus.group_prefix");
        assert_eq!(key_of(config("smsé", "smsc")).0, "bus.topic_prefix");
    }

    #[test]
    fn the_longest_derived_name_stays_within_kafka_s_limit() {
        // The longest with the default tiers: `<prefix>.deliver.interactive` (20 more).
        let retry = RetryConfig::default();
        let fits = "p".repeat(MAX_TOPIC_LEN - ".deliver.interactive".len());
        assert!(Topics::from_config(&config(&fits, "smsc"), &retry).is_ok());
        let over = format!("{fits}p");
        let (key, reason) = match Topics::from_config(&config(&over, "smsc"), &retry) {
            Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
            other => panic!("expected too long, got {other:?}"),
        };
        assert_eq!(key, "bus.topic_prefix");
        assert!(reason.contains("deliver.interactive"), "{reason}");
        // A long tier name counts too.
        let slow = RetryConfig { tiers: vec![Duration::from_millis(1500)] };
        let tight = "p".repeat(MAX_TOPIC_LEN - ".retry.1s".len());
        assert!(Topics::from_config(&config(&tight, "smsc"), &slow).is_err(), "retry.1500ms");
        let group = "g".repeat(MAX_TOPIC_LEN);
        assert!(Topics::from_config(&config("smsc", &group), &retry).is_err());
    }
}
