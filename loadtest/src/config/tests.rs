use clap::Parser as _;

use super::*;
use crate::threshold::{Agg, Op};

fn args(flags: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("smsc-load").chain(flags.iter().copied()))
        .expect("flags parse")
}

fn err(yaml: &str) -> String {
    Plan::from_yaml(yaml).expect_err("rejected").to_string()
}

#[test]
fn k6_shaped_file() {
    let plan = Plan::from_yaml(
        r#"
target: 10.0.0.1:2775
system_id: bank
password: secret
window: 32
message:
  registered_delivery: 0.5
  destination: "1555{rand:7}"
receipt_wait: 5s
scenarios:
  bulk:
    executor: constant-vus
    vus: 4
    duration: 30s
    message: { mix: { gsm: 8, ucs2: 1, long: 1 }, long_parts: 4 }
  otp:
    executor: constant-arrival-rate
    rate: 600
    timeUnit: 1m
    duration: 1m
    preAllocatedVUs: 2
    maxVUs: 10
    startTime: 10s
    gracefulStop: 5s
    target: [127.0.0.1:2775, 127.0.0.1:2776]
    bind: receiver+transmitter
    window: 8
  ramp:
    executor: ramping-arrival-rate
    startRate: 10
    preAllocatedVUs: 1
    stages:
      - { duration: 10s, target: 100 }
      - { duration: 20s, target: 100 }
  once:
    executor: shared-iterations
    vus: 2
    iterations: 1000
thresholds:
  submit_latency: ["p(99)<10", "avg<2"]
  "receipts{scenario:otp}": ["rate>0.999"]
"#,
    )
    .expect("valid");
    assert_eq!(plan.receipt_wait, Duration::from_secs(5));
    let names: Vec<_> = plan.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bulk", "once", "otp", "ramp"]);
    let bulk = &plan.scenarios[0];
    assert_eq!(bulk.executor, Executor::ConstantVus { vus: 4, duration: Duration::from_secs(30) });
    assert_eq!(
        (bulk.targets.as_slice(), bulk.system_id.as_str(), bulk.window),
        (&["10.0.0.1:2775".to_owned()][..], "bank", 32)
    );
    assert_eq!(bulk.message.mix, Mix { gsm: 8.0, ucs2: 1.0, long: 1.0 });
    assert_eq!(bulk.message.long_parts, 4);
    assert_eq!(
        bulk.message.registered_delivery, 0.5,
        "file default kept under the scenario's message"
    );
    assert_eq!(bulk.message.destination.to_string(), "1555{rand:7}");
    assert_eq!(bulk.graceful_stop, DEFAULT_GRACEFUL_STOP);
    let once = &plan.scenarios[1];
    assert_eq!(
        once.executor,
        Executor::SharedIterations { vus: 2, iterations: 1000, max_duration: DEFAULT_MAX_DURATION }
    );
    let otp = &plan.scenarios[2];
    assert_eq!(otp.executor.vus(), 2);
    assert_eq!(
        (otp.start_time, otp.graceful_stop),
        (Duration::from_secs(10), Duration::from_secs(5))
    );
    assert_eq!(otp.bind, BindMode::ReceiverTransmitter);
    assert_eq!(otp.targets.len(), 2);
    let per_s = otp.executor.schedule().expect("arrival rate");
    assert_eq!(per_s.total(), 600, "600 per minute for a minute");
    let ramp = &plan.scenarios[3];
    assert_eq!(ramp.executor.duration(), Duration::from_secs(30));
    assert_eq!(ramp.executor.schedule().expect("ramp").total(), 550 + 2000);
    assert_eq!(plan.sessions(), 4 + 2 + 2 * 2 + 1);
    assert_eq!(plan.thresholds.len(), 3);
    let t = plan.thresholds.iter().find(|t| t.scenario.is_some()).expect("a scenario threshold");
    assert_eq!(
        (t.scenario.as_deref(), t.agg, t.op, t.value),
        (Some("otp"), Agg::Rate, Op::Gt, 0.999)
    );
}

