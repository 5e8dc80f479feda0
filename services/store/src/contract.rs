//! The [`Store`] contract: one `pub async fn` per property, written once and run against
//! every implementation. Each panics with a message on a violation, like `assert!`.
//!
//! Compiled with the `contract-tests` feature. A test of another implementation calls
//! them with the store, a [`TimeControl`] and the message TTL the store was built with:
//!
//! ```ignore
//! // Cargo.toml: smsc-store = { path = "...", features = ["contract-tests"] }
//! #[tokio::test]
//! async fn scylla_keeps_the_store_contract() {
//!     let store: Arc<dyn Store> = Arc::new(ScyllaStore::connect(cfg_with_ttl(TTL)).await?);
//!     smsc_store::contract::run_all(store, &RealTime, TTL).await;
//! }
//! ```
//!
//! Every property writes under fresh random ids, so a shared keyspace is fine. The TTL
//! properties wait the TTLs out on `time` (really, with [`RealTime`]), so a real store
//! should be built with a short message TTL (a few seconds).

use std::sync::Arc;
use std::time::Duration;

use crate::DeliveryState;
use bytes::Bytes;

pub use smsc_runtime::testing::{ManualTime, RealTime, TimeControl, unique};

use super::{
    Address, Applied, BindKind, NotificationKind, PendingNotification, SessionLease, SlotClaim,
    Store, StoredMessage, Update, UpstreamEntry, UpstreamLink,
};

/// Slack added to a TTL before a row must be gone, for stores that count in seconds.
const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

/// A plausible row; tests change what they look at.
pub fn sample_message(message_id: &str, dest_index: u32, system_id: &str) -> StoredMessage {
    StoredMessage {
        message_id: message_id.to_owned(),
        dest_index,
        system_id: system_id.to_owned(),
        source: Address::new(smsc_smpp::Ton(5), smsc_smpp::Npi(0), "SHOP").expect("address"),
        dest: Address::international(&format!("4479460{dest_index:05}")).expect("address"),
        service_type: String::new(),
        registered_delivery: 1,
        data_coding: 0,
        esm_class: 0,
        payload: Bytes::from_static(b"hello"),
        state: DeliveryState::Enroute,
        error_code: 0,
        attempts: 0,
        submitted_at: 1_700_000_000_000,
        schedule_at: None,
        expire_at: 1_700_086_400_000,
        final_at: None,
        event: Bytes::from_static(b"\x0a\x03abc"),
        first_attempt_at: None,
        connector: String::new(),
        route: "uk-mobile".to_owned(),
    }
}

pub fn sample_lease(system_id: &str, session_id: &str) -> SessionLease {
    SessionLease {
        system_id: system_id.to_owned(),
        session_id: session_id.to_owned(),
        edge_id: "edge-0".to_owned(),
        endpoint: "10.0.0.7:7001".to_owned(),
        bind: BindKind::Transceiver,
        bound_at: 1_700_000_000_000,
    }
}

fn sample_notification(id: &str) -> PendingNotification {
    PendingNotification {
        id: id.to_owned(),
        kind: NotificationKind::Receipt,
        message_id: format!("msg-{id}"),
        pdu: Bytes::from(format!("deliver_sm {id}")),
        created_at: 1_700_000_000_000,
    }
}

/// Runs every property, in the order below.
pub async fn run_all(store: Arc<dyn Store>, time: &dyn TimeControl, message_ttl: Duration) {
    insert_is_if_not_exists(&*store).await;
    get_message_lists_every_destination(&*store).await;
    transition_applies_only_from_the_stored_state(&*store).await;
    concurrent_transitions_apply_once(Arc::clone(&store)).await;
    messages_expire_after_the_ttl(&*store, time, message_ttl).await;
    leases_expire_unless_refreshed(&*store, time).await;
    sessions_lists_the_live_leases_of_the_account(&*store, time).await;
    pending_pages_in_order_after_the_cursor(&*store).await;
    delete_pending_removes_once(&*store).await;
    upstream_links_and_parked_receipts_merge_and_expire(&*store, time).await;
    a_bind_slot_has_one_holder_until_released_or_expired(&*store, time).await;
    concurrent_slot_claims_have_one_winner(Arc::clone(&store)).await;
    a_quota_counter_stops_at_its_limit_and_takes_back(&*store, time).await;
    concurrent_quota_takes_never_pass_the_limit(Arc::clone(&store)).await;
    batch_inserts_and_reads_answer_per_message_in_order(&*store).await;
}

