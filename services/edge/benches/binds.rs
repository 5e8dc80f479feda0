//! Binds per second of one account with known credentials: a rebind storm (the ESMEs of
//! a lost, drained or scaled-down edge pod binding again on another one at once), over
//! loopback TCP, against three servers in one run:
//!
//! - `zero-work`: a listener in this bench that answers every bind_transceiver with a
//!   bind_transceiver_resp and checks nothing: the reference the others are divided by;
//! - `edge, cache on`: an edge (embedded store and bus) with the default
//!   `edge.credential_cache`, cold: the first bind runs argon2, the others wait for that
//!   check or find it in the cache;
//! - `edge, cache off`: `edge.credential_cache.ttl: 0s`, argon2 for every bind.
//!
//! The account's hash has the cost `smsc hash-password` gives (argon2id defaults). Each
//! bind is a new connection, kept open until its run ends (a storm leaves sessions
//! bound); at most `BENCH_CONCURRENCY` binds are in flight at once.
//!
//! ```text
//! cargo bench -p smsc-edge --bench binds
//! ```
//!
//! `BENCH_BINDS` (default 5000) binds against the reference and the cached edge,
//! `BENCH_BINDS_OFF` (default 300) against the edge with the cache off, which does
//! about 70 a second on 2 vCPUs; `BENCH_CONCURRENCY` (default 64).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use smsc_accounts::{Account, AccountDirectory};
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_bus::pressure::Pressure;
use smsc_edge::config::CredentialCacheConfig;
use smsc_edge::{Deps, Edge, Limits, Settings};
use smsc_runtime::telemetry::Metrics;
use smsc_smpp::pdu::{Bind, BindResp};
use smsc_smpp::{Body, COctetString, CommandId, CommandStatus, Pdu, Tlvs, split_frame};
use smsc_store::SystemClock;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const SYSTEM_ID: &str = "storm";

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let binds = env("BENCH_BINDS", 5000);
    let binds_off = env("BENCH_BINDS_OFF", 300);
    let concurrency = env("BENCH_CONCURRENCY", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let (addr, responder) = zero_work().await;
        let reference = storm(addr, binds, concurrency).await;
        responder.abort();

        let on = Duration::from_secs(5 * 60);
        let (cached, checks) = against_edge(on, binds, concurrency).await;
        let (uncached, _) = against_edge(Duration::ZERO, binds_off, concurrency).await;

        let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
        let reference_rate = rate(binds, reference);
        println!("\nbinds of one account, {concurrency} in flight, new connection each:\n");
        println!(
            "{:<18} {:>6} {:>9} {:>9} {:>18}",
            "server", "binds", "seconds", "binds/s", "ratio to zero-work"
        );
        for (name, n, d) in [
            ("zero-work", binds, reference),
            ("edge, cache on", binds, cached),
            ("edge, cache off", binds_off, uncached),
        ] {
            let r = rate(n, d);
            let secs = d.as_secs_f64();
            println!("{name:<18} {n:>6} {secs:>9.2} {r:>9.0} {:>18.4}", r / reference_rate);
        }
        println!(
            "\ncache on / cache off: {:.1}x; credential checks with the cache on: {checks}",
            rate(binds, cached) / rate(binds_off, uncached)
        );
    });
}

fn env(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// `n` binds to `addr`, at most `concurrency` at once; the time until the last answer.
async fn storm(addr: SocketAddr, n: usize, concurrency: usize) -> Duration {
    let slots = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut binds = JoinSet::new();
    for _ in 0..n {
        let slot = slots.clone().acquire_owned().await.expect("semaphore open");
        binds.spawn(async move {
            let session = bind(addr).await;
            drop(slot);
            session
        });
    }
    let mut sessions = Vec::with_capacity(n);
    while let Some(session) = binds.join_next().await {
        sessions.push(session.expect("bind task"));
    }
    let elapsed = started.elapsed();
    // Bound until here, as the sessions of a storm stay.
    drop(sessions);
    elapsed
}

/// A new connection bound as [`SYSTEM_ID`] with the right password; panics otherwise.
async fn bind(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let bind = Bind {
        system_id: COctetString::new(SYSTEM_ID.as_bytes()).expect("fits"),
        password: COctetString::new(smsc_accounts::testing::PASSWORD.as_bytes()).expect("fits"),
        interface_version: 0x34,
        ..Bind::default()
    };
    let bytes = Pdu::new(1, Body::BindTransceiver(bind)).to_bytes().expect("encodes");
    stream.write_all(&bytes).await.expect("write the bind");
    let mut buf = BytesMut::with_capacity(64);
    let resp = loop {
        if let Some(frame) = split_frame(&mut buf, 4096).expect("framing") {
            break smsc_smpp::decode(frame).expect("a PDU");
        }
        let read = stream.read_buf(&mut buf).await.expect("read the bind_resp");
        assert!(read > 0, "closed before the bind_resp");
    };
    assert_eq!(resp.command_id(), CommandId::BindTransceiverResp, "{resp:?}");
    assert_eq!(resp.status, CommandStatus::ESME_ROK, "{resp:?}");
    stream
}

/// The reference: answers each bind with an OK bind_transceiver_resp, checking nothing.
async fn zero_work() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound");
    let accepting = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = BytesMut::with_capacity(64);
                loop {
                    match split_frame(&mut buf, 4096) {
                        Ok(Some(frame)) => {
                            let seq = frame
                                .get(12..16)
                                .and_then(|s| s.try_into().ok())
                                .map_or(0, u32::from_be_bytes);
                            let resp = BindResp {
                                system_id: COctetString::new(b"smsc").expect("fits"),
                                tlvs: Tlvs::new(),
                            };
                            let pdu = Pdu::new(seq, Body::BindTransceiverResp(resp));
                            let bytes = pdu.to_bytes().expect("encodes");
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => match stream.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        },
                        Err(_) => return,
                    }
                }
            });
        }
    });
    (addr, accepting)
}

/// `n` binds against a fresh edge whose credential cache keeps a check for `ttl`;
/// the time they took and the edge's count of checks by way.
async fn against_edge(ttl: Duration, n: usize, concurrency: usize) -> (Duration, String) {
    let mut config = smsc_accounts::testing::account(SYSTEM_ID);
    // Hashed as `smsc hash-password` does, with argon2's default cost.
    config.password_hash = smsc_accounts::testing::password_hash();
    config.max_binds = u32::MAX;
    let account = Account::from_config(&config).expect("valid account");
    let metrics = Metrics::new();
    let deps = Deps {
        accounts: Arc::new(AccountDirectory::new(vec![account])),
        bus: Arc::new(EmbeddedBus::new(EmbeddedBusConfig::default())),
        store: Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default())),
        clock: Arc::new(SystemClock),
        metrics: metrics.clone(),
        pressure: Pressure::default(),
        topics: Default::default(),
    };
    let settings = Settings {
        edge_id: "bench".into(),
        max_connections: 1_000_000,
        credential_cache: CredentialCacheConfig { ttl, ..CredentialCacheConfig::default() },
        ..Settings::default()
    };
    let limits = Limits { max_connections_per_ip: 1_000_000, ..Limits::default() };
    let edge = Edge::with_limits(settings, limits, deps);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound");
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(smsc_edge::serve(edge, listener, None, shutdown.clone()));

    let elapsed = storm(addr, n, concurrency).await;

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), serving).await;
    let checks = metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("smsc_edge_bind_password_checks_total{via=\""))
        .map(|l| l.replacen("\"}", "", 1))
        .collect::<Vec<_>>()
        .join(", ");
    (elapsed, checks)
}
