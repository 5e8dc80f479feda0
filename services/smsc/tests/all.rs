//! `smsc all` end to end in one process: the real roles on the embedded bus and store,
//! an ESME speaking SMPP over TCP, MO through the simulator's gRPC. Real time here (the
//! edge verifies passwords on blocking threads); every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use smsc::Role;
use smsc_common::config::Config;
use smsc_common::store::BindKind;
use smsc_proto::InjectMoRequest;
use smsc_proto::simulator_client::SimulatorClient;
use smsc_smpp::codec::SmppCodec;
use smsc_smpp::pdu::{Bind, DeliverSm, MessageIdResp, ShortMessage, SubmitSm};
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::text::{Alphabet, decode};
use smsc_smpp::{
    Address, Body, COctetString, CommandStatus, EsmClass, MessageState, Npi, Pdu,
    RegisteredDelivery, Ton,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use common::{ACME, ACME_SHORT_CODE, PASSWORD, password_hash};

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(15);

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
        let mut s = TcpStream::connect(self.admin).await.expect("admin listens");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: smsc\r\n\r\n").await.expect("write");
        let mut body = String::new();
        s.read_to_string(&mut body).await.expect("read /metrics");
        let value = body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok());
        value.unwrap_or(0.0)
    }
}

/// Retries `f` every 20 ms until it returns `Some`, for at most [`STEP`].
async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let got = tokio::time::timeout(STEP, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    got.unwrap_or_else(|_| panic!("never happened within {STEP:?}: {what}"))
}

/// An ESME on one SMPP connection.
struct Esme {
    io: Framed<TcpStream, SmppCodec>,
    seq: u32,
    /// Requests from the SMSC that arrived while we waited for a response.
    backlog: Vec<Pdu>,
}

impl Esme {
    /// Connects (the listener may still be starting) and binds as [`ACME`].
    async fn bind(smsc: &Smsc, kind: BindKind) -> Self {
        let addr = smsc.smpp;
        let stream =
            retry("the SMPP listener", || async { TcpStream::connect(addr).await.ok() }).await;
        let mut esme =
            Self { io: Framed::new(stream, SmppCodec::default()), seq: 0, backlog: Vec::new() };
        let bind = Bind {
            system_id: COctetString::new(ACME.as_bytes()).expect("fits"),
            password: COctetString::new(PASSWORD.as_bytes()).expect("fits"),
            interface_version: smsc_smpp::types::INTERFACE_VERSION_34,
            ..Bind::default()
        };
        let body = match kind {
            BindKind::Transmitter => Body::BindTransmitter(bind),
            BindKind::Receiver => Body::BindReceiver(bind),
            BindKind::Transceiver => Body::BindTransceiver(bind),
        };
        let resp = esme.request(body).await;
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "bind {kind:?}: {resp:?}");
        esme
    }

    async fn recv(&mut self) -> Pdu {
        let next = tokio::time::timeout(STEP, self.io.next()).await;
        let frame = next.unwrap_or_else(|_| panic!("nothing from the SMSC within {STEP:?}"));
        frame.expect("connection open").expect("framing").expect("a valid PDU")
    }

    async fn send(&mut self, pdu: Pdu) {
        self.io.send(pdu).await.expect("write to the SMSC");
    }

    /// Sends a request and returns its response, keeping requests that come meanwhile.
    async fn request(&mut self, body: Body) -> Pdu {
        self.seq += 1;
        let seq = self.seq;
        self.send(Pdu::new(seq, body)).await;
        loop {
            let pdu = self.recv().await;
            if pdu.sequence_number == seq && pdu.command_id().is_response() {
                return pdu;
            }
            self.backlog.push(pdu);
        }
    }

    /// The next deliver_sm, answered with deliver_sm_resp ESME_ROK.
    async fn deliver_sm(&mut self) -> DeliverSm {
        loop {
            let pdu =
                if self.backlog.is_empty() { self.recv().await } else { self.backlog.remove(0) };
            match pdu.body {
                Body::DeliverSm(d) => {
                    let resp = Pdu::new(
                        pdu.sequence_number,
                        Body::DeliverSmResp(MessageIdResp::default()),
                    );
                    self.send(resp).await;
                    return d;
                }
                Body::EnquireLink => {
                    self.send(Pdu::new(pdu.sequence_number, Body::EnquireLinkResp)).await
                }
                other => panic!("expected a deliver_sm, got {other:?}"),
            }
        }
    }

    /// Submits `text` asking for a final receipt; returns the message_id.
    async fn submit(&mut self, text: &str) -> String {
        let sm = SubmitSm {
            source: Address::new(Ton::ALPHANUMERIC, Npi::UNKNOWN, "Acme").expect("fits"),
            dest: Address::new(Ton::INTERNATIONAL, Npi::ISDN, "447700900123").expect("fits"),
            registered_delivery: RegisteredDelivery::FINAL,
            short_message: ShortMessage::new(Bytes::copy_from_slice(text.as_bytes()))
                .expect("fits"),
            ..SubmitSm::default()
        };
        let resp = self.request(Body::SubmitSm(sm)).await;
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "{resp:?}");
        match resp.body {
            Body::SubmitSmResp(r) => r.message_id.as_str().expect("ASCII").to_owned(),
            other => panic!("expected submit_sm_resp, got {other:?}"),
        }
    }

    async fn unbind(mut self) {
        let resp = self.request(Body::Unbind).await;
        assert_eq!((resp.status, resp.body), (CommandStatus::ESME_ROK, Body::UnbindResp));
    }
}

/// Checks `d` is the DELIVRD receipt of `message_id`.
fn assert_delivered_receipt(d: &DeliverSm, message_id: &str) {
    assert!(d.esm_class.is_delivery_receipt(), "{d:?}");
    let text = std::str::from_utf8(d.short_message.as_bytes()).expect("ASCII");
    let r = Receipt::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!((r.id.as_str(), r.stat, r.err), (message_id, ReceiptStat::Delivered, 0), "{text}");
    let receipted = d.tlvs.receipted_message_id().map(|t| t.value().to_vec());
    assert_eq!(receipted.as_deref(), Some(message_id.as_bytes()));
    assert_eq!(d.tlvs.message_state(), Some(MessageState::DELIVERED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esme_gets_its_receipt_and_mo_over_smpp() {
    let smsc = Smsc::start().await;
    let mut esme = Esme::bind(&smsc, BindKind::Transceiver).await;

    let id = esme.submit("hello from acme").await;
    assert_delivered_receipt(&esme.deliver_sm().await, &id);

    let endpoint = format!("http://{}", smsc.simulator);
    let mut handsets = retry("the simulator's gRPC", || async {
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
    let mut transmitter = Esme::bind(&smsc, BindKind::Transmitter).await;
    let id = transmitter.submit("nobody listens yet").await;

    // Delivered to the network, but no receiver: the receipt is pending in the store.
    let pending = r#"smsc_worker_notifications_total{kind="receipt",outcome="pending"}"#;
    retry("the receipt pending", || async { (smsc.metric(pending).await == 1.0).then_some(()) })
        .await;

    let mut receiver = Esme::bind(&smsc, BindKind::Receiver).await;
    assert_delivered_receipt(&receiver.deliver_sm().await, &id);
    let delivered = r#"smsc_worker_notifications_total{kind="receipt",outcome="delivered"}"#;
    retry("the receipt delivered", || async {
        (smsc.metric(delivered).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(smsc.metric(pending).await, 1.0, "pending once, not again");

    receiver.unbind().await;
    transmitter.unbind().await;
    smsc.stop().await;
}