/// A second insert of the same (message_id, dest_index) is not applied, returns the
/// stored row and leaves it as it was.
pub async fn insert_is_if_not_exists(store: &dyn Store) {
    let id = unique("insert");
    let first = sample_message(&id, 0, "acct");
    let applied = store.insert_message(first.clone()).await.expect("insert");
    assert_eq!(applied, Applied::Yes, "first insert");

    let mut second = sample_message(&id, 0, "other");
    second.payload = Bytes::from_static(b"changed");
    second.state = DeliveryState::Delivered;
    let applied = store.insert_message(second).await.expect("second insert");
    assert_eq!(applied, Applied::No(Some(first.clone())), "second insert returns the stored row");
    assert_eq!(store.get_message(&id).await.expect("get"), vec![first], "row unchanged");
}

/// `get_message` returns every live destination by dest_index, nothing for an unknown id.
pub async fn get_message_lists_every_destination(store: &dyn Store) {
    let id = unique("multi");
    let dests: Vec<StoredMessage> = (0..3).map(|i| sample_message(&id, i, "acct")).collect();
    for m in dests.iter().rev() {
        assert!(store.insert_message(m.clone()).await.expect("insert").applied());
    }
    assert_eq!(store.get_message(&id).await.expect("get"), dests);
    assert!(store.get_message(&unique("absent")).await.expect("get").is_empty());
}

/// The batch calls answer as the single ones would, one outcome per message, in order.
pub async fn batch_inserts_and_reads_answer_per_message_in_order(store: &dyn Store) {
    let (a, b, c) = (unique("batch-a"), unique("batch-b"), unique("batch-c"));
    let (row_a, row_b) = (sample_message(&a, 0, "acct"), sample_message(&b, 0, "acct"));
    let applied = store.insert_messages(&[row_a.clone(), row_b]).await.expect("insert");
    assert_eq!(applied, vec![Applied::Yes, Applied::Yes], "two new messages");

    let mut again = sample_message(&a, 0, "other");
    again.payload = Bytes::from_static(b"changed");
    let row_c = sample_message(&c, 0, "acct");
    let applied = store.insert_messages(&[again, row_c.clone()]).await.expect("insert");
    assert_eq!(applied, vec![Applied::No(Some(row_a.clone())), Applied::Yes], "one seen already");

    let absent = unique("batch-absent");
    let ids = [c.as_str(), absent.as_str(), a.as_str()];
    let got = store.get_messages(&ids).await.expect("get");
    assert_eq!(got, vec![vec![row_c], vec![], vec![row_a]], "each id's rows, in order");
    assert!(store.insert_messages(&[]).await.expect("empty").is_empty());
}

/// `transition` applies only when the stored state is `from`, writes exactly the `Some`
/// fields of the update, and otherwise returns the row as it is (or `None`: no row).
pub async fn transition_applies_only_from_the_stored_state(store: &dyn Store) {
    let id = unique("transition");
    let row = sample_message(&id, 0, "acct");
    let other_dest = sample_message(&id, 1, "acct");
    store.insert_message(row.clone()).await.expect("insert");
    store.insert_message(other_dest.clone()).await.expect("insert");

    let to_delivered = Update {
        state: Some(DeliveryState::Delivered),
        attempts: Some(1),
        final_at: Some(1_700_000_100_000),
        ..Update::default()
    };
    let wrong = store.transition(&id, 0, DeliveryState::Accepted, to_delivered.clone()).await;
    assert_eq!(wrong.expect("transition"), Applied::No(Some(row.clone())), "from a wrong state");
    assert_eq!(store.get_message(&id).await.expect("get")[0], row, "untouched by a refused update");

    let ok = store.transition(&id, 0, DeliveryState::Enroute, to_delivered.clone()).await;
    assert_eq!(ok.expect("transition"), Applied::Yes, "from the stored state");
    let mut delivered = row.clone();
    delivered.state = DeliveryState::Delivered;
    delivered.attempts = 1;
    delivered.final_at = Some(1_700_000_100_000);
    let stored = store.get_message(&id).await.expect("get");
    assert_eq!(stored, vec![delivered.clone(), other_dest], "only dest 0, only the given fields");

    let again = store.transition(&id, 0, DeliveryState::Enroute, to_delivered).await;
    assert_eq!(again.expect("transition"), Applied::No(Some(delivered.clone())), "a replay");

    // No state in the update: the state stays, other fields change.
    let note = Update { error_code: Some(0x0d), schedule_at: Some(None), ..Update::default() };
    let applied = store.transition(&id, 0, DeliveryState::Delivered, note).await;
    assert_eq!(applied.expect("transition"), Applied::Yes);
    let stored = store.get_message(&id).await.expect("get");
    assert_eq!((stored[0].state, stored[0].error_code), (DeliveryState::Delivered, 0x0d));

    let missing = store.transition(&unique("absent"), 0, DeliveryState::Enroute, Update::default());
    assert_eq!(missing.await.expect("transition"), Applied::No(None), "no such row");

    // A claim records the first attempt's time and the connector (what a CDR reads).
    let claimed_id = unique("claim");
    let fresh = sample_message(&claimed_id, 0, "acct");
    store.insert_message(fresh.clone()).await.expect("insert");
    let claim = Update {
        state: Some(DeliveryState::InDelivery),
        attempts: Some(1),
        first_attempt_at: Some(1_700_000_050_000),
        connector: Some("upstream-a".to_owned()),
        ..Update::default()
    };
    let applied = store.transition(&claimed_id, 0, DeliveryState::Enroute, claim).await;
    assert_eq!(applied.expect("transition"), Applied::Yes);
    let stored = store.get_message(&claimed_id).await.expect("get");
    assert_eq!(stored[0].first_attempt_at, Some(1_700_000_050_000));
    assert_eq!(
        (stored[0].connector.as_str(), stored[0].route.as_str()),
        ("upstream-a", "uk-mobile")
    );
}

