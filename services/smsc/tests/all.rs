//! `smsc all` end to end in one process: the real roles on the embedded bus and store,
//! an ESME speaking SMPP over TCP, MO through the simulator's gRPC. Real time here (the
//! edge verifies passwords on blocking threads); every wait is bounded.

mod common;
mod esme;
mod node;

use smsc_smpp::EsmClass;
use smsc_smpp::text::{Alphabet, decode};
use smsc_store::BindKind;

use common::{ACME, ACME_SHORT_CODE};
use esme::{Esme, assert_delivered_receipt, eventually, inject_mo};
use node::Node;

/// `smsc all` with account ACME (MO to its short code) and quick retries and sweeps.
async fn start() -> Node {
    Node::start(&format!(
        r#"
node_id: all-in-one-test
admin_listen: "{{admin}}"
edge:
  smpp_listen: "{{smpp}}"
  grpc_listen: "127.0.0.1:0"
accounts:
  - system_id: {ACME}
    password_hash: "{{hash}}"
routing:
  mo:
    - prefix: "{ACME_SHORT_CODE}"
      account: {ACME}
retry:
  tiers: [100ms, 200ms]
worker:
  pending_interval: 100ms
  simulator_listen: "{{simulator}}"
"#
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esme_gets_its_receipt_and_mo_over_smpp() {
    let smsc = start().await;
    let mut esme = Esme::bind(smsc.smpp, ACME, BindKind::Transceiver).await;

    let id = esme.submit("447700900123", "hello from acme").await;
    assert_delivered_receipt(&esme.deliver_sm().await, &id);

    assert_eq!(inject_mo(smsc.simulator, ACME_SHORT_CODE, "hi acme").await.len(), 1);
    let mo = esme.deliver_sm().await;
    assert_eq!(mo.esm_class, EsmClass(0));
    assert_eq!(decode(mo.short_message.as_bytes(), Alphabet::Gsm7).expect("GSM 7"), "hi acme");
    assert_eq!(mo.dest.addr.as_bytes(), ACME_SHORT_CODE.as_bytes());

    esme.unbind().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_waits_for_a_receiver_and_arrives_when_one_binds() {
    let smsc = start().await;
    let mut transmitter = Esme::bind(smsc.smpp, ACME, BindKind::Transmitter).await;
    let id = transmitter.submit("447700900123", "nobody listens yet").await;

    // Delivered to the network, but no receiver: the receipt is pending in the store.
    let pending = r#"smsc_worker_notifications_total{kind="receipt",outcome="pending"}"#;
    eventually("the receipt pending", || async {
        (smsc.metric(pending).await == 1.0).then_some(())
    })
    .await;

    let mut receiver = Esme::bind(smsc.smpp, ACME, BindKind::Receiver).await;
    assert_delivered_receipt(&receiver.deliver_sm().await, &id);
    let delivered = r#"smsc_worker_notifications_total{kind="receipt",outcome="delivered"}"#;
    eventually("the receipt delivered", || async {
        (smsc.metric(delivered).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(smsc.metric(pending).await, 1.0, "pending once, not again");

    receiver.unbind().await;
    transmitter.unbind().await;
    smsc.stop().await;
}
