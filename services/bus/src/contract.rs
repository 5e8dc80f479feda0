//! The [`Bus`] contract: one `pub async fn` per property, written once and run against
//! every implementation. Each panics with a message on a violation, like `assert!`.
//!
//! Compiled with the `contract-tests` feature. A test of another implementation calls
//! them with the bus and a [`TimeControl`] ([`RealTime`] when the clock cannot be
//! injected):
//!
//! ```ignore
//! // Cargo.toml: smsc-bus = { path = "...", features = ["contract-tests"] }
//! #[tokio::test]
//! async fn kafka_keeps_the_bus_contract() {
//!     let bus = KafkaBus::connect(cfg).await?;
//!     smsc_bus::contract::run_all(&bus, &RealTime).await;
//! }
//! ```
//!
//! What a Kafka implementation needs for these to hold: topics created on first use with
//! at least 2 partitions; a new group starts at the earliest offset
//! (`auto.offset.reset=earliest`); `consumer` returns once the member has joined;
//! dropping a consumer commits its acked prefix before it leaves the group; `recv` is
//! cancel-safe (a `recv` dropped while waiting loses nothing).
//!
//! Every property uses fresh random topic and group names, so a shared broker is fine.
//!
//! Exact commit semantics checked by [`commit_covers_only_the_contiguous_acked_prefix`]:
//! a partition's committed offset is the first offset not acked; when its owner leaves,
//! the next owner resumes there. Records acked *after* a gap are handed out again with
//! the gap (Kafka keeps one offset per partition, not a set of acks).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use super::{Bus, Consumer, Delivery, Record};
pub use smsc_runtime::testing::{ManualTime, RealTime, TimeControl, unique};

/// How long a record that must come may take (a group join on a real broker).
const ARRIVES_WITHIN: Duration = Duration::from_secs(10);
/// How long nothing must come to conclude that nothing will.
const QUIET: Duration = Duration::from_secs(2);

/// The next delivery, which must come.
async fn next(consumer: &mut dyn Consumer, what: &str) -> Delivery {
    match timeout(ARRIVES_WITHIN, consumer.recv()).await {
        Ok(Ok(delivery)) => delivery,
        Ok(Err(e)) => panic!("{what}: recv failed: {e}"),
        Err(_) => panic!("{what}: nothing within {ARRIVES_WITHIN:?}"),
    }
}

/// Asserts that nothing is handed out for [`QUIET`].
async fn assert_quiet(consumer: &mut dyn Consumer, what: &str) {
    if let Ok(got) = timeout(QUIET, consumer.recv()).await {
        panic!("{what}: expected nothing, got {got:?}");
    }
}

/// Everything handed out until the consumer has been quiet for [`QUIET`], acking each
/// delivery if `ack`.
async fn drain(consumer: &mut dyn Consumer, ack: bool) -> Vec<Delivery> {
    let mut got = Vec::new();
    while let Ok(delivery) = timeout(QUIET, consumer.recv()).await {
        let delivery = delivery.expect("recv");
        if ack {
            consumer.ack(&delivery).expect("ack");
        }
        got.push(delivery);
    }
    got
}

fn payloads(deliveries: &[Delivery]) -> Vec<Bytes> {
    deliveries.iter().map(|d| d.record.payload.clone()).collect()
}

/// One record per key `key-0..n`, payload = key.
fn distinct_keys(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record::new(format!("key-{i}"), format!("key-{i}"))).collect()
}

/// Runs every property, in the order below.
pub async fn run_all(bus: &dyn Bus, time: &dyn TimeControl) {
    publish_then_consume(bus).await;
    same_key_same_partition_in_order(bus).await;
    group_members_split_partitions(bus).await;
    unacked_records_are_redelivered_after_the_member_leaves(bus).await;
    commit_covers_only_the_contiguous_acked_prefix(bus).await;
    max_in_flight_bounds_recv(bus).await;
    not_before_holds_back_its_partition_until_due(bus, time).await;
}

/// What is published is consumed unchanged (key, payload, headers), even by a group
/// that joins after the publish, and only once when acked.
pub async fn publish_then_consume(bus: &dyn Bus) {
    assert!(bus.is_ready(), "a fresh bus is ready");
    let topic = unique("contract.roundtrip");
    let mut records = distinct_keys(3);
    records[0].headers.push(("traceparent".into(), Bytes::from_static(b"00-abc-def-01")));
    records[1].payload = Bytes::from_static(&[0, 0xff, 0x80]);
    bus.publish(&topic, records.clone()).await.expect("publish");

    let mut consumer = bus.consumer(&unique("g"), &[&topic], 16).expect("join");
    let mut got = Vec::new();
    for _ in 0..records.len() {
        let delivery = next(&mut *consumer, "published record").await;
        assert_eq!(&*delivery.topic, topic);
        consumer.ack(&delivery).expect("ack");
        got.push(delivery.record);
    }
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(got, records, "records come back unchanged");
    assert_quiet(&mut *consumer, "after every record was acked").await;
}