/// Many concurrent transitions from the same state: exactly one applies, the others see
/// the winner's row.
pub async fn concurrent_transitions_apply_once(store: Arc<dyn Store>) {
    const RACERS: u16 = 16;
    let id = unique("race");
    store.insert_message(sample_message(&id, 0, "acct")).await.expect("insert");
    let tasks: Vec<_> = (1..=RACERS)
        .map(|code| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                let update = Update {
                    state: Some(DeliveryState::Undeliverable),
                    error_code: Some(code),
                    ..Update::default()
                };
                (code, store.transition(&id, 0, DeliveryState::Enroute, update).await)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let (code, applied) = task.await.expect("task");
        outcomes.push((code, applied.expect("transition")));
    }
    let winners: Vec<u16> =
        outcomes.iter().filter(|(_, a)| a.applied()).map(|(code, _)| *code).collect();
    assert_eq!(winners.len(), 1, "exactly one transition applies: {winners:?}");
    let stored = store.get_message(&id).await.expect("get");
    assert_eq!((stored[0].state, stored[0].error_code), (DeliveryState::Undeliverable, winners[0]));
    for (code, applied) in outcomes {
        if let Applied::No(current) = applied {
            assert_eq!(current.as_ref(), Some(&stored[0]), "loser {code} sees the winner's row");
        }
    }
}

/// A message is visible until its TTL passes, then gone: not listed, not updatable, and
/// its key free for a new insert.
pub async fn messages_expire_after_the_ttl(
    store: &dyn Store,
    time: &dyn TimeControl,
    message_ttl: Duration,
) {
    let id = unique("ttl");
    let row = sample_message(&id, 0, "acct");
    store.insert_message(row.clone()).await.expect("insert");
    time.advance(message_ttl / 2).await;
    assert_eq!(store.get_message(&id).await.expect("get"), vec![row.clone()], "before the TTL");

    time.advance(message_ttl - message_ttl / 2 + EXPIRY_MARGIN).await;
    assert!(store.get_message(&id).await.expect("get").is_empty(), "after the TTL");
    let update = Update { state: Some(DeliveryState::Delivered), ..Update::default() };
    let applied = store.transition(&id, 0, DeliveryState::Enroute, update).await;
    assert_eq!(applied.expect("transition"), Applied::No(None), "an expired row is not updated");
    let applied = store.insert_message(row).await.expect("insert");
    assert_eq!(applied, Applied::Yes, "an expired row does not block an insert");
}

