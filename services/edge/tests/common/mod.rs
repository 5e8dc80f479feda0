//! The harness the edge's integration tests share: an [`Edge`] served on `127.0.0.1:0`
//! with the embedded store and the embedded bus (or a [`TestBus`] the test controls),
//! and a [`Client`] that writes raw PDUs and decodes what comes back, with a timeout on
//! every read so that a broken edge fails the test instead of hanging it.

// Each test binary uses a part of the harness.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use prost::Message as _;
use smsc_accounts::AccountConfig;
use smsc_accounts::{Account, AccountDirectory};
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_bus::pressure::Pressure;
use smsc_bus::{Bus, BusError, Consumer, Record};
use smsc_edge::grpc::EdgeGrpc;
use smsc_edge::{Edge, Limits, Settings};
use smsc_proto::edge_client::EdgeClient;
use smsc_proto::edge_server::EdgeServer;
use smsc_proto::{DeliverRequest, SubmitEvent};
use smsc_runtime::telemetry::Metrics;
use smsc_smpp::pdu::{Bind, SubmitSm};
use smsc_smpp::tlv::TlvString;
use smsc_smpp::types::INTERFACE_VERSION_34;
use smsc_smpp::{
    Address, Body, COctetString, CommandId, CommandStatus, EsmClass, MessageState, Npi, Pdu,
    RegisteredDelivery, Tlv, Tlvs, Ton, split_frame,
};
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{BindKind, SystemClock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use smsc_accounts::testing::{PASSWORD, account};

/// The account [`Setup::default`] has.
pub const ESME: &str = "esme";
/// How long a read waits before the test fails (real time; virtual under paused time).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Wall-clock bound of a [`paused`] test.
pub const WALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A number the default accounts may send from and to.
pub const SOURCE: &str = "15550001";
pub const DEST: &str = "15559999";

/// What [`TestEdge::start`] builds.
pub struct Setup {
    pub settings: Settings,
    pub limits: Limits,
    pub accounts: Vec<AccountConfig>,
    /// The bus the edge publishes to; `None`: the embedded bus in [`TestEdge::bus`].
    pub bus: Option<Arc<dyn Bus>>,
    /// Also serve a TLS listener with this acceptor.
    pub tls: Option<smsc_edge::tls::Acceptor>,
    /// What the hops behind the edge report (a test sets an account over its share).
    pub pressure: Pressure,
    /// The store; `None`: a new embedded one (edges of one test may share one).
    pub store: Option<Arc<EmbeddedStore>>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("settings", &self.settings)
            .field("limits", &self.limits)
            .field("accounts", &self.accounts)
            .field("bus", &self.bus)
            .field("tls", &self.tls.is_some())
            .field("pressure", &self.pressure)
            .field("store", &self.store)
            .finish()
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            settings: Settings { edge_id: "edge-test".into(), ..Settings::default() },
            limits: Limits::default(),
            accounts: vec![account(ESME)],
            bus: None,
            tls: None,
            pressure: Pressure::default(),
            store: None,
        }
    }
}

impl Setup {
    pub fn accounts(accounts: Vec<AccountConfig>) -> Self {
        Self { accounts, ..Self::default() }
    }

    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }
}

/// An edge serving SMPP on loopback until the test ends (or [`TestEdge::shutdown`]).
#[derive(Debug)]
pub struct TestEdge {
    pub edge: Arc<Edge>,
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    /// The embedded bus (what the edge publishes to unless [`Setup::bus`] replaced it).
    pub bus: EmbeddedBus,
    pub store: Arc<EmbeddedStore>,
    /// The registry the edge's metrics are in.
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub serving: JoinHandle<()>,
}

