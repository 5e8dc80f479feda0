use std::time::Duration;

use bytes::Bytes;
use smsc_test_support::eventually;

use super::*;
use crate::embedded::{EmbeddedBus, EmbeddedBusConfig};
use crate::fair::Class;

const WAIT: Duration = Duration::from_secs(20);

fn record(account: &'static str, i: usize) -> Record {
    let mut r = Record::new(format!("{account}-{i}"), "x");
    Flow::new(Class::Standard, Bytes::from_static(account.as_bytes())).mark(&mut r);
    r
}

#[tokio::test]
async fn a_hop_that_falls_behind_names_the_account_crowding_it_until_it_catches_up() {
    let bus = EmbeddedBus::new(EmbeddedBusConfig { partitions: 2, max_lag: 100_000 });
    let mut records: Vec<Record> = (0..300).map(|i| record("flood", i)).collect();
    records.extend((0..2).map(|i| record("quiet", i)));
    bus.publish("t", records).await.expect("publish");
    let consumer = bus.consumer("hop", &["t"], 64).expect("consumer");
    let pressure = Pressure::default();
    let lanes =
        Lanes { read_ahead: 64, pressure: Some((pressure.clone(), "hop")), ..Lanes::new(4) };
    // The hop's work waits for permits: it falls behind until they come.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let shutdown = CancellationToken::new();
    let handler_gate = gate.clone();
    let hop = tokio::spawn(run_lanes(consumer, lanes, shutdown.clone(), move |_, _| {
        let gate = handler_gate.clone();
        async move {
            gate.acquire().await.expect("open").forget();
            true
        }
    }));
    eventually("flood named", WAIT, || async { pressure.is_over(b"flood") }).await;
    assert!(!pressure.is_over(b"quiet"), "2 of 302 records: not crowding anything");
    gate.add_permits(1_000);
    eventually("caught up", WAIT, || async { !pressure.is_over(b"flood") }).await;
    shutdown.cancel();
    hop.await.expect("the hop stops");
}

#[tokio::test]
async fn every_record_is_handled_once_and_per_key_in_order() {
    let bus = EmbeddedBus::new(EmbeddedBusConfig { partitions: 4, max_lag: 100_000 });
    // Three keys, interleaved; accounts differ so the scheduler reorders across keys.
    let records: Vec<Record> = (0..300)
        .map(|i| {
            let account = ["a", "b", "c"][i % 3];
            let mut r = Record::new(format!("key-{}", i % 3), i.to_string());
            Flow::new(Class::Standard, Bytes::from(account)).mark(&mut r);
            r
        })
        .collect();
    bus.publish("t", records).await.expect("publish");
    let consumer = bus.consumer("hop", &["t"], 16).expect("consumer");
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, usize)>::new()));
    let shutdown = CancellationToken::new();
    let log = seen.clone();
    let lanes = Lanes { read_ahead: 16, ..Lanes::new(4) };
    let hop = tokio::spawn(run_lanes(consumer, lanes, shutdown.clone(), move |_, d: &Delivery| {
        let (log, d) = (log.clone(), d.clone());
        async move {
            tokio::time::sleep(Duration::from_micros(50)).await;
            let key = String::from_utf8_lossy(&d.record.key).into_owned();
            let n = String::from_utf8_lossy(&d.record.payload).parse().expect("number");
            log.lock().expect("log").push((key, n));
            true
        }
    }));
    eventually("all handled", WAIT, || async { seen.lock().expect("log").len() >= 300 }).await;
    shutdown.cancel();
    hop.await.expect("the hop stops");
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 300, "each once");
    for key in 0..3 {
        let order: Vec<usize> =
            seen.iter().filter(|(k, _)| *k == format!("key-{key}")).map(|(_, n)| *n).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "key-{key} out of order: {order:?}");
    }
}

#[tokio::test]
async fn what_starts_together_goes_as_one_batch_and_each_record_is_acked_once_done() {
    let bus = EmbeddedBus::new(EmbeddedBusConfig { partitions: 4, max_lag: 100_000 });
    let records: Vec<Record> = (0..200).map(|i| record(["a", "b"][i % 2], i)).collect();
    bus.publish("t", records).await.expect("publish");
    let consumer = bus.consumer("hop", &["t"], 64).expect("consumer");
    let sizes = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let shutdown = CancellationToken::new();
    let log = sizes.clone();
    let lanes = Lanes { read_ahead: 64, batch: 10, ..Lanes::new(16) };
    let hop = tokio::spawn(run_batches(consumer, lanes, shutdown.clone(), move |batch| {
        log.lock().expect("log").push(batch.len());
        // Every other record goes on alone; the rest are done with the batch.
        let steps: Vec<Step<std::future::Ready<bool>>> =
            (0..batch.len())
                .map(|i| {
                    if i % 2 == 0 { Step::Done(true) } else { Step::Then(std::future::ready(true)) }
                })
                .collect();
        std::future::ready(steps)
    }));
    eventually("all handled", WAIT, || async {
        sizes.lock().expect("log").iter().sum::<usize>() >= 200
    })
    .await;
    shutdown.cancel();
    hop.await.expect("the hop stops");
    let sizes = sizes.lock().expect("log").clone();
    assert_eq!(sizes.iter().sum::<usize>(), 200, "each record once: {sizes:?}");
    assert!(sizes.iter().all(|n| (1..=10).contains(n)), "batches of 1 to 10: {sizes:?}");
    assert!(sizes.iter().any(|n| *n > 1), "what was read together started together: {sizes:?}");
    // Everything was acked: the group has nothing left to hand out.
    let mut again = bus.consumer("hop", &["t"], 64).expect("consumer");
    let left = tokio::time::timeout(Duration::from_millis(100), again.recv()).await;
    assert!(left.is_err(), "all committed: {left:?}");
}

#[tokio::test]
async fn a_record_given_up_is_not_acked_and_comes_back() {
    let bus = EmbeddedBus::new(EmbeddedBusConfig { partitions: 1, max_lag: 100_000 });
    bus.publish("t", vec![record("a", 0), record("a", 1)]).await.expect("publish");
    let consumer = bus.consumer("hop", &["t"], 8).expect("consumer");
    let shutdown = CancellationToken::new();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    let hop = tokio::spawn(run_batches(consumer, Lanes::new(4), shutdown.clone(), move |batch| {
        count.fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
        let steps: Vec<Step<std::future::Ready<bool>>> =
            batch.iter().map(|_| Step::Done(false)).collect();
        std::future::ready(steps)
    }));
    eventually("both seen", WAIT, || async { seen.load(std::sync::atomic::Ordering::SeqCst) >= 2 })
        .await;
    shutdown.cancel();
    hop.await.expect("the hop stops");
    let mut again = bus.consumer("hop", &["t"], 8).expect("consumer");
    let first = again.recv().await.expect("the record given up is handed out again");
    assert_eq!(first.offset, 0);
}
