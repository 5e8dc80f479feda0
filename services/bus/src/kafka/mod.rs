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

use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::BusError;
#[cfg(doc)]
use crate::{Bus, Consumer, Record};

/// [`KafkaBusConfig`] and the librdkafka settings of each client built from it.
mod config;
/// [`KafkaConsumer`]: a group member with its driver thread, per-partition buffers and
/// acks.
mod consumer;
/// A [`Record`] as a Kafka message: headers, `not_before`, the parent span.
mod headers;
/// [`KafkaBus`]: the producer, topic creation and readiness; the [`Bus`] impl.
mod producer;
/// Offline tests: the client settings, the `not_before` and header encoding.
#[cfg(test)]
mod tests;

pub use config::KafkaBusConfig;
pub use consumer::KafkaConsumer;
pub use producer::KafkaBus;

/// The header that carries [`Record::not_before`].
pub const NOT_BEFORE_HEADER: &str = "smsc-not-before";
/// The header a record published inside a `tracing` span gets when it has no
/// `traceparent`.
pub const PARENT_SPAN_HEADER: &str = "smsc-parent-span";
const TRACEPARENT_HEADER: &str = "traceparent";

/// How often the producer reports statistics (readiness comes back from them).
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(2);
/// How often a consumer reports statistics (its lag).
pub const CONSUMER_STATISTICS_INTERVAL: Duration = Duration::from_millis(500);
/// Records a consumer buffers per partition before it pauses the partition.
const BUFFERED_PER_PARTITION: usize = 512;
/// How long the driver thread waits in one poll, so it notices a stop request.
const DRIVER_POLL: Duration = Duration::from_millis(100);
/// The longest `recv` sleeps before looking at the wall clock again, so that a clock
/// step (NTP) delays a due record by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Bound on admin requests (topic creation) and on the first metadata fetch.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

// What the producer and the consumers share: librdkafka's log, and its errors as ours.

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

/// `what` failed on the client library's `error`.
fn unavailable(what: &str, error: &KafkaError) -> BusError {
    BusError::unavailable_by(what, error.clone())
}
