//! Binds, session state, malformed input, unbind and shutdown, over real TCP.

mod common;

use std::time::Duration;

use common::{ESME, PASSWORD, Setup, TestEdge, account, assert_status, submit_sm};
use smsc_smpp::{Body, CommandId, CommandStatus, Pdu, TlvTag};
use smsc_store::BindKind;

/// An edge with one account per bind rule.
async fn edge_with_rules() -> TestEdge {
    let mut off = account("off");
    off.enabled = false;
    let mut rx_only = account("rxonly");
    rx_only.bind_types = vec![BindKind::Receiver];
    let mut ten_net = account("tennet");
    ten_net.allowed_cidrs = vec!["10.0.0.0/8".parse().expect("net")];
    let mut single = account("single");
    single.max_binds = 1;
    TestEdge::start(Setup::accounts(vec![account(ESME), off, rx_only, ten_net, single])).await
}

async fn bind_status(edge: &TestEdge, kind: BindKind, system_id: &str, password: &str) -> Pdu {
    let mut c = edge.connect().await;
    c.bind_as(kind, system_id, password, 0x34).await
}

#[tokio::test]
async fn bind_transceiver_answers_system_id_and_sc_interface_version() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.connect().await;
    let resp = c.bind_as(BindKind::Transceiver, ESME, PASSWORD, 0x34).await;
    assert_status(&resp, CommandStatus::ESME_ROK);
    assert_eq!(resp.sequence_number, 1);
    let Body::BindTransceiverResp(b) = &resp.body else { panic!("{resp:?}") };
    assert_eq!(b.system_id.as_bytes(), b"smsc");
    assert_eq!(b.tlvs.sc_interface_version(), Some(0x34));
    assert_eq!(b.tlvs.len(), 1, "{:?}", b.tlvs);
}

#[tokio::test]
async fn bind_with_interface_version_33_gets_no_tlvs() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.connect().await;
    let resp = c.bind_as(BindKind::Transmitter, ESME, PASSWORD, 0x33).await;
    assert_status(&resp, CommandStatus::ESME_ROK);
    let Body::BindTransmitterResp(b) = &resp.body else { panic!("{resp:?}") };
    assert_eq!(b.system_id.as_bytes(), b"smsc");
    assert!(b.tlvs.get(TlvTag::SC_INTERFACE_VERSION).is_none());
    assert!(b.tlvs.is_empty(), "{:?}", b.tlvs);
    // Header and "smsc\0": nothing after the mandatory part.
    assert_eq!(resp.encoded_len(), 16 + 5);
}

#[tokio::test]
async fn bind_unknown_system_id_is_rinvsysid() {
    let edge = edge_with_rules().await;
    let resp = bind_status(&edge, BindKind::Transceiver, "nobody", PASSWORD).await;
    assert_status(&resp, CommandStatus::ESME_RINVSYSID);
}

#[tokio::test]
async fn bind_wrong_password_is_rinvpaswd_and_the_session_may_retry() {
    let edge = edge_with_rules().await;
    let mut c = edge.connect().await;
    let resp = c.bind_as(BindKind::Transceiver, ESME, "wrong", 0x34).await;
    assert_status(&resp, CommandStatus::ESME_RINVPASWD);
    assert_eq!(resp.sequence_number, 1);
    // A refused bind_transceiver_resp has its body, though 3.4 leaves it out: gosmpp
    // reads its system_id whatever the status. The others have none (gosmpp would read
    // it as TLVs).
    let Body::BindTransceiverResp(b) = &resp.body else { panic!("{resp:?}") };
    assert_eq!(b.system_id.as_bytes(), b"smsc");
    assert_eq!(resp.encoded_len(), 16 + 5, "no TLVs on a refusal");
    for kind in [BindKind::Transmitter, BindKind::Receiver] {
        let resp = edge.connect().await.bind_as(kind, ESME, "wrong", 0x34).await;
        assert_status(&resp, CommandStatus::ESME_RINVPASWD);
        assert_eq!(resp.encoded_len(), 16, "{kind:?}: the header only");
    }
    // A refused bind leaves the session open and unbound.
    c.bind_ok(BindKind::Transceiver, ESME).await;
}

