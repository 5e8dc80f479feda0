//! The binary as CI uses it: exit codes and the summary export.

mod responder;

use std::process::{Command, Output};

fn smsc_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smsc-load")).args(args).output().expect("runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_crossed_threshold_exits_99() {
    let (addr, _) = responder::start_in_thread(responder::Options::default());
    let port = addr.port().to_string();
    let o = smsc_load(&[
        "--port",
        &port,
        "--vus",
        "2",
        "--duration",
        "1s",
        "--threshold",
        "submits=count>1000000000",
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("✗ submits"), "{out}");
    assert!(out.contains("✗ submits 'count>1000000000'"), "{out}");
}

#[test]
fn passing_thresholds_exit_0_and_export_the_summary() {
    let (addr, _) = responder::start_in_thread(responder::Options::default());
    let port = addr.port().to_string();
    let export = std::env::temp_dir().join(format!("smsc-load-cli-{}.json", std::process::id()));
    let export_s = export.to_str().expect("utf-8");
    let o = smsc_load(&[
        "--port",
        &port,
        "--vus",
        "2",
        "--duration",
        "1s",
        "--registered-delivery",
        "1",
        "--progress",
        "--threshold",
        "errors=rate<0.001",
        "--threshold",
        "receipts=rate>0.999",
        "--threshold",
        "submits=count>10",
        "--summary-export",
        export_s,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2/2 sessions, submits "), "a progress line with --progress: {err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).expect("exported")).expect("JSON");
    std::fs::remove_file(&export).ok();
    assert!(json["metrics"]["submits"]["values"]["count"].as_f64().expect("count") > 10.0);
    assert_eq!(json["metrics"]["receipts"]["values"]["rate"], 1.0);
    assert_eq!(json["state"]["thresholdsOk"], true);
    assert!(json["metrics"]["submit_latency"]["values"]["p(99)"].as_f64().is_some());
}

#[test]
fn bad_config_exits_64_with_the_reason() {
    let o = smsc_load(&["--rate", "10"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`--rate`: needs --duration"),
        "{}",
        text(&o)
    );
    let o = smsc_load(&["--frobnicate"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let o = smsc_load(&["--duration", "1s", "--threshold", "latency=p(99)<1"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown metric `latency`"),
        "{}",
        text(&o)
    );
    let file = std::env::temp_dir().join(format!("smsc-load-bad-{}.yaml", std::process::id()));
    std::fs::write(&file, "scenarios:\n  a:\n    executor: constant-vus\n    vus: many\n")
        .expect("write");
    let o = smsc_load(&[file.to_str().expect("utf-8")]);
    std::fs::remove_file(&file).ok();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`scenarios.a.vus`"), "{}", text(&o));
    let o = smsc_load(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn no_smsc_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let o = smsc_load(&["--port", &port.to_string(), "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("setup failed"), "{}", text(&o));
}