#[test]
fn shortcuts_and_defaults() {
    let plan = Plan::from_yaml("vus: 3\nduration: 1m\n").expect("valid");
    let s = &plan.scenarios[0];
    assert_eq!(s.name, "default");
    assert_eq!(s.executor, Executor::ConstantVus { vus: 3, duration: Duration::from_secs(60) });
    assert_eq!(
        (s.targets[0].as_str(), s.system_id.as_str(), s.password.as_str()),
        (DEFAULT_TARGET, "demo", "demo")
    );
    assert_eq!((s.bind, s.window), (BindMode::Transceiver, DEFAULT_WINDOW));
    assert_eq!(s.message.mix, Mix { gsm: 1.0, ucs2: 0.0, long: 0.0 });
    assert_eq!(plan.receipt_wait, DEFAULT_RECEIPT_WAIT);
    let empty = Plan::from_yaml("").expect("an empty file is one iteration, like k6");
    assert_eq!(
        empty.scenarios[0].executor,
        Executor::SharedIterations { vus: 1, iterations: 1, max_duration: DEFAULT_MAX_DURATION }
    );
}

#[test]
fn flags_build_and_override() {
    let plan = Plan::from_args(&args(&[
        "--vus",
        "4",
        "--duration",
        "2s",
        "--port",
        "2790",
        "--window",
        "16",
        "--threshold",
        "errors=rate<0.01",
        "--threshold",
        "submit_latency{scenario:default}=p(95)<5",
    ]))
    .expect("valid");
    let s = &plan.scenarios[0];
    assert_eq!(s.executor, Executor::ConstantVus { vus: 4, duration: Duration::from_secs(2) });
    assert_eq!((s.targets[0].as_str(), s.window), ("127.0.0.1:2790", 16));
    assert_eq!(plan.thresholds.len(), 2);

    let many = Plan::from_args(&args(&[
        "--duration",
        "1s",
        "--target",
        "10.0.0.1:1,10.0.0.2:2",
        "--host",
        "127.0.0.1",
    ]))
    .expect("valid");
    assert_eq!(many.scenarios[0].targets, ["127.0.0.1:1", "127.0.0.1:2"]);
    let e = Plan::from_args(&args(&["--duration", "1s", "--target", "nohost"])).expect_err("bad");
    assert!(e.to_string().contains("`--target`: `nohost` is not host:port"), "{e}");

    let rate = Plan::from_args(&args(&[
        "--rate",
        "1000",
        "--duration",
        "10s",
        "--vus",
        "2",
        "--host",
        "::1",
        "--system-id",
        "bank",
        "--password",
        "pw",
        "--bind",
        "transmitter",
        "--mix",
        "gsm=1,long=1",
        "--registered-delivery",
        "1",
        "--receipt-wait",
        "3s",
    ]))
    .expect("valid");
    let s = &rate.scenarios[0];
    assert_eq!(
        s.executor,
        Executor::ConstantArrivalRate {
            rate: 1000.0,
            time_unit: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            pre_allocated_vus: 2
        }
    );
    assert_eq!(
        (s.targets[0].as_str(), s.system_id.as_str(), s.bind),
        ("[::1]:2775", "bank", BindMode::Transmitter)
    );
    assert_eq!(s.message.mix, Mix { gsm: 1.0, ucs2: 0.0, long: 1.0 });
    assert_eq!((s.message.registered_delivery, rate.receipt_wait), (1.0, Duration::from_secs(3)));

    let iters = Plan::from_args(&args(&["--iterations", "500", "--vus", "2"])).expect("valid");
    assert_eq!(
        iters.scenarios[0].executor,
        Executor::SharedIterations { vus: 2, iterations: 500, max_duration: DEFAULT_MAX_DURATION }
    );
}

