//! Consuming a topic the way the router and the delivery worker both do: several records
//! in progress while keeping per-key order, acked only once their work is durable; and
//! publishing until the bus takes it.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use smsc_runtime::telemetry::Metrics;

use crate::fair::{Flow, Scheduler, Shares};
use crate::pressure::Pressure;
use crate::{Bus, BusError, Consumer, Delivery, LagProbe, Record};

/// How a hop runs its records ([`run_lanes`]).
#[derive(Debug, Clone)]
pub struct Lanes {
    /// Records in progress at once.
    pub lanes: usize,
    /// Records received and not acked (the consumer's `max_in_flight`): what the
    /// scheduler chooses from. Larger than `lanes`, so that a record of a quiet account
    /// is read, and started, while a busy one's backlog waits.
    pub read_ahead: usize,
    pub shares: Shares,
    /// Where this hop reports the accounts crowding it, under its name.
    pub pressure: Option<(Pressure, &'static str)>,
}

impl Lanes {
    /// `lanes` in progress, four times as many read ahead, default shares, no report.
    pub fn new(lanes: usize) -> Self {
        let lanes = lanes.max(1);
        Self { lanes, read_ahead: lanes * 4, shares: Shares::default(), pressure: None }
    }
}

/// How often a hop that changed reports its crowding accounts.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

/// Consumes `consumer` with up to `lanes.lanes` records in progress at once, chosen
/// fairly ([`Scheduler`]: classes by their shares, accounts in turn) among the
/// `read_ahead` received, each handed to `handler` with its flow. Records with the same key are handled one after another, in
/// order, so per-key order (per destination, per handset) survives the concurrency. A
/// record is acked only when `handler` returned `true` for it: its work is durable.
/// `false` means it gave up (shutdown), and the record comes back to whoever consumes
/// next; handlers are idempotent.
///
/// At shutdown no new record is taken, and the ones in progress get [`DRAIN`] to finish
/// (a worker between its claim and its final write would otherwise leave the message to
/// the slower holder check).
///
/// Everything runs inside this one task (the handlers are polled by a
/// `FuturesUnordered`): on a 2-core machine a channel hop to a worker task per record
/// cost more in cross-core wake-ups than the work itself.
pub async fn run_lanes<F, Fut>(
    mut consumer: Box<dyn Consumer>,
    lanes: Lanes,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Flow, Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    use futures::stream::{FuturesUnordered, StreamExt};
    use std::collections::{HashMap, VecDeque};

    let read_ahead = lanes.read_ahead.max(lanes.lanes);
    let mut scheduler = Scheduler::new(lanes.lanes, read_ahead, lanes.shares);
    // Falling behind: more records waiting to start than half the lanes. Every record
    // waiting delays another account's by its handling time, so the bound is small.
    let behind_at = (lanes.lanes / 2).max(1);
    // The records waiting to start: the lag on the hop's own topics (not the retry
    // tiers: what waits there is not due yet), or what it holds if more (Kafka's lag is
    // up to a statistics interval old; what the hop read ahead is now), less those
    // running.
    let lag = consumer.lag_probe();
    let waiting = move |s: &Scheduler<Delivery>| {
        let lag = lag.as_ref().map_or(0, |probe| {
            probe()
                .into_iter()
                .filter(|(topic, _)| !topic.starts_with(crate::topics::RETRY_PREFIX))
                .map(|(_, n)| usize::try_from(n).unwrap_or(usize::MAX))
                .sum::<usize>()
        });
        lag.max(s.held()).saturating_sub(s.running())
    };
    let mut running = FuturesUnordered::new();
    // Keys being handled, with the records waiting behind them.
    let mut busy: HashMap<bytes::Bytes, VecDeque<(Flow, Delivery)>> = HashMap::new();
    let start = |flow: Flow, d: Delivery| {
        let fut = handler(flow.clone(), d.clone());
        async move { (fut.await, flow, d) }
    };
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Reported when something changed, and also while the last report named accounts:
    // they are throttled, so no record may come to change anything, and the lag a
    // Kafka consumer knows is refreshed on its own.
    let mut changed = false;
    let mut naming = false;
    let mut reported = tokio::time::Instant::now();
    let report_now = |scheduler: &Scheduler<Delivery>| {
        let mut naming = false;
        if let Some((pressure, hop)) = &lanes.pressure {
            let crowding = scheduler.over_share(waiting(scheduler), behind_at);
            naming = !crowding.is_empty();
            pressure.report(hop, crowding);
        }
        (false, naming, tokio::time::Instant::now())
    };
    loop {
        while let Some((flow, d)) = scheduler.start_next() {
            running.push(start(flow, d));
        }
        // While records keep coming the select below never idles, so a busy hop reports
        // here; an idle one on the tick.
        if (changed || naming) && reported.elapsed() >= REPORT_EVERY {
            (changed, naming, reported) = report_now(&scheduler);
        }
        // On the embedded engines every step below can be ready at once, record after
        // record: without spending the task's budget this loop would never yield, and
        // the other hops on its thread would starve for seconds.
        tokio::task::coop::consume_budget().await;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((durable, flow, d)) = running.next(), if !running.is_empty() => {
                let durable: bool = durable;
                scheduler.finished(&flow.account);
                changed = true;
                if !durable {
                    // Gave up at shutdown: nothing more is taken from this partition key.
                    continue;
                }
                if let Err(e) = consumer.ack(&d) {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), topic = %d.topic, "ack failed");
                }
                let key = d.record.key;
                match busy.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some((flow, next)) => scheduler.ready(flow, next),
                    None => {
                        busy.remove(&key);
                    }
                }
            }
            r = consumer.recv(), if scheduler.held() < read_ahead => match r {
                Ok(d) => {
                    let flow = Flow::of(&d.record);
                    scheduler.received(&flow.account);
                    changed = true;
                    match busy.get_mut(&d.record.key) {
                        Some(queue) => queue.push_back((flow, d)),
                        None => {
                            busy.insert(d.record.key.clone(), VecDeque::new());
                            scheduler.ready(flow, d);
                        }
                    }
                }
                Err(BusError::Closed) => break,
                Err(e) => {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), "consume failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
            _ = report.tick(), if lanes.pressure.is_some() && (changed || naming) => {
                (changed, naming, reported) = report_now(&scheduler);
            }
        }
    }
    if let Some((pressure, hop)) = &lanes.pressure {
        pressure.report(hop, Vec::new());
    }
    // Let the work in progress finish; what does not is simply not acked.
    let _ = tokio::time::timeout(DRAIN, async {
        while let Some((durable, _, d)) = running.next().await {
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

#[cfg(test)]
mod tests;
