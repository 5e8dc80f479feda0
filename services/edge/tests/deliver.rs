//! deliver_sm pushed to sessions over gRPC (`Edge.Deliver`), the session directory,
//! and python smpplib as a real third-party ESME.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    ESME, PASSWORD, READ_TIMEOUT, Setup, TestEdge, account, assert_status, deliver_request,
    submit_consumer, submitted,
};
use smsc_edge::Settings;
use smsc_edge::grpc::EdgeGrpc;
use smsc_proto::edge_server::Edge as _;
use smsc_proto::{DeliverOutcome, DeliverResponse};
use smsc_smpp::pdu::MessageIdResp;
use smsc_smpp::{Body, CommandId, CommandStatus, EsmClass, MessageState, Pdu};
use smsc_store::{BindKind, SessionLease, Store as _};

const RECEIPTED: &str = "0123456789abcdef0123456789abcdef";

/// Binds a receiver with `version`, pushes a receipt through `Edge.Deliver` over gRPC,
/// answers it with `status`, and returns what the session got and what the caller got.
async fn deliver_answered(version: u8, status: CommandStatus) -> (Pdu, DeliverResponse) {
    let edge = TestEdge::start(Setup::default()).await;
    let mut grpc = edge.grpc().await;
    let mut c = edge.connect().await;
    assert_status(
        &c.bind_as(BindKind::Receiver, ESME, PASSWORD, version).await,
        CommandStatus::ESME_ROK,
    );
    let call = tokio::spawn(async move { grpc.deliver(deliver_request(ESME, RECEIPTED)).await });
    let deliver = c.recv().await;
    assert_eq!(deliver.command_id(), CommandId::DeliverSm, "{deliver:?}");
    let body = Body::DeliverSmResp(MessageIdResp::default());
    c.send(&[Pdu { sequence_number: deliver.sequence_number, status, body }]).await;
    let resp = tokio::time::timeout(READ_TIMEOUT, call)
        .await
        .expect("Edge.Deliver answers")
        .expect("no panic")
        .expect("gRPC ok")
        .into_inner();
    (deliver, resp)
}

fn deliver_sm(p: &Pdu) -> &smsc_smpp::pdu::SubmitSm {
    match &p.body {
        Body::DeliverSm(d) => d,
        other => panic!("not a deliver_sm: {other:?}"),
    }
}

#[tokio::test]
async fn receipt_answered_ok_is_delivered_with_its_tlvs() {
    let (pdu, resp) = deliver_answered(0x34, CommandStatus::ESME_ROK).await;
    let d = deliver_sm(&pdu);
    assert_eq!(d.esm_class, EsmClass(EsmClass::TYPE_DELIVERY_RECEIPT));
    assert!(d.short_message.as_bytes().starts_with(format!("id:{RECEIPTED} ").as_bytes()));
    let receipted = d.tlvs.receipted_message_id().expect("receipted_message_id TLV");
    assert_eq!(receipted.value(), RECEIPTED.as_bytes());
    assert_eq!(d.tlvs.message_state(), Some(MessageState::DELIVERED));
    assert_eq!(resp.outcome(), DeliverOutcome::Delivered);
    assert_eq!(resp.command_status, 0);
}

#[tokio::test]
async fn receipt_to_a_v33_bind_has_its_tlvs_stripped() {
    let (pdu, resp) = deliver_answered(0x33, CommandStatus::ESME_ROK).await;
    let d = deliver_sm(&pdu);
    assert!(d.tlvs.is_empty(), "TLVs sent to a 3.3 peer: {:?}", d.tlvs);
    assert!(d.short_message.as_bytes().starts_with(format!("id:{RECEIPTED} ").as_bytes()));
    assert_eq!(resp.outcome(), DeliverOutcome::Delivered);
}

#[tokio::test]
async fn answered_rx_t_appn_is_temporary() {
    let (_, resp) = deliver_answered(0x34, CommandStatus::ESME_RX_T_APPN).await;
    assert_eq!(resp.outcome(), DeliverOutcome::Temporary);
    assert_eq!(resp.command_status, CommandStatus::ESME_RX_T_APPN.0);
}

#[tokio::test]
async fn answered_rx_p_appn_is_permanent() {
    let (_, resp) = deliver_answered(0x34, CommandStatus::ESME_RX_P_APPN).await;
    assert_eq!(resp.outcome(), DeliverOutcome::Permanent);
    assert_eq!(resp.command_status, CommandStatus::ESME_RX_P_APPN.0);
}

#[tokio::test]
async fn without_a_receiver_session_delivery_is_temporary() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut grpc = edge.grpc().await;
    // A transmitter cannot take deliver_sm.
    let _tx = edge.bind(BindKind::Transmitter, ESME).await;
    let resp = grpc.deliver(deliver_request(ESME, RECEIPTED)).await.expect("gRPC ok").into_inner();
    assert_eq!(resp.outcome(), DeliverOutcome::Temporary);
    assert_eq!(resp.detail, "no receiver session on this edge");
}

