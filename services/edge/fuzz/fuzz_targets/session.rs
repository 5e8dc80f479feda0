//! Feeds arbitrary bytes into a real edge session (`smsc_edge::session::run`) over an
//! in-memory duplex stream, with the embedded bus and store behind it, on paused tokio
//! time (the session's timers fire as soon as nothing else can happen).
//!
//! Input: `mode`, `chunk`, then the bytes the ESME sends.
//! - `mode & 3`: 0 not bound, 1 transmitter, 2 receiver, 3 transceiver (a real bind with
//!   the right password first, so the fuzzer starts inside a bound session);
//! - `mode & 4`: a deliver_sm is pushed into the session (as `Edge.Deliver` does) first;
//! - `mode & 8`: the pod shuts down after the bytes (unbind, drain);
//! - `mode & 16`: the ESME closes its side after the bytes, instead of probing.
//! - `chunk % 64 + 1`: the bytes go in writes of this size, the session running between.
//!
//! Checked: nothing panics; everything the edge sends is a valid PDU; after the bytes
//! the session either answers an enquire_link or ends; once the ESME goes away the
//! session ends and leaves nothing behind in the registry or the connection counts.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use smsc_accounts::{Account, AccountDirectory};
use smsc_bus::embedded::{EmbeddedBus, EmbeddedBusConfig};
use smsc_accounts::AccountConfig;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::{BindKind, SystemClock};
use smsc_runtime::telemetry::Metrics;
use smsc_edge::registry::Outbound;
use smsc_edge::{Edge, Limits, Settings, session};
use smsc_smpp::pdu::{Bind, ShortMessage, SubmitSm};
use smsc_smpp::{Address, Body, COctetString, CommandId, CommandStatus, Npi, Pdu, Ton};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const ESME: &str = "esme";
const PASSWORD: &str = "secret";
/// argon2id of "secret" with tiny parameters (m=8 KiB, t=1): binds cost microseconds.
const CHEAP_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$Zml4dHVyZS1zYWx0$WJEFL8NndZsdrq5NkUV09qPFpNjBbMQcMNAkey5WW+o";
const PROBE_SEQ: u32 = 0x7FFF_FFF0;
/// Virtual time: longer than every timer of the session together.
const PATIENCE: Duration = Duration::from_secs(3600);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
    })
}

fn accounts() -> Arc<AccountDirectory> {
    let config = AccountConfig {
        system_id: ESME.into(),
        password_hash: CHEAP_HASH.into(),
        bind_types: vec![BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver],
        max_binds: 4,
        window: 8,
        max_submit_rate: 0,
        source_addresses: vec!["*".into()],
        allowed_cidrs: vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")],
        enabled: true,
        default_validity: Duration::from_secs(3600),
        max_validity: Duration::from_secs(48 * 3600),
        class: Default::default(),
        max_class: None,
        quota: Default::default(),
    };
    let account = Account::from_config(&config).expect("valid account");
    Arc::new(AccountDirectory::new(vec![account]))
}

/// A fresh edge per input: nothing carries over from one input to the next.
fn edge() -> Arc<Edge> {
    let deps = smsc_edge::Deps {
        accounts: accounts(),
        bus: Arc::new(EmbeddedBus::new(EmbeddedBusConfig::default())),
        store: Arc::new(EmbeddedStore::new(EmbeddedStoreConfig::default())),
        clock: Arc::new(SystemClock),
        metrics: Metrics::new(),
        pressure: Default::default(),
        topics: Default::default(),
    };
    Edge::with_limits(Settings::default(), Limits::default(), deps)
}

fn bind(kind: u8) -> Pdu {
    let bind = Bind {
        system_id: COctetString::new(ESME.as_bytes()).expect("fits"),
        password: COctetString::new(PASSWORD.as_bytes()).expect("fits"),
        interface_version: 0x34,
        ..Bind::default()
    };
    let body = match kind {
        1 => Body::BindTransmitter(bind),
        2 => Body::BindReceiver(bind),
        _ => Body::BindTransceiver(bind),
    };
    Pdu::new(1, body)
}

