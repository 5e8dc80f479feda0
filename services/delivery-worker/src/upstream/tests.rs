//! The connector against a fake upstream SMSC on loopback TCP (and TLS): real bytes,
//! real time with short timeouts (paused time would fire timers while a socket waits).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{SmppUpstreamConfig, UpstreamBindMode, UpstreamTls};
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use smsc_runtime::telemetry::Metrics;
use smsc_store::contract::sample_message;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{Address, Clock, ManualClock, SlotClaim, Store, StoredMessage, SystemClock};

use crate::connector::{Inbound, UpstreamReceipt};
use crate::metrics::UpstreamMetrics;
use smsc_proto::{MoEvent, SubmitEvent};
use smsc_smpp::codec::SmppCodec;
use smsc_smpp::pdu::{BindResp, MessageIdResp, SubmitSm};
use smsc_smpp::{Body, CommandStatus, EsmClass, MessageState, Pdu, RegisteredDelivery, Tlv, Tlvs};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::*;

/// Longest any single expected step may take.
const STEP: Duration = Duration::from_secs(5);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One bound connection at the fake upstream.
struct Conn {
    io: Framed<Box<dyn Io>, SmppCodec>,
    bind: Pdu,
}

impl Conn {
    async fn recv_within(&mut self, d: Duration) -> Option<Pdu> {
        let frame = tokio::time::timeout(d, self.io.next()).await.ok()??;
        Some(frame.expect("framing").expect("a valid PDU from the connector"))
    }

    async fn recv(&mut self) -> Pdu {
        self.recv_within(STEP).await.expect("a PDU from the connector")
    }

    /// The next PDU other than enquire_link (answered).
    async fn next_request(&mut self) -> Pdu {
        loop {
            let pdu = self.recv().await;
            if pdu.body == Body::EnquireLink {
                self.send(Pdu::new(pdu.sequence_number, Body::EnquireLinkResp)).await;
                continue;
            }
            return pdu;
        }
    }

    async fn send(&mut self, pdu: Pdu) {
        self.io.send(pdu).await.expect("write to the connector");
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.expect("write to the connector");
    }

    /// Takes the next submit_sm and answers it.
    async fn answer_submit(&mut self, status: CommandStatus, id: &str) -> SubmitSm {
        let pdu = self.next_request().await;
        let Body::SubmitSm(sm) = pdu.body else { panic!("expected a submit_sm, got {pdu:?}") };
        let resp = MessageIdResp {
            message_id: smsc_smpp::COctetString::new(id.as_bytes()).expect("fits"),
            ..MessageIdResp::default()
        };
        let body = Body::SubmitSmResp(resp);
        self.send(Pdu { sequence_number: pdu.sequence_number, status, body }).await;
        sm
    }

    /// Whether the connector closed the connection within `d` (anything it sends first
    /// is skipped; an unbind is answered).
    async fn closed_within(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.io.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(Ok(p)))) if p.body == Body::Unbind => {
                    self.send(Pdu::new(p.sequence_number, Body::UnbindResp)).await;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// An SMPP server that binds whoever asks (after refusing the first `refuse`), over
/// TLS when given an acceptor.
struct Fake {
    addr: SocketAddr,
    conns: mpsc::Receiver<Conn>,
    /// When each bind request arrived.
    bind_times: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl Fake {
    async fn start(refuse: u32, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, conns) = mpsc::channel(16);
        let bind_times = Arc::new(Mutex::new(Vec::new()));
        let times = bind_times.clone();
        let refuse = Arc::new(AtomicU32::new(refuse));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tx, times, refuse, tls) =
                    (tx.clone(), times.clone(), refuse.clone(), tls.clone());
                tokio::spawn(async move {
                    let io: Box<dyn Io> = match tls {
                        None => Box::new(tcp),
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(s) => Box::new(s),
                            Err(_) => return,
                        },
                    };
                    let mut io = Framed::new(io, SmppCodec::default());
                    let Some(Ok(Ok(bind))) = io.next().await else { return };
                    times.lock().expect("times").push(tokio::time::Instant::now());
                    let resp = match &bind.body {
                        Body::BindTransmitter(_) => Body::BindTransmitterResp(BindResp::default()),
                        Body::BindReceiver(_) => Body::BindReceiverResp(BindResp::default()),
                        Body::BindTransceiver(_) => Body::BindTransceiverResp(BindResp::default()),
                        other => panic!("expected a bind, got {other:?}"),
                    };
                    let refused = refuse
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if refused {
                        CommandStatus::ESME_RBINDFAIL
                    } else {
                        CommandStatus::ESME_ROK
                    };
                    let seq = bind.sequence_number;
                    if io.send(Pdu { sequence_number: seq, status, body: resp }).await.is_err()
                        || refused
                    {
                        return;
                    }
                    let _ = tx.send(Conn { io, bind }).await;
                });
            }
        });
        Self { addr, conns, bind_times }
    }

    async fn accept_within(&mut self, d: Duration) -> Option<Conn> {
        tokio::time::timeout(d, self.conns.recv()).await.ok()?
    }

    async fn accept(&mut self) -> Conn {
        self.accept_within(STEP).await.expect("the connector binds")
    }
}