#[tokio::test]
async fn unanswered_deliver_sm_times_out_as_temporary() {
    let settings =
        Settings { response_timeout: Duration::from_millis(300), ..Setup::default().settings };
    let edge = TestEdge::start(Setup { settings, ..Setup::default() }).await;
    let mut grpc = edge.grpc().await;
    let mut c = edge.bind(BindKind::Receiver, ESME).await;
    let call = tokio::spawn(async move { grpc.deliver(deliver_request(ESME, RECEIPTED)).await });
    assert_eq!(c.recv().await.command_id(), CommandId::DeliverSm);
    // Never answered.
    let resp = tokio::time::timeout(READ_TIMEOUT, call)
        .await
        .expect("Edge.Deliver answers")
        .expect("no panic")
        .expect("gRPC ok")
        .into_inner();
    assert_eq!(resp.outcome(), DeliverOutcome::Temporary);
    assert_eq!(resp.detail, "timeout");
}

/// More deliveries than a receiver's window and queue hold, each polled once: the
/// ones that found every queue full are still waiting (not answered "busy").
async fn overfill(edge: &TestEdge) -> Vec<std::pin::Pin<Box<DeliverCall>>> {
    let grpc = EdgeGrpc(edge.edge.clone());
    // Window 16 + queue 64: at most ~81 are taken before the ESME answers anything.
    let mut calls: Vec<std::pin::Pin<Box<DeliverCall>>> = (0..100)
        .map(|i| {
            let grpc = grpc.clone();
            let req = deliver_request(ESME, &format!("{i:032x}"));
            Box::pin(async move { grpc.deliver(tonic::Request::new(req)).await }) as _
        })
        .collect();
    for call in &mut calls {
        let polled = futures::FutureExt::now_or_never(call.as_mut());
        assert!(polled.is_none(), "answered while the session is only slow: {polled:?}");
    }
    calls
}

type DeliverCall = dyn std::future::Future<Output = Result<tonic::Response<DeliverResponse>, tonic::Status>>
    + Send;

#[tokio::test]
async fn full_receiver_queues_hold_the_caller_until_there_is_room() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut c = edge.bind(BindKind::Receiver, ESME).await;
    let calls = overfill(&edge).await;
    let answered = tokio::spawn(futures::future::join_all(calls));
    for _ in 0..100 {
        let pdu = c.recv().await;
        assert_eq!(pdu.command_id(), CommandId::DeliverSm, "{pdu:?}");
        c.send(&[Pdu::new(pdu.sequence_number, Body::DeliverSmResp(MessageIdResp::default()))])
            .await;
    }
    let answered = tokio::time::timeout(READ_TIMEOUT, answered).await.expect("all answered");
    for resp in answered.expect("no panic") {
        assert_eq!(resp.expect("ok").into_inner().outcome(), DeliverOutcome::Delivered);
    }
}

#[tokio::test]
async fn a_receiver_that_stays_full_is_reported_busy_after_the_wait() {
    let edge = TestEdge::start(Setup::default()).await;
    let _c = edge.bind(BindKind::Receiver, ESME).await;
    let calls = overfill(&edge).await;
    // Nothing is answered: the ones without room give up after deliver_queue_wait, well before
    // the window's deliver_sm time out (response_timeout) and make room.
    let (first, _, _) = tokio::time::timeout(READ_TIMEOUT, futures::future::select_all(calls))
        .await
        .expect("an answer");
    let resp = first.expect("ok").into_inner();
    assert_eq!(resp.outcome(), DeliverOutcome::Temporary, "{resp:?}");
    assert_eq!(resp.detail, "every receiver session is busy");
    assert_eq!(resp.command_status, CommandStatus::ESME_RMSGQFUL.0);
}

