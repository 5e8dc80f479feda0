//! The message path after the edge, in one process: a `SubmitEvent` on `smsc.submit`
//! through the router, the delivery worker, the simulated network and the receipt, to
//! the `Edge.Deliver` call the dispatcher makes; MO from the simulator's handset side to
//! the account that owns the short code. See `common/mod.rs` for the wiring and time.

mod common;

use std::time::Duration;

use common::*;
use smsc_delivery_worker::config::SimProfile;
use smsc_proto::simulator_server::Simulator as _;
use smsc_proto::{DeliveryTask, InjectMoRequest};
use smsc_smpp::receipt::ReceiptStat;
use smsc_smpp::text::{Alphabet, decode};
use smsc_smpp::{CommandStatus, EsmClass};
use smsc_store::{Applied, DeliveryState, NotificationKind as StoredKind, Store, Update};

fn profile(prefix: &str) -> SimProfile {
    SimProfile { prefix: prefix.to_owned(), ..SimProfile::default() }
}

async fn pipeline() -> Pipeline {
    Pipeline::start(vec![
        SimProfile { temporary_failures: 2, ..profile("4477009002") },
        SimProfile { unreachable: true, ..profile("4477009003") },
        SimProfile { permanent: true, ..profile("4477009004") },
    ])
    .await
}

/// Destinations: `…0001` delivered at once, `…0201` after two temporary failures,
/// `…0301` never reachable, `…0401` unknown subscriber.
const DELIVERABLE: &str = "447700900001";
const FLAKY: &str = "447700900201";
const UNREACHABLE: &str = "447700900301";
const UNKNOWN_SUBSCRIBER: &str = "447700900401";

/// Exactly one receipt of `message_id` reached the edge once everything settled.
async fn only_receipt(p: &Pipeline, message_id: &str) -> Call {
    p.wait_receipts(message_id, 1).await;
    p.settle().await;
    let mut receipts = p.edge.receipts(message_id);
    assert_eq!(receipts.len(), 1, "receipts of {message_id}: {receipts:#?}");
    receipts.remove(0)
}

#[tokio::test(start_paused = true)]
async fn delivered_message_gets_one_receipt_naming_it() {
    let p = pipeline().await;
    let id = message_id(1);
    p.submit(&p.event(&id, DELIVERABLE, 1)).await;

    let row = p.wait_state(&id, DeliveryState::Delivered).await;
    assert_eq!((row.attempts, row.error_code), (1, 0));
    let call = only_receipt(&p, &id).await;
    assert_eq!((call.endpoint.as_str(), call.request.system_id.as_str()), (EDGE, ACME));
    let d = assert_receipt(&call, &id, ReceiptStat::Delivered, 0);
    // From the handset to the ESME's address.
    assert_eq!(d.source.addr.as_bytes(), DELIVERABLE.as_bytes());
    assert_eq!(d.dest.addr.as_bytes(), b"Acme");
    assert_eq!(p.simulator.handed(), 1);
    assert_eq!(p.edge.calls().len(), 1, "{:#?}", p.edge.calls());
}

#[tokio::test(start_paused = true)]
async fn no_receipt_unless_asked_for_this_outcome() {
    let p = pipeline().await;
    let (none, failure_only, control) = (message_id(1), message_id(2), message_id(3));
    // One destination: one lane in the router, the worker and (one account) the
    // dispatcher, so the control's receipt comes after whatever the others caused.
    p.submit(&p.event(&none, DELIVERABLE, 0)).await;
    p.submit(&p.event(&failure_only, DELIVERABLE, 2)).await;
    p.submit(&p.event(&control, DELIVERABLE, 1)).await;

    p.wait_receipts(&control, 1).await;
    for id in [&none, &failure_only] {
        assert_eq!(p.row(id).await.map(|r| r.state), Some(DeliveryState::Delivered));
    }
    p.settle().await;
    let calls = p.edge.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_receipt(&calls[0], &control, ReceiptStat::Delivered, 0);
    assert_eq!(p.simulator.handed(), 3);
}