/// A lease lives for its TTL from its last `put_session`, and a refresh replaces it.
///
/// On a real store the TTLs count in whole seconds from when the write reached it, so
/// every check keeps seconds of slack on both sides: a loaded machine delays the calls.
pub async fn leases_expire_unless_refreshed(store: &dyn Store, time: &dyn TimeControl) {
    const FIRST: Duration = Duration::from_secs(3);
    const REFRESHED: Duration = Duration::from_secs(7);
    let system_id = unique("lease");
    let lease = sample_lease(&system_id, "s1");
    store.put_session(lease.clone(), FIRST).await.expect("put");
    time.advance(Duration::from_secs(1)).await;
    assert_eq!(store.sessions(&system_id).await.expect("sessions"), vec![lease.clone()]);

    let refreshed = SessionLease { endpoint: "10.0.0.8:7001".to_owned(), ..lease };
    store.put_session(refreshed.clone(), REFRESHED).await.expect("refresh");
    // Past the first lease's TTL (1 + 4 > 3 + margin), well before the refresh's (1 + 7).
    time.advance(Duration::from_secs(4)).await;
    let live = store.sessions(&system_id).await.expect("sessions");
    assert_eq!(live, vec![refreshed], "refreshed: alive past the first lease's TTL, updated");

    time.advance(REFRESHED - Duration::from_secs(4) + EXPIRY_MARGIN).await;
    assert!(store.sessions(&system_id).await.expect("sessions").is_empty(), "expired");
}

/// `sessions` lists the live leases of the account asked about and no other's;
/// `remove_session` removes one.
pub async fn sessions_lists_the_live_leases_of_the_account(
    store: &dyn Store,
    time: &dyn TimeControl,
) {
    let (a, b) = (unique("acct-a"), unique("acct-b"));
    let long = Duration::from_secs(30);
    let a1 = sample_lease(&a, "a1");
    let a2 = SessionLease { bind: BindKind::Receiver, ..sample_lease(&a, "a2") };
    let b1 = sample_lease(&b, "b1");
    store.put_session(a1.clone(), long).await.expect("put");
    store.put_session(a2.clone(), Duration::from_secs(2)).await.expect("put");
    store.put_session(b1.clone(), long).await.expect("put");

    let by_id = |mut v: Vec<SessionLease>| {
        v.sort_by(|x, y| x.session_id.cmp(&y.session_id));
        v
    };
    assert_eq!(by_id(store.sessions(&a).await.expect("sessions")), vec![a1.clone(), a2]);
    time.advance(Duration::from_secs(2) + EXPIRY_MARGIN).await;
    assert_eq!(store.sessions(&a).await.expect("sessions"), vec![a1], "a2 expired");
    assert_eq!(store.sessions(&b).await.expect("sessions"), vec![b1.clone()]);

    store.remove_session(&a, "a1").await.expect("remove");
    assert!(store.sessions(&a).await.expect("sessions").is_empty(), "removed");
    store.remove_session(&a, "a1").await.expect("removing again is not an error");
    assert_eq!(store.sessions(&b).await.expect("sessions"), vec![b1], "other account untouched");
}

/// Pending notifications come back per account, oldest first, `limit` at a time; a page
/// shorter than `limit` ends the list (`next: None`), a full one that does not end it has
/// `next` = its last id, and `after` is exclusive.
pub async fn pending_pages_in_order_after_the_cursor(store: &dyn Store) {
    let (account, other) = (unique("pending"), unique("pending-other"));
    let ids: Vec<String> = (1..=5).map(|i| format!("n{i:02}")).collect();
    for id in &ids {
        store.push_pending(&account, sample_notification(id)).await.expect("push");
    }
    store.push_pending(&other, sample_notification("n00")).await.expect("push");
    let expect = |range: std::ops::Range<usize>| -> Vec<PendingNotification> {
        ids[range].iter().map(|id| sample_notification(id)).collect()
    };

    let first = store.pending(&account, None, 2).await.expect("pending");
    assert_eq!(first.items, expect(0..2), "first page");
    assert_eq!(first.next.as_deref(), Some("n02"), "a full page with more after it");
    let second = store.pending(&account, first.next.as_deref(), 2).await.expect("pending");
    assert_eq!(second.items, expect(2..4), "second page");
    assert_eq!(second.next.as_deref(), Some("n04"));
    let last = store.pending(&account, second.next.as_deref(), 2).await.expect("pending");
    assert_eq!(last, super::Page { items: expect(4..5), next: None }, "a short page ends it");

    let after = store.pending(&account, Some("n03"), 10).await.expect("pending");
    assert_eq!(after.items, expect(3..5), "after is exclusive");
    let past_end = store.pending(&account, Some("n05"), 10).await.expect("pending");
    assert!(past_end.items.is_empty() && past_end.next.is_none(), "nothing after the last");

    let theirs = store.pending(&other, None, 10).await.expect("pending");
    assert_eq!(theirs.items, vec![sample_notification("n00")], "accounts are separate");
    assert!(store.pending(&unique("none"), None, 10).await.expect("pending").items.is_empty());
}

