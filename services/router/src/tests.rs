//! The task the router publishes for an accepted submit: its connectors, and the route's
//! name and rate when the route has a rate (what the workers pace by); a batch of submits
//! written and published together, each task on its class's topic.

use std::time::Duration;

use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_store::SystemClock;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};

use super::*;
use crate::config::MtRoute;

fn rule(prefix: &str, connector: &str, name: &str, rate: u32) -> MtRoute {
    MtRoute {
        prefix: prefix.into(),
        connector: connector.into(),
        name: name.into(),
        rate,
        ..MtRoute::default()
    }
}

fn router(bus: &EmbeddedBus, store: Arc<EmbeddedStore>, routing: &RoutingConfig) -> Arc<Router> {
    Router::new(
        Arc::new(bus.clone()),
        store,
        Arc::new(ArcSwap::from_pointee(Routes::new(routing))),
        Topics::new("smsc", "smsc", &[Duration::from_secs(1)]),
        Arc::new(SystemClock),
        Metrics::new(),
        CancellationToken::new(),
    )
}

/// An accepted submit of account `bank` to `dest`, due now.
fn event(id: &str, dest: &str) -> SubmitEvent {
    let now = SystemClock.now_ms();
    SubmitEvent {
        message_id: id.into(),
        system_id: "bank".into(),
        dest: Some(smsc_proto::Address { ton: 1, npi: 1, addr: dest.into() }),
        submitted_at_ms: now,
        expire_at_ms: now + 60_000,
        ..SubmitEvent::default()
    }
}

/// The task the router publishes for a submit to `dest`.
async fn task_for(routing: &RoutingConfig, dest: &str) -> DeliveryTask {
    let bus = EmbeddedBus::new(EmbeddedBusConfig::default());
    let mut deliver = bus.consumer("test", &["smsc.deliver"], 10).expect("consumer");
    let store = Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default()));
    let router = router(&bus, store, routing);
    let ev = event(&format!("id-{dest}"), dest);
    let flow = Flow::new(Class::Standard, Bytes::from_static(b"bank"));
    assert!(router.submits(vec![(Bytes::from(ev.encode_to_vec()), flow)]).await, "routed");
    let d = tokio::time::timeout(Duration::from_secs(5), deliver.recv())
        .await
        .expect("a task in time")
        .expect("a task");
    DeliveryTask::decode(d.record.payload).expect("a DeliveryTask")
}

#[tokio::test]
async fn a_task_carries_its_routes_name_and_rate_when_the_route_has_a_rate() {
    let routing = RoutingConfig {
        mt: vec![
            rule("4479", "uk", "uk-mobile", 50),
            rule("33", "fr", "fr", 0),
            rule("", "sim", "", 0),
        ],
        mo: Vec::new(),
    };
    let uk = task_for(&routing, "447900000001").await;
    assert_eq!(
        (uk.connectors, uk.route.as_str(), uk.route_rate),
        (vec!["uk".into()], "uk-mobile", 50)
    );
    let fr = task_for(&routing, "33600000001").await;
    assert_eq!((fr.connectors, fr.route.as_str(), fr.route_rate), (vec!["fr".into()], "", 0));
    let other = task_for(&routing, "15550000001").await;
    assert_eq!((other.connectors, other.route_rate), (vec!["sim".into()], 0));
}