/// Records what the worker would get, answering as told once `gate` lets it.
#[derive(Debug)]
struct FakeInbound {
    receipts: Mutex<Vec<UpstreamReceipt>>,
    mos: Mutex<Vec<MoEvent>>,
    answer: Mutex<CommandStatus>,
    gate: Semaphore,
}

impl FakeInbound {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            receipts: Mutex::new(Vec::new()),
            mos: Mutex::new(Vec::new()),
            answer: Mutex::new(CommandStatus::ESME_ROK),
            gate: Semaphore::new(Semaphore::MAX_PERMITS),
        })
    }

    async fn pass(&self) -> CommandStatus {
        let _ = self.gate.acquire().await.map(|p| p.forget());
        *self.answer.lock().expect("answer")
    }
}

impl Inbound for FakeInbound {
    fn receipt<'a>(&'a self, _c: &'a str, r: UpstreamReceipt) -> BoxFuture<'a, CommandStatus> {
        Box::pin(async move {
            let status = self.pass().await;
            self.receipts.lock().expect("receipts").push(r);
            status
        })
    }

    fn mo<'a>(&'a self, _c: &'a str, mo: MoEvent) -> BoxFuture<'a, CommandStatus> {
        Box::pin(async move {
            let status = self.pass().await;
            self.mos.lock().expect("mos").push(mo);
            status
        })
    }
}

/// What the connectors of one test share: the store, and one worker's context.
struct Env {
    store: Arc<EmbeddedStore>,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
    inbound: Arc<FakeInbound>,
}

impl Env {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
        let store =
            Arc::new(EmbeddedStore::with_clock(EmbeddedStoreConfig::default(), clock.clone()));
        Self { store, clock, metrics: Metrics::new(), inbound: FakeInbound::new() }
    }

    /// A connector started as a worker would, stopped with `shutdown`.
    fn connector(
        &self,
        config: &SmppUpstreamConfig,
        shutdown: &CancellationToken,
    ) -> Arc<SmppUpstream> {
        let up = Arc::new(SmppUpstream::new("up", config).expect("connector"));
        up.start(ConnectorContext {
            inbound: self.inbound.clone(),
            store: self.store.clone(),
            clock: Arc::new(SystemClock),
            metrics: self.metrics.family(),
            shutdown: shutdown.clone(),
        });
        up
    }

    fn submits(&self, status: &str) -> u64 {
        self.metrics
            .family::<UpstreamMetrics>()
            .submits_total
            .with_label_values(&["up", status])
            .get()
    }
}

fn config(addr: SocketAddr) -> SmppUpstreamConfig {
    SmppUpstreamConfig {
        address: addr.to_string(),
        system_id: "acme".to_owned(),
        password: "secret".to_owned(),
        system_type: String::new(),
        bind: UpstreamBindMode::Transceiver,
        max_binds: 1,
        binds_per_worker: 1,
        window: 10,
        rate: 0,
        enquire_link_interval: Duration::from_secs(30),
        response_timeout: Duration::from_millis(600),
        connect_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(400),
        lease_ttl: Duration::from_secs(3),
        receipt_park_ttl: Duration::from_secs(60),
        receipt_id: crate::config::ReceiptIdFormat::Auto,
        tls: None,
    }
}