/// `delete_pending` removes a notification once: true, then false; it is no longer listed.
pub async fn delete_pending_removes_once(store: &dyn Store) {
    let account = unique("delete");
    for id in ["d1", "d2"] {
        store.push_pending(&account, sample_notification(id)).await.expect("push");
    }
    assert!(store.delete_pending(&account, "d1").await.expect("delete"), "first delete");
    assert!(!store.delete_pending(&account, "d1").await.expect("delete"), "already gone");
    assert!(!store.delete_pending(&unique("none"), "d1").await.expect("delete"), "no account");
    let page = store.pending(&account, None, 10).await.expect("pending");
    assert_eq!(page.items, vec![sample_notification("d2")], "only the other one is left");
}

/// An upstream id's link and parked receipt are written apart, read together, live each
/// for its own TTL, and belong to one connector; the last link written wins.
pub async fn upstream_links_and_parked_receipts_merge_and_expire(
    store: &dyn Store,
    time: &dyn TimeControl,
) {
    let (up, other) = (unique("up"), unique("up-other"));
    let id = "1000000001";
    assert_eq!(store.upstream_entry(&up, id).await.expect("entry"), None, "nothing yet");

    let receipt = Bytes::from_static(b"deliver_sm receipt");
    let parked = Duration::from_secs(2);
    store.park_upstream_receipt(&up, id, receipt.clone(), parked).await.expect("park");
    let only_parked = UpstreamEntry { link: None, parked_receipt: Some(receipt.clone()) };
    assert_eq!(store.upstream_entry(&up, id).await.expect("entry"), Some(only_parked));

    let first = UpstreamLink { message_id: unique("msg"), dest_index: 0 };
    let linked = Duration::from_secs(6);
    store.put_upstream_link(&up, id, first, linked).await.expect("link");
    let link = UpstreamLink { message_id: unique("msg"), dest_index: 3 };
    store.put_upstream_link(&up, id, link.clone(), linked).await.expect("link again");
    let both = UpstreamEntry { link: Some(link.clone()), parked_receipt: Some(receipt) };
    assert_eq!(store.upstream_entry(&up, id).await.expect("entry"), Some(both), "merged");
    assert_eq!(store.upstream_entry(&other, id).await.expect("entry"), None, "per connector");
    assert_eq!(store.upstream_entry(&up, "1000000002").await.expect("entry"), None);

    time.advance(parked + EXPIRY_MARGIN).await;
    let link_only = UpstreamEntry { link: Some(link), parked_receipt: None };
    let entry = store.upstream_entry(&up, id).await.expect("entry");
    assert_eq!(entry, Some(link_only), "the parked receipt expired, the link lives on");

    time.advance(linked - parked).await;
    assert_eq!(store.upstream_entry(&up, id).await.expect("entry"), None, "all expired");
}

/// A slot of a pool has one holder: others are told who it is; the holder refreshes it;
/// it is free again once released by its holder (and only by it) or once its TTL passed
/// without a refresh.
pub async fn a_bind_slot_has_one_holder_until_released_or_expired(
    store: &dyn Store,
    time: &dyn TimeControl,
) {
    const TTL: Duration = Duration::from_secs(4);
    let (pool, other_pool) = (unique("pool"), unique("pool-other"));
    let busy = |holder: &str| SlotClaim::Busy { holder: holder.to_owned() };
    assert_eq!(store.claim_slot(&pool, 0, "a", TTL).await.expect("claim"), SlotClaim::Held);
    assert_eq!(store.claim_slot(&pool, 0, "b", TTL).await.expect("claim"), busy("a"));
    assert_eq!(store.claim_slot(&pool, 1, "b", TTL).await.expect("claim"), SlotClaim::Held);
    assert_eq!(store.claim_slot(&other_pool, 0, "b", TTL).await.expect("claim"), SlotClaim::Held);

    time.advance(Duration::from_secs(2)).await;
    // Refreshed for twice the TTL: on a real store, in real time, the releases below
    // must come before the refreshed lease ends, however loaded the machine (they once
    // came after the second the plain TTL left).
    let refreshed = store.claim_slot(&pool, 0, "a", 2 * TTL).await.expect("refresh");
    assert_eq!(refreshed, SlotClaim::Held, "the holder refreshes its lease");
    time.advance(Duration::from_secs(3)).await;
    let claim = store.claim_slot(&pool, 0, "b", TTL).await.expect("claim");
    assert_eq!(claim, busy("a"), "refreshed: held past the first lease's TTL");

    assert!(!store.release_slot(&pool, 0, "b").await.expect("release"), "not b's to free");
    assert!(store.release_slot(&pool, 0, "a").await.expect("release"), "freed by its holder");
    assert!(!store.release_slot(&pool, 0, "a").await.expect("release"), "free already");
    assert_eq!(store.claim_slot(&pool, 0, "b", TTL).await.expect("claim"), SlotClaim::Held);

    // b's slot 1 was never refreshed: 5 s have passed, more than its TTL.
    time.advance(EXPIRY_MARGIN).await;
    assert_eq!(store.claim_slot(&pool, 1, "c", TTL).await.expect("claim"), SlotClaim::Held);
}

