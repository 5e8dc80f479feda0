//! What the `smsc` binary does to its own process before any role starts, and how it
//! exits on a config (or an input) it cannot use.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `THP_enabled` of a process's `/proc/<pid>/status`, when the kernel reports it.
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
    Some(line.trim_start_matches("THP_enabled:").trim().to_owned())
}

/// Transparent huge pages made RSS climb under a steady load (docs/reliability.md, Soak): the
/// binary turns them off for itself whatever the host's setting.
#[test]
fn the_binary_runs_without_transparent_huge_pages() {
    if thp_enabled(std::process::id()).is_none() {
        eprintln!("SKIPPED: this kernel does not report THP_enabled in /proc/<pid>/status");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsc"))
        .args(["store-server", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn smsc store-server");
    // The flag is set first thing in main; wait (bounded) for main to have run.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = thp_enabled(child.id());
    while seen.as_deref() != Some("0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = thp_enabled(child.id());
    }
    let alive = child.try_wait().expect("child status").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "smsc store-server exited early");
    assert_eq!(seen.as_deref(), Some("0"), "THP_enabled of the smsc process");
}

/// A config whose keys are well formed but name something that cannot be used is refused
/// like a bad key, before anything starts: exit 64 (EX_USAGE) naming the key.
#[test]
fn a_connector_that_cannot_be_built_exits_64_naming_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        // Refused by the config check (the URL does not parse).
        ("connectors: { hook: { kind: webhook, url: 'not a url' } }", "connectors.hook.url:"),
        (
            "connectors: { sim: { kind: simulator, journal: /nonexistent-dir/journal } }",
            // Only opening it tells: refused at start-up, before anything listens.
            "connectors.sim.journal: cannot be used",
        ),
    ];
    for (yaml, key) in cases {
        let path = dir.path().join("smsc.yaml");
        let text = format!(
            "admin_listen: 127.0.0.1:0\nedge: {{ smpp_listen: 127.0.0.1:0, grpc_listen: 127.0.0.1:0 }}\n\
             worker: {{ simulator_listen: 127.0.0.1:0 }}\n{yaml}\n"
        );
        std::fs::write(&path, text).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_smsc"))
            .args(["worker", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("run smsc worker");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{key}: {stderr}");
        assert!(stderr.contains(&format!("configuration: {key}")), "{key}: {stderr}");
    }
}

/// TLS files that do not load are refused like a bad key: exit 64 naming the key, whether
/// the binary finds it (`grpc_tls`, before anything starts) or a role's `start` does
/// (`edge.tls`, once the engines are reached).
#[test]
fn tls_files_that_do_not_load_exit_64_naming_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let missing = missing.display();
    let cases = [
        (
            "edge",
            format!("edge: {{ tls: {{ listen: 127.0.0.1:0, cert: {missing}, key: {missing} }} }}"),
            "edge.tls",
        ),
        (
            "worker",
            format!("grpc_tls: {{ ca: {missing}, cert: {missing}, key: {missing} }}"),
            "grpc_tls",
        ),
    ];
    for (role, yaml, key) in cases {
        let path = dir.path().join("smsc.yaml");
        let text = format!(
            "admin_listen: 127.0.0.1:0\nworker: {{ simulator_listen: 127.0.0.1:0 }}\n{yaml}\n"
        );
        std::fs::write(&path, text).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_smsc"))
            .args([role, "--config"])
            .arg(&path)
            .args(["--smpp-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .expect("run smsc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{key}: {stderr}");
        assert!(
            stderr.contains(&format!("configuration: {key}: cannot be used")),
            "{key}: {stderr}"
        );
    }
}

#[test]
fn hash_password_refuses_what_no_bind_can_carry_and_hashes_the_rest() {
    let run = |password: &str| {
        Command::new(env!("CARGO_BIN_EXE_smsc"))
            .args(["hash-password", password])
            .output()
            .expect("smsc runs")
    };
    let long = run("bank-password");
    assert_eq!(long.status.code(), Some(65), "{long:?}");
    let stderr = String::from_utf8_lossy(&long.stderr);
    assert!(stderr.contains("password: 13 octets"), "{stderr}");
    let ok = run("Bnk8pass");
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("$argon2id$"), "{ok:?}");
}

#[test]
fn api_key_prints_a_new_key_and_the_digest_an_account_lists() {
    let run = || Command::new(env!("CARGO_BIN_EXE_smsc")).arg("api-key").output().expect("runs");
    let (a, b) = (run(), run());
    assert!(a.status.success(), "{a:?}");
    let out = String::from_utf8_lossy(&a.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (key, digest) = (lines[0], lines[1]);
    assert!(key.starts_with("smsc_") && key.len() == 48, "{key}");
    let expected: String =
        smsc_accounts::api_key_digest(key).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, expected, "the second line is the key's SHA-256");
    assert_ne!(a.stdout, b.stdout, "a new key each time");
}
