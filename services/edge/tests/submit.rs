//! The submit path over real TCP: validation statuses, what reaches the bus, the window
//! and the rate, bus failures, and query/cancel/replace against the store.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{
    DEST, ESME, Mode, SOURCE, Setup, TestBus, TestEdge, account, assert_status, cstr, message_id,
    number, submit_consumer, submit_sm, submitted,
};
use smsc_accounts::AccountConfig;
use smsc_bus::pressure::Pressure;
use smsc_bus::{BusError, Class, Flow};
use smsc_smpp::pdu::{
    CancelSm, DataSm, DestAddress, QuerySm, ReplaceSm, ShortMessage, SubmitMulti, SubmitSm,
    TimeString,
};
use smsc_smpp::{
    Address, Body, CommandId, CommandStatus, MessageState, Npi, Pdu, RegisteredDelivery, Tlv, Tlvs,
    Ton,
};
use smsc_store::{BindKind, DeliveryState, Store, StoredMessage};

fn with_payload_tlv(mut sm: SubmitSm, payload: &'static [u8]) -> SubmitSm {
    sm.tlvs.push(Tlv::MessagePayload(Bytes::from_static(payload)));
    sm
}

#[tokio::test]
async fn submit_sm_is_acknowledged_with_its_record_on_the_bus() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut consumer = submit_consumer(&edge.bus);
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    let resp = c.submit(submit_sm("hello world")).await;
    assert_status(&resp, CommandStatus::ESME_ROK);
    assert_eq!(resp.sequence_number, 2);
    let id = message_id(&resp);

    let [ev] = <[_; 1]>::try_from(submitted(&mut consumer, 1).await).expect("one event");
    assert_eq!(ev.message_id, id);
    assert_eq!(ev.dest_index, 0);
    assert_eq!(ev.system_id, ESME);
    assert_eq!(ev.edge_id, "edge-test");
    assert_eq!(ev.command, "submit_sm");
    let source = ev.source.expect("source");
    assert_eq!((source.ton, source.npi, source.addr.as_str()), (1, 1, SOURCE));
    let dest = ev.dest.expect("dest");
    assert_eq!((dest.ton, dest.npi, dest.addr.as_str()), (1, 1, DEST));
    assert_eq!(ev.payload, b"hello world");
    assert_eq!(ev.registered_delivery, 1);
    assert_eq!(ev.schedule_at_ms, 0, "immediate");
    // The account's default validity (1h) from the time of the submit.
    let validity = ev.expire_at_ms - ev.submitted_at_ms;
    assert!((3_599_000..=3_600_000).contains(&validity), "validity {validity} ms");
}

#[tokio::test]
async fn message_payload_tlv_carries_the_payload() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut consumer = submit_consumer(&edge.bus);
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    const LONG: &[u8] = &[b'x'; 300];
    let resp = c.submit(with_payload_tlv(submit_sm(""), LONG)).await;
    assert_status(&resp, CommandStatus::ESME_ROK);
    let events = submitted(&mut consumer, 1).await;
    assert_eq!(events[0].message_id, message_id(&resp));
    assert_eq!(events[0].payload, LONG);
}

/// Submits `sm` as an account configured as `account`; it must be refused with
/// `status` and nothing published.
async fn refused_as(account: AccountConfig, sm: SubmitSm, status: CommandStatus) {
    let bus = TestBus::new(Mode::Accept);
    let edge = TestEdge::start(Setup::accounts(vec![account]).with_bus(bus.clone())).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    c.submit_refused(sm, status).await;
    assert_eq!(bus.records(), 0, "a refused submit was published");
}

async fn refused(sm: SubmitSm, status: CommandStatus) {
    refused_as(account(ESME), sm, status).await;
}

#[tokio::test]
async fn short_message_and_message_payload_together_is_rinvmsglen() {
    let sm = with_payload_tlv(submit_sm("both"), b"at once");
    refused(sm, CommandStatus::ESME_RINVMSGLEN).await;
}

