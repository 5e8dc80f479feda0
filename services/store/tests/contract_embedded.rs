//! The Store contract suite against the embedded store, one test per property, on a
//! manual clock with paused tokio time (so waits cost nothing).

use std::sync::Arc;
use std::time::Duration;

use smsc_runtime::clock::ManualClock;
use smsc_runtime::testing::ManualTime;
use smsc_store::Store;
use smsc_store::contract as store_contract;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};

const START_MS: i64 = 1_700_000_000_000;
const MESSAGE_TTL: Duration = Duration::from_secs(3600);

fn store() -> (Arc<dyn Store>, ManualTime) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let config = EmbeddedStoreConfig { message_ttl: MESSAGE_TTL, ..EmbeddedStoreConfig::default() };
    (Arc::new(EmbeddedStore::with_clock(config, clock.clone())), ManualTime::new(clock))
}

#[tokio::test]
async fn insert_is_if_not_exists() {
    store_contract::insert_is_if_not_exists(&*store().0).await;
}

#[tokio::test]
async fn get_message_lists_every_destination() {
    store_contract::get_message_lists_every_destination(&*store().0).await;
}

#[tokio::test]
async fn transition_applies_only_from_the_stored_state() {
    store_contract::transition_applies_only_from_the_stored_state(&*store().0).await;
}

/// On two worker threads, so the racers really run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transitions_apply_once() {
    store_contract::concurrent_transitions_apply_once(store().0).await;
}

#[tokio::test(start_paused = true)]
async fn messages_expire_after_the_ttl() {
    let (store, time) = store();
    store_contract::messages_expire_after_the_ttl(&*store, &time, MESSAGE_TTL).await;
}

#[tokio::test(start_paused = true)]
async fn leases_expire_unless_refreshed() {
    let (store, time) = store();
    store_contract::leases_expire_unless_refreshed(&*store, &time).await;
}

#[tokio::test(start_paused = true)]
async fn sessions_lists_the_live_leases_of_the_account() {
    let (store, time) = store();
    store_contract::sessions_lists_the_live_leases_of_the_account(&*store, &time).await;
}

#[tokio::test]
async fn pending_pages_in_order_after_the_cursor() {
    store_contract::pending_pages_in_order_after_the_cursor(&*store().0).await;
}

#[tokio::test]
async fn delete_pending_removes_once() {
    store_contract::delete_pending_removes_once(&*store().0).await;
}

#[tokio::test(start_paused = true)]
async fn upstream_links_and_parked_receipts_merge_and_expire() {
    let (store, time) = store();
    store_contract::upstream_links_and_parked_receipts_merge_and_expire(&*store, &time).await;
}

#[tokio::test(start_paused = true)]
async fn a_bind_slot_has_one_holder_until_released_or_expired() {
    let (store, time) = store();
    store_contract::a_bind_slot_has_one_holder_until_released_or_expired(&*store, &time).await;
}

/// On two worker threads, so the racers really run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_slot_claims_have_one_winner() {
    store_contract::concurrent_slot_claims_have_one_winner(store().0).await;
}

#[tokio::test(start_paused = true)]
async fn a_quota_counter_stops_at_its_limit_and_takes_back() {
    let (store, time) = store();
    store_contract::a_quota_counter_stops_at_its_limit_and_takes_back(&*store, &time).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_quota_takes_never_pass_the_limit() {
    store_contract::concurrent_quota_takes_never_pass_the_limit(store().0).await;
}

#[tokio::test]
async fn batch_inserts_and_reads_answer_per_message_in_order() {
    store_contract::batch_inserts_and_reads_answer_per_message_in_order(&*store().0).await;
}
