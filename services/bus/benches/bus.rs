//! Figures for the Kafka bus against a local broker, and for the embedded store.
//!
//! ```text
//! export $(tests/brokers start tansu)      # KAFKA_BROKERS=127.0.0.1:PORT
//! cargo bench -p smsc-bus --bench bus --features kafka
//! tests/brokers stop
//! ```
//!
//! The broker is `SMSC_TEST_TANSU`, else `KAFKA_BROKERS`; without either only the store
//! is measured. `BENCH_RECORDS` (default 100000) sets the publish volume.
//!
//! - publish: acked `publish` of 100-byte records in batches of 256, with 1 and with 16
//!   batches outstanding (the edge has one outstanding batch per session at most, many
//!   sessions at once);
//! - latency: one record at a time, from `publish` to the consumer's `recv` (includes
//!   `linger.ms` = 5 and the broker's fetch wait);
//! - store: sequential `insert_message`, `transition`, `get_message` on the embedded
//!   store.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use smsc_bus::kafka::{KafkaBus, KafkaBusConfig};
use smsc_bus::{Bus, Record};
use smsc_store::DeliveryState;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{Address, Store, StoredMessage, Update};

const BATCH: usize = 256;
const RECORD_BYTES: usize = 100;
const LATENCY_SAMPLES: usize = 1000;
const STORE_OPS: usize = 100_000;

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows: Vec<(String, String)> = Vec::new();
    runtime.block_on(async {
        let brokers = ["SMSC_TEST_TANSU", "KAFKA_BROKERS"]
            .into_iter()
            .find_map(|var| std::env::var(var).ok().filter(|b| !b.is_empty()));
        match brokers {
            Some(brokers) => kafka(&brokers, &mut rows).await,
            None => eprintln!("SKIPPED kafka figures: set SMSC_TEST_TANSU or KAFKA_BROKERS"),
        }
        store(&mut rows).await;
    });
    let width = rows.iter().map(|(what, _)| what.len()).max().unwrap_or(0);
    println!("\n{:width$}  figure", "what");
    println!("{:-<width$}  {:-<24}", "", "");
    for (what, figure) in rows {
        println!("{what:width$}  {figure}");
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    format!("{prefix}-{:x}", nanos.as_nanos())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn kafka(brokers: &str, rows: &mut Vec<(String, String)>) {
    let records: usize =
        std::env::var("BENCH_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut config = KafkaBusConfig::new(brokers);
    config.client_id = "smsc-bench".to_owned();
    config.replication_factor = 1;
    config.session_timeout = Duration::from_secs(6);
    let bus = KafkaBus::connect(config).await.expect("connect");
    let payload = Bytes::from(vec![b'x'; RECORD_BYTES]);
    let batch = |b: usize| -> Vec<Record> {
        (0..BATCH)
            .map(|i| {
                Record::new(format!("4479460{:05}", (b * BATCH + i) % 10_000), payload.clone())
            })
            .collect()
    };

    for outstanding in [1usize, 16] {
        let topic = unique("bench.publish");
        bus.ensure_topics(std::slice::from_ref(&topic)).await.expect("topic");
        bus.publish(&topic, batch(0)).await.expect("warm-up");
        let batches = records.div_ceil(BATCH);
        let started = Instant::now();
        let mut results = futures::stream::iter(0..batches)
            .map(|b| bus.publish(&topic, batch(b)))
            .buffer_unordered(outstanding);
        while let Some(result) = results.next().await {
            result.expect("publish");
        }
        let elapsed = started.elapsed();
        let rate = (batches * BATCH) as f64 / elapsed.as_secs_f64();
        rows.push((
            format!("kafka publish acked, {BATCH}x{RECORD_BYTES} B, {outstanding} outstanding"),
            format!("{rate:>9.0} msg/s ({} in {elapsed:.2?})", batches * BATCH),
        ));
    }

    let topic = unique("bench.latency");
    let mut consumer = bus.consumer(&unique("bench"), &[&topic], 16).expect("join");
    let mut end_to_end = Vec::with_capacity(LATENCY_SAMPLES);
    let mut acked = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES + 10 {
        let body = Bytes::from(format!("{i:0>width$}", width = RECORD_BYTES));
        let started = Instant::now();
        bus.publish(&topic, vec![Record::new("447946000001", body.clone())])
            .await
            .expect("publish");
        let ack = started.elapsed();
        loop {
            let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("record within 30 s")
                .expect("recv");
            consumer.ack(&delivery).expect("ack");
            if delivery.record.payload == body {
                break;
            }
        }
        if i >= 10 {
            // The first few include the fetch start.
            end_to_end.push(started.elapsed());
            acked.push(ack);
        }
    }
    drop(consumer);
    end_to_end.sort();
    acked.sort();
    rows.push((
        "kafka publish -> acked, 1 record".to_owned(),
        format!("p50 {}  p99 {}", ms(percentile(&acked, 0.5)), ms(percentile(&acked, 0.99))),
    ));
    rows.push((
        "kafka publish -> recv, 1 record".to_owned(),
        format!(
            "p50 {}  p99 {}",
            ms(percentile(&end_to_end, 0.5)),
            ms(percentile(&end_to_end, 0.99))
        ),
    ));
}

fn message(i: usize, now_ms: i64) -> StoredMessage {
    StoredMessage {
        message_id: format!("{i:016x}"),
        dest_index: 0,
        system_id: "bench".to_owned(),
        source: Address::new(smsc_smpp::Ton(5), smsc_smpp::Npi(0), "SHOP").expect("address"),
        dest: Address::international(&format!("4479460{:05}", i % 100_000)).expect("address"),
        service_type: String::new(),
        registered_delivery: 1,
        data_coding: 0,
        esm_class: 0,
        payload: Bytes::from_static(b"Your code is 123456"),
        state: DeliveryState::Enroute,
        error_code: 0,
        attempts: 0,
        submitted_at: now_ms,
        schedule_at: None,
        expire_at: now_ms + 86_400_000,
        final_at: None,
        event: Bytes::new(),
        first_attempt_at: None,
        connector: String::new(),
        route: String::new(),
    }
}

async fn store(rows: &mut Vec<(String, String)>) {
    let store = EmbeddedStore::new(EmbeddedStoreConfig::default());
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut figure = |what: &str, started: Instant| {
        let rate = STORE_OPS as f64 / started.elapsed().as_secs_f64();
        rows.push((format!("embedded store {what}"), format!("{rate:>9.0} ops/s")));
    };

    let started = Instant::now();
    for i in 0..STORE_OPS {
        let applied = store.insert_message(message(i, now_ms)).await.expect("insert");
        assert!(applied.applied());
    }
    figure("insert_message", started);

    let started = Instant::now();
    for i in 0..STORE_OPS {
        let update = Update {
            state: Some(DeliveryState::Delivered),
            final_at: Some(now_ms),
            ..Update::default()
        };
        let id = format!("{i:016x}");
        let applied = store.transition(&id, 0, DeliveryState::Enroute, update).await;
        assert!(applied.expect("transition").applied());
    }
    figure("transition", started);

    let started = Instant::now();
    for i in 0..STORE_OPS {
        let got = store.get_message(&format!("{i:016x}")).await.expect("get");
        assert_eq!(got.len(), 1);
    }
    figure("get_message", started);
}
