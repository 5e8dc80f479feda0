//! Rebalancing after a scale-out, with several edges in one process on loopback sharing
//! one session directory (the embedded store), a peer count the test sets, and ESMEs
//! that bind again through a round-robin "Service" when an edge unbinds them.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use common::{ESME, account, bind_body, submit_sm};
use smsc_accounts::{Account, AccountDirectory};
use smsc_bus::Bus;
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_edge::rebalance::{self, FnPeers};
use smsc_edge::{Edge, Settings};
use smsc_runtime::telemetry::Metrics;
use smsc_smpp::{Body, CommandStatus, Pdu, split_frame};
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{BindKind, Store, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(300);

/// What the edges share: accounts, bus, session directory, and the ready-peer count.
struct Shared {
    accounts: Arc<AccountDirectory>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    peers: Arc<AtomicUsize>,
}

impl Shared {
    fn new() -> Self {
        let mut esme = account(ESME);
        esme.max_binds = 50;
        let accounts = vec![Account::from_config(&esme).expect("valid")];
        Self {
            accounts: Arc::new(AccountDirectory::new(accounts)),
            bus: Arc::new(EmbeddedBus::new(EmbeddedBusConfig::default())),
            store: Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default())),
            peers: Arc::new(AtomicUsize::new(1)),
        }
    }

    async fn edge(&self, name: &str, rebalance: rebalance::Settings) -> Node {
        let metrics = Metrics::new();
        let edge = Edge::new(
            Settings {
                edge_id: name.into(),
                session_lease_ttl: Duration::from_secs(120),
                ..Settings::default()
            },
            smsc_edge::Deps {
                accounts: self.accounts.clone(),
                bus: self.bus.clone(),
                store: self.store.clone(),
                clock: Arc::new(SystemClock),
                metrics: metrics.clone(),
                pressure: Default::default(),
                topics: Default::default(),
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let serving =
            tokio::spawn(smsc_edge::serve(edge.clone(), listener, None, shutdown.clone()));
        let peers = self.peers.clone();
        let source = Arc::new(FnPeers(move || Some(peers.load(Ordering::SeqCst))));
        tokio::spawn(rebalance::run(edge.clone(), source, rebalance, shutdown.clone()));
        Node { edge, addr, metrics, shutdown, serving }
    }
}

struct Node {
    edge: Arc<Edge>,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
}

impl Node {
    fn sessions(&self) -> usize {
        self.edge.registry.all().len()
    }

    /// `smsc_edge_sessions_shed_total`, all bind types.
    fn shed(&self) -> u64 {
        let text = self.metrics.encode();
        text.lines()
            .filter(|l| l.starts_with("smsc_edge_sessions_shed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// The Service in front of the edges: round-robin over the ready ones.
#[derive(Clone)]
struct Service {
    ready: Arc<Mutex<Vec<SocketAddr>>>,
    next: Arc<AtomicUsize>,
}

impl Service {
    fn new(ready: Vec<SocketAddr>) -> Self {
        Self { ready: Arc::new(Mutex::new(ready)), next: Arc::default() }
    }

    fn pick(&self) -> SocketAddr {
        let ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        ready[self.next.fetch_add(1, Ordering::SeqCst) % ready.len()]
    }

    fn set(&self, ready: Vec<SocketAddr>) {
        *self.ready.lock().unwrap_or_else(|e| e.into_inner()) = ready;
    }
}

/// Unbinds the ESMEs received: (which ESME, from which edge, when).
type UnbindLog = Arc<Mutex<Vec<(String, SocketAddr, Instant)>>>;

/// An ESME: binds through `service`, answers enquire_link, submits every 50 ms when
/// `busy`, and on an unbind from the edge answers it and (when `rebind`) binds again.
fn esme(
    label: String,
    kind: BindKind,
    busy: bool,
    rebind: bool,
    service: Service,
    unbinds: UnbindLog,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let addr = service.pick();
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut seq = 1;
            write(&mut stream, &Pdu::new(seq, bind_body(kind, ESME, common::PASSWORD, 0x34))).await;
            let mut buf = BytesMut::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut bound = false;
            loop {
                tokio::select! {
                    _ = tick.tick(), if busy && bound => {
                        seq += 1;
                        write(&mut stream, &Pdu::new(seq, Body::SubmitSm(submit_sm("hi")))).await;
                    }
                    pdu = read(&mut stream, &mut buf) => {
                        let Some(pdu) = pdu else { break };
                        match pdu.body {
                            Body::BindTransmitterResp(_) | Body::BindTransceiverResp(_) | Body::BindReceiverResp(_) => {
                                assert_eq!(pdu.status, CommandStatus::ESME_ROK, "{label} bind");
                                bound = true;
                            }
                            Body::EnquireLink => {
                                write(&mut stream, &Pdu::new(pdu.sequence_number, Body::EnquireLinkResp)).await;
                            }
                            Body::Unbind => {
                                unbinds.lock().unwrap_or_else(|e| e.into_inner()).push((label.clone(), addr, Instant::now()));
                                write(&mut stream, &Pdu::new(pdu.sequence_number, Body::UnbindResp)).await;
                            }
                            _ => {}
                        }
                    }
                }
            }
            if !rebind {
                return;
            }
        }
    })
}

async fn write(stream: &mut TcpStream, pdu: &Pdu) {
    let mut out = BytesMut::new();
    pdu.encode(&mut out).expect("encodes");
    // The edge may have closed already; the read side notices.
    let _ = stream.write_all(&out).await;
}

async fn read(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Pdu> {
    loop {
        if let Some(frame) = split_frame(buf, u32::MAX).expect("edge framing") {
            return Some(smsc_smpp::decode(frame).expect("valid PDU"));
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "never reached within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settings(max: usize, slack: usize) -> rebalance::Settings {
    rebalance::Settings { interval: INTERVAL, max_shed_per_interval: max, slack }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_edge_gets_its_fair_share_at_the_configured_rate() {
    let shared = Shared::new();
    let a = shared.edge("edge-a", settings(2, 0)).await;
    let b = shared.edge("edge-b", settings(2, 0)).await;
    let service = Service::new(vec![a.addr]);
    let unbinds: UnbindLog = Arc::default();
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let kind = if i % 2 == 0 { BindKind::Transmitter } else { BindKind::Transceiver };
            esme(format!("esme-{i}"), kind, i % 3 == 0, true, service.clone(), unbinds.clone())
        })
        .collect();
    until("10 sessions on edge A", Duration::from_secs(20), || a.sessions() == 10).await;

    // One ready edge: nobody to hand sessions to, whatever the interval.
    tokio::time::sleep(INTERVAL * 4).await;
    assert_eq!((a.shed(), a.sessions()), (0, 10));

    // Edge B becomes ready: A sheds towards ceil(10 / 2) = 5, two per interval.
    shared.peers.store(2, Ordering::SeqCst);
    service.set(vec![a.addr, b.addr]);
    let lowest = Arc::new(AtomicUsize::new(10));
    let watch = {
        let (lowest, edge) = (lowest.clone(), a.edge.clone());
        tokio::spawn(async move {
            loop {
                lowest.fetch_min(edge.registry.all().len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    until("5 and 5", Duration::from_secs(30), || a.sessions() == 5 && b.sessions() == 5).await;
    // Settled: a few more intervals change nothing.
    tokio::time::sleep(INTERVAL * 4).await;
    watch.abort();
    assert_eq!((a.sessions(), b.sessions()), (5, 5));
    assert!(lowest.load(Ordering::SeqCst) >= 5, "A went below its fair share");
    assert_eq!(b.shed(), 0, "B holds less than its share");
    let from_a: Vec<Instant> = unbinds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, edge, _)| *edge == a.addr)
        .map(|(_, _, at)| *at)
        .collect();
    assert_eq!(from_a.len() as u64, a.shed(), "every shed session got an unbind");
    assert!(from_a.len() >= 5, "{from_a:?}");
    // At most two per interval: any three unbinds span more than most of an interval
    // (rounds are an interval apart; the slack is for scheduling jitter).
    for w in from_a.windows(3) {
        assert!(w[2] - w[0] > INTERVAL / 2, "three unbinds within {:?}", w[2] - w[0]);
    }

    for c in clients {
        c.abort();
    }
    for n in [a, b] {
        n.shutdown.cancel();
        let _ = n.serving.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_transmitter_sessions_go_first_and_draining_sheds_nothing() {
    let shared = Shared::new();
    let a = shared.edge("edge-a", settings(2, 0)).await;
    let _b = shared.edge("edge-b", settings(2, 0)).await;
    let service = Service::new(vec![a.addr]);
    let unbinds: UnbindLog = Arc::default();
    // Bound one after the other, so the edge's session ids follow this order.
    let mut clients = Vec::new();
    for (i, (label, kind, busy)) in [
        ("trx-busy", BindKind::Transceiver, true),
        ("tx-busy", BindKind::Transmitter, true),
        ("trx-idle", BindKind::Transceiver, false),
        ("tx-idle", BindKind::Transmitter, false),
    ]
    .into_iter()
    .enumerate()
    {
        clients.push(esme(label.into(), kind, busy, false, service.clone(), unbinds.clone()));
        until("bound", Duration::from_secs(20), || a.sessions() == i + 1).await;
    }
    // Let the busy ones submit for a moment, then add a ready peer: fair share 2.
    tokio::time::sleep(Duration::from_millis(200)).await;
    shared.peers.store(2, Ordering::SeqCst);
    until("two shed", Duration::from_secs(10), || a.sessions() == 2).await;
    tokio::time::sleep(INTERVAL * 3).await;
    let mut shed: Vec<String> = unbinds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(label, _, _)| label.clone())
        .collect();
    shed.sort_unstable();
    // Score: busy + receives. tx-idle 0, then tx-busy and trx-idle 1 (the older first),
    // trx-busy 2.
    assert_eq!(shed, ["tx-busy", "tx-idle"]);
    assert_eq!(a.shed(), 2);

    // Shutdown unbinds everyone; that is the drain, not shedding.
    shared.peers.store(4, Ordering::SeqCst);
    a.shutdown.cancel();
    until("drained", Duration::from_secs(10), || a.serving.is_finished()).await;
    tokio::time::sleep(INTERVAL * 2).await;
    assert_eq!(a.shed(), 2);
    assert_eq!(a.sessions(), 0);
    for c in clients {
        c.abort();
    }
}
