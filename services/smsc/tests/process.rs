//! What the `smsc` binary does to its own process before any role starts.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `THP_enabled` of a process's `/proc/<pid>/status`, when the kernel reports it.
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
    Some(line.trim_start_matches("THP_enabled:").trim().to_owned())
}

/// Transparent huge pages made RSS climb under a steady load (docs/reliability.md, Soak): the binary
/// turns them off for itself whatever the host's setting.
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
