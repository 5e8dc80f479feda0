//! Tenant isolation through the router and the worker: a backlog of one account does not
//! hold back another account's message, nor a higher class's, by more than a bound
//! counted in messages (the lanes), whatever the backlog's size. Paused time: the
//! simulated network takes 100 ms per message and the pipeline runs 4 lanes with 64
//! records read ahead, on a bus of 8 partitions per topic (`common/mod.rs`).

mod common;

use std::time::Duration;

use common::*;
use smsc_bus::Class;
use smsc_delivery_worker::config::SimProfile;
use smsc_store::DeliveryState;

/// Messages of the backlog: fewer than the lanes' read-ahead, so all of it is in view.
const BACKLOG: u32 = 60;
/// The lanes of the harness, and as many more records as may finish meanwhile.
const BOUND: usize = 8;

async fn slow_network() -> Pipeline {
    let slow = SimProfile {
        prefix: "1555".into(),
        latency: Duration::from_millis(100),
        ..SimProfile::default()
    };
    Pipeline::start(vec![slow.clone(), SimProfile { prefix: "4479".into(), ..slow }]).await
}

/// ACME's backlog of `BACKLOG` in `bulk`, then one message of `account` in `class`:
/// how many of the backlog were final when that one was delivered.
async fn finished_ahead(account: &str, class: Class, bulk: Class) -> usize {
    finished_ahead_of(BACKLOG, account, class, bulk).await
}

async fn finished_ahead_of(backlog: u32, account: &str, class: Class, bulk: Class) -> usize {
    let p = slow_network().await;
    let backlog: Vec<String> = (0..backlog).map(|i| message_id(1000 + u64::from(i))).collect();
    for (i, id) in backlog.iter().enumerate() {
        p.submit_as(&p.event(id, &format!("1555{i:07}"), 0), bulk).await;
    }
    let id = message_id(1);
    let ev =
        smsc_proto::SubmitEvent { system_id: account.into(), ..p.event(&id, "447900000001", 0) };
    p.submit_as(&ev, class).await;
    p.wait_state(&id, DeliveryState::Delivered).await;
    let mut ahead = 0;
    for b in &backlog {
        if p.row(b).await.is_some_and(|r| r.state.is_final()) {
            ahead += 1;
        }
    }
    // The backlog itself is all delivered in the end.
    for b in &backlog {
        p.wait_state(b, DeliveryState::Delivered).await;
    }
    ahead
}

#[tokio::test(start_paused = true)]
async fn another_accounts_message_overtakes_a_backlog_of_the_same_class() {
    let ahead = finished_ahead(BANK, Class::Standard, Class::Standard).await;
    assert!(ahead <= BOUND, "{ahead} of the backlog's {BACKLOG} went first");
}

#[tokio::test(start_paused = true)]
async fn an_interactive_message_overtakes_a_bulk_backlog() {
    let ahead = finished_ahead(BANK, Class::Interactive, Class::Bulk).await;
    assert!(ahead <= BOUND, "{ahead} of the backlog's {BACKLOG} went first");
}

#[tokio::test(start_paused = true)]
async fn an_interactive_message_of_the_same_account_overtakes_its_bulk_backlog() {
    let ahead = finished_ahead(ACME, Class::Interactive, Class::Bulk).await;
    assert!(ahead <= BOUND, "{ahead} of the backlog's {BACKLOG} went first");
}

/// A campaign's backlog far beyond what a hop reads ahead: the interactive message is on
/// topics of its own class (`smsc.submit.interactive`, `smsc.deliver.interactive`), and
/// each hop takes the partitions it holds in turn, so it is read after at most one turn
/// over the bulk partitions, not after the backlog.
#[tokio::test(start_paused = true)]
async fn an_interactive_message_overtakes_a_bulk_backlog_larger_than_the_read_ahead() {
    const LARGE: u32 = 400;
    // The lanes, one turn over the 8 partitions of the bulk topic, and the lanes again
    // (what finishes while the message itself is on the network).
    const BOUND: usize = 4 + 8 + 4;
    let ahead = finished_ahead_of(LARGE, BANK, Class::Interactive, Class::Bulk).await;
    assert!(ahead <= BOUND, "{ahead} of the backlog's {LARGE} went first");
}