/// Many concurrent claims of one free slot by different holders: exactly one holds it,
/// and every other is told that one.
pub async fn concurrent_slot_claims_have_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 16;
    let pool = unique("race-pool");
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, pool) = (Arc::clone(&store), pool.clone());
            tokio::spawn(async move {
                let holder = format!("worker-{i}");
                let claim = store.claim_slot(&pool, 0, &holder, Duration::from_secs(30)).await;
                (holder, claim.expect("claim"))
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    let winners: Vec<&String> =
        outcomes.iter().filter(|(_, c)| *c == SlotClaim::Held).map(|(h, _)| h).collect();
    assert_eq!(winners.len(), 1, "exactly one holder: {outcomes:?}");
    for (holder, claim) in &outcomes {
        if holder != winners[0] {
            assert_eq!(claim, &SlotClaim::Busy { holder: winners[0].clone() }, "{holder}");
        }
    }
}

/// A quota counter gives what is left below the limit and no more, per account and
/// period; given-back units can be taken again, the counter never goes below 0, and it
/// starts over once its TTL passed without a change.
pub async fn a_quota_counter_stops_at_its_limit_and_takes_back(
    store: &dyn Store,
    time: &dyn TimeControl,
) {
    const TTL: Duration = Duration::from_secs(4);
    let (acct, other) = (unique("quota"), unique("quota-other"));
    let take = |id: &str, period: &'static str, want: u64| {
        let id = id.to_owned();
        async move { store.take_quota(&id, period, want, 10, TTL).await.expect("take") }
    };
    assert_eq!(take(&acct, "d1", 4).await, 4);
    assert_eq!(take(&acct, "d1", 4).await, 4);
    assert_eq!(take(&acct, "d1", 4).await, 2, "only what is left below the limit");
    assert_eq!(take(&acct, "d1", 1).await, 0, "at the limit");
    assert_eq!(take(&acct, "d2", 10).await, 10, "another period has its own counter");
    assert_eq!(take(&other, "d1", 3).await, 3, "another account has its own counter");

    store.give_back_quota(&acct, "d1", 3, TTL).await.expect("give back");
    assert_eq!(take(&acct, "d1", 5).await, 3, "given back, taken again");
    store.give_back_quota(&acct, "d1", 50, TTL).await.expect("give back");
    assert_eq!(take(&acct, "d1", 50).await, 10, "never below 0");
    store.give_back_quota(&unique("quota-none"), "d1", 5, TTL).await.expect("give back to none");

    time.advance(TTL + EXPIRY_MARGIN).await;
    assert_eq!(take(&acct, "d1", 50).await, 10, "expired: the counter starts over");
}

/// Many takers of one counter at once (the edges leasing an account's quota): together
/// they get exactly the limit, never more.
pub async fn concurrent_quota_takes_never_pass_the_limit(store: Arc<dyn Store>) {
    const TAKERS: u64 = 6;
    const LIMIT: u64 = 50;
    let acct = unique("quota-race");
    let tasks: Vec<_> = (0..TAKERS)
        .map(|_| {
            let (store, acct) = (Arc::clone(&store), acct.clone());
            tokio::spawn(async move {
                let mut got = 0;
                loop {
                    let ttl = Duration::from_secs(60);
                    match store.take_quota(&acct, "m1", 3, LIMIT, ttl).await.expect("take") {
                        0 => return got,
                        n => got += n,
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("task");
    }
    assert_eq!(total, LIMIT, "the takers together got the limit exactly");
}