impl TestEdge {
    pub async fn start(setup: Setup) -> Self {
        let accounts = setup
            .accounts
            .iter()
            .map(|c| Account::from_config(c).expect("valid test account"))
            .collect();
        let bus = EmbeddedBus::new(EmbeddedBusConfig::default());
        let store = setup
            .store
            .unwrap_or_else(|| Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default())));
        let metrics = Metrics::new();
        let deps = smsc_edge::Deps {
            accounts: Arc::new(AccountDirectory::new(accounts)),
            bus: setup.bus.unwrap_or_else(|| Arc::new(bus.clone())),
            store: store.clone(),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            pressure: setup.pressure,
            topics: Default::default(),
        };
        let edge = Edge::with_limits(setup.settings, setup.limits, deps);
        let listener = loopback().await;
        let addr = listener.local_addr().expect("bound");
        let (tls, tls_addr) = match setup.tls {
            Some(acceptor) => {
                let l = loopback().await;
                let a = l.local_addr().expect("bound");
                (Some((l, acceptor)), Some(a))
            }
            None => (None, None),
        };
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(smsc_edge::serve(edge.clone(), listener, tls, shutdown.clone()));
        Self { edge, addr, tls_addr, bus, store, metrics, shutdown, serving }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// A connection from another loopback address (`127.0.0.2`, ...): a second client
    /// host, as the edge's per-address limits see it.
    pub async fn connect_from(&self, source: std::net::IpAddr) -> Client {
        Client::connect_from(self.addr, source).await
    }

    /// A new connection bound as `system_id` (bind `kind`, interface version 3.4).
    pub async fn bind(&self, kind: BindKind, system_id: &str) -> Client {
        let mut c = self.connect().await;
        c.bind_ok(kind, system_id).await;
        c
    }

    /// Serves `Edge` over gRPC on loopback until the edge stops; returns a client.
    pub async fn grpc(&self) -> EdgeClient<Channel> {
        let listener = loopback().await;
        let addr = listener.local_addr().expect("bound");
        let server = tonic::transport::Server::builder()
            .add_service(EdgeServer::new(EdgeGrpc(self.edge.clone())))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                self.shutdown.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("gRPC connects");
        EdgeClient::new(channel)
    }

    /// Waits until `system_id` has `n` receiver sessions registered on this edge.
    pub async fn wait_receivers(&self, system_id: &str, n: usize) {
        let registry = &self.edge.registry;
        eventually(&format!("{n} receivers of {system_id}"), || async {
            registry.receivers(system_id).len() == n
        })
        .await;
    }
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0")
}

/// Polls `check` until it holds, a bounded number of times: for state the edge writes
/// asynchronously (directory leases, the registry after a close).
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    smsc_test_support::eventually(what, Duration::from_secs(10), check).await
}

/// Runs `test` on a current-thread runtime with paused time (the clock jumps to the
/// next timer whenever the runtime is idle), and fails it if it has not finished after
/// [`WALL_TIMEOUT`] of real time. Paused time stops while any task is runnable, so a
/// task that never lets the runtime idle (a busy loop) would otherwise hang the test
/// with every tokio timeout in it.
pub fn paused<Fut>(test: impl FnOnce() -> Fut + Send + 'static)
where
    Fut: Future<Output = ()> + 'static,
{
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let runner = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(test());
        let _ = done.send(());
    });
    match finished.recv_timeout(WALL_TIMEOUT) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = runner.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
            "paused-time test still running after {WALL_TIMEOUT:?} of wall time: \
             some task never lets the runtime idle (a busy loop?)"
        ),
    }
}

/// An SMPP peer that speaks raw bytes.
#[derive(Debug)]
pub struct Client<S = TcpStream> {
    stream: S,
    buf: BytesMut,
    seq: u32,
    /// How long [`Client::read`] waits for the next PDU.
    pub timeout: Duration,
}

