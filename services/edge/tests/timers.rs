//! The session timers, on paused tokio time (see [`common::paused`]): the clock jumps to
//! the next timer whenever the runtime is idle (TCP over loopback works as usual; argon2
//! on the blocking pool holds the clock), so these take no wall time and check the
//! virtual instant each timer fires at.

mod common;

use std::time::Duration;

use common::{Client, ESME, Setup, TestEdge, paused};
use smsc_edge::Settings;
use smsc_smpp::{Body, CommandId, Pdu};
use smsc_store::BindKind;
use tokio::time::Instant;

const INIT: Duration = Duration::from_secs(10);
const ENQUIRE: Duration = Duration::from_secs(30);
const RESPONSE: Duration = Duration::from_secs(5);
const INACTIVITY: Duration = Duration::from_secs(300);

async fn edge_with(change: impl FnOnce(&mut Settings)) -> TestEdge {
    let mut setup = Setup::default();
    setup.settings.session_init_timeout = INIT;
    setup.settings.enquire_link_interval = ENQUIRE;
    setup.settings.response_timeout = RESPONSE;
    setup.settings.inactivity_timeout = INACTIVITY;
    change(&mut setup.settings);
    TestEdge::start(setup).await
}

async fn edge() -> TestEdge {
    edge_with(|_| {}).await
}

/// Reads wait longer than any timer here, so a timer that does not fire fails the test.
fn patient(mut c: Client) -> Client {
    c.timeout = Duration::from_secs(600);
    c
}

fn assert_after(elapsed: Duration, timer: Duration) {
    assert!(
        elapsed >= timer && elapsed < timer + Duration::from_secs(1),
        "after {elapsed:?}, expected {timer:?}"
    );
}

#[test]
fn a_connection_that_never_binds_is_closed_at_session_init_timeout() {
    paused(|| async {
        let edge = edge().await;
        let start = Instant::now();
        let mut c = patient(edge.connect().await);
        c.expect_closed().await;
        assert_after(start.elapsed(), INIT);
    });
}

#[test]
fn a_bound_connection_outlives_session_init_timeout() {
    paused(|| async {
        let edge = edge().await;
        let mut c = patient(edge.bind(BindKind::Transceiver, ESME).await);
        c.expect_silence(INIT * 2).await;
        assert_eq!(c.request(Body::EnquireLink).await.command_id(), CommandId::EnquireLinkResp);
    });
}

#[test]
fn silence_brings_enquire_link_and_no_answer_closes_the_session() {
    paused(|| async {
        let edge = edge().await;
        let mut c = patient(edge.bind(BindKind::Transceiver, ESME).await);
        let start = Instant::now();
        let enquire = c.recv().await;
        assert_eq!(enquire.command_id(), CommandId::EnquireLink, "{enquire:?}");
        assert_after(start.elapsed(), ENQUIRE);

        let asked = Instant::now();
        c.expect_closed().await;
        assert_after(asked.elapsed(), RESPONSE);
        let registry = &edge.edge.registry;
        common::eventually("session unregistered", || async { registry.count(ESME) == 0 }).await;
    });
}

#[test]
fn answered_enquire_link_keeps_the_session_open() {
    paused(|| async {
        let edge = edge().await;
        let mut c = patient(edge.bind(BindKind::Transceiver, ESME).await);
        for _ in 0..3 {
            let start = Instant::now();
            let enquire = c.recv().await;
            assert_eq!(enquire.command_id(), CommandId::EnquireLink, "{enquire:?}");
            assert_after(start.elapsed(), ENQUIRE);
            c.send(&[Pdu::new(enquire.sequence_number, Body::EnquireLinkResp)]).await;
        }
        // Past the response timer of the last one: still bound, still answering.
        let resp = c.request(Body::EnquireLink).await;
        assert_eq!(resp.command_id(), CommandId::EnquireLinkResp);
        assert_eq!(edge.edge.registry.count(ESME), 1);
    });
}

#[test]
fn inactivity_unbinds_and_an_unanswered_unbind_closes() {
    paused(|| async {
        const QUIET: Duration = Duration::from_secs(20);
        let edge = edge_with(|s| {
            s.inactivity_timeout = QUIET;
            s.enquire_link_interval = Duration::from_secs(60);
        })
        .await;
        let mut c = patient(edge.bind(BindKind::Transceiver, ESME).await);
        let start = Instant::now();
        let unbind = c.recv().await;
        assert_eq!(unbind.command_id(), CommandId::Unbind, "{unbind:?}");
        assert_after(start.elapsed(), QUIET);
        // Unbinding: the account's receivers no longer include it.
        assert!(edge.edge.registry.receivers(ESME).is_empty());

        let asked = Instant::now();
        c.expect_closed().await;
        assert_after(asked.elapsed(), RESPONSE);
    });
}
