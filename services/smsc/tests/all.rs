//! `smsc all` end to end in one process: the real roles on the embedded bus and store,
//! an ESME speaking SMPP over TCP, MO through the simulator's gRPC. Real time here (the
//! edge verifies passwords on blocking threads); every wait is bounded.

mod common;
mod esme;

use std::net::SocketAddr;

use smsc::Role;
use smsc_common::config::Config;
use smsc_common::store::BindKind;
use smsc_proto::InjectMoRequest;
use smsc_proto::simulator_client::SimulatorClient;
use smsc_smpp::EsmClass;
use smsc_smpp::text::{Alphabet, decode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use common::{ACME, ACME_SHORT_CODE, password_hash};
use esme::{Esme, STEP, assert_delivered_receipt, eventually, metric};

/// A port nothing listens on now (for listeners whose address the test must know).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("bound")
}

/// `smsc all` running until dropped-then-stopped by [`Smsc::stop`].
struct Smsc {
    smpp: SocketAddr,
    simulator: SocketAddr,
    admin: SocketAddr,
    stop: oneshot::Sender<()>,
    running: JoinHandle<anyhow::Result<()>>,
}

impl Smsc {
    async fn start() -> Self {
        let (smpp, simulator, admin) = (free_port(), free_port(), free_port());
        let yaml = format!(
            r#"
node_id: all-in-one-test
admin_listen: "{admin}"
edge:
  smpp_listen: "{smpp}"
  grpc_listen: "127.0.0.1:0"
accounts:
  - system_id: {ACME}
    password_hash: "{hash}"
routing:
  mo:
    - prefix: "{ACME_SHORT_CODE}"
      account: {ACME}
retry:
  tiers: [100ms, 200ms]
worker:
  pending_interval: 100ms
  simulator_listen: "{simulator}"
"#,
            hash = password_hash(),
        );
        let config = Config::from_yaml_str(&yaml, []).expect("valid config");
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(smsc::run(Role::All, config, async {
            let _ = stopped.await;
        }));
        Self { smpp, simulator, admin, stop, running }
    }

    /// Shuts down and waits for `run` to return cleanly.
    async fn stop(self) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(STEP, self.running).await.expect("smsc stops in time");
        ended.expect("run task").expect("run ends Ok");
    }

    /// The value of one sample line of `/metrics`, 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        metric(&[self.admin], series).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esme_gets_its_receipt_and_mo_over_smpp() {
    let smsc = Smsc::start().await;
    let mut esme = Esme::bind(smsc.smpp, ACME, BindKind::Transceiver).await;

    let id = esme.submit("447700900123", "hello from acme").await;
    assert_delivered_receipt(&esme.deliver_sm().await, &id);

    let endpoint = format!("http://{}", smsc.simulator);
    let mut handsets = eventually("the simulator's gRPC", || async {
        SimulatorClient::connect(endpoint.clone()).await.ok()
    })
    .await;
    let req = InjectMoRequest {
        from: "447700900555".into(),
        to: ACME_SHORT_CODE.into(),
        text: "hi acme".into(),
    };
    let ids = handsets.inject_mo(req).await.expect("InjectMo").into_inner().ids;
    assert_eq!(ids.len(), 1);
    let mo = esme.deliver_sm().await;
    assert_eq!(mo.esm_class, EsmClass(0));
    assert_eq!(decode(mo.short_message.as_bytes(), Alphabet::Gsm7).expect("GSM 7"), "hi acme");
    assert_eq!(mo.dest.addr.as_bytes(), ACME_SHORT_CODE.as_bytes());

    esme.unbind().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_waits_for_a_receiver_and_arrives_when_one_binds() {
    let smsc = Smsc::start().await;
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
