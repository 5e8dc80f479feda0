//! Pieces the pipeline roles (router, delivery worker) share: consuming a topic with
//! several records in progress while keeping per-key order, and the link to edges.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use smsc_proto::{DeliverRequest, DeliverResponse};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::bus::{BusError, Consumer, Delivery};

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
                    warn!(error = %e, topic = %d.topic, "ack failed");
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
                    warn!(error = %e, "consume failed; retrying");
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
    bus: &Arc<dyn crate::bus::Bus>,
    group: &'static str,
    topics: &[&str],
    max_in_flight: usize,
    shutdown: &CancellationToken,
    metrics: Option<&Arc<crate::telemetry::Metrics>>,
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
            Ok(Err(e)) => warn!(error = %e, group, "joining the consumer group failed; retrying"),
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
    probe: crate::bus::LagProbe,
    metrics: Arc<crate::telemetry::Metrics>,
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

/// Pushes a deliver_sm to an edge: gRPC `Edge.Deliver` in a cluster, a direct call when
/// the edge runs in the same process (`smsc all`).
pub trait EdgeLink: Send + Sync + std::fmt::Debug + 'static {
    fn deliver(
        &self,
        endpoint: &str,
        request: DeliverRequest,
    ) -> BoxFuture<'_, Result<DeliverResponse, tonic::Status>>;
}

/// The deadline of one `Edge.Deliver` call: the edge's wait for queue room
/// (`edge.deliver_queue_wait`) plus its wait for the deliver_sm_resp
/// (`edge.response_timeout`) must fit in it, which config validation checks.
pub const EDGE_DELIVER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// `Edge.Deliver` over gRPC, one lazily connected channel per endpoint.
#[derive(Debug, Default)]
pub struct GrpcEdgeLink {
    /// Mutual TLS to the edges (`grpc_tls`); `None`: plaintext.
    tls: Option<tonic::transport::ClientTlsConfig>,
    clients: std::sync::Mutex<
        std::collections::HashMap<
            String,
            smsc_proto::edge_client::EdgeClient<tonic::transport::Channel>,
        >,
    >,
}

impl GrpcEdgeLink {
    pub fn new(tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        Self { tls, clients: std::sync::Mutex::default() }
    }

    fn client(
        &self,
        endpoint: &str,
    ) -> Result<smsc_proto::edge_client::EdgeClient<tonic::transport::Channel>, tonic::Status> {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(endpoint) {
            return Ok(c.clone());
        }
        let channel = crate::grpc_tls::endpoint(endpoint, self.tls.as_ref())
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(EDGE_DELIVER_DEADLINE)
            .connect_lazy();
        let c = smsc_proto::edge_client::EdgeClient::new(channel);
        m.insert(endpoint.to_owned(), c.clone());
        Ok(c)
    }
}

impl EdgeLink for GrpcEdgeLink {
    fn deliver(
        &self,
        endpoint: &str,
        request: DeliverRequest,
    ) -> BoxFuture<'_, Result<DeliverResponse, tonic::Status>> {
        let client = self.client(endpoint);
        Box::pin(async move { Ok(client?.deliver(request).await?.into_inner()) })
    }
}

/// Shared handle.
pub type DynEdgeLink = Arc<dyn EdgeLink>;

/// The retry tiers: topics `smsc.retry.<name>` with equal delays inside each, so that
/// a tier is a FIFO in due order.
#[derive(Debug, Clone)]
pub struct Tiers {
    tiers: Vec<(std::time::Duration, String)>,
}

impl Tiers {
    pub fn new(delays: &[std::time::Duration]) -> Self {
        let mut tiers: Vec<_> = delays
            .iter()
            .map(|d| (*d, crate::bus::topics::retry(&crate::config::RetryConfig::tier_name(*d))))
            .collect();
        if tiers.is_empty() {
            let d = std::time::Duration::from_secs(10);
            tiers.push((d, crate::bus::topics::retry("10s")));
        }
        Self { tiers }
    }

    /// Every tier topic (the worker consumes them all).
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.tiers.iter().map(|(_, t)| t.clone()).collect();
        t.dedup();
        t
    }

    /// The tier after `attempts` failed attempts (1 = the first retry).
    pub fn for_attempt(&self, attempts: u32) -> (std::time::Duration, &str) {
        let i = (attempts.max(1) as usize - 1).min(self.tiers.len() - 1);
        (self.tiers[i].0, &self.tiers[i].1)
    }

    /// The longest tier not longer than `wait` (the shortest if all are), for a message
    /// scheduled `wait` ahead: it hops tiers until due, and never blocks a tier's FIFO
    /// with a record due later than the ones behind it.
    pub fn for_wait(&self, wait: std::time::Duration) -> (std::time::Duration, &str) {
        let best = self.tiers.iter().filter(|(d, _)| *d <= wait).max_by_key(|(d, _)| *d);
        let (d, t) = best.unwrap_or(&self.tiers[0]);
        (*d, t)
    }
}

/// Publishes until the bus takes it or `shutdown` fires (then `false`): the work that
/// produced these records is acked only after they are durable.
pub async fn publish_until_ok(
    bus: &dyn crate::bus::Bus,
    topic: &str,
    records: Vec<crate::bus::Record>,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = std::time::Duration::from_millis(20);
    loop {
        match bus.publish(topic, records.clone()).await {
            Ok(()) => return true,
            Err(e) => {
                warn!(error = %e, topic, "publish failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}

/// Retries a store operation until it succeeds or `shutdown` fires (then `None`).
pub async fn store_until_ok<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::store::StoreResult<T>>,
{
    let mut backoff = std::time::Duration::from_millis(20);
    loop {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) => {
                warn!(error = %e, what, "store operation failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}

/// An SMPP address from a stored or event address; an address too long for SMPP 3.4
/// (over 20 characters) is cut rather than refused, since it came from our own network.
pub fn smpp_address(ton: u32, npi: u32, addr: &str) -> smsc_smpp::Address<21> {
    let bytes = addr.as_bytes();
    let cut = &bytes[..bytes.len().min(20)];
    smsc_smpp::Address {
        ton: smsc_smpp::Ton(ton as u8),
        npi: smsc_smpp::Npi(npi as u8),
        addr: smsc_smpp::COctetString::new(cut).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tiers() {
        let t = Tiers::new(&[
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(300),
        ]);
        assert_eq!(t.for_attempt(1), (Duration::from_secs(10), "smsc.retry.10s"));
        assert_eq!(t.for_attempt(2), (Duration::from_secs(60), "smsc.retry.1m"));
        assert_eq!(t.for_attempt(9), (Duration::from_secs(300), "smsc.retry.5m"));
        assert_eq!(t.for_wait(Duration::from_secs(90)).1, "smsc.retry.1m");
        assert_eq!(t.for_wait(Duration::from_secs(3)).1, "smsc.retry.10s");
        assert_eq!(t.topics().len(), 3);
    }
}
