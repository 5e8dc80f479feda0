//! Apache Kafka losing brokers, the guarantee the SMSC rests on: a `submit_sm_resp` goes out
//! only after the record is acknowledged by every in-sync replica (`acks=all`, topics
//! replicated 3 times, `min.insync.replicas` 2), so a broker SIGKILLed mid-publish loses no
//! acknowledged record, and the idempotent producer's retries write none twice.
//!
//! Three brokers of the test's own (`tests/engines` in a private run directory), so that
//! killing them never reaches the brokers the other suites share. `SMSC_SKIP_KAFKA=1` skips.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use smsc_bus::contract::unique;
use smsc_bus::kafka::{KafkaBus, KafkaBusConfig};
use smsc_bus::{Bus, Consumer, Record};
use smsc_test_support::engines::Engines;
use tokio::sync::Mutex;
use tokio::task::block_in_place;
use tokio::time::timeout;

/// Records per publish call; two publishers run at once.
const BATCH: u64 = 50;
/// How long one phase may take to make its progress (a liveness bound, not a speed check).
const PHASE: Duration = Duration::from_secs(90);

#[derive(Default)]
struct Published {
    acked: BTreeSet<u64>,
    failed: BTreeSet<u64>,
}

fn config(brokers: &str) -> KafkaBusConfig {
    let mut config = KafkaBusConfig::new(brokers.to_owned());
    config.client_id = "smsc-kafka-failover".to_owned();
    config.partitions = 4;
    config.replication_factor = 3;
    config.session_timeout = Duration::from_secs(6);
    // Long enough to ride out a leader election: a publish waits rather than fails.
    config.message_timeout = Duration::from_secs(30);
    config.join_timeout = Duration::from_secs(60);
    config
}

/// Publishes batches of sequence numbers until `stop`, recording which were acknowledged.
async fn publish_until(
    bus: KafkaBus,
    topic: String,
    first: u64,
    stride: u64,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Published>>,
) {
    let mut next = first;
    while !stop.load(Ordering::Relaxed) {
        let seqs: Vec<u64> = (0..BATCH).map(|i| next + i * stride).collect();
        next += BATCH * stride;
        let records = seqs.iter().map(|s| Record::new(format!("k{}", s % 16), s.to_string()));
        let result = bus.publish(&topic, records.collect()).await;
        let mut out = out.lock().await;
        match result {
            Ok(()) => out.acked.extend(seqs),
            Err(_) => out.failed.extend(seqs),
        }
    }
}

/// Waits until `at_least` more records than now are acknowledged.
async fn progress(out: &Mutex<Published>, at_least: usize, what: &str) {
    let target = out.lock().await.acked.len() + at_least;
    let deadline = Instant::now() + PHASE;
    while out.lock().await.acked.len() < target {
        assert!(Instant::now() < deadline, "publishing stalled {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Receives and acks until `enough` says so or nothing comes for 5 s; returns the payloads.
async fn consume(consumer: &mut dyn Consumer, enough: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let mut got = Vec::new();
    let deadline = Instant::now() + PHASE;
    while !enough(&got) && Instant::now() < deadline {
        let Ok(delivery) = timeout(Duration::from_secs(5), consumer.recv()).await else { break };
        let delivery = delivery.expect("recv");
        let seq =
            std::str::from_utf8(&delivery.record.payload).expect("utf-8").parse().expect("seq");
        consumer.ack(&delivery).expect("ack");
        got.push(seq);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_brokers_lose_no_acknowledged_record_and_repeat_none() {
    if std::env::var("SMSC_SKIP_KAFKA").as_deref() == Ok("1") {
        eprintln!("\n*** SKIPPED: kafka failover (SMSC_SKIP_KAFKA=1) ***\n");
        return;
    }
    let engines = Engines::new().expect("run dir");
    let brokers = block_in_place(|| engines.start_kafka(3));
    let bus = KafkaBus::connect(config(&brokers)).await.expect("connect");
    let topic = unique("failover");
    bus.ensure_topics(std::slice::from_ref(&topic)).await.expect("create topic");

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(Mutex::new(Published::default()));
    let publishers: Vec<_> = (0..2)
        .map(|i| {
            let run =
                publish_until(bus.clone(), topic.clone(), i, 2, stop.clone(), published.clone());
            tokio::spawn(run)
        })
        .collect();

    progress(&published, 2_000, "before any fault").await;
    // Broker 1 first: it may be the active KRaft controller too.
    for broker in [1, 2] {
        block_in_place(|| engines.kill_broker(broker));
        progress(&published, 2_000, &format!("with broker {broker} down")).await;
        block_in_place(|| engines.revive_broker(broker));
        progress(&published, 1_000, &format!("after broker {broker} came back")).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.await.expect("publisher");
    }
    let published = Arc::try_unwrap(published).ok().expect("publishers done").into_inner();
    let total = published.acked.len();

    // A first member takes half and commits it as it leaves.
    let group = unique("g");
    let mut first = block_in_place(|| bus.consumer(&group, &[&topic], 256)).expect("join");
    let taken = consume(&mut *first, |got| got.len() >= total / 2).await;
    block_in_place(|| drop(first));

    // The next member, joining with a broker down, resumes from the committed offsets.
    block_in_place(|| engines.kill_broker(3));
    let mut second = block_in_place(|| bus.consumer(&group, &[&topic], 256)).expect("join");
    let rest = consume(&mut *second, |_| false).await;
    block_in_place(|| drop(second));

    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for seq in taken.iter().chain(&rest) {
        *seen.entry(*seq).or_default() += 1;
    }
    eprintln!(
        "kafka failover: {total} acknowledged, {} failed publishes, {} read before and {} after \
         the member change",
        published.failed.len(),
        taken.len(),
        rest.len()
    );
    let lost: Vec<u64> =
        published.acked.iter().filter(|s| !seen.contains_key(s)).copied().collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let twice: Vec<(u64, usize)> =
        seen.iter().filter(|(_, n)| **n > 1).map(|(s, n)| (*s, *n)).collect();
    assert!(
        twice.is_empty(),
        "records read twice (a duplicate write, or a redelivery past a committed offset): {twice:?}"
    );
    let unknown: Vec<u64> = seen
        .keys()
        .filter(|s| !published.acked.contains(s) && !published.failed.contains(s))
        .copied()
        .collect();
    assert!(unknown.is_empty(), "records nobody published: {unknown:?}");
}
