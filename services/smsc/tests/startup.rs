//! A role started before its engines: it does not exit (in Kubernetes that would be a
//! CrashLoopBackOff), it serves `/live` and answers `/ready` 503 naming what it waits for,
//! retries with backoff, and becomes ready once Kafka and the CQL store appear. Here they
//! "appear" when a TCP relay to the engines tests/run started (`SMSC_TEST_KAFKA`,
//! `SCYLLA_URI`) starts listening on the addresses the role was configured with.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use smsc::cluster::http_status;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, sleep};

/// A liveness bound for each wait (the backoff tops out at 10 s), not a speed check.
const WAIT: Duration = Duration::from_secs(120);

fn engines() -> Option<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let (Some(kafka), Some(cql)) = (var("SMSC_TEST_KAFKA"), var("SCYLLA_URI")) {
        let first = |list: String| list.split(',').next().unwrap_or_default().trim().to_owned();
        return Some((first(kafka), first(cql)));
    }
    if var("SMSC_SKIP_KAFKA").as_deref() == Some("1") {
        eprintln!("\n*** SKIPPED: start-up before the engines (SMSC_SKIP_KAFKA=1) ***\n");
        return None;
    }
    panic!("run through tests/run (SMSC_TEST_KAFKA and SCYLLA_URI), or set SMSC_SKIP_KAFKA=1");
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// An address held bound but not listening: connections to it are refused (nothing
/// listens yet) while no other socket can take the port, not even the role's own
/// connection attempts, whose source ports come from the same ephemeral range.
fn held_port() -> (SocketAddr, TcpSocket) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    (socket.local_addr().expect("addr"), socket)
}

/// `smsc router` on a config whose Kafka and CQL addresses are `kafka` and `cql`.
fn start_router(kafka: SocketAddr, cql: SocketAddr, admin: SocketAddr) -> Child {
    let dir =
        std::env::temp_dir().join(format!("smsc-startup-{}-{}", std::process::id(), admin.port()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("router.yaml");
    let yaml = format!(
        "node_id: router-startup\nadmin_listen: \"{admin}\"\n\
         edge: {{ grpc_listen: \"127.0.0.1:0\" }}\n\
         bus: {{ kind: kafka, brokers: \"{kafka}\", partitions: 4, replication_factor: 3, session_timeout: 6s }}\n\
         store: {{ kind: scylla, uris: [\"{cql}\"], keyspace: smsc_startup_{port}, replication_factor: 1 }}\n",
        port = admin.port()
    );
    std::fs::write(&config, yaml).expect("config");
    let log = std::fs::File::create(dir.join("router.log")).expect("log");
    Command::new(env!("CARGO_BIN_EXE_smsc"))
        .args(["router", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("smsc router starts")
}

async fn ready_body(admin: SocketAddr) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(admin).await.ok()?;
    s.write_all(format!("GET /ready HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes()).await.ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()))
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        sleep(Duration::from_millis(200)).await;
    }
}

/// Relays every connection accepted on `listener` to `target`.
async fn relay(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { return };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn sigterm(child: &Child) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM");
}

async fn exit_status(child: &mut Child) -> std::process::ExitStatus {
    until("the role exits after SIGTERM", async || child.try_wait().expect("wait")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_waits_for_its_engines_ready_503_then_ready() {
    let Some((kafka, cql)) = engines() else { return };
    let ((kafka_at, kafka_socket), (cql_at, cql_socket)) = (held_port(), held_port());
    let admin = free_port();
    let mut router = start_router(kafka_at, cql_at, admin);

    // Up and live, not ready, saying why: nothing listens at either address yet.
    until("/live answers 200", async || {
        (http_status(admin, "/live").await == Some(200)).then_some(())
    })
    .await;
    let (status, body) = until("/ready answers", async || ready_body(admin).await).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("bus") && body.contains("store"), "names what it waits for: {body}");
    assert!(router.try_wait().expect("wait").is_none(), "it did not exit");

    // The engines appear; the role becomes ready without a restart.
    let relays = [(kafka_socket, kafka), (cql_socket, cql)].map(|(socket, target)| {
        tokio::spawn(relay(socket.listen(64).expect("listen on the held address"), target))
    });
    until("/ready answers 200", async || {
        (http_status(admin, "/ready").await == Some(200)).then_some(())
    })
    .await;

    sigterm(&router);
    assert!(exit_status(&mut router).await.success(), "a clean exit on SIGTERM");
    for r in relays {
        r.abort();
    }
}

/// Stopped while it still waits: a clean exit (once the attempt under way is over), not
/// a wait for the engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_still_waiting_stops_on_sigterm() {
    if engines().is_none() {
        return;
    }
    let ((kafka_at, _kafka), (cql_at, _cql)) = (held_port(), held_port());
    let admin = free_port();
    let mut router = start_router(kafka_at, cql_at, admin);
    until("/live answers 200", async || {
        (http_status(admin, "/live").await == Some(200)).then_some(())
    })
    .await;
    sigterm(&router);
    assert!(exit_status(&mut router).await.success(), "a clean exit on SIGTERM");
}

/// `smsc migrate` (what an operator runs before a first rollout) applies every migration
/// to a new keyspace on the CQL server, and a second run applies none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_migrate_applies_the_schema_once() {
    let Some((_, cql)) = engines() else { return };
    let dir = std::env::temp_dir().join(format!("smsc-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("migrate.yaml");
    let keyspace = format!("smsc_migrate_{}", std::process::id());
    let yaml = format!(
        "store: {{ kind: scylla, uris: [\"{cql}\"], keyspace: {keyspace}, replication_factor: 1 }}\n"
    );
    std::fs::write(&config, yaml).expect("config");
    let migrate = move || {
        let out = Command::new(env!("CARGO_BIN_EXE_smsc"))
            .args(["migrate", "--config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("smsc migrate runs");
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "smsc migrate failed: {log}");
        log
    };
    let first = tokio::task::spawn_blocking(migrate.clone()).await.expect("first");
    assert!(first.contains("applied=[1, 2, 3, 4, 5]"), "every migration applied: {first}");
    let second = tokio::task::spawn_blocking(migrate).await.expect("second");
    assert!(second.contains("applied=[]"), "none applied twice: {second}");
}
