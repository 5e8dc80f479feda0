//! The SMPP upstream connector end to end. Node A (`smsc all`, the SMSC under test)
//! routes destinations starting 44 to connector `up` (`kind: smpp`) whose upstream is:
//!
//! - node B, a second `smsc all` in this process with an account `nodea` for A: its
//!   simulator delivers (or, for 4477009004…, fails for good), its receipts come back to
//!   A over A's bind and reach A's ESME under A's message_id; its MO reach A's ESME;
//! - B behind a proxy that drops every connection mid-load (no message lost or doubled);
//! - a third-party SMSC (the `smpp` npm package's server, `third_party/upstream.js`):
//!   hexadecimal ids in submit_sm_resp, decimal ones in plain-text receipts;
//! - Cloudhopper's SMPP server (tests/smpp-peers), which drops its connection after every
//!   few submits it answers.
//!
//! Real time (the edges verify passwords on blocking threads); every wait is bounded.

mod common;
mod esme;
mod node;
mod peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smsc_smpp::pdu::DeliverSm;
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::text::{Alphabet, decode};
use smsc_smpp::{EsmClass, MessageState};
use smsc_store::BindKind;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use common::{ACME, ACME_SHORT_CODE};
use esme::{Esme, assert_delivered_receipt, eventually, inject_mo};
use node::Node;
use peers::{Peer, Stack};

/// B's account for A, as the connector binds.
const NODE_A: &str = "nodea";
/// B's simulator fails these for good (unknown subscriber).
const FAILING: &str = "447700900401";

/// Node B: account `nodea` (at most `rate` submits per second; 0: any), MO to 5555 for
/// it, a simulator that fails [`FAILING`].
async fn node_b(rate: u32) -> Node {
    Node::start(&format!(
        r#"
node_id: node-b
admin_listen: "{{admin}}"
edge: {{ smpp_listen: "{{smpp}}", grpc_listen: "127.0.0.1:0" }}
accounts:
  - system_id: {NODE_A}
    password_hash: "{{hash}}"
    max_binds: 4
    max_submit_rate: {rate}
routing:
  mo: [{{ prefix: "{ACME_SHORT_CODE}", account: {NODE_A} }}]
connectors:
  sim:
    kind: simulator
    profiles: [{{ prefix: "4477009004", permanent: true }}]
retry: {{ tiers: [200ms] }}
worker: {{ pending_interval: 100ms, simulator_listen: "{{simulator}}" }}
"#
    ))
    .await
}

/// Node A: account `acme`, destinations 44… to connector `up` at `upstream` (with
/// `extra` YAML lines for it), MO to 5555 for acme.
async fn node_a(upstream: SocketAddr, extra: &str) -> Node {
    Node::start(&format!(
        r#"
node_id: node-a
admin_listen: "{{admin}}"
edge: {{ smpp_listen: "{{smpp}}", grpc_listen: "127.0.0.1:0" }}
accounts:
  - system_id: {ACME}
    password_hash: "{{hash}}"
routing:
  mt:
    - {{ prefix: "44", connector: up }}
    - {{ connector: sim }}
  mo: [{{ prefix: "{ACME_SHORT_CODE}", account: {ACME} }}]
connectors:
  sim: {{ kind: simulator }}
  up:
    kind: smpp
    address: "{upstream}"
    system_id: {NODE_A}
    password: {password}
    response_timeout: 5s
    enquire_link_interval: 5s
    reconnect_min: 100ms
    reconnect_max: 1s
    lease_ttl: 3s
{extra}
retry: {{ tiers: [200ms, 500ms, 1s] }}
worker: {{ pending_interval: 100ms, simulator_listen: "{{simulator}}" }}
"#,
        password = esme::PASSWORD,
    ))
    .await
}