fn message(payload: &[u8]) -> StoredMessage {
    let now = SystemClock.now_ms();
    let sar = Tlvs::from(vec![
        Tlv::SarMsgRefNum(7),
        Tlv::SarTotalSegments(2),
        Tlv::SarSegmentSeqnum(1),
        Tlv::UserMessageReference(99),
    ]);
    let event = SubmitEvent {
        protocol_id: 0x41,
        priority_flag: 2,
        tlvs: sar.to_vec(),
        ..SubmitEvent::default()
    };
    StoredMessage {
        source: Address::new(smsc_smpp::Ton(5), smsc_smpp::Npi(0), "Acme").expect("address"),
        dest: Address::new(smsc_smpp::Ton(1), smsc_smpp::Npi(1), "447700900123").expect("address"),
        registered_delivery: 0,
        data_coding: 8,
        esm_class: EsmClass::UDHI | EsmClass::MODE_DATAGRAM,
        payload: Bytes::copy_from_slice(payload),
        submitted_at: now,
        expire_at: now + 3_600_000,
        event: Bytes::from(event.encode_to_vec()),
        ..sample_message("0123456789abcdef0123456789abcdef", 0, "acme")
    }
}

fn deliver(up: &Arc<SmppUpstream>, m: &StoredMessage) -> tokio::task::JoinHandle<Outcome> {
    let (up, m) = (up.clone(), m.clone());
    tokio::spawn(async move { up.deliver(&m, 1).await })
}

async fn outcome(h: tokio::task::JoinHandle<Outcome>) -> Outcome {
    tokio::time::timeout(STEP, h).await.expect("an outcome in time").expect("deliver task")
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    smsc_test_support::eventually(what, STEP, || std::future::ready(f())).await
}

#[tokio::test]
async fn a_submit_carries_the_message_and_its_answer_maps_to_an_outcome() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let up = env.connector(&config(fake.addr), &stop);
    let mut conn = fake.accept().await;
    let Body::BindTransceiver(bind) = &conn.bind.body else { panic!("a transceiver bind") };
    assert_eq!(
        (bind.system_id.as_bytes(), bind.password.as_bytes()),
        (&b"acme"[..], &b"secret"[..])
    );
    assert_eq!(bind.interface_version, 0x34);

    let long: Vec<u8> = (0..300u16).map(|i| (i % 250) as u8).collect();
    let m = message(&long);
    let pending = deliver(&up, &m);
    let sm = conn.answer_submit(CommandStatus::ESME_ROK, "3B9ACA01").await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "3B9ACA01".into() });
    assert_eq!((sm.source.ton.0, sm.source.addr.as_bytes()), (5, &b"Acme"[..]));
    assert_eq!(
        (sm.dest.ton.0, sm.dest.npi.0, sm.dest.addr.as_bytes()),
        (1, 1, &b"447700900123"[..])
    );
    assert_eq!(sm.esm_class, EsmClass(EsmClass::UDHI), "UDHI kept, the ESME's mode bits not");
    assert_eq!((sm.data_coding.0, sm.protocol_id, sm.priority_flag), (8, 0x41, 2));
    assert_eq!(sm.registered_delivery, RegisteredDelivery::FINAL, "always a final receipt");
    assert!(sm.short_message.is_empty());
    assert_eq!(sm.tlvs.message_payload().map(|b| b.to_vec()), Some(long.clone()));
    assert_eq!(
        sm.tlvs.sar().map(|s| (s.msg_ref_num, s.total_segments, s.segment_seqnum)),
        Some((7, 2, 1))
    );
    assert_eq!(sm.tlvs.user_message_reference(), None, "only concatenation and ports go on");
    let validity = sm.validity_period.parse().expect("valid").expect("present");
    let at = validity
        .resolve(chrono::DateTime::from_timestamp_millis(m.submitted_at).expect("now"))
        .expect("a time");
    assert!((at.timestamp_millis() - m.expire_at).abs() < 1000, "our validity's end");

    let short = message(b"hello");
    for (status, id, expected) in [
        (CommandStatus::ESME_RTHROTTLED, "", Outcome::Temporary { error_code: 0x58 }),
        (CommandStatus::ESME_RMSGQFUL, "", Outcome::Temporary { error_code: 0x14 }),
        (CommandStatus::ESME_RSYSERR, "", Outcome::Temporary { error_code: 0x08 }),
        (CommandStatus::ESME_RINVDSTADR, "", Outcome::Permanent { error_code: 0x0B }),
        (CommandStatus::ESME_ROK, "", Outcome::Delivered),
    ] {
        let pending = deliver(&up, &short);
        let sm = conn.answer_submit(status, id).await;
        assert_eq!(sm.short_message.as_bytes().as_ref(), b"hello");
        assert_eq!(outcome(pending).await, expected, "{status:?}");
    }
    // A generic_nack for a submit is its answer.
    let pending = deliver(&up, &short);
    let pdu = conn.next_request().await;
    conn.send(Pdu::generic_nack(pdu.sequence_number, CommandStatus::ESME_RTHROTTLED)).await;
    assert_eq!(outcome(pending).await, Outcome::Temporary { error_code: 0x58 });
    // No answer: temporary after the response timeout; the late answer is ignored.
    let pending = deliver(&up, &short);
    let pdu = conn.next_request().await;
    assert_eq!(outcome(pending).await, Outcome::Temporary { error_code: 0x08 });
    let late = MessageIdResp {
        message_id: smsc_smpp::COctetString::new(b"late").expect("fits"),
        ..Default::default()
    };
    conn.send(Pdu::new(pdu.sequence_number, Body::SubmitSmResp(late))).await;
    let pending = deliver(&up, &short);
    conn.answer_submit(CommandStatus::ESME_ROK, "next").await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "next".into() });

    for (status, n) in
        [("ESME_ROK", 3), ("ESME_RTHROTTLED", 2), ("ESME_RINVDSTADR", 1), ("timeout", 1)]
    {
        assert_eq!(env.submits(status), n, "{status}");
    }
    let seconds = env.metrics.family::<UpstreamMetrics>().submit_seconds.with_label_values(&["up"]);
    assert_eq!(seconds.get_sample_count(), 8, "every answer, not the timeout");
    stop.cancel();
}

