//! Private Apache Kafka brokers for tests that break them (kill a broker and revive it),
//! through the repository's `tests/engines` script. Each
//! [`Engines`] has a run directory of its own, so its faults never reach the engines other
//! tests share; dropping it stops what it started.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Engines started by `tests/engines` in a run directory of their own.
#[derive(Debug)]
pub struct Engines {
    script: PathBuf,
    run_dir: PathBuf,
}

impl Engines {
    /// Engines under a new temporary run directory; nothing starts yet.
    pub fn new() -> std::io::Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/engines");
        let run_dir = std::env::temp_dir().join(format!(
            "smsc-engines-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&run_dir)?;
        Ok(Self { script, run_dir })
    }

    /// Runs `tests/engines args…` and returns its stdout; panics with its stderr when it fails
    /// (a test cannot go on without its engines).
    pub fn run(&self, args: &[&str]) -> String {
        let output = Command::new(&self.script)
            .args(args)
            .env("SMSC_TEST_RUN", &self.run_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.script.display()));
        assert!(
            output.status.success(),
            "tests/engines {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `brokers` KRaft brokers; returns `bootstrap.servers`.
    pub fn start_kafka(&self, brokers: usize) -> String {
        let out = self.run(&["start", "kafka", "--brokers", &brokers.to_string()]);
        value(&out, "KAFKA_BROKERS=")
    }

    /// SIGKILLs Kafka broker `n` (1-based).
    pub fn kill_broker(&self, n: usize) {
        self.run(&["kill", "kafka", &n.to_string()]);
    }

    /// Starts killed broker `n` again with its data and waits until it serves.
    pub fn revive_broker(&self, n: usize) {
        self.run(&["revive", "kafka", &n.to_string()]);
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        let stopped = Command::new(&self.script)
            .arg("stop")
            .env("SMSC_TEST_RUN", &self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if stopped.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

fn value(stdout: &str, prefix: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("tests/engines printed no {prefix}: {stdout}"))
        .trim()
        .to_owned()
}
