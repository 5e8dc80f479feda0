//! The Bus contract suite against the embedded bus, one test per property, on a manual
//! clock with paused tokio time (so waits cost nothing).

use std::sync::Arc;

use smsc_bus::contract as bus_contract;
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_runtime::clock::ManualClock;
use smsc_runtime::testing::ManualTime;

const START_MS: i64 = 1_700_000_000_000;

fn bus() -> (EmbeddedBus, ManualTime) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let bus = EmbeddedBus::with_clock(EmbeddedBusConfig::default(), clock.clone());
    (bus, ManualTime::new(clock))
}

#[tokio::test(start_paused = true)]
async fn publish_then_consume() {
    bus_contract::publish_then_consume(&bus().0).await;
}

#[tokio::test(start_paused = true)]
async fn same_key_same_partition_in_order() {
    bus_contract::same_key_same_partition_in_order(&bus().0).await;
}

#[tokio::test(start_paused = true)]
async fn group_members_split_partitions() {
    bus_contract::group_members_split_partitions(&bus().0).await;
}

#[tokio::test(start_paused = true)]
async fn unacked_records_are_redelivered_after_the_member_leaves() {
    bus_contract::unacked_records_are_redelivered_after_the_member_leaves(&bus().0).await;
}

#[tokio::test(start_paused = true)]
async fn commit_covers_only_the_contiguous_acked_prefix() {
    bus_contract::commit_covers_only_the_contiguous_acked_prefix(&bus().0).await;
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_bounds_recv() {
    bus_contract::max_in_flight_bounds_recv(&bus().0).await;
}

#[tokio::test(start_paused = true)]
async fn not_before_holds_back_its_partition_until_due() {
    let (bus, time) = bus();
    bus_contract::not_before_holds_back_its_partition_until_due(&bus, &time).await;
}