#[tokio::test]
async fn letters_in_an_international_destination_is_rinvdstadr() {
    let mut sm = submit_sm("x");
    sm.dest = Address::new(Ton::INTERNATIONAL, Npi::ISDN, "44abc").expect("fits");
    refused(sm, CommandStatus::ESME_RINVDSTADR).await;
}

#[tokio::test]
async fn destination_ton_9_is_rinvdstton() {
    let mut sm = submit_sm("x");
    sm.dest.ton = Ton(9);
    refused(sm, CommandStatus::ESME_RINVDSTTON).await;
}

#[tokio::test]
async fn source_outside_the_account_patterns_is_rinvsrcadr() {
    let mut narrow = account(ESME);
    narrow.source_addresses = vec!["1555*".into()];
    let mut sm = submit_sm("x");
    sm.source = number("447700900123");
    refused_as(narrow.clone(), sm, CommandStatus::ESME_RINVSRCADR).await;

    // The pattern lets its own numbers through.
    let bus = TestBus::new(Mode::Accept);
    let edge = TestEdge::start(Setup::accounts(vec![narrow]).with_bus(bus.clone())).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    assert_status(&c.submit(submit_sm("from 1555")).await, CommandStatus::ESME_ROK);
    assert_eq!(bus.records(), 1);
}

#[tokio::test]
async fn impossible_schedule_delivery_time_is_rinvsched() {
    let mut sm = submit_sm("x");
    sm.schedule_delivery_time = TimeString::new(b"261399999999000+").expect("16 chars");
    refused(sm, CommandStatus::ESME_RINVSCHED).await;
}

#[tokio::test]
async fn unparsable_validity_period_is_rinvexpiry() {
    let mut sm = submit_sm("x");
    sm.validity_period = TimeString::new(b"badbadbadbadbadb").expect("16 chars");
    refused(sm, CommandStatus::ESME_RINVEXPIRY).await;
}

#[tokio::test]
async fn reserved_registered_delivery_bits_is_rinvregdlvflg() {
    let mut sm = submit_sm("x");
    sm.registered_delivery = RegisteredDelivery(0xE0);
    refused(sm, CommandStatus::ESME_RINVREGDLVFLG).await;
}

#[tokio::test]
async fn duplicate_tlv_is_rinvoptparstream() {
    let mut sm = submit_sm("x");
    sm.tlvs = Tlvs::from(vec![Tlv::UserMessageReference(1), Tlv::UserMessageReference(2)]);
    refused(sm, CommandStatus::ESME_RINVOPTPARSTREAM).await;
}

#[tokio::test]
async fn submit_multi_reports_the_bad_destination_and_publishes_the_others() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut consumer = submit_consumer(&edge.bus);
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    let bad = Address::new(Ton::INTERNATIONAL, Npi::ISDN, "44abc").expect("fits");
    let multi = SubmitMulti {
        source: number(SOURCE),
        dests: vec![
            DestAddress::Sme(number(DEST)),
            DestAddress::Sme(bad),
            DestAddress::Sme(number("15558888")),
        ],
        short_message: ShortMessage::new(Bytes::from_static(b"to many")).expect("fits"),
        ..SubmitMulti::default()
    };
    let resp = c.request(Body::SubmitMulti(multi)).await;
    assert_eq!(resp.command_id(), CommandId::SubmitMultiResp);
    assert_status(&resp, CommandStatus::ESME_ROK);
    let id = message_id(&resp);
    let Body::SubmitMultiResp(r) = &resp.body else { panic!("{resp:?}") };
    assert_eq!(r.unsuccess.len(), 1, "{r:?}");
    assert_eq!(r.unsuccess[0].dest, bad);
    assert_eq!(r.unsuccess[0].error_status_code, CommandStatus::ESME_RINVDSTADR);

    let mut events = submitted(&mut consumer, 2).await;
    events.sort_by_key(|e| e.dest_index);
    let got: Vec<_> = events
        .iter()
        .map(|e| {
            (e.message_id.as_str(), e.dest_index, e.dest.as_ref().expect("dest").addr.as_str())
        })
        .collect();
    assert_eq!(got, [(id.as_str(), 0, DEST), (id.as_str(), 2, "15558888")]);
    assert!(events.iter().all(|e| e.payload == b"to many" && e.command == "submit_multi"));
}

