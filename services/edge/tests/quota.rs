//! Account quotas over real TCP: the edges of one store together accept the quota and no
//! more, a submit past it gets the quota status, and a stopping edge gives back what it
//! leased and did not spend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{
    Client, ESME, Mode, SOURCE, Setup, TestBus, TestEdge, account, assert_status, number,
    submit_consumer, submit_sm, submitted,
};
use smsc_accounts::{Account, AccountConfig, Quota};
use smsc_bus::BusError;
use smsc_edge::QUOTA_EXCEEDED;
use smsc_edge::quota::Verdict;
use smsc_smpp::pdu::{DestAddress, ShortMessage, SubmitMulti};
use smsc_smpp::{Body, CommandStatus, Pdu};
use smsc_store::BindKind;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};

fn limited(limit: u64) -> AccountConfig {
    AccountConfig { quota: Quota { daily: Some(limit), monthly: None }, ..account(ESME) }
}

fn daily(limit: u64) -> Setup {
    Setup::accounts(vec![limited(limit)])
}

/// Sends `request` until it is answered other than ESME_RTHROTTLED (a quota lease on
/// its way), and returns that answer.
async fn until_not_throttled(c: &mut Client, request: impl Fn() -> Body) -> Pdu {
    for _ in 0..10_000 {
        let resp = c.request(request()).await;
        if resp.status != CommandStatus::ESME_RTHROTTLED {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("throttled 10,000 times: no quota lease came");
}

/// Submits until the quota refuses one; how many were accepted.
async fn accepted_until_refused(c: &mut Client) -> u64 {
    let mut accepted = 0;
    loop {
        let resp = until_not_throttled(c, || Body::SubmitSm(submit_sm("otp"))).await;
        if resp.status == QUOTA_EXCEEDED {
            return accepted;
        }
        assert_status(&resp, CommandStatus::ESME_ROK);
        accepted += 1;
    }
}

fn multi(dests: &[&str]) -> Body {
    Body::SubmitMulti(SubmitMulti {
        source: number(SOURCE),
        dests: dests.iter().map(|d| DestAddress::Sme(number(d))).collect(),
        short_message: ShortMessage::new(Bytes::from_static(b"to many")).expect("fits"),
        ..SubmitMulti::default()
    })
}

#[tokio::test]
async fn a_submit_past_the_quota_gets_the_quota_status_and_reaches_no_hop() {
    let edge = TestEdge::start(daily(3)).await;
    let mut consumer = submit_consumer(&edge.bus);
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    let pair = || multi(&["447700900001", "447700900002"]);
    assert_status(&until_not_throttled(&mut c, pair).await, CommandStatus::ESME_ROK);
    // One message left: a submit_multi to two destinations is refused whole.
    assert_status(&until_not_throttled(&mut c, pair).await, QUOTA_EXCEEDED);
    assert_eq!(accepted_until_refused(&mut c).await, 1, "the last one of the day");
    assert_eq!(submitted(&mut consumer, 3).await.len(), 3);

    let refused = edge.edge.metrics.quota_refused_total.with_label_values(&["day"]).get();
    assert_eq!(refused, 2);
    let scrape = edge.metrics.encode();
    assert!(
        scrape.contains(r#"smsc_edge_submit_total{command="submit_sm",status="QUOTA_EXCEEDED"} 1"#),
        "{scrape}"
    );
}

#[tokio::test]
async fn edges_sharing_a_store_accept_the_quota_together_and_a_stopping_one_gives_back() {
    let store = Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default()));
    let shared = |limit| Setup { store: Some(store.clone()), ..daily(limit) };
    let first = TestEdge::start(shared(640)).await;
    let second = TestEdge::start(shared(640)).await;

    let mut c = first.bind(BindKind::Transmitter, ESME).await;
    let one = || Body::SubmitSm(submit_sm("otp"));
    assert_status(&until_not_throttled(&mut c, one).await, CommandStatus::ESME_ROK);
    drop(c);
    // The first edge leased a block (10 of 640) and spent one; it gives the rest back.
    first.shutdown.cancel();
    first.serving.await.expect("drained");

    let mut c = second.bind(BindKind::Transmitter, ESME).await;
    assert_eq!(accepted_until_refused(&mut c).await, 639, "all but the one the first accepted");
}

#[tokio::test]
async fn a_submit_the_bus_refused_gives_its_quota_back() {
    let bus = TestBus::new(Mode::FailAfter(1, BusError::Full));
    let edge = TestEdge::start(daily(2).with_bus(bus)).await;
    let mut c = edge.bind(BindKind::Transmitter, ESME).await;
    let one = || Body::SubmitSm(submit_sm("otp"));
    assert_status(&until_not_throttled(&mut c, one).await, CommandStatus::ESME_ROK);
    assert_status(&until_not_throttled(&mut c, one).await, CommandStatus::ESME_RMSGQFUL);
    // The second message of the quota was refused by the bus: it is the edge's to use.
    let account = Account::from_config(&limited(2)).expect("account");
    assert_eq!(edge.edge.quotas.take(&account, 1), Verdict::Granted);
}