#[tokio::test]
async fn bind_disabled_account_is_rbindfail() {
    let edge = edge_with_rules().await;
    let resp = bind_status(&edge, BindKind::Transceiver, "off", PASSWORD).await;
    assert_status(&resp, CommandStatus::ESME_RBINDFAIL);
}

#[tokio::test]
async fn bind_type_not_allowed_is_rbindfail() {
    let edge = edge_with_rules().await;
    let resp = bind_status(&edge, BindKind::Transmitter, "rxonly", PASSWORD).await;
    assert_status(&resp, CommandStatus::ESME_RBINDFAIL);
    // The type it has is allowed.
    let resp = bind_status(&edge, BindKind::Receiver, "rxonly", PASSWORD).await;
    assert_status(&resp, CommandStatus::ESME_ROK);
}

#[tokio::test]
async fn bind_from_a_network_not_allowed_is_rbindfail() {
    let edge = edge_with_rules().await;
    let resp = bind_status(&edge, BindKind::Transceiver, "tennet", PASSWORD).await;
    assert_status(&resp, CommandStatus::ESME_RBINDFAIL);
}

#[tokio::test]
async fn bind_past_max_binds_is_rbindfail() {
    let edge = edge_with_rules().await;
    let _first = edge.bind(BindKind::Transmitter, "single").await;
    let resp = bind_status(&edge, BindKind::Transmitter, "single", PASSWORD).await;
    assert_status(&resp, CommandStatus::ESME_RBINDFAIL);
}

#[tokio::test]
async fn second_bind_on_a_session_is_ralybnd() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    let resp = c.bind_as(BindKind::Transmitter, ESME, PASSWORD, 0x34).await;
    assert_status(&resp, CommandStatus::ESME_RALYBND);
    assert_eq!(resp.sequence_number, 2);
    // Still bound as before.
    assert_status(&c.submit(submit_sm("still bound")).await, CommandStatus::ESME_ROK);
}

#[tokio::test]
async fn submit_before_bind_is_rinvbndsts() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.connect().await;
    let resp = c.submit(submit_sm("too early")).await;
    assert_status(&resp, CommandStatus::ESME_RINVBNDSTS);
    assert_eq!(resp.sequence_number, 1);
}

#[tokio::test]
async fn submit_on_a_receiver_bind_is_rinvbndsts() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.bind(BindKind::Receiver, ESME).await;
    c.submit_refused(submit_sm("receivers do not submit"), CommandStatus::ESME_RINVBNDSTS).await;
}

#[tokio::test]
async fn enquire_link_is_answered_before_and_after_bind() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.connect().await;
    let resp = c.request(Body::EnquireLink).await;
    assert_eq!(
        (resp.command_id(), resp.status),
        (CommandId::EnquireLinkResp, CommandStatus::ESME_ROK)
    );
    c.bind_ok(BindKind::Transmitter, ESME).await;
    let resp = c.request(Body::EnquireLink).await;
    assert_eq!(
        (resp.command_id(), resp.status),
        (CommandId::EnquireLinkResp, CommandStatus::ESME_ROK)
    );
}

#[tokio::test]
async fn unknown_command_id_gets_generic_nack_and_the_session_goes_on() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.connect().await;
    // command_id 0x00000099 is not an SMPP command; sequence 42.
    c.write_hex("00000010 00000099 00000000 0000002a").await;
    let nack = c.recv().await;
    assert_eq!(nack.command_id(), CommandId::GenericNack);
    assert_status(&nack, CommandStatus::ESME_RINVCMDID);
    assert_eq!(nack.sequence_number, 42);
    let resp = c.request(Body::EnquireLink).await;
    assert_eq!(resp.command_id(), CommandId::EnquireLinkResp);
}

#[tokio::test]
async fn truncated_submit_sm_gets_rinvcmdlen_and_the_session_goes_on() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    // submit_sm, sequence 7, whose body ends inside source_addr_npi: "CMT\0", TON 1.
    c.write_hex("00000015 00000004 00000000 00000007 434d5400 01").await;
    let resp = c.recv().await;
    assert_eq!(resp.command_id(), CommandId::SubmitSmResp);
    assert_status(&resp, CommandStatus::ESME_RINVCMDLEN);
    assert_eq!(resp.sequence_number, 7);
    assert_status(&c.submit(submit_sm("after the bad one")).await, CommandStatus::ESME_ROK);
}