#[tokio::test]
async fn data_sm_is_acknowledged_with_a_message_id() {
    let edge = TestEdge::start(Setup::default()).await;
    let mut consumer = submit_consumer(&edge.bus);
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    let data = DataSm {
        source: Address::new(Ton::INTERNATIONAL, Npi::ISDN, SOURCE).expect("fits"),
        dest: Address::new(Ton::INTERNATIONAL, Npi::ISDN, DEST).expect("fits"),
        tlvs: Tlvs::from(vec![Tlv::MessagePayload(Bytes::from_static(b"data"))]),
        ..DataSm::default()
    };
    let resp = c.request(Body::DataSm(data)).await;
    assert_eq!(resp.command_id(), CommandId::DataSmResp);
    assert_status(&resp, CommandStatus::ESME_ROK);
    let id = message_id(&resp);
    let events = submitted(&mut consumer, 1).await;
    assert_eq!(
        (events[0].message_id.as_str(), events[0].command.as_str()),
        (id.as_str(), "data_sm")
    );
    assert_eq!(events[0].payload, b"data");
}

/// `n` submit_sm with sequence numbers 1..=n, for one write.
fn submits(n: u32) -> Vec<Pdu> {
    (1..=n).map(|seq| Pdu::new(seq, Body::SubmitSm(submit_sm("burst")))).collect()
}

#[tokio::test]
async fn past_the_window_submits_are_throttled_at_once() {
    let bus = TestBus::new(Mode::Hold);
    let mut windowed = account(ESME);
    windowed.window = 4;
    let edge = TestEdge::start(Setup::accounts(vec![windowed]).with_bus(bus.clone())).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    c.send(&submits(10)).await;

    // While the first four are still being published, the other six are refused.
    let throttled = c.recv_n(6).await;
    for p in &throttled {
        assert_eq!(p.command_id(), CommandId::SubmitSmResp);
        assert_status(p, CommandStatus::ESME_RTHROTTLED);
    }
    let seqs: Vec<u32> = throttled.iter().map(|p| p.sequence_number).collect();
    assert_eq!(seqs, (5..=10).collect::<Vec<_>>());
    assert_eq!(bus.records(), 4, "the window's submits are being published");

    bus.release();
    let accepted = c.recv_n(4).await;
    for p in &accepted {
        assert_status(p, CommandStatus::ESME_ROK);
    }
    let seqs: BTreeSet<u32> = accepted.iter().map(|p| p.sequence_number).collect();
    assert_eq!(seqs, (1..=4).collect());
    let ids: BTreeSet<String> = accepted.iter().map(message_id).collect();
    assert_eq!(ids.len(), 4, "distinct message_ids");
    // The window is free again.
    assert_status(&c.submit(submit_sm("after")).await, CommandStatus::ESME_ROK);
}

#[tokio::test]
async fn past_the_account_rate_submits_are_throttled() {
    let mut slow = account(ESME);
    slow.max_submit_rate = 1;
    slow.window = 32;
    let edge = TestEdge::start(Setup::accounts(vec![slow])).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    c.send(&submits(20)).await;
    let resps = c.recv_n(20).await;
    let seqs: BTreeSet<u32> = resps.iter().map(|p| p.sequence_number).collect();
    assert_eq!(seqs, (1..=20).collect(), "each submit answered once");
    let ok = resps.iter().filter(|p| p.status == CommandStatus::ESME_ROK).count();
    let throttled = resps.iter().filter(|p| p.status == CommandStatus::ESME_RTHROTTLED).count();
    assert!((1..=2).contains(&ok), "{ok} accepted at 1/s");
    assert_eq!(ok + throttled, 20, "{resps:?}");
}