#[tokio::test]
async fn the_window_bounds_submits_in_flight_and_the_rate_paces_them() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let up = env.connector(&SmppUpstreamConfig { window: 2, ..config(fake.addr) }, &stop);
    let mut conn = fake.accept().await;
    let m = message(b"w");
    let pending: Vec<_> = (0..3).map(|_| deliver(&up, &m)).collect();
    let (a, b) = (conn.next_request().await, conn.next_request().await);
    assert!(conn.recv_within(Duration::from_millis(200)).await.is_none(), "window of 2 full");
    conn.send(Pdu::new(a.sequence_number, Body::SubmitSmResp(MessageIdResp::default()))).await;
    let c = conn.next_request().await;
    for p in [b, c] {
        conn.send(Pdu::new(p.sequence_number, Body::SubmitSmResp(MessageIdResp::default()))).await;
    }
    for p in pending {
        assert_eq!(outcome(p).await, Outcome::Delivered);
    }
    stop.cancel();

    // 4 per second: a burst of 4, then one every 250 ms (a submit waits for its token
    // up to the response timeout).
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let c = SmppUpstreamConfig {
        rate: 4,
        response_timeout: Duration::from_secs(3),
        ..config(fake.addr)
    };
    let up = env.connector(&c, &stop);
    let mut conn = fake.accept().await;
    let pending: Vec<_> = (0..8).map(|_| deliver(&up, &m)).collect();
    let started = tokio::time::Instant::now();
    for _ in 0..8 {
        conn.answer_submit(CommandStatus::ESME_ROK, "r").await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "8 submits at 4/s took only {took:?}");
    for p in pending {
        assert_eq!(outcome(p).await, Outcome::Accepted { upstream_id: "r".into() });
    }
    stop.cancel();
}

fn deliver_sm(esm_class: u8, text: &[u8]) -> Body {
    super::inbound::tests::deliver_sm(esm_class, text, Vec::new())
}