impl Client<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to the edge");
        // Without it Nagle holds a small write back until the previous one is acked,
        // which under paused time lets the clock jump past the edge's next timer.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self::new(stream)
    }

    /// Connects from `source` (any 127.0.0.0/8 address works on Linux loopback).
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(source, 0)).expect("bind the source address");
        let stream = socket.connect(addr).await.expect("connect to the edge");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self::new(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Self { stream, buf: BytesMut::new(), seq: 0, timeout: READ_TIMEOUT }
    }

    /// The next sequence number this client uses.
    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the edge");
    }

    /// A write that may fail (the edge may have closed the connection).
    pub async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The connection, for a test that drives it by hand after binding.
    pub fn into_inner(self) -> S {
        assert!(self.buf.is_empty(), "unread bytes from the edge: {:02x?}", &self.buf[..]);
        self.stream
    }

    /// Hand-written bytes, as hex (spaces allowed).
    pub async fn write_hex(&mut self, hex: &str) {
        let bytes = unhex(hex);
        self.write(&bytes).await;
    }

    /// Encodes `pdus` and writes them in one write.
    pub async fn send(&mut self, pdus: &[Pdu]) {
        let mut out = BytesMut::new();
        for p in pdus {
            p.encode(&mut out).expect("test PDU encodes");
        }
        self.write(&out).await;
    }

    /// The next PDU, or `None` once the edge closed the connection. Fails the test
    /// after [`Client::timeout`] without either.
    pub async fn read(&mut self) -> Option<Pdu> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_untimed())
            .await
            .unwrap_or_else(|_| panic!("nothing from the edge within {timeout:?}"))
    }

    async fn read_untimed(&mut self) -> Option<Pdu> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf, u32::MAX).expect("edge framing") {
                return Some(smsc_smpp::decode(frame).expect("the edge sends valid PDUs"));
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "closed inside a PDU: {:02x?}", &self.buf[..]);
                    return None;
                }
                Ok(_) => {}
            }
        }
    }

    /// The next PDU; the connection must still be open.
    pub async fn recv(&mut self) -> Pdu {
        self.read().await.expect("the edge closed the connection")
    }

    /// `n` PDUs.
    pub async fn recv_n(&mut self, n: usize) -> Vec<Pdu> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.recv().await);
        }
        v
    }

    /// The edge closes the connection without sending anything more.
    pub async fn expect_closed(&mut self) {
        if let Some(p) = self.read().await {
            panic!("expected the connection closed, got {p:?}");
        }
    }

    /// Nothing arrives for `d` and the connection stays open (paused-time tests).
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(got) = tokio::time::timeout(d, self.read_untimed()).await {
            panic!("expected silence for {d:?}, got {got:?}");
        }
    }

    /// Sends `body` as a request with the next sequence number and returns the
    /// answer, which must carry that sequence number.
    pub async fn request(&mut self, body: Body) -> Pdu {
        let seq = self.next_seq();
        self.send(&[Pdu::new(seq, body)]).await;
        let resp = self.recv().await;
        assert_eq!(resp.sequence_number, seq, "answer to request {seq}: {resp:?}");
        resp
    }

    /// Binds and returns the answer, checked to be the `_resp` of that bind.
    pub async fn bind_as(
        &mut self,
        kind: BindKind,
        system_id: &str,
        password: &str,
        version: u8,
    ) -> Pdu {
        let resp = self.request(bind_body(kind, system_id, password, version)).await;
        let expected = match kind {
            BindKind::Transmitter => CommandId::BindTransmitterResp,
            BindKind::Receiver => CommandId::BindReceiverResp,
            BindKind::Transceiver => CommandId::BindTransceiverResp,
        };
        assert_eq!(resp.command_id(), expected, "{resp:?}");
        resp
    }

    pub async fn bind_ok(&mut self, kind: BindKind, system_id: &str) {
        let resp = self.bind_as(kind, system_id, PASSWORD, INTERFACE_VERSION_34).await;
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "bind as {system_id}: {resp:?}");
    }

    /// Submits `sm` and returns the submit_sm_resp.
    pub async fn submit(&mut self, sm: SubmitSm) -> Pdu {
        let resp = self.request(Body::SubmitSm(sm)).await;
        assert_eq!(resp.command_id(), CommandId::SubmitSmResp, "{resp:?}");
        resp
    }

    /// Submits `sm`, which must be refused with `status`.
    pub async fn submit_refused(&mut self, sm: SubmitSm, status: CommandStatus) {
        let resp = self.submit(sm).await;
        assert_status(&resp, status);
    }
}

pub fn bind_body(kind: BindKind, system_id: &str, password: &str, version: u8) -> Body {
    let bind = Bind {
        system_id: cstr(system_id),
        password: cstr(password),
        interface_version: version,
        ..Bind::default()
    };
    match kind {
        BindKind::Transmitter => Body::BindTransmitter(bind),
        BindKind::Receiver => Body::BindReceiver(bind),
        BindKind::Transceiver => Body::BindTransceiver(bind),
    }
}

pub fn cstr<const N: usize>(s: &str) -> COctetString<N> {
    COctetString::new(s.as_bytes()).expect("fits the field")
}

/// An international ISDN number.
pub fn number(digits: &str) -> Address<21> {
    Address::new(Ton::INTERNATIONAL, Npi::ISDN, digits).expect("fits")
}

/// A submit_sm from [`SOURCE`] to [`DEST`] asking for a receipt.
pub fn submit_sm(text: &str) -> SubmitSm {
    SubmitSm {
        source: number(SOURCE),
        dest: number(DEST),
        registered_delivery: RegisteredDelivery::FINAL,
        short_message: smsc_smpp::pdu::ShortMessage::new(Bytes::copy_from_slice(text.as_bytes()))
            .expect("fits"),
        ..SubmitSm::default()
    }
}

/// A delivery receipt for `message_id` as the cluster hands it to `Edge.Deliver`.
pub fn receipt(message_id: &str) -> Pdu {
    let text = format!(
        "id:{message_id} sub:001 dlvrd:001 submit date:2601010000 done date:2601010001 \
         stat:DELIVRD err:000 text:hello"
    );
    let deliver = SubmitSm {
        source: number(DEST),
        dest: number(SOURCE),
        esm_class: EsmClass(EsmClass::TYPE_DELIVERY_RECEIPT),
        short_message: smsc_smpp::pdu::ShortMessage::new(Bytes::from(text)).expect("fits"),
        tlvs: Tlvs::from(vec![
            Tlv::ReceiptedMessageId(TlvString::new(message_id.as_bytes())),
            Tlv::MessageState(MessageState::DELIVERED),
        ]),
        ..SubmitSm::default()
    };
    Pdu::new(0, Body::DeliverSm(deliver))
}

