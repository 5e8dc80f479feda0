//! The Bus contract, and what is Kafka's own, against real brokers, one test per broker per
//! property: Apache Kafka (`SMSC_TEST_KAFKA`, three KRaft brokers from `tests/engines`, topics
//! replicated 3 times with `min.insync.replicas` 2: the reference), and the two Kafka-protocol
//! re-implementations tansu (`SMSC_TEST_TANSU`) and noida-db (`SMSC_TEST_NOIDA`), kept because
//! they catch what Apache Kafka forgives (tansu's slow group joins and wrong high watermarks,
//! noida-db's snapshot restart) and start in milliseconds for `smsc cluster` on a laptop.
//! `tests/run` starts all three and sets the variables.
//!
//! A missing variable fails the test, so that CI cannot pass without the brokers; set
//! `SMSC_SKIP_KAFKA=1` to skip this tier on purpose (it says so, loudly).

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use smsc_bus::contract::{self as bus_contract, RealTime, unique};
use smsc_bus::kafka::{KafkaBus, KafkaBusConfig, PARENT_SPAN_HEADER};
use smsc_bus::{Bus, BusError, Consumer, Delivery, Record};
use tokio::time::timeout;

const KAFKA: &str = "SMSC_TEST_KAFKA";
const TANSU: &str = "SMSC_TEST_TANSU";
const NOIDA: &str = "SMSC_TEST_NOIDA";

fn config(brokers: String) -> KafkaBusConfig {
    // Replicated as in production where there are brokers enough (3 of 3 for Apache Kafka).
    let replicas = brokers.split(',').count().min(3);
    let mut config = KafkaBusConfig::new(brokers);
    config.client_id = "smsc-contract-kafka".to_owned();
    config.partitions = 4;
    config.replication_factor = u16::try_from(replicas).expect("at most 3");
    // tansu hands a new group its partitions after half of it (shared/INFRA.md).
    config.session_timeout = Duration::from_secs(6);
    config.message_timeout = Duration::from_secs(10);
    config.join_timeout = Duration::from_secs(20);
    config
}

/// The broker address in `env`, or `None` (printed) when the tier is skipped on purpose.
fn brokers(env: &str) -> Option<String> {
    match std::env::var(env) {
        Ok(brokers) if !brokers.is_empty() => Some(brokers),
        _ if std::env::var("SMSC_SKIP_KAFKA").as_deref() == Ok("1") => {
            eprintln!("\n*** SKIPPED: kafka tier ({env} unset and SMSC_SKIP_KAFKA=1) ***\n");
            None
        }
        _ => panic!(
            "{env} is not set: run the suite through tests/run, which starts the Kafka \
             brokers (tests/engines start kafka, tests/brokers start tansu|noida); \
             SMSC_SKIP_KAFKA=1 skips this tier"
        ),
    }
}

async fn bus_with(env: &str, adjust: impl FnOnce(&mut KafkaBusConfig)) -> Option<KafkaBus> {
    let mut config = config(brokers(env)?);
    adjust(&mut config);
    Some(KafkaBus::connect(config).await.expect("connect to the test broker"))
}

async fn bus(env: &str) -> Option<KafkaBus> {
    bus_with(env, |_| {}).await
}

/// What Kafka adds to the contract, each a function of the broker's variable.
mod kafka_specific {
    use super::*;

    /// A tiny local queue answers `Full` at once, never blocks, and takes records again
    /// once it has drained.
    pub(crate) async fn queue_full_is_backpressure(env: &str) {
        let Some(bus) = bus_with(env, |c| {
            c.extra.insert("queue.buffering.max.messages".to_owned(), "2".to_owned());
            // Hold the first records in the queue long enough to fill it.
            c.extra.insert("linger.ms".to_owned(), "500".to_owned());
        })
        .await
        else {
            return;
        };
        let topic = unique("kafka.full");
        bus.ensure_topics(std::slice::from_ref(&topic)).await.expect("create topic");
        let records: Vec<Record> = (0..10).map(|i| Record::new("k", format!("r{i}"))).collect();
        let started = Instant::now();
        let got = timeout(Duration::from_secs(2), bus.publish(&topic, records)).await;
        assert!(matches!(got, Ok(Err(BusError::Full))), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "Full must come at once");

        // What was queued goes out; then there is room again.
        bus.flush(Duration::from_secs(10)).expect("flush");
        bus.publish(&topic, vec![Record::new("k", "after")]).await.expect("room after drain");
    }