#[tokio::test]
async fn receipts_and_mo_are_answered_only_once_the_worker_made_them_durable() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let _up = env.connector(&config(fake.addr), &stop);
    let mut conn = fake.accept().await;
    env.inbound.gate.forget_permits(Semaphore::MAX_PERMITS);

    let text = b"id:1000000001 sub:001 dlvrd:001 submit date:2611270312 done date:2611270313 stat:DELIVRD err:000 text:hi";
    conn.send(Pdu::new(7, deliver_sm(0x04, text))).await;
    assert!(
        conn.recv_within(Duration::from_millis(300)).await.is_none(),
        "not answered while not durable"
    );
    env.inbound.gate.add_permits(1);
    let resp = conn.recv().await;
    assert_eq!((resp.sequence_number, resp.status), (7, CommandStatus::ESME_ROK));
    assert!(matches!(resp.body, Body::DeliverSmResp(_)), "{resp:?}");
    let r = env.inbound.receipts.lock().expect("receipts")[0].clone();
    assert_eq!(r.keys, ["1000000001", "3b9aca01", "3B9ACA01", "68719476737"]);
    assert_eq!((r.state, r.park_ttl), (MessageState::DELIVERED, Duration::from_secs(60)));
    assert_eq!(smsc_smpp::decode(r.pdu.clone()).map(|p| p.body), Ok(deliver_sm(0x04, text)));

    // The worker could not make it durable: the upstream is told to try later.
    *env.inbound.answer.lock().expect("answer") = CommandStatus::ESME_RX_T_APPN;
    env.inbound.gate.add_permits(Semaphore::MAX_PERMITS >> 4);
    conn.send(Pdu::new(8, deliver_sm(0x04, text))).await;
    let resp = conn.recv().await;
    assert_eq!((resp.sequence_number, resp.status), (8, CommandStatus::ESME_RX_T_APPN));
    *env.inbound.answer.lock().expect("answer") = CommandStatus::ESME_ROK;

    conn.send(Pdu::new(9, deliver_sm(0, b"STOP"))).await;
    assert_eq!(conn.recv().await.status, CommandStatus::ESME_ROK);
    let mo = env.inbound.mos.lock().expect("mos")[0].clone();
    assert_eq!((mo.payload.as_slice(), mo.connector.as_str()), (&b"STOP"[..], "up"));
    assert_eq!(mo.dest.map(|d| d.addr), Some("5555".to_owned()));
    assert!(!mo.id.is_empty());

    let data = smsc_smpp::pdu::DataSm {
        source: smsc_smpp::Address::new(
            smsc_smpp::Ton::INTERNATIONAL,
            smsc_smpp::Npi::ISDN,
            "447700900124",
        )
        .expect("fits"),
        dest: smsc_smpp::Address::new(
            smsc_smpp::Ton::NETWORK_SPECIFIC,
            smsc_smpp::Npi::UNKNOWN,
            "5555",
        )
        .expect("fits"),
        tlvs: Tlvs::from(vec![Tlv::MessagePayload(Bytes::from_static(b"via data_sm"))]),
        ..Default::default()
    };
    conn.send(Pdu::new(10, Body::DataSm(data))).await;
    let resp = conn.recv().await;
    assert!(matches!(resp.body, Body::DataSmResp(_)) && resp.status.is_ok(), "{resp:?}");
    assert_eq!(env.inbound.mos.lock().expect("mos")[1].payload, b"via data_sm");

    // A receipt nobody can read is refused for good, and counted.
    conn.send(Pdu::new(11, deliver_sm(0x04, b"delivered, thanks"))).await;
    let resp = conn.recv().await;
    assert_eq!((resp.sequence_number, resp.status), (11, CommandStatus::ESME_RX_P_APPN));
    let malformed = env
        .metrics
        .family::<UpstreamMetrics>()
        .receipts_total
        .with_label_values(&["up", "malformed"])
        .get();
    assert_eq!(malformed, 1);
    stop.cancel();
}