pub fn deliver_request(system_id: &str, message_id: &str) -> DeliverRequest {
    DeliverRequest {
        system_id: system_id.to_owned(),
        deliver_sm: receipt(message_id).to_bytes().expect("encodes").to_vec(),
        message_id: message_id.to_owned(),
        kind: smsc_proto::NotificationKind::Receipt as i32,
    }
}

pub fn assert_status(p: &Pdu, status: CommandStatus) {
    assert_eq!(p.status, status, "expected {status}, got {p:?}");
}

/// The message_id of a submit_sm_resp / data_sm_resp / submit_multi_resp, checked to be
/// what the edge promises: 32 lowercase hex digits.
pub fn message_id(p: &Pdu) -> String {
    let id = match &p.body {
        Body::SubmitSmResp(r) | Body::DataSmResp(r) => r.message_id,
        Body::SubmitMultiResp(r) => r.message_id,
        other => panic!("no message_id in {other:?}"),
    };
    let id = id.as_str().expect("ASCII").to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "message_id {id:?} is not 32 lowercase hex digits"
    );
    id
}

pub fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("ASCII");
            u8::from_str_radix(s, 16).expect("hex digits")
        })
        .collect()
}

/// A consumer of every class's `smsc.submit` on the embedded bus; make it before
/// submitting.
pub fn submit_consumer(bus: &EmbeddedBus) -> Box<dyn Consumer> {
    let topics = smsc_bus::Topics::default();
    let names = topics.submits().each_ref().map(|t| &**t);
    bus.consumer("test", &names, 64).expect("consumer")
}

/// The next `n` submit events, decoded with prost as every consumer does.
pub async fn submitted(consumer: &mut Box<dyn Consumer>, n: usize) -> Vec<SubmitEvent> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let d = tokio::time::timeout(READ_TIMEOUT, consumer.recv())
            .await
            .expect("a submit event on the bus")
            .expect("bus recv");
        consumer.ack(&d).expect("ack");
        events.push(SubmitEvent::decode(d.record.payload).expect("a SubmitEvent"));
    }
    events
}

/// What a [`TestBus`] does with a publish.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Accepts at once.
    Accept,
    /// Resolves only after [`TestBus::release`].
    Hold,
    /// Answers this error.
    Fail(BusError),
    /// Takes the first N records it is ever given and refuses the rest with the error
    /// (a broker queue filling up part-way through a batch).
    FailAfter(usize, BusError),
}

/// A bus the test controls; it counts the records it was asked to publish.
#[derive(Debug)]
pub struct TestBus {
    mode: Mode,
    gate: watch::Sender<bool>,
    records: AtomicUsize,
}

impl TestBus {
    pub fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Self { mode, gate: watch::Sender::new(false), records: AtomicUsize::new(0) })
    }

    /// Lets every held publish (and every later one) complete.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Records handed to `publish` so far (before any of them completed).
    pub fn records(&self) -> usize {
        self.records.load(Ordering::SeqCst)
    }
}

impl Bus for TestBus {
    fn publish(
        &self,
        _topic: &str,
        records: Vec<Record>,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        self.records.fetch_add(records.len(), Ordering::SeqCst);
        let mode = self.mode.clone();
        let mut gate = self.gate.subscribe();
        Box::pin(async move {
            match mode {
                Mode::Accept => Ok(()),
                Mode::Hold => {
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(())
                }
                Mode::Fail(e) => Err(e),
                Mode::FailAfter(..) => unreachable!("publish_each handles FailAfter"),
            }
        })
    }

    fn publish_each(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> BoxFuture<'static, Vec<Result<(), BusError>>> {
        let Mode::FailAfter(n, e) = self.mode.clone() else {
            let n = records.len();
            let all = self.publish(topic, records);
            return Box::pin(async move {
                match all.await {
                    Ok(()) => vec![Ok(()); n],
                    Err(e) => vec![Err(e); n],
                }
            });
        };
        let before = self.records.fetch_add(records.len(), Ordering::SeqCst);
        let out = (0..records.len())
            .map(|i| if before + i < n { Ok(()) } else { Err(e.clone()) })
            .collect();
        Box::pin(async move { out })
    }

    fn consumer(
        &self,
        _group: &str,
        _topics: &[&str],
        _max_in_flight: usize,
    ) -> Result<Box<dyn Consumer>, BusError> {
        Err(BusError::unavailable("the test bus has no consumers"))
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// A self-signed certificate for "localhost": the edge's TLS acceptor, and a client
/// connector that trusts it (and nothing else).
pub fn self_signed_tls() -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let acceptor = smsc_edge::tls::acceptor(&cert_path, &key_path).expect("acceptor");
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("trust the test certificate");
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    (acceptor, tokio_rustls::TlsConnector::from(Arc::new(config)))
}
