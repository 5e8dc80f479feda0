//! `bus.tls` against a real Kafka-protocol broker: records go through TLS with the
//! broker's certificate checked against the configured CA and host name, and with this
//! client's certificate for a broker that demands one; another CA, another name, no
//! client certificate or plaintext get no connection.
//!
//! tansu 0.6 has no working TLS listener of its own, so the broker here is a plaintext
//! tansu behind a rustls terminator that demands a client certificate of the test CA,
//! with tansu advertising the terminator's address: every connection librdkafka makes
//! (bootstrap, then the advertised broker) is TLS, as behind a TLS-terminating proxy.
//! The tansu binary is `SMSC_TEST_TANSU_BIN` (`tests/run` sets it from `tests/brokers bin
//! tansu`); unset fails the test, `SMSC_SKIP_KAFKA=1` skips it loudly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smsc_bus::BusError;
use smsc_bus::contract::publish_then_consume;
use smsc_bus::kafka::{KafkaBus, KafkaBusConfig};
use smsc_runtime::config::ClientTls;
use smsc_test_support::tls::{Ca, acceptor, ca, client_cert, write_ca};
use tokio::net::{TcpListener, TcpStream};

fn tansu_bin() -> Option<PathBuf> {
    match std::env::var("SMSC_TEST_TANSU_BIN") {
        Ok(bin) if !bin.is_empty() => Some(PathBuf::from(bin)),
        _ if std::env::var("SMSC_SKIP_KAFKA").as_deref() == Ok("1") => {
            eprintln!(
                "\n*** SKIPPED: kafka TLS tier (SMSC_TEST_TANSU_BIN unset, SMSC_SKIP_KAFKA=1) ***\n"
            );
            None
        }
        _ => panic!(
            "SMSC_TEST_TANSU_BIN is not set: run the suite through tests/run (it sets it from \
             `tests/brokers bin tansu`); SMSC_SKIP_KAFKA=1 skips this tier"
        ),
    }
}

/// A plaintext tansu behind a TLS terminator; both stop when it is dropped.
struct TlsBroker {
    /// `localhost:<terminator port>`, what the broker advertises.
    address: String,
    tansu: Child,
    /// TLS handshakes the terminator completed (a client certificate was verified).
    handshakes: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.tansu.kill();
        let _ = self.tansu.wait();
        self._task.abort();
    }
}

impl TlsBroker {
    /// The terminator presents a certificate for `name` from `ca` and accepts clients
    /// with a certificate from `ca`.
    async fn start(tansu: &Path, ca: &Ca, name: &str, dir: &Path) -> Self {
        let acceptor = acceptor(ca, name, dir);
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("localhost:{}", front.local_addr().expect("addr").port());
        let plain = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr")
        };
        let child = Command::new(tansu)
            .args(["broker", "--listener-url", &format!("tcp://{plain}")])
            .args(["--advertised-listener-url", &format!("tcp://{address}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let started = Instant::now();
        while TcpStream::connect(plain).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "tansu did not listen on {plain}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let handshakes = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&handshakes);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = front.accept().await {
                let (acceptor, count) = (acceptor.clone(), Arc::clone(&count));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    count.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut backend) = TcpStream::connect(plain).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
                });
            }
        });
        Self { address, tansu: child, handshakes, _task: task }
    }
}

fn config(brokers: &str, tls: Option<ClientTls>) -> KafkaBusConfig {
    let mut config = KafkaBusConfig::new(brokers);
    config.client_id = "smsc-kafka-tls".to_owned();
    config.partitions = 2;
    config.replication_factor = 1;
    // tansu hands a new group its partitions after half of it (shared/INFRA.md).
    config.session_timeout = Duration::from_secs(6);
    config.join_timeout = Duration::from_secs(20);
    config.tls = tls;
    // The terminator listens on 127.0.0.1 only; "localhost" may also resolve to ::1.
    config.extra.insert("broker.address.family".to_owned(), "v4".to_owned());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_go_through_tls_with_the_ca_and_a_client_certificate() {
    let Some(tansu) = tansu_bin() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("kafka test CA");
    let broker = TlsBroker::start(&tansu, &ca, "localhost", dir.path()).await;
    let (cert, key) = client_cert(&ca, dir.path());
    let tls = ClientTls {
        ca: write_ca(&ca, &dir.path().join("ca.crt")),
        cert: Some(cert),
        key: Some(key),
    };

    let bus =
        KafkaBus::connect(config(&broker.address, Some(tls))).await.expect("connect over TLS");
    publish_then_consume(&bus).await;
    assert!(broker.handshakes.load(Ordering::Relaxed) > 0, "no TLS connection reached the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_another_name_no_client_certificate_or_plaintext_get_no_connection() {
    let Some(tansu) = tansu_bin() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_ = ca("kafka test CA");
    let (named, elsewhere) = (dir.path().join("named"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(&named).expect("dir");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let broker = TlsBroker::start(&tansu, &ca_, "localhost", &named).await;
    // Signed by the right CA, but for a name the client does not dial.
    let misnamed = TlsBroker::start(&tansu, &ca_, "broker.example", &elsewhere).await;
    let right_ca = write_ca(&ca_, &dir.path().join("ca.crt"));
    let other_ca = write_ca(&ca("another CA"), &dir.path().join("other.crt"));
    let (cert, key) = client_cert(&ca_, dir.path());
    let full = |ca: &PathBuf| ClientTls {
        ca: ca.clone(),
        cert: Some(cert.clone()),
        key: Some(key.clone()),
    };

    let cases = [
        ("another CA", &broker, Some(full(&other_ca))),
        ("a certificate for another name", &misnamed, Some(full(&right_ca))),
        (
            "no client certificate",
            &broker,
            Some(ClientTls { ca: right_ca.clone(), cert: None, key: None }),
        ),
        ("plaintext", &broker, None),
    ];
    let attempts = cases.into_iter().map(|(case, broker, tls)| async move {
        (case, KafkaBus::connect(config(&broker.address, tls)).await)
    });
    for (case, result) in futures::future::join_all(attempts).await {
        assert!(matches!(result, Err(BusError::Unavailable { .. })), "{case}: {result:?}");
    }
    assert_eq!(broker.handshakes.load(Ordering::Relaxed), 0, "no client completed a handshake");
    assert_eq!(misnamed.handshakes.load(Ordering::Relaxed), 0, "no client completed a handshake");
}