#[test]
fn flags_replace_the_files_scenarios() {
    let dir = std::env::temp_dir().join(format!("smsc-load-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("s.yaml");
    std::fs::write(&path, "target: 10.1.1.1:2000\nscenarios:\n  a: { executor: constant-vus, duration: 1m }\n  b: { executor: constant-vus, duration: 1m }\n").expect("write");
    let file = path.to_str().expect("utf-8");
    let both = Plan::from_args(&args(&[file, "--port", "3000"])).expect("valid");
    assert_eq!(both.scenarios.len(), 2);
    assert!(
        both.scenarios.iter().all(|s| s.targets == ["10.1.1.1:3000"]),
        "--port keeps the file's host"
    );
    let one = Plan::from_args(&args(&[file, "--vus", "1", "--duration", "1s"])).expect("valid");
    assert_eq!(one.scenarios.len(), 1);
    assert_eq!(
        (one.scenarios[0].name.as_str(), one.scenarios[0].targets[0].as_str()),
        ("default", "10.1.1.1:2000")
    );
    let missing = Plan::from_args(&args(&["/nonexistent/s.yaml"])).expect_err("no file");
    assert!(missing.to_string().starts_with("reading /nonexistent/s.yaml"), "{missing}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            "scenarios:\n  a: { executor: constant-vus, vus: 2 }\n",
            "`scenarios.a.duration`: is required by constant-vus",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, rate: 5 }\n",
            "`scenarios.a.rate`: is not an option of constant-vus",
        ),
        (
            "scenarios:\n  a: { executor: per-vu-iterations }\n",
            "`scenarios.a.executor`: `per-vu-iterations` is not supported",
        ),
        ("scenarios:\n  a: { duration: 1m }\n", "`scenarios.a.executor`: missing"),
        ("scenarios:\n  a: { executor: constant-vus, duration: 30 }\n", "scenarios.a.duration"),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 30x }\n",
            "is not a duration like 30s",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, vu: 3 }\n",
            "unknown field `vu`",
        ),
        (
            "scenarios:\n  a: { executor: constant-arrival-rate, rate: 10, duration: 1m }\n",
            "`scenarios.a.preAllocatedVUs`: is required",
        ),
        (
            "scenarios:\n  a: { executor: constant-arrival-rate, rate: 10, duration: 1m, vus: 2 }\n",
            "use preAllocatedVUs",
        ),
        (
            "scenarios:\n  a: { executor: constant-arrival-rate, rate: 0, duration: 1m, preAllocatedVUs: 1 }\n",
            "`scenarios.a.rate`: must be a number above 0",
        ),
        (
            "scenarios:\n  a: { executor: constant-arrival-rate, rate: 5, duration: 1m, preAllocatedVUs: 4, maxVUs: 2 }\n",
            "below preAllocatedVUs",
        ),
        (
            "scenarios:\n  a: { executor: ramping-arrival-rate, preAllocatedVUs: 1 }\n",
            "needs at least one stage",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, bind: receiver }\n",
            "`scenarios.a.bind`: `receiver` is not a bind type",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, window: 0 }\n",
            "`scenarios.a.window`: must be at least 1",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, window: 2, message: { mix: { long: 1 } } }\n",
            "below message.long_parts 3",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { destination: \"44{seq:20}\" } }\n",
            "`scenarios.a.message.destination`",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { registered_delivery: 2 } }\n",
            "is a share between 0 and 1",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { mix: { gsm: 0 } } }\n",
            "every weight is 0",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, message: { text: \"Привет\" } }\n",
            "is not GSM 03.38 text",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, system_id: abcdefghijklmnopq }\n",
            "`scenarios.a.system_id`: must be at most 15",
        ),
        (
            "scenarios:\n  a: { executor: constant-vus, duration: 1m, target: localhost }\n",
            "is not host:port",
        ),
        ("scenarios: {}\n", "no scenario given"),
        (
            "vus: 2\nduration: 1m\nscenarios:\n  a: { executor: constant-vus, duration: 1m }\n",
            "not both",
        ),
        (
            "duration: 1m\nthresholds:\n  latency: [\"p(99)<10\"]\n",
            "`thresholds.latency`: unknown metric `latency`",
        ),
        (
            "duration: 1m\nthresholds:\n  \"errors{scenario:nope}\": [\"rate<0.1\"]\n",
            "no scenario named `nope`",
        ),
        ("duration: 1m\nthresholds:\n  errors: [\"p(99)<0.1\"]\n", "`thresholds.errors`"),
        ("rate: 5\n", "`rate`: needs duration"),
    ];
    for (yaml, want) in cases {
        let got = err(yaml);
        assert!(got.contains(want), "{yaml:?}\n  got:  {got}\n  want: {want}");
    }
}

#[test]
fn flag_errors_are_usage_errors() {
    let e = Plan::from_args(&args(&["--rate", "10"])).expect_err("no duration");
    assert_eq!(e.to_string(), "`--rate`: needs --duration");
    let e = Plan::from_args(&args(&["--rate", "10", "--iterations", "5", "--duration", "1s"]))
        .expect_err("both");
    assert!(e.to_string().contains("does not go with --rate"), "{e}");
    let e = Plan::from_args(&args(&["--duration", "1s", "--threshold", "submit_latency<5"]))
        .expect_err("no =");
    assert!(e.to_string().contains("is not METRIC=EXPR"), "{e}");
    let e =
        Plan::from_args(&args(&["--duration", "1s", "--mix", "gsm=1,mms=2"])).expect_err("kind");
    assert!(e.to_string().contains("`mms` is not gsm, ucs2 or long"), "{e}");
    assert!(Args::try_parse_from(["smsc-load", "--duration", "soon"]).is_err());
}