#[tokio::test]
async fn an_account_crowding_the_pipeline_is_throttled_and_no_other() {
    let pressure = Pressure::default();
    let setup = Setup {
        pressure: pressure.clone(),
        ..Setup::accounts(vec![account("flood"), account(ESME)])
    };
    let edge = TestEdge::start(setup).await;
    let mut flood = edge.bind(BindKind::Transmitter, "flood").await;
    let mut steady = edge.bind(BindKind::Transmitter, ESME).await;
    // A hop behind the edge finds `flood` holding more than its share.
    pressure.report("worker", vec![Bytes::from_static(b"flood")]);
    flood.submit_refused(submit_sm("more"), CommandStatus::ESME_RTHROTTLED).await;
    assert_status(&steady.submit(submit_sm("otp")).await, CommandStatus::ESME_ROK);
    assert_eq!(edge.edge.metrics.backlog_throttled_total.get(), 1);
    // The hop caught up.
    pressure.report("worker", Vec::new());
    assert_status(&flood.submit(submit_sm("more")).await, CommandStatus::ESME_ROK);
}

/// And goes to its class's topic, where a campaign's backlog in `bulk` is not in front of it.
#[tokio::test]
async fn a_submit_carries_its_account_and_class_to_the_hops() {
    let bank = AccountConfig { max_class: Some(Class::Interactive), ..account(ESME) };
    let edge = TestEdge::start(Setup::accounts(vec![bank, account("plain")])).await;
    let mut consumer = submit_consumer(&edge.bus);
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    let urgent = SubmitSm { priority_flag: 1, ..submit_sm("otp") };
    for sm in [submit_sm("news"), urgent] {
        assert_status(&c.submit(sm).await, CommandStatus::ESME_ROK);
    }
    // An account without a max_class: the flag lifts nothing.
    let mut plain = edge.bind(BindKind::Transmitter, "plain").await;
    let urgent = SubmitSm { priority_flag: 3, ..submit_sm("otp") };
    assert_status(&plain.submit(urgent).await, CommandStatus::ESME_ROK);
    let mut flows = Vec::new();
    for _ in 0..3 {
        let d = consumer.recv().await.expect("a submit");
        flows.push((d.topic.to_string(), Flow::of(&d.record)));
        consumer.ack(&d).expect("ack");
    }
    // Per destination in order within a topic; the topics are read in turn.
    flows.sort_by(|a, b| (a.1.class, &a.1.account).cmp(&(b.1.class, &b.1.account)));
    let esme = Bytes::from_static(ESME.as_bytes());
    let standard = "smsc.submit".to_owned();
    assert_eq!(
        flows,
        [
            ("smsc.submit.interactive".to_owned(), Flow::new(Class::Interactive, esme.clone())),
            (standard.clone(), Flow::new(Class::Standard, esme)),
            (standard, Flow::new(Class::Standard, Bytes::from_static(b"plain"))),
        ]
    );
}

async fn status_when_bus_fails(error: BusError) -> Pdu {
    let bus = TestBus::new(Mode::Fail(error));
    let edge = TestEdge::start(Setup::default().with_bus(bus.clone())).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    let resp = c.submit(submit_sm("nowhere to go")).await;
    assert_eq!(bus.records(), 1);
    resp
}

#[tokio::test]
async fn a_batch_refused_part_way_answers_each_submit_by_its_own_record() {
    let bus = TestBus::new(Mode::FailAfter(2, BusError::Full));
    let edge = TestEdge::start(Setup::default().with_bus(bus.clone())).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    c.send(&submits(3)).await;
    let mut resps = c.recv_n(3).await;
    resps.sort_by_key(|p| p.sequence_number);
    assert_status(&resps[0], CommandStatus::ESME_ROK);
    assert_status(&resps[1], CommandStatus::ESME_ROK);
    assert_status(&resps[2], CommandStatus::ESME_RMSGQFUL);
}