#[tokio::test]
async fn a_batch_is_written_at_once_and_each_task_goes_to_its_class_or_tier() {
    let bus = EmbeddedBus::new(EmbeddedBusConfig::default());
    let store = Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default()));
    let routing = RoutingConfig { mt: vec![rule("", "sim", "", 0)], mo: Vec::new() };
    let router = router(&bus, store.clone(), &routing);
    let mut consumers: Vec<_> = ["smsc.deliver.interactive", "smsc.deliver", "smsc.retry.1s"]
        .into_iter()
        .map(|t| bus.consumer("test", &[t], 10).expect("consumer"))
        .collect();
    // Already delivered: a redelivered record of it publishes nothing.
    let done = event("done", "447900000004");
    let mut row = stored_row(&mut done.clone(), Bytes::new(), 0, String::new());
    row.state = DeliveryState::Delivered;
    store.insert_message(row).await.expect("insert");
    let later = SubmitEvent {
        schedule_at_ms: SystemClock.now_ms() + 30_000,
        ..event("later", "447900000003")
    };
    let flow = |class| Flow::new(class, Bytes::from_static(b"bank"));
    let batch = vec![
        (Bytes::from(event("otp", "447900000001").encode_to_vec()), flow(Class::Interactive)),
        (Bytes::from(event("news", "447900000002").encode_to_vec()), flow(Class::Standard)),
        (Bytes::from(later.encode_to_vec()), flow(Class::Bulk)),
        (Bytes::from(done.encode_to_vec()), flow(Class::Standard)),
        (Bytes::from_static(b"\xff not a submit"), flow(Class::Standard)),
    ];
    assert!(router.submits(batch).await, "durable");
    let expected = [("otp", Class::Interactive), ("news", Class::Standard), ("later", Class::Bulk)];
    for (consumer, (id, class)) in consumers.iter_mut().zip(expected) {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.recv())
            .await
            .expect("a task in time")
            .expect("a task");
        let task = DeliveryTask::decode(d.record.payload.clone()).expect("a DeliveryTask");
        assert_eq!((task.message_id.as_str(), Flow::of(&d.record)), (id, flow(class)));
        consumer.ack(&d).expect("ack");
    }
    let more = tokio::time::timeout(Duration::from_millis(100), consumers[1].recv()).await;
    assert!(more.is_err(), "nothing for the delivered message: {more:?}");
    for id in ["otp", "news"] {
        let rows = store.get_message(id).await.expect("get");
        assert_eq!(rows.iter().map(|r| r.state).collect::<Vec<_>>(), [DeliveryState::Enroute]);
    }
    let later = store.get_message("later").await.expect("get");
    assert_eq!(later.iter().map(|r| r.state).collect::<Vec<_>>(), [DeliveryState::Scheduled]);
    let routed = |label: &str| router.metrics.routed_total.with_label_values(&[label]).get();
    assert_eq!((routed("routed"), routed("scheduled"), routed("duplicate")), (2, 1, 1));
}

/// Two releases on one bus: the routers of `blue` and `green` (their own topic and group
/// prefixes) each route their own submits only, onto their own delivery topics, as their
/// own consumer groups.
#[tokio::test]
async fn releases_with_their_own_prefixes_share_a_bus_without_sharing_traffic() {
    let bus = EmbeddedBus::new(EmbeddedBusConfig::default());
    let routing = RoutingConfig { mt: vec![rule("", "sim", "", 0)], mo: Vec::new() };
    let shutdown = CancellationToken::new();
    let mut releases = Vec::new();
    for name in ["blue", "green"] {
        let topics = Topics::new(name, name, &[Duration::from_secs(1)]);
        let store = Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default()));
        let deliver = bus.consumer("test", &[&**topics.deliver(Class::Standard)], 10);
        let metrics = Metrics::new();
        let router = Router::new(
            Arc::new(bus.clone()),
            store,
            Arc::new(ArcSwap::from_pointee(Routes::new(&routing))),
            topics.clone(),
            Arc::new(SystemClock),
            metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(run(router, Lanes::new(4)));
        releases.push((name, topics, deliver.expect("consumer"), metrics));
    }
    // Each release's edge publishes three submits on its own submit topic.
    for (name, topics, _, _) in &releases {
        for i in 0..3 {
            let ev = event(&format!("{name}-{i}"), &format!("4479000000{i:02}"));
            let mut record = Record::new(Bytes::from(format!("dest-{i}")), ev.encode_to_vec());
            Flow::new(Class::Standard, Bytes::from_static(b"bank")).mark(&mut record);
            bus.publish(topics.submit(Class::Standard), vec![record]).await.expect("publish");
        }
    }
    for (name, _, deliver, metrics) in &mut releases {
        let mut ids = Vec::new();
        for _ in 0..3 {
            let d = tokio::time::timeout(Duration::from_secs(5), deliver.recv())
                .await
                .expect("a task in time")
                .expect("a task");
            ids.push(DeliveryTask::decode(d.record.payload.clone()).expect("task").message_id);
            deliver.ack(&d).expect("ack");
        }
        ids.sort();
        assert_eq!(ids, [0, 1, 2].map(|i| format!("{name}-{i}")), "{name} routes its own");
        // Its router handled its own three and nothing of the other release's.
        let text = metrics.encode();
        assert!(
            text.contains(r#"smsc_router_routed_total{result="routed"} 3"#),
            "{name}'s router routed its three only:\n{text}"
        );
        // The consumer lag is reported under the release's own group and topics.
        let group = format!(r#"group="{name}-router",topic="{name}.submit""#);
        let reported = async {
            while !metrics.encode().contains(&group) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), reported).await.expect("lag by group");
        assert!(!metrics.encode().contains("smsc-router"), "{}", metrics.encode());
    }
    shutdown.cancel();
}