/// The session directory's leases of `system_id` once `done` holds for them. Leases are
/// written and removed asynchronously after the bind_resp and the close, so this polls.
async fn leases_until(
    edge: &TestEdge,
    system_id: &str,
    done: impl Fn(&[SessionLease]) -> bool,
) -> Vec<SessionLease> {
    let mut leases = Vec::new();
    for _ in 0..500 {
        leases = edge.store.sessions(system_id).await.expect("store ok");
        if done(&leases) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    leases
}

/// What the workers read to find an account's receivers: one lease per bound session,
/// naming this edge and the gRPC endpoint it is reached at, gone once it unbinds.
#[tokio::test]
async fn directory_lists_this_edge_while_a_receiver_is_bound() {
    let edge = TestEdge::start(Setup::default()).await;
    assert_eq!(leases_until(&edge, ESME, |_| true).await, []);

    let mut c = edge.bind(BindKind::Receiver, ESME).await;
    let found = leases_until(&edge, ESME, |l| !l.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let lease = &found[0];
    assert_eq!(
        (lease.edge_id.as_str(), lease.endpoint.as_str(), lease.bind),
        ("edge-test", Settings::default().grpc_endpoint.as_str(), BindKind::Receiver)
    );
    assert!(lease.session_id.starts_with("edge-test/"), "{lease:?}");

    assert_eq!(c.request(Body::Unbind).await.command_id(), CommandId::UnbindResp);
    c.expect_closed().await;
    let found = leases_until(&edge, ESME, <[_]>::is_empty).await;
    assert_eq!(found, [], "lease removed after unbind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpplib_esme_submits_and_receives_a_receipt() {
    let has_smpplib = std::process::Command::new("python3")
        .args(["-c", "import smpplib"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(has_smpplib, "python3 with smpplib is required: run tests/setup");

    let edge = TestEdge::start(Setup::accounts(vec![account("py")])).await;
    let mut consumer = submit_consumer(&edge.bus);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smpplib_client.py");
    let port = edge.addr.port().to_string();
    let python = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args([script, &port, "py", PASSWORD]).output()
    });

    edge.wait_receivers("py", 1).await;
    let outcome = EdgeGrpc(edge.edge.clone())
        .deliver(tonic::Request::new(deliver_request("py", RECEIPTED)))
        .await
        .expect("deliver")
        .into_inner();
    assert_eq!(outcome.outcome(), DeliverOutcome::Delivered, "{outcome:?}");

    let out = tokio::time::timeout(Duration::from_secs(60), python)
        .await
        .expect("the script ends")
        .expect("no panic")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "smpplib_client.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("\"receipted_message_id\": \"{RECEIPTED}\"")), "{stdout}");

    // Both submits reached the bus, under the ids smpplib was given.
    let events = submitted(&mut consumer, 2).await;
    for ev in &events {
        assert!(stdout.contains(&ev.message_id), "{} not in {stdout}", ev.message_id);
        assert_eq!(ev.system_id, "py");
    }
    let codings: BTreeSet<u32> = events.iter().map(|e| e.data_coding).collect();
    assert_eq!(codings, BTreeSet::from([0, 8]));
    let ucs2 = events.iter().find(|e| e.data_coding == 8).expect("UCS2 submit");
    let expected: Vec<u8> = "Привет 😀".encode_utf16().flat_map(u16::to_be_bytes).collect();
    assert_eq!(ucs2.payload, expected);
}

#[tokio::test]
async fn deliver_reaches_only_the_named_accounts_sessions() {
    let edge =
        TestEdge::start(Setup::accounts(vec![account(ESME), account("bank2"), account("bank3")]))
            .await;
    let mut grpc = edge.grpc().await;
    let mut mine =
        [edge.bind(BindKind::Receiver, ESME).await, edge.bind(BindKind::Transceiver, ESME).await];
    let mut theirs = [
        edge.bind(BindKind::Receiver, "bank2").await,
        edge.bind(BindKind::Transceiver, "bank2").await,
        edge.bind(BindKind::Transceiver, "bank3").await,
    ];
    // Several deliveries, so the rotation over receivers visits every session of ESME.
    let mut got = [0; 2];
    for i in 0..4 {
        let id = format!("{i:032x}");
        let call = {
            let mut grpc = grpc.clone();
            let req = deliver_request(ESME, &id);
            tokio::spawn(async move { grpc.deliver(req).await })
        };
        // Exactly one of ESME's sessions gets it: find which, and answer it.
        let (k, pdu) = {
            let [a, b] = &mut mine;
            tokio::select! {
                p = a.recv() => (0, p),
                p = b.recv() => (1, p),
            }
        };
        got[k] += 1;
        assert_eq!(pdu.command_id(), CommandId::DeliverSm, "{pdu:?}");
        assert_eq!(
            deliver_sm(&pdu).tlvs.receipted_message_id().expect("TLV").value(),
            id.as_bytes()
        );
        let ok = Pdu::new(pdu.sequence_number, Body::DeliverSmResp(MessageIdResp::default()));
        mine[k].send(&[ok]).await;
        let resp = call.await.expect("no panic").expect("gRPC ok").into_inner();
        assert_eq!(resp.outcome(), DeliverOutcome::Delivered, "{resp:?}");
    }
    assert_eq!(got, [2, 2], "spread over ESME's receivers");
    // The other accounts' sessions got nothing: the next PDU each sees is the answer to
    // its own enquire_link.
    for c in mine.iter_mut().chain(theirs.iter_mut()) {
        let resp = c.request(Body::EnquireLink).await;
        assert_eq!(resp.command_id(), CommandId::EnquireLinkResp, "{resp:?}");
    }
    // A system_id with no session here is not delivered to anyone else's.
    let resp =
        grpc.deliver(deliver_request("nobody", RECEIPTED)).await.expect("gRPC ok").into_inner();
    assert_eq!(resp.outcome(), DeliverOutcome::Temporary);
    assert_eq!(resp.detail, "no receiver session on this edge");
    for c in theirs.iter_mut() {
        let resp = c.request(Body::EnquireLink).await;
        assert_eq!(resp.command_id(), CommandId::EnquireLinkResp, "{resp:?}");
    }
}
