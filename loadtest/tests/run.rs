//! Short real runs of the library against the in-test responder: what a user reads in
//! the summary must match what the responder saw.

mod responder;

use std::time::Duration;

use clap::Parser as _;
use smsc_load::{Args, Plan, RunError, RunOptions, run};

fn plan(flags: &[&str]) -> Plan {
    let args = Args::try_parse_from(std::iter::once("smsc-load").chain(flags.iter().copied()))
        .expect("flags");
    Plan::from_args(&args).expect("valid plan")
}

fn yaml(text: &str, port: u16) -> Plan {
    let path =
        std::env::temp_dir().join(format!("smsc-load-run-{}-{port}.yaml", std::process::id()));
    std::fs::write(&path, text).expect("write the scenario");
    let p = path.to_str().expect("utf-8").to_owned();
    let plan = Plan::from_args(
        &Args::try_parse_from(["smsc-load", &p, "--port", &port.to_string()]).expect("flags"),
    )
    .expect("valid plan");
    std::fs::remove_file(&path).ok();
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_with_receipts() {
    let r = responder::start(responder::Options::default()).await;
    let port = r.addr.port().to_string();
    let plan = plan(&[
        "--port",
        &port,
        "--vus",
        "2",
        "--window",
        "16",
        "--duration",
        "2s",
        "--registered-delivery",
        "1",
        "--threshold",
        "errors=rate<0.001",
        "--threshold",
        "receipts=rate>0.999",
        "--threshold",
        "submit_latency=p(99)<5000",
        "--threshold",
        "submits=count>100",
    ]);
    let report = run(&plan, RunOptions::default(), std::future::pending()).await.expect("ran");
    let t = &report.total;
    let sent = r.counters.submits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(t.submits > 100, "{t:?}");
    assert_eq!(t.submits, sent, "every submit reached the responder");
    assert_eq!((t.responses, t.errors(), t.protocol_errors), (t.submits, 0, 0));
    assert_eq!(t.iterations, t.submits, "one part per GSM message");
    assert_eq!(
        (t.receipts_requested, t.receipts_received, t.receipts_matched),
        (t.submits, t.submits, t.submits)
    );
    assert_eq!(t.receipt_states, vec![("DELIVRD", t.submits)]);
    assert_eq!(t.submit_latency.len(), t.submits);
    assert_eq!(t.receipt_latency.len(), t.submits);
    assert!(t.failures.is_empty(), "{:?}", t.failures);
    let secs = t.load_secs();
    assert!((1.9..2.5).contains(&secs), "load phase {secs}s");
    assert!(t.bytes_sent > t.submits * 100 && t.bytes_received > 0);
    assert_eq!(t.sessions, 2);
    assert!(report.thresholds_ok(), "{}", report.render());
    let text = report.render();
    assert!(text.contains("✓ receipts"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_rate_over_receiver_transmitter_pairs() {
    let r = responder::start(responder::Options::default()).await;
    let plan = yaml(
        r#"
scenarios:
  otp:
    executor: constant-arrival-rate
    rate: 200
    duration: 2s
    preAllocatedVUs: 2
    bind: receiver+transmitter
    window: 8
    message: { registered_delivery: 1, destination: "1555{rand:7}" }
thresholds:
  "receipts{scenario:otp}": ["rate>0.999"]
  dropped_iterations: ["count==0"]
"#,
        r.addr.port(),
    );
    let report = run(&plan, RunOptions::default(), std::future::pending()).await.expect("ran");
    let t = &report.total;
    assert_eq!(t.sessions, 4, "a transmitter and a receiver per VU");
    assert_eq!(t.iterations, 400, "200/s for 2 s, exactly");
    assert_eq!(t.dropped_iterations, 0);
    assert_eq!(t.errors(), 0);
    // Every receipt came on a receiver, so every match is a cross-session one.
    assert_eq!((t.receipts_requested, t.receipts_matched, t.receipts_unmatched), (400, 400, 0));
    assert!(report.thresholds_ok(), "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_long_messages_cross_thresholds() {
    let r = responder::start(responder::Options { throttle_every: 10 }).await;
    let port = r.addr.port().to_string();
    let plan = plan(&[
        "--port",
        &port,
        "--iterations",
        "300",
        "--vus",
        "3",
        "--window",
        "8",
        "--mix",
        "gsm=1,ucs2=1,long=1",
        "--threshold",
        "errors=rate<0.001",
        "--threshold",
        "throttled=count>0",
    ]);
    let report = run(&plan, RunOptions::default(), std::future::pending()).await.expect("ran");
    let t = &report.total;
    assert_eq!(t.iterations, 300, "shared-iterations runs exactly its iterations");
    assert!(t.submits > 300 && t.submits < 900, "long messages are 3 submits: {}", t.submits);
    assert_eq!(t.throttled(), t.submits / 10);
    assert_eq!(t.errors(), t.throttled());
    assert!(!report.thresholds_ok());
    let failed: Vec<_> =
        report.thresholds.iter().filter(|r| !r.ok).map(|r| r.threshold.key()).collect();
    assert_eq!(failed, ["errors"]);
    let text = report.render();
    assert!(text.contains("{ status:ESME_RTHROTTLED }"), "{text}");
    assert!(text.contains("✗ errors"), "{text}");
}

#[tokio::test]
async fn refused_connections_are_a_setup_failure() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let plan = plan(&["--port", &port.to_string(), "--vus", "2", "--duration", "1s"]);
    let opts = RunOptions { bind_timeout: Duration::from_secs(2), ..RunOptions::default() };
    match run(&plan, opts, std::future::pending()).await {
        Err(RunError::Setup(errors)) => {
            assert_eq!(errors.len(), 2, "{errors:?}");
            assert!(errors[0].starts_with("default#0: connect 127.0.0.1:"), "{errors:?}");
        }
        other => panic!("expected a setup failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_the_run_with_a_report() {
    let r = responder::start(responder::Options::default()).await;
    let plan = plan(&["--port", &r.addr.port().to_string(), "--vus", "1", "--duration", "1m"]);
    let stop = tokio::time::sleep(Duration::from_millis(700));
    let started = std::time::Instant::now();
    let report = run(&plan, RunOptions::default(), stop).await.expect("ran");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped well before the minute");
    assert!(report.interrupted);
    assert!(report.total.submits > 0);
    assert!(report.render().contains("(interrupted)"));
}