fn deliver_sm() -> Bytes {
    let number = |n: &str| Address::new(Ton::INTERNATIONAL, Npi::ISDN, n).expect("fits");
    let sm = SubmitSm {
        source: number("15559999"),
        dest: number("15550001"),
        short_message: ShortMessage::new(Bytes::from_static(b"mo")).expect("fits"),
        ..SubmitSm::default()
    };
    Pdu::new(0, Body::DeliverSm(sm)).to_bytes().expect("encodes")
}

/// Reads everything the edge sends until it closes, passing each PDU on; every frame
/// must decode.
async fn read_all(mut rd: impl AsyncReadExt + Unpin, out: mpsc::UnboundedSender<Pdu>) {
    let mut buf = BytesMut::new();
    loop {
        while let Some(frame) = smsc_smpp::split_frame(&mut buf, u32::MAX).expect("edge framing") {
            let pdu = smsc_smpp::decode(frame.clone())
                .unwrap_or_else(|e| panic!("the edge sent an invalid PDU {frame:02x?}: {e}"));
            let _ = out.send(pdu);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                assert!(buf.is_empty(), "the edge closed inside a PDU: {:02x?}", &buf[..]);
                return;
            }
            Ok(_) => {}
        }
    }
}

async fn run(mode: u8, chunk: u8, input: &[u8]) {
    let edge = edge();
    let peer: SocketAddr = "192.0.2.1:40000".parse().expect("addr");
    let (client, server) = tokio::io::duplex(64 * 1024);
    let shutdown = CancellationToken::new();
    let session = tokio::spawn(session::run(edge.clone(), server, peer, shutdown.clone()));
    let (rd, mut wr) = tokio::io::split(client);
    let (tx, mut from_edge) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_all(rd, tx));

    let kind = mode & 3;
    let mut deliver_reply = None;
    if kind != 0 {
        wr.write_all(&bind(kind).to_bytes().expect("encodes")).await.expect("write the bind");
        let resp = from_edge.recv().await.expect("a bind_resp");
        assert_eq!(resp.status, CommandStatus::ESME_ROK, "{resp:?}");
        if mode & 4 != 0 && kind != 1 {
            let handle = edge.registry.receivers(ESME).pop().expect("the session is registered");
            let (reply, rx) = tokio::sync::oneshot::channel();
            handle.tx.try_send(Outbound::Deliver { pdu: deliver_sm(), reply }).expect("queued");
            deliver_reply = Some(rx);
        }
    }

    let size = usize::from(chunk % 64) + 1;
    for part in input.chunks(size) {
        if wr.write_all(part).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    if mode & 8 != 0 {
        shutdown.cancel();
    }
    if mode & 16 != 0 {
        let _ = wr.shutdown().await;
    } else {
        // The session answers, or it has ended (an unbind, a framing error, a PDU left
        // incomplete until pdu_read_timeout, a timer): never neither.
        let probe = Pdu::new(PROBE_SEQ, Body::EnquireLink).to_bytes().expect("encodes");
        let _ = wr.write_all(&probe).await;
        let answered = tokio::time::timeout(PATIENCE, async {
            while let Some(p) = from_edge.recv().await {
                if p.command_id() == CommandId::EnquireLinkResp && p.sequence_number == PROBE_SEQ {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(answered.is_ok(), "the session neither answered nor ended");
    }

    // The ESME goes away: the session must end, and leave nothing behind.
    drop(wr);
    match tokio::time::timeout(PATIENCE, session).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("session task: {e}"),
        Err(_) => panic!("the session did not end after its peer went away"),
    }
    let _ = tokio::time::timeout(PATIENCE, reader).await.expect("reader ends");
    if let Some(rx) = deliver_reply {
        // Answered, timed out or closed: the caller always hears back.
        let _ = tokio::time::timeout(PATIENCE, rx).await.expect("Edge.Deliver hears back");
    }
    assert!(edge.registry.all().is_empty(), "a session left in the registry");
    assert_eq!(edge.open_connections(), 0);
}

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, input @ ..] = data else { return };
    runtime().block_on(run(*mode, *chunk, input));
});
