//! The message bus: Kafka in a cluster, [`embedded::EmbeddedBus`] in `smsc all` and tests.
//!
//! Semantics every implementation keeps (the contract suite checks them):
//! - `publish` resolves only once every record is durable (Kafka: acks=all); a bus that
//!   cannot take more answers [`BusError::Full`] at once rather than buffering without bound.
//! - Records with the same key land in the same partition, in publish order.
//! - A consumer group splits a topic's partitions among its members; a record is handed
//!   to one member, and its offset is committed only when [`Consumer::ack`] was called
//!   for it and for every earlier record of its partition (at-least-once).
//! - A consumer holds at most `max_in_flight` records that are not acked yet.
//! - A record with `not_before` is not handed out before that instant, and holds back
//!   the records behind it in its partition (a delayed tier is a FIFO of equal delays).

use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key (the destination address for submits: per-destination order).
    pub key: Bytes,
    pub payload: Bytes,
    /// Trace context, the flow ([`fair::Flow`]) and similar; small. Static names cost
    /// no allocation per record.
    pub headers: Vec<(std::borrow::Cow<'static, str>, Bytes)>,
    /// Not to be consumed before this instant (delayed tiers).
    pub not_before: Option<SystemTime>,
}

impl Record {
    pub fn new(key: impl Into<Bytes>, payload: impl Into<Bytes>) -> Self {
        Self { key: key.into(), payload: payload.into(), headers: Vec::new(), not_before: None }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// Backpressure: the producer queue (or, embedded, the slowest group's lag) is at
    /// its bound. The edge answers ESME_RMSGQFUL.
    #[error("bus is full")]
    Full,
    /// The broker cannot be reached or refused the write: `what` failed, and why is the
    /// source (the client library's error, when there is one). The edge answers
    /// ESME_RSYSERR.
    #[error("bus unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },
    #[error("bus operation timed out")]
    Timeout,
    #[error("bus is closed")]
    Closed,
}

impl BusError {
    pub fn unavailable(what: impl Into<String>) -> Self {
        Self::Unavailable { what: what.into(), source: None }
    }

    /// `what` failed because of `source`.
    pub fn unavailable_by(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable { what: what.into(), source: Some(std::sync::Arc::new(source)) }
    }
}

/// A record handed to a consumer, with where it came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Shared with the consumer's own copy: no allocation per record.
    pub topic: std::sync::Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
}

pub trait Bus: std::fmt::Debug + Send + Sync + 'static {
    /// Appends `records` to `topic`; resolves once all are durable. All or nothing is not
    /// promised across records: on error the caller treats every record as not accepted
    /// (a duplicate on retry is handled downstream by idempotent writes).
    fn publish(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> BoxFuture<'static, Result<(), BusError>>;

    /// Like `publish`, with one outcome per record, in order: a failure part-way through
    /// a batch does not hide that the records before it are durable (an edge must not
    /// refuse a submit it has in fact accepted). The default suits a bus whose publish is
    /// all or nothing.
    fn publish_each(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> BoxFuture<'static, Vec<Result<(), BusError>>> {
        let n = records.len();
        let all = self.publish(topic, records);
        Box::pin(async move {
            match all.await {
                Ok(()) => vec![Ok(()); n],
                Err(e) => vec![Err(e); n],
            }
        })
    }

    /// Joins consumer group `group` on `topics`.
    fn consumer(
        &self,
        group: &str,
        topics: &[&str],
        max_in_flight: usize,
    ) -> Result<Box<dyn Consumer>, BusError>;

    /// Whether the bus can take writes now (readiness).
    fn is_ready(&self) -> bool;
}

pub trait Consumer: Send {
    /// The next record, waiting while none is due or while `max_in_flight` are unacked.
    fn recv(&mut self) -> BoxFuture<'_, Result<Delivery, BusError>>;

    /// The work for `delivery` is done; its offset may be committed once every earlier
    /// record of the partition is acked too.
    fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError>;

    /// Reads this member's lag (records not yet handled, acked in order, per topic, over its assigned
    /// partitions) from any thread, while the consumer itself is busy in `recv`.
    fn lag_probe(&self) -> Option<LagProbe> {
        None
    }
}

/// [`Bus::publish_each`] for records bound for several topics (`topics[i]` is
/// `records[i]`'s): one publish per topic, all at once, the outcomes in the records' order.
pub fn publish_each_to(
    bus: &dyn Bus,
    topics: &[impl AsRef<str>],
    records: Vec<Record>,
) -> BoxFuture<'static, Vec<Result<(), BusError>>> {
    assert_eq!(topics.len(), records.len(), "a topic per record");
    let Some(first) = topics.first().map(AsRef::as_ref) else {
        return Box::pin(async { Vec::new() });
    };
    if topics.iter().all(|t| t.as_ref() == first) {
        return bus.publish_each(first, records);
    }
    let n = records.len();
    let mut groups: Vec<(&str, Vec<usize>, Vec<Record>)> = Vec::new();
    for (i, (topic, record)) in topics.iter().map(AsRef::as_ref).zip(records).enumerate() {
        match groups.iter_mut().find(|g| g.0 == topic) {
            Some(g) => {
                g.1.push(i);
                g.2.push(record);
            }
            None => groups.push((topic, vec![i], vec![record])),
        }
    }
    let published: Vec<_> = groups
        .into_iter()
        .map(|(topic, at, records)| {
            let each = bus.publish_each(topic, records);
            async move { (at, each.await) }
        })
        .collect();
    Box::pin(async move {
        let mut out = vec![Ok(()); n];
        for (at, results) in futures::future::join_all(published).await {
            for (i, result) in at.into_iter().zip(results) {
                out[i] = result;
            }
        }
        out
    })
}

/// See [`Consumer::lag_probe`]: `(topic, records)` pairs.
pub type LagProbe = Box<dyn Fn() -> Vec<(String, u64)> + Send + Sync>;

pub mod config;
pub mod embedded;
pub mod fair;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lanes;
pub mod pressure;
pub mod tiers;
pub mod topics;

pub use config::{BusConfig, BusKind, RetryConfig};
pub use fair::{Class, Flow, Shares};
pub use tiers::Tiers;
pub use topics::Topics;

// The properties every `Bus` keeps, as functions a test of any implementation calls.
#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