/// The receipt text of `d` (which must be a receipt).
fn receipt(d: &DeliverSm) -> Receipt {
    assert!(d.esm_class.is_delivery_receipt(), "not a receipt: {d:?}");
    let text = std::str::from_utf8(d.short_message.as_bytes()).expect("ASCII");
    Receipt::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Exactly one receipt, DELIVRD, for each of `ids`, and none for another message.
async fn one_delivered_receipt_each(esme: &mut Esme, ids: &[String]) {
    let mut receipts: HashMap<String, Vec<ReceiptStat>> = HashMap::new();
    let all_in = tokio::time::timeout(Duration::from_secs(90), async {
        while receipts.len() < ids.len() {
            let r = receipt(&esme.deliver_sm().await);
            receipts.entry(r.id).or_default().push(r.stat);
        }
    })
    .await;
    assert!(all_in.is_ok(), "receipts of {} of {} messages", receipts.len(), ids.len());
    // Anything that would come twice has had time to.
    while let Some(d) = esme.deliver_sm_within(Duration::from_secs(3)).await {
        let r = receipt(&d);
        receipts.entry(r.id).or_default().push(r.stat);
    }
    for id in ids {
        let got = receipts.get(id).map(Vec::as_slice);
        assert_eq!(got, Some(&[ReceiptStat::Delivered][..]), "{id}");
    }
    assert_eq!(receipts.len(), ids.len(), "no receipt for a message we did not send");
}

/// Until A's connector holds its bind to the upstream.
async fn wait_bound(a: &Node) {
    let bound = r#"smsc_upstream_binds{bind_type="transceiver",connector="up"}"#;
    eventually("A bound to its upstream", || async {
        (a.metric(bound).await == 1.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_another_smsc_receipts_come_back_under_our_message_id() {
    let b = node_b(0).await;
    let a = node_a(b.smpp, "").await;
    wait_bound(&a).await;
    let mut esme = Esme::bind(a.smpp, ACME, BindKind::Transceiver).await;

    let id = esme.submit("447700900123", "through B").await;
    let d = esme.deliver_sm().await;
    assert_delivered_receipt(&d, &id);
    assert_eq!(d.source.addr.as_bytes(), b"447700900123", "from the handset");

    let failing = esme.submit(FAILING, "unknown handset").await;
    let d = esme.deliver_sm().await;
    let r = receipt(&d);
    assert_eq!((r.id.as_str(), r.stat, r.err), (failing.as_str(), ReceiptStat::Undeliverable, 1));
    assert_eq!(d.tlvs.message_state(), Some(MessageState::UNDELIVERABLE));
    assert_eq!(
        d.tlvs.receipted_message_id().map(|t| t.value().to_vec()),
        Some(failing.into_bytes())
    );

    // B's handset answers: the MO crosses from B to A's ESME.
    inject_mo(b.simulator, ACME_SHORT_CODE, "hi A").await;
    let mo = esme.deliver_sm().await;
    assert_eq!(mo.esm_class, EsmClass(0));
    assert_eq!(decode(mo.short_message.as_bytes(), Alphabet::Gsm7).expect("GSM 7"), "hi A");
    assert_eq!(mo.source.addr.as_bytes(), b"447700900555");
    assert_eq!(mo.dest.addr.as_bytes(), ACME_SHORT_CODE.as_bytes());

    let series = |s: &str| format!("smsc_upstream_{s}");
    let receipts =
        |result: &str| series(&format!("receipts_total{{connector=\"up\",result=\"{result}\"}}"));
    // B's receipt may overtake its submit_sm_resp: then it is parked (unmatched) and
    // applied when the link is written (matched_late), or by itself once it finds it.
    let (matched, unmatched) =
        (a.metric(&receipts("matched")).await, a.metric(&receipts("unmatched")).await);
    assert_eq!(matched + unmatched, 2.0, "matched {matched}, unmatched {unmatched}");
    assert!(a.metric(&receipts("matched_late")).await <= unmatched);
    assert_eq!(a.metric(&series(r#"submits_total{connector="up",status="ESME_ROK"}"#)).await, 2.0);
    assert_eq!(a.metric(&series(r#"mo_total{connector="up",result="published"}"#)).await, 1.0);
    assert_eq!(a.metric(&series(r#"submit_seconds_count{connector="up"}"#)).await, 2.0);
    let accepted = r#"smsc_edge_submit_total{command="submit_sm",status="ESME_ROK"}"#;
    assert_eq!(b.metric(accepted).await, 2.0, "B took each message once");
    let extra = esme.deliver_sm_within(Duration::from_secs(2)).await;
    assert!(extra.is_none(), "nothing more: {extra:?}");

    esme.unbind().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_by_the_upstream_the_messages_are_retried_until_taken() {
    let b = node_b(1).await;
    let a = node_a(b.smpp, "").await;
    wait_bound(&a).await;
    let mut esme = Esme::bind(a.smpp, ACME, BindKind::Transceiver).await;

    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(esme.submit(&format!("44770090012{n}"), "one per second").await);
    }
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let r = receipt(&esme.deliver_sm().await);
        assert_eq!(r.stat, ReceiptStat::Delivered, "{r:?}");
        got.push(r.id);
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "one DELIVRD receipt each");
    let throttled = r#"smsc_upstream_submits_total{connector="up",status="ESME_RTHROTTLED"}"#;
    assert!(a.metric(throttled).await >= 1.0, "B throttled some");
    let temporary = r#"smsc_worker_deliveries_total{connector="up",outcome="temporary"}"#;
    assert!(a.metric(temporary).await >= 1.0, "and A retried them");
    let extra = esme.deliver_sm_within(Duration::from_secs(2)).await;
    assert!(extra.is_none(), "no receipt twice: {extra:?}");

    esme.unbind().await;
    a.stop().await;
    b.stop().await;
}

/// A TCP proxy whose listener can be killed (with every connection through it) and
/// restarted on the same port. What the upstream sends takes [`PROXY_LATENCY`] to
/// arrive, so that there are always answers and receipts in flight to lose.
struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

const PROXY_LATENCY: Duration = Duration::from_millis(100);

/// A's side to the upstream at once; the upstream's side back [`PROXY_LATENCY`] later.
async fn pipe(a: TcpStream, b: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut a_read, mut a_write) = a.into_split();
    let (mut b_read, mut b_write) = b.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let up = async move {
        let _ = tokio::io::copy(&mut a_read, &mut b_write).await;
    };
    let down_read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = b_read.read(&mut buf).await {
            if n == 0
                || tx
                    .send((tokio::time::Instant::now() + PROXY_LATENCY, buf[..n].to_vec()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    };
    let down_write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if a_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = async { tokio::join!(down_read, down_write) } => {}
    }
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut p = Self { addr, target, accept: None, conns: Arc::default() };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: TcpListener) {
        let (target, conns) = (self.target, self.conns.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(out) = TcpStream::connect(target).await {
                        pipe(inbound, out).await;
                    }
                });
                conns.lock().expect("conns").push(pipe.abort_handle());
            }
        }));
    }

    /// Kills the listener and every connection.
    async fn kill(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        for c in self.conns.lock().expect("conns").drain(..) {
            c.abort();
        }
    }

    async fn restart(&mut self) {
        let listener = eventually("the proxy's port again", || async {
            TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_upstream_drops_every_connection_no_message_is_lost_or_doubled() {
    let b = node_b(0).await;
    let mut proxy = Proxy::start(b.smpp).await;
    let a = node_a(proxy.addr, "").await;
    wait_bound(&a).await;
    let mut esme = Esme::bind(a.smpp, ACME, BindKind::Transceiver).await;

    const MESSAGES: usize = 40;
    let binds = r#"smsc_upstream_bind_attempts_total{connector="up",result="ESME_ROK"}"#;
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        if n == 12 || n == 28 {
            // The upstream's listener dies with its connections, and is back 400 ms later;
            // the load goes on (messages in flight now are answered by nobody).
            let before = a.metric(binds).await;
            proxy.kill().await;
            tokio::time::sleep(Duration::from_millis(400)).await;
            proxy.restart().await;
            eventually("bound again", || async { (a.metric(binds).await > before).then_some(()) })
                .await;
        }
        ids.push(esme.submit(&format!("4477009{n:05}"), "under fire").await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    one_delivered_receipt_each(&mut esme, &ids).await;
    // The drops did cut submits in flight (sent, never answered: retried, so the
    // upstream may hold two copies, whose extra receipt matches nothing of ours).
    let lost = r#"smsc_upstream_submits_total{connector="up",status="connection_lost"}"#;
    let timeout = r#"smsc_upstream_submits_total{connector="up",status="timeout"}"#;
    let cut = a.metric(lost).await + a.metric(timeout).await;
    assert!(cut >= 1.0, "no submit was in flight at a drop");

    esme.unbind().await;
    a.stop().await;
    b.stop().await;
}

/// `node third_party/upstream.js` with the `smpp` npm package installed into a cache
/// directory; killed when dropped. `None` when node or npm is not installed.
struct ThirdParty {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for ThirdParty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ThirdParty {
    fn start() -> Option<Self> {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let has = |tool: &str| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        if !has("node") || !has("npm") {
            eprintln!(
                "\n*** SKIPPED: third-party upstream test: node and npm are not installed \
                 (apt-get install nodejs npm) ***\n"
            );
            return None;
        }
        let cache = std::env::temp_dir().join("smsc-test-npm-smpp-0.5.1");
        if !cache.join("node_modules/smpp/package.json").is_file() {
            std::fs::create_dir_all(&cache).expect("npm cache dir");
            let installed = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
                .arg(&cache)
                .arg("smpp@0.5.1")
                .status()
                .expect("running npm");
            assert!(installed.success(), "npm install smpp@0.5.1 failed");
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/third_party/upstream.js");
        let mut child = Command::new("node")
            .arg(script)
            .arg("0")
            .env("NODE_PATH", cache.join("node_modules"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting node");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("node's first line");
        let port: u16 = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("node said {line:?}"));
        Some(Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_upstream_with_hex_ids_and_decimal_receipts() {
    let Some(upstream) = tokio::task::spawn_blocking(ThirdParty::start).await.expect("task") else {
        return;
    };
    let a = node_a(upstream.addr, "").await;
    wait_bound(&a).await;
    let mut esme = Esme::bind(a.smpp, ACME, BindKind::Transceiver).await;

    let id = esme.submit("447700900123", "to a stranger").await;
    assert_delivered_receipt(&esme.deliver_sm().await, &id);
    let failing = esme.submit(FAILING, "nobody there").await;
    let r = receipt(&esme.deliver_sm().await);
    assert_eq!((r.id.as_str(), r.stat, r.err), (failing.as_str(), ReceiptStat::Undeliverable, 1));

    // Its MO (an answer to PING) reaches the account owning the short code.
    let ping = esme.submit("447700900124", "PING").await;
    let mut mo = None;
    for _ in 0..2 {
        let d = esme.deliver_sm().await;
        if d.esm_class.is_delivery_receipt() {
            assert_delivered_receipt(&d, &ping);
        } else {
            mo = Some(d);
        }
    }
    let mo = mo.expect("the MO");
    assert_eq!(decode(mo.short_message.as_bytes(), Alphabet::Gsm7).expect("GSM 7"), "PONG");
    assert_eq!(
        (mo.source.addr.as_bytes(), mo.dest.addr.as_bytes()),
        (&b"447700900124"[..], ACME_SHORT_CODE.as_bytes())
    );

    // Each receipt found its message (on arrival, or parked until its link came).
    let matched = r#"smsc_upstream_receipts_total{connector="up",result="matched"}"#;
    let unmatched = r#"smsc_upstream_receipts_total{connector="up",result="unmatched"}"#;
    let found = a.metric(matched).await + a.metric(unmatched).await;
    assert_eq!(found, 3.0, "decimal receipt ids matched to hex submit ids");
    let malformed = r#"smsc_upstream_receipts_total{connector="up",result="malformed"}"#;
    assert_eq!(a.metric(malformed).await, 0.0);

    esme.unbind().await;
    a.stop().await;
    drop(upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudhopper_upstream_that_drops_its_connections() {
    let Some(dir) = peers::peers() else { return };
    const DROP_EVERY: u32 = 7;
    let (upstream, addr) = Peer::upstream(&dir, Stack::Cloudhopper, NODE_A, DROP_EVERY).await;
    let a = node_a(addr, "").await;
    wait_bound(&a).await;
    let mut esme = Esme::bind(a.smpp, ACME, BindKind::Transceiver).await;

    const MESSAGES: usize = 30;
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        ids.push(esme.submit(&format!("4477009{n:05}"), "via cloudhopper").await);
    }
    one_delivered_receipt_each(&mut esme, &ids).await;

    // It drops a connection right after answering: every answer it wrote is read (even
    // when A's next write already failed), so it took each message once, but for a
    // submit whose answer came after response_timeout (sent again: SMPP cannot tell).
    let late = a.metric(r#"smsc_upstream_submits_total{connector="up",status="timeout"}"#).await;
    esme.unbind().await;
    a.stop().await;
    let said = upstream.stop().await;
    let mut dests: Vec<&str> =
        said.iter().filter_map(|l| l.strip_prefix("SUBMIT ")?.split(' ').nth(1)).collect();
    dests.sort_unstable();
    let taken = dests.len();
    dests.dedup();
    assert_eq!(dests.len(), MESSAGES, "destinations the upstream took: {said:?}");
    assert!((taken - MESSAGES) as f64 <= late, "taken twice without a timeout: {said:?}");
    let drops = said.iter().filter(|l| l.as_str() == "DROPPED").count();
    assert!(drops >= MESSAGES / DROP_EVERY as usize, "{drops} drops");
}