/// Records with the same key share a partition and come in publish order, across
/// batches.
pub async fn same_key_same_partition_in_order(bus: &dyn Bus) {
    let topic = unique("contract.order");
    let keys = ["alpha", "bravo", "charlie", "delta"];
    let batch = |round: usize| -> Vec<Record> {
        (0..5)
            .flat_map(|i| {
                keys.iter().map(move |k| Record::new(*k, format!("{:02}", round * 5 + i)))
            })
            .collect()
    };
    bus.publish(&topic, batch(0)).await.expect("publish");
    bus.publish(&topic, batch(1)).await.expect("publish");

    let mut consumer = bus.consumer(&unique("g"), &[&topic], 64).expect("join");
    let mut by_key: BTreeMap<Bytes, Vec<Delivery>> = BTreeMap::new();
    for _ in 0..keys.len() * 10 {
        let delivery = next(&mut *consumer, "ordered record").await;
        consumer.ack(&delivery).expect("ack");
        by_key.entry(delivery.record.key.clone()).or_default().push(delivery);
    }
    assert_eq!(by_key.len(), keys.len());
    let expected: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("{i:02}"))).collect();
    for (key, deliveries) in &by_key {
        let partitions: BTreeSet<u32> = deliveries.iter().map(|d| d.partition).collect();
        assert_eq!(partitions.len(), 1, "key {key:?} spans partitions {partitions:?}");
        assert_eq!(payloads(deliveries), expected, "key {key:?} out of order");
        assert!(deliveries.windows(2).all(|w| w[0].offset < w[1].offset), "offsets rise");
    }
}

/// Two members of a group split the partitions: each record goes to exactly one of
/// them, and no partition feeds both.
pub async fn group_members_split_partitions(bus: &dyn Bus) {
    let topic = unique("contract.split");
    let group = unique("g");
    let mut a = bus.consumer(&group, &[&topic], 128).expect("join a");
    let mut b = bus.consumer(&group, &[&topic], 128).expect("join b");
    let records = distinct_keys(64);
    bus.publish(&topic, records.clone()).await.expect("publish");

    let (on_a, on_b) = tokio::join!(drain(&mut *a, true), drain(&mut *b, true));
    assert!(!on_a.is_empty() && !on_b.is_empty(), "a: {}, b: {}", on_a.len(), on_b.len());
    let mut all = payloads(&on_a);
    all.extend(payloads(&on_b));
    all.sort();
    let mut expected: Vec<Bytes> = records.into_iter().map(|r| r.payload).collect();
    expected.sort();
    assert_eq!(all, expected, "every record exactly once across the group");
    let parts = |d: &[Delivery]| d.iter().map(|d| d.partition).collect::<BTreeSet<u32>>();
    let shared: Vec<u32> = parts(&on_a).intersection(&parts(&on_b)).copied().collect();
    assert!(shared.is_empty(), "partitions {shared:?} fed both members");
}

/// Records a member held without acking go to the member that takes its partitions
/// over when it leaves (at-least-once).
pub async fn unacked_records_are_redelivered_after_the_member_leaves(bus: &dyn Bus) {
    let topic = unique("contract.leave");
    let group = unique("g");
    let mut a = bus.consumer(&group, &[&topic], 128).expect("join a");
    let mut b = bus.consumer(&group, &[&topic], 128).expect("join b");
    bus.publish(&topic, distinct_keys(32)).await.expect("publish");

    let (held_by_a, _) = tokio::join!(drain(&mut *a, false), drain(&mut *b, true));
    assert!(!held_by_a.is_empty(), "a got nothing to hold");
    drop(a);

    // Wait for the redelivery itself, not for a fixed quiet spell: how soon a broker
    // hands over a departed member's partitions varies (tansu takes 4-5 s).
    let mut missing: BTreeSet<(u32, u64, Bytes)> =
        held_by_a.iter().map(|d| (d.partition, d.offset, d.record.payload.clone())).collect();
    let deadline = tokio::time::Instant::now() + ARRIVES_WITHIN;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(got) = timeout(left, b.recv()).await else {
            panic!("held by a, not redelivered to b within {ARRIVES_WITHIN:?}: {missing:?}");
        };
        let d = got.expect("recv");
        b.ack(&d).expect("ack");
        missing.remove(&(d.partition, d.offset, d.record.payload.clone()));
    }
}