#[tokio::test]
async fn hostile_pdus_get_the_spec_answers_and_broken_framing_only_costs_a_reconnect() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let up = env.connector(&config(fake.addr), &stop);
    let mut conn = fake.accept().await;

    // deliver_sm whose body ends inside source_addr.
    conn.send_raw(&[0, 0, 0, 20, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1, b'4']).await;
    let resp = conn.recv().await;
    assert_eq!(resp.sequence_number, 9);
    assert!(matches!(resp.body, Body::DeliverSmResp(_)) && !resp.status.is_ok(), "{resp:?}");
    // An unknown command.
    conn.send_raw(&[0, 0, 0, 16, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 10]).await;
    let resp = conn.recv().await;
    assert_eq!(
        (resp.body, resp.status, resp.sequence_number),
        (Body::GenericNack, CommandStatus::ESME_RINVCMDID, 10)
    );
    // A request an SMSC does not send to an ESME.
    conn.send(Pdu::new(11, Body::SubmitSm(SubmitSm::default()))).await;
    let resp = conn.recv().await;
    assert_eq!((resp.status, resp.sequence_number), (CommandStatus::ESME_RINVBNDSTS, 11));
    assert!(matches!(resp.body, Body::SubmitSmResp(_)));
    // A response to nothing, and a malformed response: not answered.
    conn.send(Pdu::new(999, Body::SubmitSmResp(MessageIdResp::default()))).await;
    conn.send_raw(&[0, 0, 0, 17, 0x80, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 12, b'x']).await;
    // Still bound: enquire_link answered, submits go through.
    conn.send(Pdu::new(13, Body::EnquireLink)).await;
    let resp = conn.recv().await;
    assert_eq!((resp.body, resp.sequence_number), (Body::EnquireLinkResp, 13));
    let pending = deliver(&up, &message(b"still here"));
    conn.answer_submit(CommandStatus::ESME_ROK, "x1").await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "x1".into() });

    // command_length 8: framing is lost, the bind closes, and a new one comes.
    conn.send_raw(&[0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 14]).await;
    let resp = conn.recv().await;
    assert_eq!((resp.body, resp.status), (Body::GenericNack, CommandStatus::ESME_RINVCMDLEN));
    assert!(conn.closed_within(STEP).await);
    let mut again = fake.accept().await;
    let pending = deliver(&up, &message(b"after"));
    again.answer_submit(CommandStatus::ESME_ROK, "x2").await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "x2".into() });
    stop.cancel();
}

#[tokio::test]
async fn enquire_link_after_idle_time_and_a_new_bind_when_it_goes_unanswered() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let c = SmppUpstreamConfig {
        enquire_link_interval: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        ..config(fake.addr)
    };
    let _up = env.connector(&c, &stop);
    let mut conn = fake.accept().await;
    let probe = conn.recv().await;
    assert_eq!(probe.body, Body::EnquireLink);
    conn.send(Pdu::new(probe.sequence_number, Body::EnquireLinkResp)).await;
    let probe = conn.recv().await;
    assert_eq!(probe.body, Body::EnquireLink, "idle again: another probe");
    // Unanswered: the connection is given up and a new bind made.
    assert!(conn.closed_within(STEP).await);
    let _again = fake.accept().await;
    stop.cancel();
}

#[tokio::test]
async fn refused_binds_are_retried_with_exponential_backoff() {
    let env = Env::new();
    let mut fake = Fake::start(3, None).await;
    let stop = CancellationToken::new();
    let c = SmppUpstreamConfig {
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(2),
        ..config(fake.addr)
    };
    let _up = env.connector(&c, &stop);
    let _conn = fake.accept().await;
    let times = fake.bind_times.lock().expect("times").clone();
    assert_eq!(times.len(), 4);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 200 ms, 400 ms, 800 ms, each within ±25 % jitter.
    for (gap, nominal) in gaps.iter().zip([200u64, 400, 800]) {
        assert!(*gap >= Duration::from_millis(nominal * 3 / 4), "{gaps:?}");
        assert!(*gap <= Duration::from_millis(nominal * 5 / 4 + 300), "{gaps:?}");
    }
    let refused = env
        .metrics
        .family::<UpstreamMetrics>()
        .bind_attempts_total
        .with_label_values(&["up", "ESME_RBINDFAIL"])
        .get();
    assert_eq!(refused, 3);
    stop.cancel();
}