#[tokio::test]
async fn submit_multi_reports_destinations_the_bus_refused() {
    let bus = TestBus::new(Mode::FailAfter(1, BusError::Full));
    let edge = TestEdge::start(Setup::default().with_bus(bus.clone())).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    let sm = submit_sm("to three");
    let multi = SubmitMulti {
        source: sm.source,
        dests: ["447700900001", "447700900002", "447700900003"]
            .iter()
            .map(|d| DestAddress::Sme(number(d)))
            .collect(),
        short_message: sm.short_message.clone(),
        ..SubmitMulti::default()
    };
    let resp = c.request(Body::SubmitMulti(multi)).await;
    assert_status(&resp, CommandStatus::ESME_ROK);
    let Body::SubmitMultiResp(r) = resp.body else { panic!("submit_multi_resp: {resp:?}") };
    let refused: Vec<(&[u8], CommandStatus)> =
        r.unsuccess.iter().map(|u| (u.dest.addr.as_bytes(), u.error_status_code)).collect();
    assert_eq!(
        refused,
        vec![
            (&b"447700900002"[..], CommandStatus::ESME_RMSGQFUL),
            (&b"447700900003"[..], CommandStatus::ESME_RMSGQFUL)
        ]
    );
}

#[tokio::test]
async fn bus_full_is_rmsgqful() {
    let resp = status_when_bus_fails(BusError::Full).await;
    assert_status(&resp, CommandStatus::ESME_RMSGQFUL);
}

#[tokio::test]
async fn bus_unavailable_is_rsyserr() {
    let resp = status_when_bus_fails(BusError::unavailable_by(
        "publishing",
        std::io::Error::other("broker down"),
    ))
    .await;
    assert_status(&resp, CommandStatus::ESME_RSYSERR);
}

const STORED_ID: &str = "0123456789abcdef0123456789abcdef";

/// An edge with accounts `esme` and `other`, and an ENROUTE message of `esme` stored.
async fn edge_with_stored_message() -> TestEdge {
    let edge = TestEdge::start(Setup::accounts(vec![account(ESME), account("other")])).await;
    let stored = StoredMessage {
        message_id: STORED_ID.into(),
        dest_index: 0,
        system_id: ESME.into(),
        source: smsc_store::Address::new(smsc_smpp::Ton(1), smsc_smpp::Npi(1), SOURCE)
            .expect("address"),
        dest: smsc_store::Address::new(smsc_smpp::Ton(1), smsc_smpp::Npi(1), DEST)
            .expect("address"),
        service_type: String::new(),
        registered_delivery: 1,
        data_coding: 0,
        esm_class: 0,
        payload: Bytes::from_static(b"original"),
        state: DeliveryState::Enroute,
        error_code: 0,
        attempts: 0,
        submitted_at: 1_700_000_000_000,
        schedule_at: None,
        expire_at: 4_000_000_000_000,
        final_at: None,
        event: Bytes::new(),
        first_attempt_at: None,
        connector: String::new(),
        route: String::new(),
    };
    assert!(edge.store.insert_message(stored).await.expect("insert").applied());
    edge
}

async fn stored(edge: &TestEdge) -> StoredMessage {
    let mut rows = edge.store.get_message(STORED_ID).await.expect("store");
    assert_eq!(rows.len(), 1);
    rows.remove(0)
}

fn query(id: &str) -> Body {
    Body::QuerySm(QuerySm { message_id: cstr(id), source: number(SOURCE) })
}

fn cancel() -> Body {
    Body::CancelSm(CancelSm {
        message_id: cstr(STORED_ID),
        source: number(SOURCE),
        ..CancelSm::default()
    })
}

fn replace(text: &'static [u8]) -> Body {
    Body::ReplaceSm(ReplaceSm {
        message_id: cstr(STORED_ID),
        source: number(SOURCE),
        registered_delivery: RegisteredDelivery::FINAL,
        short_message: ShortMessage::new(Bytes::from_static(text)).expect("fits"),
        ..ReplaceSm::default()
    })
}