    /// A record 2 s ahead is handed out no earlier than due, and the record behind it in
    /// its partition waits behind it; another partition flows meanwhile.
    pub(crate) async fn delayed_record_holds_back_its_partition(env: &str) {
        let Some(bus) = bus(env).await else { return };
        let topic = unique("kafka.delay");
        let mut consumer = bus.consumer(&unique("g"), &[&topic], 16).expect("join");
        let not_before = SystemTime::now() + Duration::from_secs(2);
        let mut delayed = Record::new("same-key", "delayed");
        delayed.not_before = Some(not_before);
        let behind = Record::new("same-key", "behind");
        bus.publish(&topic, vec![delayed.clone(), behind.clone()]).await.expect("publish");

        let first = timeout(Duration::from_secs(15), consumer.recv()).await.expect("in time");
        let first = first.expect("recv");
        assert!(SystemTime::now() >= not_before, "handed out before not_before");
        assert_eq!(first.record, delayed, "the delayed record first, not_before intact");
        let second = timeout(Duration::from_secs(5), consumer.recv()).await.expect("in time");
        let second = second.expect("recv");
        assert_eq!(second.record, behind);
        assert_eq!(first.partition, second.partition);
        assert!(first.offset < second.offset);
        consumer.ack(&first).expect("ack");
        consumer.ack(&second).expect("ack");
    }

    /// Headers come back as published: order, repeated names, binary and empty values;
    /// `not_before` is not shown as a header; a span id is added only without
    /// `traceparent`.
    pub(crate) async fn headers_round_trip(env: &str) {
        let Some(bus) = bus(env).await else { return };
        let topic = unique("kafka.headers");
        let mut plain = Record::new("k", "plain");
        plain.headers = vec![
            ("traceparent".into(), Bytes::from_static(b"00-0af7651916cd43dd-b7ad6b71-01")),
            ("x-bin".into(), Bytes::from_static(&[0, 0xff, 0x80, 0])),
            ("x-rep".into(), Bytes::from_static(b"1")),
            ("x-rep".into(), Bytes::from_static(b"2")),
            ("x-empty".into(), Bytes::new()),
        ];
        plain.not_before = Some(SystemTime::now() - Duration::from_secs(1));
        bus.publish(&topic, vec![plain.clone()]).await.expect("publish");

        // Published inside a span, without traceparent: the span id rides along.
        let subscriber = tracing_subscriber::registry();
        let spanned = {
            let _default = tracing::subscriber::set_default(subscriber);
            let span = tracing::info_span!("submit");
            let _enter = span.enter();
            let id = span.id().expect("a span with a subscriber has an id").into_u64();
            let publish = bus.publish(&topic, vec![Record::new("k", "spanned")]);
            (publish, id)
        };
        let (publish, span_id) = spanned;
        publish.await.expect("publish");

        let mut consumer = bus.consumer(&unique("g"), &[&topic], 16).expect("join");
        let got = timeout(Duration::from_secs(15), consumer.recv()).await.expect("in time");
        let got = got.expect("recv");
        assert_eq!(got.record, plain, "headers and not_before unchanged");
        let got = timeout(Duration::from_secs(5), consumer.recv()).await.expect("in time");
        let got = got.expect("recv");
        assert_eq!(
            got.record.headers,
            vec![(PARENT_SPAN_HEADER.into(), Bytes::from(format!("{span_id:016x}")))]
        );
    }

    /// At-least-once when a member leaves, with a window that fits tansu's slow
    /// rebalance (see `tansu::unacked_records_are_redelivered_after_the_member_leaves`):
    /// every record the leaver held unacked reaches the remaining member.
    pub(crate) async fn held_records_come_back_after_the_owner_leaves(env: &str) {
        let Some(bus) = bus(env).await else { return };
        let topic = unique("kafka.leave");
        let group = unique("g");
        let mut a = bus.consumer(&group, &[&topic], 128).expect("join a");
        let mut b = bus.consumer(&group, &[&topic], 128).expect("join b");
        let records: Vec<Record> =
            (0..32).map(|i| Record::new(format!("key-{i}"), format!("key-{i}"))).collect();
        bus.publish(&topic, records).await.expect("publish");

        async fn drain(c: &mut dyn Consumer, ack: bool) -> Vec<Delivery> {
            let mut got = Vec::new();
            while let Ok(d) = timeout(Duration::from_secs(2), c.recv()).await {
                let d = d.expect("recv");
                if ack {
                    c.ack(&d).expect("ack");
                }
                got.push(d);
            }
            got
        }
        let (held, _) = tokio::join!(drain(&mut *a, false), drain(&mut *b, true));
        assert!(!held.is_empty(), "a got nothing to hold");
        let mut missing: BTreeSet<(u32, u64)> =
            held.iter().map(|d| (d.partition, d.offset)).collect();
        drop(a);

        let deadline = Instant::now() + Duration::from_secs(20);
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, b.recv()).await {
                Ok(d) => {
                    let d = d.expect("recv");
                    b.ack(&d).expect("ack");
                    missing.remove(&(d.partition, d.offset));
                }
                Err(_) => panic!("not redelivered within 20 s: {missing:?}"),
            }
        }
    }

    /// The consumer lag the roles export (`smsc_bus_consumer_lag_records`) comes from
    /// librdkafka's statistics: what the group has not committed on the partitions this
    /// member holds.
    pub(crate) async fn lag_probe_reports_what_is_not_committed(env: &str) {
        let Some(bus) = bus(env).await else { return };
        let topic = unique("kafka.lag");
        let mut c = bus.consumer(&unique("g"), &[&topic], 128).expect("join");
        let probe = c.lag_probe().expect("kafka consumers have one");
        // One key: one partition, in order.
        let records: Vec<Record> = (0..10).map(|i| Record::new("k", format!("r{i}"))).collect();
        bus.publish(&topic, records).await.expect("publish");
        for i in 0..10 {
            let d =
                timeout(Duration::from_secs(20), c.recv()).await.expect("a record").expect("recv");
            if i < 4 {
                c.ack(&d).expect("ack");
            }
        }
        // Commits every second, statistics every STATISTICS_INTERVAL: bounded polling.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = probe();
        while seen != [(topic.clone(), 6)] && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            seen = probe();
        }
        assert_eq!(seen, [(topic.clone(), 6)], "4 of 10 committed");
    }

    pub(crate) async fn ready_after_connect(env: &str) {
        let Some(bus) = bus(env).await else { return };
        assert!(bus.is_ready());
    }
}