#[tokio::test(start_paused = true)]
async fn temporary_failures_retry_on_the_tiers_then_deliver() {
    let p = pipeline().await;
    let id = message_id(1);
    let ev = p.event(&id, FLAKY, 1);
    p.submit(&ev).await;

    // Between attempts the message is back to ENROUTE with the network's error.
    for attempts in [1, 2] {
        let what = format!("ENROUTE after {attempts} attempts");
        let row = p
            .wait_row(&id, &what, |r| r.state == DeliveryState::Enroute && r.attempts == attempts)
            .await;
        assert_eq!(row.error_code, 27, "absent subscriber");
    }
    let row = p.wait_state(&id, DeliveryState::Delivered).await;
    assert_eq!(row.attempts, 3);
    let took = row.final_at.expect("final_at") - ev.submitted_at_ms;
    assert!(took >= 300, "waited the 100ms then the 200ms tier, not {took}ms");

    assert_receipt(&only_receipt(&p, &id).await, &id, ReceiptStat::Delivered, 0);
    assert_eq!(p.simulator.handed(), 3);
    assert_eq!((p.deliveries("temporary"), p.deliveries("delivered")), (2, 1));
    let retries = |tier| {
        p.metrics
            .family::<smsc_delivery_worker::WorkerMetrics>()
            .retries_total
            .with_label_values(&[tier])
            .get()
    };
    assert_eq!((retries("100ms"), retries("200ms")), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn unreachable_until_validity_ends_expires() {
    let p = pipeline().await;
    let id = message_id(1);
    let mut ev = p.event(&id, UNREACHABLE, 1);
    ev.expire_at_ms = ev.submitted_at_ms + 300;
    p.submit(&ev).await;

    // Attempt 1 at 0ms, attempt 2 after the 100ms tier; the next (200ms later) would
    // be past the validity period, so it ends there.
    let row = p.wait_state(&id, DeliveryState::Expired).await;
    assert_eq!((row.attempts, row.error_code), (2, 27));
    assert_receipt(&only_receipt(&p, &id).await, &id, ReceiptStat::Expired, 27);
    assert_eq!((p.simulator.handed(), p.deliveries("temporary")), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_is_undeliverable_after_one_call() {
    let p = pipeline().await;
    let id = message_id(1);
    p.submit(&p.event(&id, UNKNOWN_SUBSCRIBER, 1)).await;

    let row = p.wait_state(&id, DeliveryState::Undeliverable).await;
    assert_eq!((row.attempts, row.error_code), (1, 1));
    assert_receipt(&only_receipt(&p, &id).await, &id, ReceiptStat::Undeliverable, 1);
    assert_eq!((p.simulator.handed(), p.deliveries("permanent")), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn scheduled_message_waits_for_its_time() {
    let p = pipeline().await;
    let id = message_id(1);
    let mut ev = p.event(&id, DELIVERABLE, 1);
    ev.schedule_at_ms = ev.submitted_at_ms + 500;
    p.submit(&ev).await;

    let row = p.wait_state(&id, DeliveryState::Scheduled).await;
    assert_eq!(row.schedule_at, Some(ev.schedule_at_ms));
    // Up to the last millisecond before it is due, nothing reaches the network.
    let due_in = ev.schedule_at_ms - p.now_ms();
    tokio::time::sleep(Duration::from_millis(due_in as u64 - 1)).await;
    assert_eq!(p.row(&id).await.map(|r| r.state), Some(DeliveryState::Scheduled));
    assert_eq!(p.simulator.handed(), 0);

    let row = p.wait_state(&id, DeliveryState::Delivered).await;
    assert!(row.final_at >= Some(ev.schedule_at_ms), "{row:?}");
    assert_receipt(&only_receipt(&p, &id).await, &id, ReceiptStat::Delivered, 0);
    assert_eq!(p.simulator.handed(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_scheduled_message_never_reaches_the_network() {
    let p = pipeline().await;
    let id = message_id(1);
    let mut ev = p.event(&id, DELIVERABLE, 1);
    ev.schedule_at_ms = ev.submitted_at_ms + 500;
    p.submit(&ev).await;
    p.wait_state(&id, DeliveryState::Scheduled).await;

    // What the edge's cancel_sm writes.
    let cancel = Update {
        state: Some(DeliveryState::Deleted),
        final_at: Some(p.now_ms()),
        ..Update::default()
    };
    let applied =
        p.store.transition(&id, 0, DeliveryState::Scheduled, cancel).await.expect("store");
    assert_eq!(applied, Applied::Yes);

    let past_due = ev.schedule_at_ms - p.now_ms() + 100;
    tokio::time::sleep(Duration::from_millis(past_due as u64)).await;
    p.settle().await;
    assert_eq!(p.simulator.handed(), 0);
    assert_eq!(p.row(&id).await.map(|r| r.state), Some(DeliveryState::Deleted));
    // The task that comes due finds the message final and owes the ESME its final
    // receipt: DELETED, never DELIVRD.
    assert_eq!(stats(&p.edge, &id), ["DELETED"]);
}

/// The same submit twice (a record redelivered to the router); returns the message_id.
async fn submit_twice(p: &Pipeline) -> String {
    let id = message_id(1);
    let ev = p.event(&id, DELIVERABLE, 1);
    p.submit(&ev).await;
    p.submit(&ev).await;
    p.wait_state(&id, DeliveryState::Delivered).await;
    p.wait_receipts(&id, 1).await;
    p.settle().await;
    id
}

#[tokio::test(start_paused = true)]
async fn a_submit_event_seen_twice_reaches_the_network_once() {
    let p = pipeline().await;
    let id = submit_twice(&p).await;

    assert_eq!(p.store.get_message(&id).await.expect("store").len(), 1);
    assert_eq!(p.simulator.handed(), 1);
    // Whatever receipts went out are the same final receipt, byte for byte.
    let receipts = p.edge.receipts(&id);
    assert_receipt(&receipts[0], &id, ReceiptStat::Delivered, 0);
    assert!(receipts.iter().all(|c| c.request.deliver_sm == receipts[0].request.deliver_sm));
}

/// docs/architecture.md: receipts repeat only when the ESME did not answer. The router re-produces
/// the task of a duplicate (it cannot know whether its first try published it), and the
/// worker re-sends the receipt of a task that finds its message final (it cannot tell a
/// duplicate from its own redelivery after a crash); the dispatcher drops that copy of a
/// receipt the ESME acknowledged.
#[tokio::test(start_paused = true)]
async fn a_submit_event_seen_twice_gives_one_receipt() {
    let p = pipeline().await;
    let id = submit_twice(&p).await;
    assert_eq!(p.edge.receipts(&id).len(), 1, "{:#?}", p.edge.receipts(&id));
}

#[tokio::test(start_paused = true)]
async fn receipt_waits_pending_until_a_receiver_takes_it() {
    let p = pipeline().await;
    p.edge.answer(Answer::Temporary);
    let id = message_id(1);
    p.submit(&p.event(&id, DELIVERABLE, 1)).await;
    p.wait_state(&id, DeliveryState::Delivered).await;

    let queued = || async { p.store.pending(ACME, None, 10).await.expect("store").items };
    eventually("the receipt pending", || async { !queued().await.is_empty() }).await;
    let pending = queued().await;
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(
        (pending[0].kind, pending[0].message_id.as_str()),
        (StoredKind::Receipt, id.as_str())
    );
    assert!(p.edge.calls().iter().all(|c| c.answer == Answer::Temporary));

    // A receiver binds: the sweep delivers it, once, as it was queued.
    p.edge.answer(Answer::Delivered);
    eventually("the pending queue empty", || async { queued().await.is_empty() }).await;
    let call = only_receipt(&p, &id).await;
    assert_eq!(call.request.deliver_sm, pending[0].pdu.to_vec());
    assert_receipt(&call, &id, ReceiptStat::Delivered, 0);
    assert!(queued().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn receipt_refused_for_good_is_dropped() {
    let p = pipeline().await;
    p.edge.answer(Answer::Permanent(CommandStatus::ESME_RX_P_APPN));
    let id = message_id(1);
    p.submit(&p.event(&id, DELIVERABLE, 1)).await;
    p.wait_state(&id, DeliveryState::Delivered).await;

    let refused = || {
        p.metrics
            .family::<smsc_delivery_worker::WorkerMetrics>()
            .notifications_total
            .with_label_values(&["receipt", "refused"])
            .get()
    };
    eventually("the receipt refused", || async { refused() == 1 }).await;
    p.settle().await;
    let calls = p.edge.calls();
    assert_eq!(calls.len(), 1, "asked once, never again: {calls:#?}");
    assert_receipt(&calls[0], &id, ReceiptStat::Delivered, 0);
    assert!(p.store.pending(ACME, None, 10).await.expect("store").items.is_empty());
    let pending = p
        .metrics
        .family::<smsc_delivery_worker::WorkerMetrics>()
        .notifications_total
        .with_label_values(&["receipt", "pending"])
        .get();
    assert_eq!((refused(), pending), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn receipts_go_only_to_their_own_account() {
    let p = pipeline().await;
    let (acme, bank) = (message_id(1), message_id(2));
    p.submit(&p.event(&acme, DELIVERABLE, 1)).await;
    let mut ev = p.event(&bank, "447700900002", 1);
    ev.system_id = BANK.to_owned();
    p.submit(&ev).await;

    p.wait_receipts(&acme, 1).await;
    p.wait_receipts(&bank, 1).await;
    p.settle().await;
    let calls = p.edge.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for (id, system_id) in [(&acme, ACME), (&bank, BANK)] {
        let mine: Vec<_> = calls.iter().filter(|c| c.request.system_id == system_id).collect();
        assert_eq!(mine.len(), 1, "{system_id}: {calls:#?}");
        assert_receipt(mine[0], id, ReceiptStat::Delivered, 0);
    }
}

/// A handset sends `text` to `to` through the simulator.
async fn inject(p: &Pipeline, to: &str, text: &str) {
    let req = InjectMoRequest { from: "447700900555".into(), to: to.into(), text: text.into() };
    p.handsets.inject_mo(tonic::Request::new(req)).await.expect("InjectMo");
}

#[tokio::test(start_paused = true)]
async fn mo_reaches_the_account_owning_the_short_code() {
    let p = pipeline().await;
    inject(&p, ACME_SHORT_CODE, "STOP acme").await;
    inject(&p, BANK_SHORT_CODE, "BALANCE").await;

    eventually("both MO delivered", || async { p.edge.mo().len() >= 2 }).await;
    p.settle().await;
    let mo = p.edge.mo();
    assert_eq!(mo.len(), 2, "{mo:#?}");
    for (system_id, short_code, text) in
        [(ACME, ACME_SHORT_CODE, "STOP acme"), (BANK, BANK_SHORT_CODE, "BALANCE")]
    {
        let mine: Vec<_> = mo.iter().filter(|c| c.request.system_id == system_id).collect();
        assert_eq!(mine.len(), 1, "{system_id}: {mo:#?}");
        let d = mine[0].deliver_sm();
        assert_eq!((d.esm_class, d.data_coding.0), (EsmClass(0), 0));
        assert_eq!(decode(d.short_message.as_bytes(), Alphabet::Gsm7).expect("GSM 7"), text);
        assert_eq!(d.source.addr.as_bytes(), b"447700900555");
        assert_eq!(d.dest.addr.as_bytes(), short_code.as_bytes());
    }
    assert_eq!(p.edge.calls().len(), 2, "no receipts, nothing else");
}

#[tokio::test(start_paused = true)]
async fn long_mo_arrives_as_concatenated_parts_in_order() {
    let p = pipeline().await;
    let text: String = (0..200).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    inject(&p, ACME_SHORT_CODE, &text).await;

    eventually("two parts delivered", || async { p.edge.mo().len() >= 2 }).await;
    p.settle().await;
    let parts: Vec<_> = p.edge.mo().iter().map(Call::deliver_sm).collect();
    assert_eq!(parts.len(), 2);
    let mut joined = Vec::new();
    for (seq, d) in (1u8..).zip(&parts) {
        assert_eq!(d.esm_class, EsmClass(EsmClass::UDHI));
        let sm = d.short_message.as_bytes();
        // UDH: length 5, IEI 0x00 (8-bit reference), IE length 3, ref, total, seq.
        assert_eq!((sm[0], sm[1], sm[2], sm[4], sm[5]), (5, 0x00, 3, 2, seq), "{sm:02x?}");
        assert_eq!(sm[3], parts[0].short_message.as_bytes()[3], "one reference");
        joined.extend_from_slice(&sm[6..]);
    }
    assert_eq!(decode(&joined, Alphabet::Gsm7).expect("GSM 7"), text);
    assert!(p.edge.mo().iter().all(|c| c.request.system_id == ACME));
}

#[tokio::test(start_paused = true)]
async fn mo_to_an_unrouted_short_code_reaches_nobody() {
    let p = pipeline().await;
    inject(&p, "9999", "anyone?").await;

    let dropped = || {
        p.metrics
            .family::<smsc_router::RouterMetrics>()
            .mo_total
            .with_label_values(&["no_route"])
            .get()
    };
    eventually("the router dropped it", || async { dropped() == 1 }).await;
    p.settle().await;
    assert!(p.edge.calls().is_empty(), "{:#?}", p.edge.calls());
    for account in [ACME, BANK] {
        assert!(p.store.pending(account, None, 10).await.expect("store").items.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn message_left_in_delivery_by_a_dead_worker_ends_unknown() {
    let p = pipeline().await;
    let id = message_id(1);
    let ev = p.event(&id, DELIVERABLE, 1);
    // A worker claimed attempt 1 and died before it knew the network's answer.
    let row = p.stored(&ev, DeliveryState::InDelivery, 1);
    assert_eq!(p.store.insert_message(row).await.expect("store"), Applied::Yes);
    let task = DeliveryTask {
        message_id: id.clone(),
        connectors: vec![CONNECTOR.to_owned()],
        ..DeliveryTask::default()
    };
    let published = p.now_ms();
    p.publish_task(DELIVERABLE, &task).await;

    let row = p.wait_state(&id, DeliveryState::Unknown).await;
    assert_eq!(row.attempts, 1);
    let waited = row.final_at.expect("final_at") - published;
    assert!(waited >= 100, "requeued for the first tier before giving up, not {waited}ms");
    assert_receipt(&only_receipt(&p, &id).await, &id, ReceiptStat::Unknown, 0);
    assert_eq!(p.simulator.handed(), 0, "never risks a second copy on the network");
}
