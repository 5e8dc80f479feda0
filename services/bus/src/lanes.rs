//! Consuming a topic the way the router and the delivery worker both do: several records
//! in progress while keeping per-key order, acked only once their work is durable; and
//! publishing until the bus takes it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use smsc_runtime::telemetry::Metrics;

use crate::fair::{Flow, Scheduler, Shares};
use crate::pressure::Pressure;
use crate::{Bus, BusError, Consumer, Delivery, LagProbe, Record};

/// How a hop runs its records ([`run_batches`]).
#[derive(Debug, Clone)]
pub struct Lanes {
    /// Records in progress at once.
    pub lanes: usize,
    /// Records received and not acked (the consumer's `max_in_flight`): what the
    /// scheduler chooses from. Larger than `lanes`, so that a record of a quiet account
    /// is read, and started, while a busy one's backlog waits.
    pub read_ahead: usize,
    /// Records handed to the handler at once, at most: what starts together (free lanes
    /// and ready records) goes as one batch, so a hop that is busy works in batches and
    /// an idle one record by record, without waiting for a batch to fill.
    pub batch: usize,
    pub shares: Shares,
    /// Where this hop reports the accounts crowding it, under its name.
    pub pressure: Option<(Pressure, &'static str)>,
    /// What the names of the delayed topics it consumes start with (the retry tiers',
    /// [`crate::Topics::retry_prefix`]): what waits there is not due yet, so it does not
    /// count as falling behind.
    pub delayed: Option<Arc<str>>,
}

impl Lanes {
    /// `lanes` in progress, four times as many read ahead, batches of up to 64, default
    /// shares, no report.
    pub fn new(lanes: usize) -> Self {
        let lanes = lanes.max(1);
        Self {
            lanes,
            read_ahead: lanes * 4,
            batch: 64,
            shares: Shares::default(),
            pressure: None,
            delayed: None,
        }
    }
}

/// What a batch handler ([`run_batches`]) says of each record of its batch, in order.
#[derive(Debug)]
pub enum Step<G> {
    /// Its work is over: durable (`true`: acked) or given up at shutdown (`false`: it
    /// comes back to whoever consumes next).
    Done(bool),
    /// Its work goes on alone, and `G` says the same when it is over; the record's lane
    /// is freed then, whatever the rest of its batch does.
    Then(G),
}

/// How often a hop that changed reports its crowding accounts.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

/// [`run_batches`] with a handler per record: each record's work is its own future.
pub async fn run_lanes<F, Fut>(
    consumer: Box<dyn Consumer>,
    lanes: Lanes,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(&Flow, &Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let each = move |batch: &[(Flow, Delivery)]| {
        let steps: Vec<Step<Fut>> = batch.iter().map(|(f, d)| Step::Then(handler(f, d))).collect();
        std::future::ready(steps)
    };
    run_batches(consumer, lanes, shutdown, each).await;
}

/// Consumes `consumer` with up to `lanes.lanes` records in progress at once, chosen
/// fairly ([`Scheduler`]: classes by their shares, accounts in turn) among the
/// `read_ahead` received. What starts together goes to `handler` as one batch (up to
/// `lanes.batch`): it reads what it needs of the records at once (one decode pass) and
/// returns the batch's work, which answers a [`Step`] per record: the batch's store
/// calls and publishes can be one each. Records with the same key are handled one after
/// another, in order, so per-key order (per destination, per handset) survives the
/// concurrency. A record is acked only when its step says its work is durable;
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
pub async fn run_batches<F, Fut, G>(
    mut consumer: Box<dyn Consumer>,
    lanes: Lanes,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(&[(Flow, Delivery)]) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Step<G>>> + Send + 'static,
    G: Future<Output = bool> + Send + 'static,
{
    use futures::FutureExt;
    use futures::stream::{FuturesUnordered, StreamExt};

    let read_ahead = lanes.read_ahead.max(lanes.lanes);
    let max_batch = lanes.batch.max(1);
    let mut hop = Hop::new(&lanes, read_ahead);
    // Falling behind: more records waiting to start than half the lanes. Every record
    // waiting delays another account's by its handling time, so the bound is small.
    let behind_at = (lanes.lanes / 2).max(1);
    // The records waiting to start: the lag on the hop's own topics (not the retry
    // tiers: what waits there is not due yet), or what it holds if more (Kafka's lag is
    // up to a statistics interval old; what the hop read ahead is now), less those
    // running.
    let lag = consumer.lag_probe();
    let delayed = lanes.delayed.clone();
    let waiting = move |s: &Scheduler<Delivery>| {
        let lag = lag.as_ref().map_or(0, |probe| {
            probe()
                .into_iter()
                .filter(|(topic, _)| !delayed.as_ref().is_some_and(|d| topic.starts_with(&**d)))
                .map(|(_, n)| usize::try_from(n).unwrap_or(usize::MAX))
                .sum::<usize>()
        });
        lag.max(s.held()).saturating_sub(s.running())
    };
    // Batches whose handler has not answered yet, and records going on alone.
    let mut batches = FuturesUnordered::new();
    let mut alone = FuturesUnordered::new();
    let start = |batch: Vec<(Flow, Delivery)>| {
        let work = handler(&batch);
        async move { (work.await, batch) }
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
    // Records the last step handled: what the loop spends of the task's budget.
    let mut handled = 1;
    'run: loop {
        let mut batch = Vec::new();
        while let Some(next) = hop.scheduler.start_next() {
            batch.push(next);
            if batch.len() == max_batch {
                batches.push(start(std::mem::take(&mut batch)));
            }
        }
        if !batch.is_empty() {
            batches.push(start(batch));
        }
        // While records keep coming the select below never idles, so a busy hop reports
        // here; an idle one on the tick.
        if (changed || naming) && reported.elapsed() >= REPORT_EVERY {
            (changed, naming, reported) = report_now(&hop.scheduler);
        }
        // On the embedded engines every step below can be ready at once, record after
        // record: without spending the task's budget this loop would never yield, and
        // the other hops on its thread would starve for seconds. A unit per record
        // handled, so that a step taking a batch yields as often as record by record.
        for _ in 0..std::mem::replace(&mut handled, 1) {
            tokio::task::coop::consume_budget().await;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break 'run,
            Some((steps, batch)) = batches.next(), if !batches.is_empty() => {
                changed = true;
                handled = batch.len();
                for (step, (flow, d)) in steps_of(steps, batch) {
                    match step {
                        Step::Done(durable) => hop.finished(&mut *consumer, durable, flow, d),
                        Step::Then(work) => alone.push(async move { (work.await, flow, d) }),
                    }
                }
            }
            Some((durable, flow, d)) = alone.next(), if !alone.is_empty() => {
                changed = true;
                hop.finished(&mut *consumer, durable, flow, d);
                // What else finished meanwhile frees its lane now too, so that what
                // starts next goes as one batch (a batch's worth at a time: the loop
                // yields between, or the other hops on its thread would wait).
                while handled < max_batch {
                    let Some(Some((durable, flow, d))) = alone.next().now_or_never() else { break };
                    hop.finished(&mut *consumer, durable, flow, d);
                    handled += 1;
                }
            }
            r = consumer.recv(), if hop.scheduler.held() < read_ahead => {
                let mut r = Some(r);
                // What is already there is taken at once, a batch's worth: it starts as
                // one batch.
                handled = 0;
                while let Some(got) = r.take() {
                    handled += 1;
                    match got {
                        Ok(d) => {
                            changed = true;
                            hop.received(d);
                            if handled < max_batch && hop.scheduler.held() < read_ahead {
                                r = consumer.recv().now_or_never();
                            }
                        }
                        Err(BusError::Closed) => break 'run,
                        Err(e) => {
                            warn!(error = %smsc_runtime::telemetry::error_chain(&e), "consume failed; retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                    }
                }
            },
            _ = report.tick(), if lanes.pressure.is_some() && (changed || naming) => {
                (changed, naming, reported) = report_now(&hop.scheduler);
            }
        }
    }
    hop.drain(consumer, batches, alone, &lanes).await;
}

/// Each record of a batch with its step. A handler that answered fewer steps than records
/// (a bug) leaves the rest unacked, as given up: they come back after a restart.
fn steps_of<G>(
    steps: Vec<Step<G>>,
    batch: Vec<(Flow, Delivery)>,
) -> impl Iterator<Item = (Step<G>, (Flow, Delivery))> {
    debug_assert_eq!(steps.len(), batch.len(), "a step per record");
    let mut steps = steps.into_iter();
    batch.into_iter().map(move |item| (steps.next().unwrap_or(Step::Done(false)), item))
}

/// What a hop's loop keeps between steps: the scheduler, and the keys being handled with
/// the records waiting behind them (a randomly seeded fast hash: the keys are
/// destinations, which ESMEs choose).
struct Hop {
    scheduler: Scheduler<Delivery>,
    busy: std::collections::HashMap<
        bytes::Bytes,
        VecDeque<(Flow, Delivery)>,
        foldhash::fast::RandomState,
    >,
}

impl Hop {
    fn new(lanes: &Lanes, read_ahead: usize) -> Self {
        let scheduler = Scheduler::new(lanes.lanes, read_ahead, lanes.shares);
        Self { scheduler, busy: Default::default() }
    }

    /// A record came: ready now, or behind the one of its key in progress.
    fn received(&mut self, d: Delivery) {
        let flow = Flow::of(&d.record);
        self.scheduler.received(&flow.account);
        match self.busy.get_mut(&d.record.key) {
            Some(queue) => queue.push_back((flow, d)),
            None => {
                self.busy.insert(d.record.key.clone(), VecDeque::new());
                self.scheduler.ready(flow, d);
            }
        }
    }

    /// A record's work is over: acked if `durable`, and the next of its key is ready.
    fn finished(&mut self, consumer: &mut dyn Consumer, durable: bool, flow: Flow, d: Delivery) {
        self.scheduler.finished(&flow.account);
        if !durable {
            // Gave up at shutdown: nothing more is taken from this partition key.
            return;
        }
        if let Err(e) = consumer.ack(&d) {
            warn!(error = %smsc_runtime::telemetry::error_chain(&e), topic = %d.topic, "ack failed");
        }
        let key = d.record.key;
        match self.busy.get_mut(&key).and_then(VecDeque::pop_front) {
            Some((flow, next)) => self.scheduler.ready(flow, next),
            None => {
                self.busy.remove(&key);
            }
        }
    }

    /// At shutdown: the report withdrawn, and the work in progress given [`DRAIN`] to
    /// finish; what does not is simply not acked.
    async fn drain<B, A, G>(
        mut self,
        mut consumer: Box<dyn Consumer>,
        mut batches: futures::stream::FuturesUnordered<B>,
        mut alone: futures::stream::FuturesUnordered<A>,
        lanes: &Lanes,
    ) where
        B: Future<Output = (Vec<Step<G>>, Vec<(Flow, Delivery)>)>,
        A: Future<Output = (bool, Flow, Delivery)>,
        G: Future<Output = bool>,
    {
        use futures::stream::StreamExt;
        if let Some((pressure, hop)) = &lanes.pressure {
            pressure.report(hop, Vec::new());
        }
        let consumer = &mut *consumer;
        let _ = tokio::time::timeout(DRAIN, async {
            // Work a batch hands on after this point (not the loop's `alone`'s type).
            let mut rest = futures::stream::FuturesUnordered::new();
            loop {
                tokio::select! {
                    Some((steps, batch)) = batches.next() => {
                        for (step, (flow, d)) in steps_of(steps, batch) {
                            match step {
                                Step::Done(durable) => self.finished(consumer, durable, flow, d),
                                Step::Then(work) => rest.push(async move { (work.await, flow, d) }),
                            }
                        }
                    }
                    Some((durable, flow, d)) = alone.next() => self.finished(consumer, durable, flow, d),
                    Some((durable, flow, d)) = rest.next() => self.finished(consumer, durable, flow, d),
                    else => break,
                }
            }
        })
        .await;
    }
}

/// Joins consumer group `group`, trying again (with backoff, off the runtime's threads:
/// a join blocks until the group has rebalanced) until it works or `shutdown` fires.
/// A role must never give up consuming: a restarted member can find its group still
/// waiting for the killed one it replaces, and the broker can be down for a while.
pub async fn join(
    bus: &Arc<dyn Bus>,
    group: &str,
    topics: &[&str],
    max_in_flight: usize,
    shutdown: &CancellationToken,
    metrics: Option<&Arc<Metrics>>,
) -> Option<Box<dyn Consumer>> {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let group: Arc<str> = group.into();
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        let (bus, names, name) = (Arc::clone(bus), topics.clone(), group.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            bus.consumer(&name, &names, max_in_flight)
        });
        match joined.await {
            Ok(Ok(consumer)) => {
                if let (Some(probe), Some(metrics)) = (consumer.lag_probe(), metrics) {
                    tokio::spawn(report_lag(probe, metrics.clone(), group, shutdown.clone()));
                }
                return Some(consumer);
            }
            Ok(Err(e)) => {
                warn!(error = %smsc_runtime::telemetry::error_chain(&e), %group, "joining the consumer group failed; retrying")
            }
            Err(e) => warn!(error = %e, %group, "joining the consumer group panicked; retrying"),
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
    group: Arc<str>,
    shutdown: CancellationToken,
) {
    let mut seen: Vec<String> = Vec::new();
    loop {
        let lag = probe();
        for topic in &seen {
            if !lag.iter().any(|(t, _)| t == topic) {
                let _ = metrics.consumer_lag.remove_label_values(&[&*group, topic.as_str()]);
            }
        }
        for (topic, records) in &lag {
            let records = i64::try_from(*records).unwrap_or(i64::MAX);
            metrics.consumer_lag.with_label_values(&[&*group, topic.as_str()]).set(records);
        }
        seen = lag.into_iter().map(|(t, _)| t).collect();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(LAG_INTERVAL) => {}
        }
    }
    for topic in &seen {
        let _ = metrics.consumer_lag.remove_label_values(&[&*group, topic.as_str()]);
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
