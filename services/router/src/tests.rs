//! The task the router publishes for an accepted submit: its connectors, and the route's
//! name and rate when the route has a rate (what the workers pace by).

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

/// The task the router publishes for a submit to `dest`.
async fn task_for(routing: &RoutingConfig, dest: &str) -> DeliveryTask {
    let bus = EmbeddedBus::new(EmbeddedBusConfig::default());
    let mut deliver = bus.consumer("test", &[topics::DELIVER], 10).expect("consumer");
    let router = Router::new(
        Arc::new(bus.clone()),
        Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default())),
        Arc::new(ArcSwap::from_pointee(Routes::new(routing))),
        Tiers::new(&[Duration::from_secs(1)]),
        Arc::new(SystemClock),
        Metrics::new(),
        CancellationToken::new(),
    );
    let now = SystemClock.now_ms();
    let ev = SubmitEvent {
        message_id: format!("id-{dest}"),
        system_id: "bank".into(),
        dest: Some(smsc_proto::Address { ton: 1, npi: 1, addr: dest.into() }),
        submitted_at_ms: now,
        expire_at_ms: now + 60_000,
        ..SubmitEvent::default()
    };
    let flow = Flow::new(Class::Standard, Bytes::from_static(b"bank"));
    assert!(router.submit(Bytes::from(ev.encode_to_vec()), flow).await, "routed");
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
