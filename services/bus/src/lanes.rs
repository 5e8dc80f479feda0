//! Consuming a topic the way the router and the delivery worker both do: several records
//! in progress while keeping per-key order, acked only once their work is durable; and
//! publishing until the bus takes it.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use smsc_runtime::telemetry::Metrics;

use crate::{Bus, BusError, Consumer, Delivery, LagProbe, Record};

/// Consumes `consumer` with up to `lanes` records in progress at once. Records with the
/// same key are handled one after another, in order, so per-key order (per destination,
/// per handset) survives the concurrency. A record is acked only when `handler`
/// returned `true` for it: its work is durable. `false` means it gave up (shutdown), and
/// the record comes back to whoever consumes next; handlers are idempotent.
///
/// At shutdown no new record is taken, and the ones in progress get [`DRAIN`] to finish
/// (a worker between its claim and its final write would otherwise leave the message to
/// the slower holder check).
///
/// Everything runs inside this one task (the handlers are polled by a
/// `FuturesUnordered`): on a 2-core machine a channel hop to a worker task per record
/// cost more in cross-core wake-ups than the work itself. Records waiting behind a busy
/// key are bounded by the consumer's `max_in_flight`.
pub async fn run_lanes<F, Fut>(
    mut consumer: Box<dyn Consumer>,
    lanes: usize,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    use futures::stream::{FuturesUnordered, StreamExt};
    use std::collections::{HashMap, VecDeque};

    let lanes = lanes.max(1);
    let mut running = FuturesUnordered::new();
    // Keys being handled, with the records waiting behind them.
    let mut busy: HashMap<bytes::Bytes, VecDeque<Delivery>> = HashMap::new();
    let start = |d: Delivery| {
        let fut = handler(d.clone());
        async move { (fut.await, d) }
    };
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((durable, d)) = running.next(), if !running.is_empty() => {
                let durable: bool = durable;
                if !durable {
                    // Gave up at shutdown: nothing more is taken from this partition key.
                    continue;
                }
                if let Err(e) = consumer.ack(&d) {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), topic = %d.topic, "ack failed");
                }
                let key = d.record.key;
                match busy.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(next) => running.push(start(next)),
                    None => {
                        busy.remove(&key);
                    }
                }
            }
            r = consumer.recv(), if running.len() < lanes => match r {
                Ok(d) => match busy.get_mut(&d.record.key) {
                    Some(queue) => queue.push_back(d),
                    None => {
                        busy.insert(d.record.key.clone(), VecDeque::new());
                        running.push(start(d));
                    }
                },
                Err(BusError::Closed) => break,
                Err(e) => {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), "consume failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }
    // Let the work in progress finish; what does not is simply not acked.
    let _ = tokio::time::timeout(DRAIN, async {
        while let Some((durable, d)) = running.next().await {
            if durable {
                let _ = consumer.ack(&d);
            }
        }
    })
    .await;
}

/// Joins consumer group `group`, trying again (with backoff, off the runtime's threads:
/// a join blocks until the group has rebalanced) until it works or `shutdown` fires.
/// A role must never give up consuming: a restarted member can find its group still
/// waiting for the killed one it replaces, and the broker can be down for a while.
pub async fn join(
    bus: &Arc<dyn Bus>,
    group: &'static str,
    topics: &[&str],
    max_in_flight: usize,
    shutdown: &CancellationToken,
    metrics: Option<&Arc<Metrics>>,
) -> Option<Box<dyn Consumer>> {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        let (bus, names) = (Arc::clone(bus), topics.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            bus.consumer(group, &names, max_in_flight)
        });
        match joined.await {
            Ok(Ok(consumer)) => {
                if let (Some(probe), Some(metrics)) = (consumer.lag_probe(), metrics) {
                    tokio::spawn(report_lag(probe, metrics.clone(), group, shutdown.clone()));
                }
                return Some(consumer);
            }
            Ok(Err(e)) => {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), group, "joining the consumer group failed; retrying")
            }
            Err(e) => warn!(error = %e, group, "joining the consumer group panicked; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
}

/// Sets `smsc_bus_consumer_lag_records` for `group` every [`LAG_INTERVAL`] until
/// shutdown; at shutdown the series go (another member has the partitions now).
async fn report_lag(
    probe: LagProbe,
    metrics: Arc<Metrics>,
    group: &'static str,
    shutdown: CancellationToken,
) {
    let mut seen: Vec<String> = Vec::new();
    loop {
        let lag = probe();
        for topic in &seen {
            if !lag.iter().any(|(t, _)| t == topic) {
                let _ = metrics.consumer_lag.remove_label_values(&[group, topic]);
            }
        }
        for (topic, records) in &lag {
            let records = i64::try_from(*records).unwrap_or(i64::MAX);
            metrics.consumer_lag.with_label_values(&[group, topic]).set(records);
        }
        seen = lag.into_iter().map(|(t, _)| t).collect();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(LAG_INTERVAL) => {}
        }
    }
    for topic in &seen {
        let _ = metrics.consumer_lag.remove_label_values(&[group, topic]);
    }
}

/// How often consumer lag is read into the metrics.
pub const LAG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long work in progress may take to finish at shutdown.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes until the bus takes it or `shutdown` fires (then `false`): the work that
/// produced these records is acked only after they are durable.
pub async fn publish_until_ok(
    bus: &dyn Bus,
    topic: &str,
    records: Vec<Record>,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = std::time::Duration::from_millis(20);
    loop {
        match bus.publish(topic, records.clone()).await {
            Ok(()) => return true,
            Err(e) => {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), topic, "publish failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}
