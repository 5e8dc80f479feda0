//! The engines: Apache Kafka and Cassandra started with `tests/engines` (in the
//! cluster's own run directory) when none were given, stopped with the cluster, and the
//! broker and CQL node faults the chaos tests inject.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use super::Cluster;

/// Engines this cluster started with `tests/engines` (in its own run directory) and stops.
#[derive(Debug)]
pub(super) struct OwnEngines {
    script: PathBuf,
    run_dir: PathBuf,
    kafka: bool,
    cassandra: bool,
}

impl OwnEngines {
    /// Runs `tests/engines args…` on a blocking thread; returns its stdout.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(&self.script);
        command.args(args).env("SMSC_TEST_RUN", &self.run_dir).stdin(Stdio::null());
        let what = format!("tests/engines {}", args.join(" "));
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("engines task")?
            .with_context(|| format!("running {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `KEY=value` from the output of `tests/engines start …`.
    async fn start(&self, args: &[&str], key: &str) -> anyhow::Result<String> {
        let stdout = self.run(args).await?;
        let value = stdout.lines().find_map(|l| l.strip_prefix(key));
        Ok(value.with_context(|| format!("tests/engines printed no {key}"))?.trim().to_owned())
    }

    pub(super) fn stop(&self) {
        let stopped = Command::new(&self.script)
            .arg("stop")
            .env("SMSC_TEST_RUN", &self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "could not stop the engines");
        }
    }
}

impl Cluster {
    /// SIGKILLs Kafka broker `n` (1-based) of the brokers this cluster started.
    pub async fn kill_broker(&self, n: usize) -> anyhow::Result<()> {
        self.own_engine(true)?.run(&["kill", "kafka", &n.to_string()]).await.map(drop)
    }

    /// Starts Kafka broker `n` again with its data and waits until it serves.
    pub async fn revive_broker(&self, n: usize) -> anyhow::Result<()> {
        self.own_engine(true)?.run(&["revive", "kafka", &n.to_string()]).await.map(drop)
    }

    /// Stops the CQL node this cluster started (SIGTERM) and starts it again with its data.
    pub async fn restart_cql(&self) -> anyhow::Result<()> {
        self.own_engine(false)?.run(&["restart", "cassandra"]).await.map(drop)
    }

    fn own_engine(&self, kafka: bool) -> anyhow::Result<&OwnEngines> {
        match &self.engines {
            Some(e) if (kafka && e.kafka) || (!kafka && e.cassandra) => Ok(e),
            _ => bail!(
                "the cluster did not start its own {}",
                if kafka { "Kafka" } else { "CQL server" }
            ),
        }
    }

    /// Starts with `tests/engines` whichever of Kafka and the CQL server was not given.
    pub(super) async fn start_engines(&mut self) -> anyhow::Result<()> {
        let (kafka, cassandra) = (self.options.brokers.is_none(), self.options.cql.is_none());
        if !kafka && !cassandra {
            return Ok(());
        }
        let script = match &self.options.engines_script {
            Some(s) => s.clone(),
            None => find_engines_script(&self.options.binary).context(
                "tests/engines not found to start Kafka and Cassandra (run from the repository, \
                 pass --engines-script, or give --brokers and --cql)",
            )?,
        };
        let run_dir = self.endpoints.dir.join("engines");
        self.engines = Some(OwnEngines { script, run_dir, kafka, cassandra });
        let engines = self.engines.as_ref().context("engines")?;
        if kafka {
            let n = self.options.kafka_brokers.to_string();
            self.endpoints.brokers =
                engines.start(&["start", "kafka", "--brokers", &n], "KAFKA_BROKERS=").await?;
        }
        if cassandra {
            self.endpoints.cql = engines.start(&["start", "cassandra"], "SCYLLA_URI=").await?;
        }
        Ok(())
    }
}

/// `tests/engines` from the working directory or the binary's directory upwards
/// (`target/debug/smsc` sits two levels under the repository).
fn find_engines_script(binary: &Path) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let starts = cwd.iter().map(PathBuf::as_path).chain(binary.parent());
    starts.flat_map(Path::ancestors).map(|d| d.join("tests").join("engines")).find(|p| p.is_file())
}