/// A partition's committed offset advances only over the contiguous acked prefix. With
/// records r0..r4 in one partition:
/// - a acks r0 and r2 and leaves: b gets r1, r2, r3, r4 (r2 again: it is past the gap);
/// - b acks r2, r4, then r1 and leaves: c gets r3, r4 (r1 filled the gap up to r2);
/// - c acks r4, then r3 and leaves: d gets nothing.
pub async fn commit_covers_only_the_contiguous_acked_prefix(bus: &dyn Bus) {
    let topic = unique("contract.commit");
    let group = unique("g");
    let records: Vec<Record> = (0..5).map(|i| Record::new("one-key", format!("r{i}"))).collect();
    bus.publish(&topic, records).await.expect("publish");
    let r = |i: usize| Bytes::from(format!("r{i}"));

    async fn take(consumer: &mut dyn Consumer, n: usize, who: &str) -> Vec<Delivery> {
        let mut got = Vec::new();
        for _ in 0..n {
            got.push(next(consumer, who).await);
        }
        got
    }

    let mut a = bus.consumer(&group, &[&topic], 8).expect("join a");
    let got = take(&mut *a, 5, "a").await;
    assert_eq!(payloads(&got), (0..5).map(r).collect::<Vec<_>>(), "a gets r0..r4 in order");
    a.ack(&got[0]).expect("ack");
    a.ack(&got[2]).expect("ack");
    drop(a);

    let mut b = bus.consumer(&group, &[&topic], 8).expect("join b");
    let got = take(&mut *b, 4, "b").await;
    assert_eq!(payloads(&got), (1..5).map(r).collect::<Vec<_>>(), "b resumes at the gap, r1");
    assert_quiet(&mut *b, "b, after r4").await;
    for i in [1, 3, 0] {
        b.ack(&got[i]).expect("ack");
    }
    drop(b);

    let mut c = bus.consumer(&group, &[&topic], 8).expect("join c");
    let got = take(&mut *c, 2, "c").await;
    assert_eq!(payloads(&got), vec![r(3), r(4)], "c resumes after the filled gap, at r3");
    assert_quiet(&mut *c, "c, after r4").await;
    c.ack(&got[1]).expect("ack");
    c.ack(&got[0]).expect("ack");
    drop(c);

    let mut d = bus.consumer(&group, &[&topic], 8).expect("join d");
    assert_quiet(&mut *d, "d, everything committed").await;
}

/// `recv` holds back the (n+1)th record while n = `max_in_flight` are unacked, and
/// hands it out once one is acked.
pub async fn max_in_flight_bounds_recv(bus: &dyn Bus) {
    let topic = unique("contract.inflight");
    let records: Vec<Record> = (0..3).map(|i| Record::new("one-key", format!("r{i}"))).collect();
    bus.publish(&topic, records).await.expect("publish");

    let mut consumer = bus.consumer(&unique("g"), &[&topic], 2).expect("join");
    let first = next(&mut *consumer, "1st").await;
    let second = next(&mut *consumer, "2nd").await;
    assert_eq!(
        payloads(&[first.clone(), second.clone()]),
        vec![Bytes::from("r0"), Bytes::from("r1")]
    );
    assert_quiet(&mut *consumer, "3rd with 2 in flight").await;
    consumer.ack(&first).expect("ack");
    let third = next(&mut *consumer, "3rd after an ack").await;
    assert_eq!(third.record.payload, Bytes::from("r2"));
    consumer.ack(&second).expect("ack");
    consumer.ack(&third).expect("ack");
    assert_quiet(&mut *consumer, "after everything").await;
}

/// A record whose `not_before` is ahead is not handed out, nor are the records behind it
/// in its partition, while other partitions flow; once due, it comes, then the rest.
pub async fn not_before_holds_back_its_partition_until_due(bus: &dyn Bus, time: &dyn TimeControl) {
    const HOLD: Duration = Duration::from_secs(5);
    let topic = unique("contract.delay");
    let mut consumer = bus.consumer(&unique("g"), &[&topic], 64).expect("join");

    // Learn two keys in different partitions from probe records.
    bus.publish(&topic, distinct_keys(16)).await.expect("publish probes");
    let mut partition_of: BTreeMap<Bytes, u32> = BTreeMap::new();
    for _ in 0..16 {
        let probe = next(&mut *consumer, "probe").await;
        consumer.ack(&probe).expect("ack");
        partition_of.insert(probe.record.key, probe.partition);
    }
    let (held_key, held_partition) = partition_of.pop_first().expect("16 probes");
    let free_key = partition_of
        .into_iter()
        .find_map(|(key, p)| (p != held_partition).then_some(key))
        .expect("16 distinct keys over at least 2 partitions");

    let not_before = time.now() + HOLD;
    let mut delayed = Record::new(held_key.clone(), "delayed");
    delayed.not_before = Some(not_before);
    let behind = Record::new(held_key, "behind");
    let free = Record::new(free_key, "free");
    bus.publish(&topic, vec![delayed.clone(), behind.clone(), free.clone()])
        .await
        .expect("publish");

    let got = next(&mut *consumer, "record of another partition").await;
    assert_eq!(got.record, free, "only the other partition flows");
    consumer.ack(&got).expect("ack");
    assert_quiet(&mut *consumer, "before not_before").await;

    time.advance(HOLD).await;
    let got = next(&mut *consumer, "the delayed record once due").await;
    assert!(time.now() >= not_before, "handed out before not_before");
    assert_eq!(got.record, delayed, "the delayed record first");
    consumer.ack(&got).expect("ack");
    let got = next(&mut *consumer, "the record behind it").await;
    assert_eq!(got.record, behind);
    consumer.ack(&got).expect("ack");
}