#[tokio::test]
async fn bind_slots_are_shared_by_workers_through_leases() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let c = config(fake.addr);
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = env.connector(&c, &stop_a);
    let b = env.connector(&c, &stop_b);
    let mut first = fake.accept().await;
    assert!(fake.accept_within(Duration::from_millis(1500)).await.is_none(), "max_binds: 1");
    eventually("one worker bound", || a.transmitters_up() + b.transmitters_up() == 1).await;
    let (holder, other, stop_holder, stop_other) =
        if a.transmitters_up() == 1 { (a, b, stop_a, stop_b) } else { (b, a, stop_b, stop_a) };
    assert_eq!(holder.transmitters_up(), 1);
    let pending = deliver(&other, &message(b"nobody here"));
    assert_eq!(
        outcome(pending).await,
        Outcome::Temporary { error_code: 0x08 },
        "no bind in that worker"
    );

    // The holder stops: it unbinds, frees the slot, and the other worker binds.
    stop_holder.cancel();
    assert!(first.closed_within(STEP).await);
    let mut second = fake.accept().await;
    eventually("the other worker bound", || other.transmitters_up() == 1).await;
    let pending = deliver(&other, &message(b"now"));
    second.answer_submit(CommandStatus::ESME_ROK, "y").await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "y".into() });

    // Its lease runs out (the store's clock jumps) and another holder takes the slot:
    // at its next refresh the worker finds it lost and closes its bind.
    env.clock.advance(Duration::from_secs(10));
    let pool = format!("acme@{}", fake.addr);
    let claimed = env.store.claim_slot(&pool, 0, "intruder", Duration::from_secs(60)).await;
    assert_eq!(claimed.expect("claim"), SlotClaim::Held);
    assert!(second.closed_within(STEP).await, "closed after losing its slot");
    eventually("no bind", || other.transmitters_up() == 0).await;
    assert!(
        fake.accept_within(Duration::from_millis(1500)).await.is_none(),
        "the slot is not its own"
    );
    stop_other.cancel();
}

#[tokio::test]
async fn transmitter_receiver_pairs_split_the_directions() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let c = SmppUpstreamConfig {
        bind: UpstreamBindMode::TransmitterReceiver,
        max_binds: 2,
        ..config(fake.addr)
    };
    let up = env.connector(&c, &stop);
    let (x, y) = (fake.accept().await, fake.accept().await);
    let (mut tx, mut rx) =
        if matches!(x.bind.body, Body::BindTransmitter(_)) { (x, y) } else { (y, x) };
    assert!(
        matches!(tx.bind.body, Body::BindTransmitter(_))
            && matches!(rx.bind.body, Body::BindReceiver(_))
    );
    let pending = deliver(&up, &message(b"tx"));
    tx.answer_submit(CommandStatus::ESME_ROK, "t").await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "t".into() });
    rx.send(Pdu::new(3, deliver_sm(0x04, b"id:t stat:DELIVRD"))).await;
    assert_eq!(rx.recv().await.status, CommandStatus::ESME_ROK);
    // A transmitter is not where deliver_sm belongs.
    tx.send(Pdu::new(4, deliver_sm(0x04, b"id:t stat:DELIVRD"))).await;
    assert_eq!(tx.recv().await.status, CommandStatus::ESME_RINVBNDSTS);
    assert_eq!(env.inbound.receipts.lock().expect("receipts").len(), 1);
    stop.cancel();
}

#[tokio::test]
async fn an_orderly_stop_waits_for_the_submits_in_flight_then_unbinds() {
    let env = Env::new();
    let mut fake = Fake::start(0, None).await;
    let stop = CancellationToken::new();
    let c = SmppUpstreamConfig { response_timeout: Duration::from_secs(3), ..config(fake.addr) };
    let up = env.connector(&c, &stop);
    let mut conn = fake.accept().await;
    let pending = deliver(&up, &message(b"in flight"));
    let submit = conn.next_request().await;
    stop.cancel();
    assert!(
        conn.recv_within(Duration::from_millis(300)).await.is_none(),
        "no unbind before the answer"
    );
    conn.send(Pdu::new(
        submit.sequence_number,
        Body::SubmitSmResp(MessageIdResp {
            message_id: smsc_smpp::COctetString::new(b"z").expect("fits"),
            ..Default::default()
        }),
    ))
    .await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "z".into() });
    let unbind = conn.recv().await;
    assert_eq!(unbind.body, Body::Unbind);
    conn.send(Pdu::new(unbind.sequence_number, Body::UnbindResp)).await;
    assert!(conn.closed_within(STEP).await);
    // The slot was released at once (not left to expire).
    let pool = format!("acme@{}", fake.addr);
    eventually("slot free", || true).await;
    let claim =
        env.store.claim_slot(&pool, 0, "next", Duration::from_secs(5)).await.expect("claim");
    assert_eq!(claim, SlotClaim::Held);
}

#[tokio::test]
async fn with_no_upstream_reachable_submits_fail_temporarily() {
    let env = Env::new();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let stop = CancellationToken::new();
    let up = env.connector(&config(addr), &stop);
    assert_eq!(
        outcome(deliver(&up, &message(b"x"))).await,
        Outcome::Temporary { error_code: 0x08 }
    );
    assert_eq!(env.submits("no_bind"), 1);
    let failed = || {
        env.metrics
            .family::<UpstreamMetrics>()
            .bind_attempts_total
            .with_label_values(&["up", "connect_failed"])
            .get()
    };
    eventually("bind attempts counted", || failed() >= 1).await;
    stop.cancel();
}