#[tokio::test]
async fn query_sm_reports_the_stored_state() {
    let edge = edge_with_stored_message().await;
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    let resp = c.request(query(STORED_ID)).await;
    assert_eq!(resp.command_id(), CommandId::QuerySmResp);
    assert_status(&resp, CommandStatus::ESME_ROK);
    let Body::QuerySmResp(q) = &resp.body else { panic!("{resp:?}") };
    assert_eq!(q.message_id.as_bytes(), STORED_ID.as_bytes());
    assert_eq!(q.message_state, MessageState::ENROUTE);
    assert!(q.final_date.is_empty(), "not final yet");
}

#[tokio::test]
async fn query_sm_of_a_scheduled_message_says_enroute_to_an_smpp_34_esme() {
    let edge = edge_with_stored_message().await;
    let scheduled = smsc_store::Update {
        state: Some(DeliveryState::Scheduled),
        ..smsc_store::Update::default()
    };
    let moved = edge.store.transition(STORED_ID, 0, DeliveryState::Enroute, scheduled).await;
    assert!(moved.expect("store").applied());
    // SMPP 3.4 defines message_state 1-8: SCHEDULED (0) is 5.0's.
    let mut v34 = edge.bind(BindKind::Transceiver, ESME).await;
    let Body::QuerySmResp(q) = v34.request(query(STORED_ID)).await.body else { panic!() };
    assert_eq!(q.message_state, MessageState::ENROUTE);
    let mut v50 = edge.connect().await;
    let password = smsc_accounts::testing::PASSWORD;
    v50.bind_as(BindKind::Transceiver, ESME, password, 0x50).await;
    let Body::QuerySmResp(q) = v50.request(query(STORED_ID)).await.body else { panic!() };
    assert_eq!(q.message_state, MessageState::SCHEDULED);
}

#[tokio::test]
async fn query_sm_of_another_account_or_an_unknown_id_is_rqueryfail() {
    let edge = edge_with_stored_message().await;
    let mut other = edge.bind(BindKind::Transceiver, "other").await;
    let resp = other.request(query(STORED_ID)).await;
    assert_eq!(resp.command_id(), CommandId::QuerySmResp);
    assert_status(&resp, CommandStatus::ESME_RQUERYFAIL);

    let mut owner = edge.bind(BindKind::Transceiver, ESME).await;
    let resp = owner.request(query("ffffffffffffffffffffffffffffffff")).await;
    assert_status(&resp, CommandStatus::ESME_RQUERYFAIL);
}

#[tokio::test]
async fn replace_sm_changes_the_stored_payload() {
    let edge = edge_with_stored_message().await;
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    let resp = c.request(replace(b"replaced")).await;
    assert_eq!(resp.command_id(), CommandId::ReplaceSmResp);
    assert_status(&resp, CommandStatus::ESME_ROK);
    let m = stored(&edge).await;
    assert_eq!(&m.payload[..], b"replaced");
    assert_eq!(m.state, DeliveryState::Enroute);
}

#[tokio::test]
async fn cancel_sm_deletes_once_and_then_replace_fails() {
    let edge = edge_with_stored_message().await;
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    let resp = c.request(cancel()).await;
    assert_eq!(resp.command_id(), CommandId::CancelSmResp);
    assert_status(&resp, CommandStatus::ESME_ROK);
    let m = stored(&edge).await;
    assert_eq!(m.state, DeliveryState::Deleted);
    assert!(m.final_at.is_some());

    assert_status(&c.request(cancel()).await, CommandStatus::ESME_RCANCELFAIL);
    let resp = c.request(replace(b"too late")).await;
    assert_eq!(resp.command_id(), CommandId::ReplaceSmResp);
    assert_status(&resp, CommandStatus::ESME_RREPLACEFAIL);
    assert_eq!(&stored(&edge).await.payload[..], b"original");
}