#[tokio::test]
async fn garbage_command_length_closes_that_connection_only() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut other = edge.bind(BindKind::Transceiver, ESME).await;
    let mut c = edge.connect().await;
    // command_length 8: less than a header, so framing is lost.
    c.write_hex("00000008 00000004 00000000 00000007").await;
    let nack = c.recv().await;
    assert_eq!(nack.command_id(), CommandId::GenericNack);
    assert_status(&nack, CommandStatus::ESME_RINVCMDLEN);
    assert_eq!(nack.sequence_number, 7);
    c.expect_closed().await;
    assert_status(&other.submit(submit_sm("unaffected")).await, CommandStatus::ESME_ROK);
}

#[test]
fn unbind_is_answered_and_the_connection_ends_with_the_esme_close() {
    common::paused(|| async {
        let edge = TestEdge::start(Setup::default()).await;
        let mut c = edge.bind(BindKind::Transceiver, ESME).await;
        assert_eq!(edge.edge.registry.count(ESME), 1);
        let resp = c.request(Body::Unbind).await;
        assert_eq!(resp.command_id(), CommandId::UnbindResp);
        assert_status(&resp, CommandStatus::ESME_ROK);
        assert_eq!(edge.edge.registry.count(ESME), 0, "no deliveries to a leaving session");
        drop(c);
        // At once, not at the end of the edge's wait for the ESME's close.
        let open = &edge.metrics.family::<smsc_edge::EdgeMetrics>().connections;
        let ended = common::eventually("the connection ended", || async { open.get() == 0 });
        tokio::time::timeout(Duration::from_millis(500), ended).await.expect("within 0.5 s");
    });
}

#[test]
fn after_unbind_resp_the_edge_leaves_the_close_to_the_esme_for_a_second() {
    // gosmpp closes its socket once it has read unbind_resp; an edge closing first races
    // that close and gosmpp reports its own close as failed.
    common::paused(|| async {
        let edge = TestEdge::start(Setup::default()).await;
        let mut c = edge.bind(BindKind::Transceiver, ESME).await;
        let resp = c.request(Body::Unbind).await;
        assert_eq!(resp.command_id(), CommandId::UnbindResp);
        c.expect_silence(Duration::from_millis(900)).await;
        // An ESME that never closes is closed by the edge.
        c.expect_closed().await;
        let registry = &edge.edge.registry;
        common::eventually("session unregistered", || async { registry.count(ESME) == 0 }).await;
    });
}

#[test]
fn at_shutdown_a_bind_on_its_way_is_refused_not_left_unanswered() {
    // A client that connected as the listener closed: its bind gets an answer (jSMPP
    // waits out its whole bind timeout for one when the connection just closes).
    common::paused(|| async {
        let edge = TestEdge::start(Setup::default()).await;
        let (mut c, mut idle) = (edge.connect().await, edge.connect().await);
        // Both sessions run (enquire_link is answered before a bind).
        for c in [&mut c, &mut idle] {
            let resp = c.request(Body::EnquireLink).await;
            assert_eq!(resp.command_id(), CommandId::EnquireLinkResp);
        }
        edge.shutdown.cancel();
        let resp = c.bind_as(BindKind::Transceiver, ESME, PASSWORD, 0x34).await;
        assert_status(&resp, CommandStatus::ESME_RBINDFAIL);
        c.expect_closed().await;
        // Without a bind, the connection is closed a second into the shutdown.
        idle.expect_silence(Duration::from_millis(900)).await;
        idle.expect_closed().await;
    });
}

#[tokio::test]
async fn shutdown_unbinds_bound_sessions_and_serve_returns() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    edge.shutdown.cancel();
    let unbind = c.recv().await;
    assert_eq!(unbind.command_id(), CommandId::Unbind, "{unbind:?}");
    // The edge drains: it waits for the answer (or its response timer).
    assert!(!edge.serving.is_finished(), "serve returned before the session answered");
    c.send(&[Pdu::new(unbind.sequence_number, Body::UnbindResp)]).await;
    c.expect_closed().await;
    tokio::time::timeout(Duration::from_secs(5), edge.serving)
        .await
        .expect("serve returns once its sessions are gone")
        .expect("serve did not panic");
    // The listener is gone too.
    assert!(tokio::net::TcpStream::connect(edge.addr).await.is_err(), "still accepting");
}