/// No broker there: connect fails with `Unavailable`, within its bound.
#[tokio::test]
async fn connect_to_nothing_is_unavailable() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    // Bound and dropped: nothing listens there now.
    let started = Instant::now();
    let got = KafkaBus::connect(config(port.to_string())).await;
    assert!(matches!(got, Err(BusError::Unavailable { .. })), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Every property on one broker; `leave` adds attributes to the leave property's test.
macro_rules! per_broker {
    ($broker:ident, $env:expr, leave: [$(#[$leave_attr:meta])*]) => {
        mod $broker {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn publish_then_consume() {
                let Some(bus) = bus($env).await else { return };
                bus_contract::publish_then_consume(&bus).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn same_key_same_partition_in_order() {
                let Some(bus) = bus($env).await else { return };
                bus_contract::same_key_same_partition_in_order(&bus).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn group_members_split_partitions() {
                let Some(bus) = bus($env).await else { return };
                bus_contract::group_members_split_partitions(&bus).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$leave_attr])*
            async fn unacked_records_are_redelivered_after_the_member_leaves() {
                let Some(bus) = bus($env).await else { return };
                bus_contract::unacked_records_are_redelivered_after_the_member_leaves(&bus).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn commit_covers_only_the_contiguous_acked_prefix() {
                let Some(bus) = bus($env).await else { return };
                bus_contract::commit_covers_only_the_contiguous_acked_prefix(&bus).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn max_in_flight_bounds_recv() {
                let Some(bus) = bus($env).await else { return };
                bus_contract::max_in_flight_bounds_recv(&bus).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn not_before_holds_back_its_partition_until_due() {
                let Some(bus) = bus($env).await else { return };
                bus_contract::not_before_holds_back_its_partition_until_due(&bus, &RealTime).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn queue_full_is_backpressure() {
                kafka_specific::queue_full_is_backpressure($env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delayed_record_holds_back_its_partition() {
                kafka_specific::delayed_record_holds_back_its_partition($env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn headers_round_trip() {
                kafka_specific::headers_round_trip($env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn held_records_come_back_after_the_owner_leaves() {
                kafka_specific::held_records_come_back_after_the_owner_leaves($env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lag_probe_reports_what_is_not_committed() {
                kafka_specific::lag_probe_reports_what_is_not_committed($env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ready_after_connect() {
                kafka_specific::ready_after_connect($env).await;
            }
        }
    };
}

per_broker!(apache_kafka, KAFKA, leave: []);
per_broker!(tansu, TANSU, leave: []);
per_broker!(noida, NOIDA, leave: []);

/// With `create_topics` off, a missing topic is an error that names it and nothing is
/// created; once the topic exists (made by someone with the right), the same bus uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_topics_a_missing_topic_is_named_and_not_created() {
    let Some(creator) = bus(KAFKA).await else { return };
    let topic = unique("no-create");
    let Some(reader) = bus_with(KAFKA, |c| {
        c.create_topics = false;
        c.topics = Vec::new();
    })
    .await
    else {
        return;
    };
    let record = || Record::new(Bytes::from_static(b"k"), Bytes::from_static(b"v"));
    let got = reader.publish(&topic, vec![record()]).await;
    match &got {
        Err(e @ BusError::Unavailable { .. }) => {
            assert!(e.to_string().contains(&topic), "{e}");
        }
        other => panic!("publish to a missing topic with create_topics off: {other:?}"),
    }
    assert!(reader.consumer("g", &[&topic], 8).is_err(), "a consumer of a missing topic");
    // Not created behind our back: the creator's own check still finds it missing.
    let mut check = config(brokers(KAFKA).expect("set above"));
    check.create_topics = false;
    check.topics = vec![topic.clone()];
    assert!(KafkaBus::connect(check).await.is_err(), "{topic} was created");

    creator.ensure_topics(std::slice::from_ref(&topic)).await.expect("created");
    // CreateTopics answers before every broker has the topic in its metadata: the reader
    // finds it once the broker it asks does.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reader.publish(&topic, vec![record()]).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline && e.to_string().contains("does not exist") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish once {topic} exists: {e}"),
        }
    }
}