/// A certificate for `localhost`, written as PEM into `dir`; returns (cert path, acceptor).
fn tls_material(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, tokio_rustls::TlsAcceptor) {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, cert.cert.pem()).expect("write cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("server config");
    (path, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn smpp_over_tls_checks_the_upstream_certificate() {
    let dir = std::env::temp_dir().join(format!("smsc-upstream-tls-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, acceptor) = tls_material(&dir, "upstream");
    let (other_ca, _) = tls_material(&dir, "other");
    let env = Env::new();
    let mut fake = Fake::start(0, Some(acceptor)).await;
    let stop = CancellationToken::new();
    let tls = UpstreamTls { ca, server_name: Some("localhost".into()) };
    let up = env.connector(&SmppUpstreamConfig { tls: Some(tls), ..config(fake.addr) }, &stop);
    let mut conn = fake.accept().await;
    let pending = deliver(&up, &message(b"secret"));
    conn.answer_submit(CommandStatus::ESME_ROK, "t1").await;
    assert_eq!(outcome(pending).await, Outcome::Accepted { upstream_id: "t1".into() });
    stop.cancel();

    // A certificate the configured CA did not sign: no bind, ever.
    let env = Env::new();
    let stop = CancellationToken::new();
    let tls = UpstreamTls { ca: other_ca, server_name: Some("localhost".into()) };
    let _up = env.connector(&SmppUpstreamConfig { tls: Some(tls), ..config(fake.addr) }, &stop);
    let failed = || {
        env.metrics
            .family::<UpstreamMetrics>()
            .bind_attempts_total
            .with_label_values(&["up", "tls_failed"])
            .get()
    };
    eventually("TLS refused", || failed() >= 1).await;
    assert!(fake.accept_within(Duration::from_millis(500)).await.is_none());
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn statuses_map_to_temporary_or_permanent() {
    use crate::config::ReceiptIdFormat::{Auto, HexSubmitDecimalReceipt};
    for s in [
        CommandStatus::ESME_RTHROTTLED,
        CommandStatus::ESME_RMSGQFUL,
        CommandStatus::ESME_RSYSERR,
        CommandStatus::ESME_RX_T_APPN,
    ] {
        assert!(is_temporary(s), "{s:?}");
    }
    for s in [
        CommandStatus::ESME_RINVDSTADR,
        CommandStatus::ESME_RINVSRCADR,
        CommandStatus::ESME_RINVMSGLEN,
        CommandStatus(0x400),
    ] {
        assert!(!is_temporary(s), "{s:?}");
        assert!(matches!(outcome_of(s, "", Auto), Outcome::Permanent { .. }));
    }
    assert_eq!(
        outcome_of(CommandStatus::ESME_ROK, " 3B9ACA01 ", HexSubmitDecimalReceipt),
        Outcome::Accepted { upstream_id: "1000000001".into() }
    );
    assert_eq!(
        outcome_of(CommandStatus(0x0001_0000), "", Auto),
        Outcome::Permanent { error_code: u16::MAX }
    );
}

#[test]
fn link_ttl_covers_the_validity_and_an_hour() {
    let m = message(b"x");
    let ttl = link_ttl(&m, m.expire_at - 10_000);
    assert_eq!(ttl, Duration::from_secs(3610));
    assert_eq!(link_ttl(&m, m.expire_at + 5_000), Duration::from_secs(3600));
}

#[test]
fn a_short_message_stays_in_short_message_and_nothing_else_is_added() {
    let mut m = message(b"hi");
    m.event = Bytes::new();
    m.esm_class = 0;
    let sm = submit_sm(&m).expect("fits");
    assert_eq!(sm.short_message.as_bytes().as_ref(), b"hi");
    assert!(sm.tlvs.is_empty(), "{:?}", sm.tlvs);
    assert_eq!((sm.protocol_id, sm.esm_class), (0, EsmClass(0)));
    m.payload = Bytes::from(vec![b'x'; 70_000]);
    assert!(submit_sm(&m).is_none(), "a message_payload over 65535 octets cannot be sent");
}
