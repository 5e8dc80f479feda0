//! The ESME side of the end-to-end tests (`smsc all` in one process, and the
//! multi-process cluster): an SMPP client over TCP with the crate's codec, and the
//! bounded waits and `/metrics` reads both need.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use smsc_proto::InjectMoRequest;
use smsc_proto::simulator_client::SimulatorClient;
use smsc_smpp::codec::SmppCodec;
use smsc_smpp::pdu::{Bind, DeliverSm, MessageIdResp, ShortMessage, SubmitSm};
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::{
    Address, Body, COctetString, CommandStatus, MessageState, Npi, Pdu, RegisteredDelivery, Ton,
};
use smsc_store::BindKind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub(crate) use smsc_accounts::testing::PASSWORD;

/// How long any one step may take before the test fails.
pub(crate) const STEP: Duration = Duration::from_secs(30);

pub(crate) async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    smsc_test_support::eventually_some(what, STEP, f).await
}

/// The sum over `admins` of one sample line of `/metrics` (0 where absent).
pub(crate) async fn metric(admins: &[SocketAddr], series: &str) -> f64 {
    let mut total = 0.0;
    for admin in admins {
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(admin)).await
        else {
            continue;
        };
        let mut body = String::new();
        let read = async {
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: smsc\r\n\r\n").await?;
            s.read_to_string(&mut body).await
        };
        if tokio::time::timeout(Duration::from_secs(2), read).await.is_ok() {
            let value = body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok());
            total += value.unwrap_or(0.0);
        }
    }
    total
}

/// A handset's message from 447700900555 to `to`, through the simulator's gRPC; the
/// message ids it got.
pub(crate) async fn inject_mo(simulator: SocketAddr, to: &str, text: &str) -> Vec<String> {
    let endpoint = format!("http://{simulator}");
    let mut handsets = eventually("the simulator's gRPC", || async {
        SimulatorClient::connect(endpoint.clone()).await.ok()
    })
    .await;
    let req = InjectMoRequest { from: "447700900555".into(), to: to.into(), text: text.into() };
    handsets.inject_mo(req).await.expect("InjectMo").into_inner().ids
}

/// An ESME on one SMPP connection.
pub(crate) struct Esme {
    name: String,
    io: Framed<TcpStream, SmppCodec>,
    seq: u32,
    /// Requests from the SMSC that arrived while we waited for a response.
    backlog: Vec<Pdu>,
}

impl Esme {
    pub(crate) async fn bind(addr: SocketAddr, system_id: &str, kind: BindKind) -> Self {
        let stream =
            eventually("the SMPP listener", || async { TcpStream::connect(addr).await.ok() }).await;
        let mut esme = Self {
            name: format!("{system_id} {kind:?} on {addr}"),
            io: Framed::new(stream, SmppCodec::default()),
            seq: 0,
            backlog: Vec::new(),
        };
        let bind = Bind {
            system_id: COctetString::new(system_id.as_bytes()).expect("fits"),
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
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "bind {}: {resp:?}", esme.name);
        esme
    }

    pub(crate) async fn recv_within(&mut self, within: Duration) -> Option<Pdu> {
        let frame = tokio::time::timeout(within, self.io.next()).await.ok()?;
        Some(frame.expect("connection open").expect("framing").expect("a valid PDU"))
    }

    pub(crate) async fn recv(&mut self) -> Pdu {
        match self.recv_within(STEP).await {
            Some(pdu) => pdu,
            None => panic!("{}: nothing from the SMSC within {STEP:?}", self.name),
        }
    }

    pub(crate) async fn send(&mut self, pdu: Pdu) {
        self.io.send(pdu).await.expect("write to the SMSC");
    }

    pub(crate) async fn request(&mut self, body: Body) -> Pdu {
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

    /// Answers an SMSC request other than deliver_sm; returns deliver_sm bodies,
    /// acknowledged with ESME_ROK.
    pub(crate) async fn handle(&mut self, pdu: Pdu) -> Option<DeliverSm> {
        match pdu.body {
            Body::DeliverSm(d) => {
                let ok = Body::DeliverSmResp(MessageIdResp::default());
                self.send(Pdu::new(pdu.sequence_number, ok)).await;
                Some(d)
            }
            Body::EnquireLink => {
                self.send(Pdu::new(pdu.sequence_number, Body::EnquireLinkResp)).await;
                None
            }
            other => panic!("{}: expected a deliver_sm, got {other:?}", self.name),
        }
    }

    /// The next deliver_sm within `within`, if any.
    pub(crate) async fn deliver_sm_within(&mut self, within: Duration) -> Option<DeliverSm> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let pdu = if self.backlog.is_empty() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                self.recv_within(left).await?
            } else {
                self.backlog.remove(0)
            };
            if let Some(d) = self.handle(pdu).await {
                return Some(d);
            }
        }
    }

    pub(crate) async fn deliver_sm(&mut self) -> DeliverSm {
        match self.deliver_sm_within(STEP).await {
            Some(d) => d,
            None => panic!("{}: no deliver_sm within {STEP:?}", self.name),
        }
    }

    /// Submits asking for a final receipt; returns the submit_sm_resp's message_id.
    pub(crate) async fn submit(&mut self, dest: &str, text: &str) -> String {
        let sm = SubmitSm {
            source: Address::new(Ton::ALPHANUMERIC, Npi::UNKNOWN, "Acme").expect("fits"),
            dest: Address::new(Ton::INTERNATIONAL, Npi::ISDN, dest).expect("fits"),
            registered_delivery: RegisteredDelivery::FINAL,
            short_message: ShortMessage::new(Bytes::copy_from_slice(text.as_bytes()))
                .expect("fits"),
            ..SubmitSm::default()
        };
        let resp = self.request(Body::SubmitSm(sm)).await;
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "{}: {resp:?}", self.name);
        match resp.body {
            Body::SubmitSmResp(r) => r.message_id.as_str().expect("ASCII").to_owned(),
            other => panic!("expected submit_sm_resp, got {other:?}"),
        }
    }

    pub(crate) async fn unbind(mut self) {
        let resp = self.request(Body::Unbind).await;
        assert_eq!((resp.status, resp.body), (CommandStatus::ESME_ROK, Body::UnbindResp));
    }
}

/// Checks `d` is the DELIVRD receipt of `message_id`, by text and TLVs.
pub(crate) fn assert_delivered_receipt(d: &DeliverSm, message_id: &str) {
    assert!(d.esm_class.is_delivery_receipt(), "not a receipt: {d:?}");
    let receipted = d.tlvs.receipted_message_id().map(|t| t.value().to_vec());
    assert_eq!(
        receipted.as_deref(),
        Some(message_id.as_bytes()),
        "receipted_message_id is the submit_sm_resp's id"
    );
    let text = std::str::from_utf8(d.short_message.as_bytes()).expect("ASCII");
    let r = Receipt::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!((r.id.as_str(), r.stat, r.err), (message_id, ReceiptStat::Delivered, 0), "{text}");
    assert_eq!(d.tlvs.message_state(), Some(MessageState::DELIVERED));
}
