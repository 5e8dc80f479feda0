//! The members' processes: spawning one on its config, waiting until members are ready,
//! killing, terminating and restarting one, stopping them all, and what each exit was
//! ([`Exited`]).

use std::fmt;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use super::{Cluster, ClusterRole};

/// A member that exited, on its own or when stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub role: ClusterRole,
    pub index: usize,
    pub status: ExitStatus,
    /// SIGKILLed after the stop deadline.
    pub forced: bool,
    pub log: PathBuf,
}

impl fmt::Display for Exited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} exited ({})", self.role, self.index, self.status)?;
        if self.forced {
            f.write_str(", killed after the stop deadline")?;
        }
        write!(f, "; log: {}", self.log.display())
    }
}

impl Cluster {
    /// SIGKILLs a member (no drain, as a crash) and waits until it is gone.
    pub async fn kill(&mut self, role: ClusterRole, index: usize) -> anyhow::Result<()> {
        let i = self.position(role, index)?;
        let Some(mut child) = self.children[i].take() else {
            bail!("{role} {index} is not running");
        };
        // Fails only if it exited already, which is what we want.
        let _ = child.kill();
        wait_exit(&mut child, Duration::from_secs(10)).await.map(|_| ())
    }

    /// SIGTERMs a member and waits for it to exit (SIGKILL after the stop timeout).
    pub async fn terminate(&mut self, role: ClusterRole, index: usize) -> anyhow::Result<Exited> {
        let i = self.position(role, index)?;
        let Some(child) = self.children[i].take() else {
            bail!("{role} {index} is not running");
        };
        let mut exited = self.stop_children(vec![(i, child)]).await;
        exited.pop().context("the member's exit")
    }

    /// Starts a member again on the same config and ports (stopping it first if it
    /// runs), and waits until it is ready.
    pub async fn restart(&mut self, role: ClusterRole, index: usize) -> anyhow::Result<()> {
        let i = self.position(role, index)?;
        if self.children[i].is_some() {
            self.terminate(role, index).await?;
        }
        self.spawn(i)?;
        self.wait_ready(&[i]).await
    }

    /// Whether a member's process is running (not exited, not killed).
    pub fn is_running(&mut self, role: ClusterRole, index: usize) -> bool {
        let Ok(i) = self.position(role, index) else { return false };
        matches!(self.children[i].as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Members that exited on their own since the last call (not those killed,
    /// terminated or stopped through this type).
    pub fn exited(&mut self) -> Vec<Exited> {
        let mut out = Vec::new();
        for (i, slot) in self.children.iter_mut().enumerate() {
            let status = match slot.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            *slot = None;
            let m = &self.endpoints.members[i];
            out.push(Exited {
                role: m.role,
                index: m.index,
                status,
                forced: false,
                log: m.log.clone(),
            });
        }
        out
    }

    /// Stops every member at once (SIGTERM, SIGKILL after the stop timeout), then the
    /// engines if the cluster started them. Returns how each running member exited.
    pub async fn stop(mut self) -> Vec<Exited> {
        let children: Vec<(usize, Child)> = self
            .children
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| c.take().map(|c| (i, c)))
            .collect();
        let exited = self.stop_children(children).await;
        if let Some(engines) = self.engines.take() {
            tokio::task::spawn_blocking(move || engines.stop()).await.ok();
        }
        exited
    }

    /// The last lines of a member's log, for failure messages.
    pub fn log_tail(&self, role: ClusterRole, index: usize, lines: usize) -> String {
        match self.endpoints.member(role, index) {
            Some(m) => tail(&m.log, lines),
            None => String::new(),
        }
    }

    fn position(&self, role: ClusterRole, index: usize) -> anyhow::Result<usize> {
        self.endpoints
            .members
            .iter()
            .position(|m| m.role == role && m.index == index)
            .with_context(|| format!("the cluster has no {role} {index}"))
    }

    pub(super) fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.endpoints.members[i];
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .with_context(|| format!("opening {}", m.log.display()))?;
        let _ = writeln!(log, "==== smsc cluster: starting {} ====", m.name);
        let mut command = Command::new(&self.options.binary);
        command.arg(m.role.as_str()).arg("--config").arg(&m.config);
        // The generated config is the whole truth: no override from our environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(smsc_runtime::config::ENV_PREFIX) {
                command.env_remove(key);
            }
        }
        // Plain text in the log files (tracing-subscriber honours NO_COLOR).
        command.env("NO_COLOR", "1");
        let stderr = log.try_clone().context("log file handle")?;
        command.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(stderr));
        let child = command
            .spawn()
            .with_context(|| format!("starting {} ({})", m.name, self.options.binary.display()))?;
        tracing::debug!(member = %m.name, pid = child.id(), "started");
        self.children[i] = Some(child);
        Ok(())
    }

    /// Waits until the members at `indices` answer `/ready` with 200; fails at once
    /// when one exits, and after the ready timeout.
    pub(super) async fn wait_ready(&mut self, indices: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let mut waiting: Vec<usize> = indices.to_vec();
        loop {
            let mut still = Vec::new();
            for &i in &waiting {
                let m = &self.endpoints.members[i];
                let exit = match self.children[i].as_mut() {
                    None => bail!("{} is not running", m.name),
                    Some(child) => child.try_wait().context("checking a member")?,
                };
                if let Some(status) = exit {
                    self.children[i] = None;
                    bail!(
                        "{} exited while starting ({status}); the end of {}:\n{}",
                        m.name,
                        m.log.display(),
                        tail(&m.log, 30)
                    );
                }
                if http_status(m.admin, "/ready").await != Some(200) {
                    still.push(i);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let m = &self.endpoints.members[still[0]];
                bail!(
                    "not ready within {:?}: {}; the end of {}:\n{}",
                    self.options.ready_timeout,
                    still
                        .iter()
                        .map(|&i| self.endpoints.members[i].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    m.log.display(),
                    tail(&m.log, 30)
                );
            }
            waiting = still;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM to all of `children` at once, then SIGKILL to those left at the deadline.
    async fn stop_children(&self, mut children: Vec<(usize, Child)>) -> Vec<Exited> {
        for (_, child) in &mut children {
            if let Ok(None) = child.try_wait() {
                sigterm(child.id());
            }
        }
        let deadline = Instant::now() + self.options.stop_timeout;
        let mut exited = Vec::new();
        while !children.is_empty() {
            let now = Instant::now();
            let mut left = Vec::new();
            for (i, mut child) in children {
                let m = &self.endpoints.members[i];
                let exit = |status, forced| Exited {
                    role: m.role,
                    index: m.index,
                    status,
                    forced,
                    log: m.log.clone(),
                };
                match child.try_wait() {
                    Ok(Some(status)) => exited.push(exit(status, false)),
                    Ok(None) if now < deadline => left.push((i, child)),
                    _ => {
                        let _ = child.kill();
                        match child.wait() {
                            Ok(status) => exited.push(exit(status, true)),
                            Err(e) => tracing::warn!(member = %m.name, error = %e, "lost a member"),
                        }
                    }
                }
            }
            children = left;
            if !children.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        exited
    }
}

impl Drop for Cluster {
    /// Kills whatever still runs (a test that failed half way): no orphans.
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(engines) = self.engines.take() {
            engines.stop();
        }
    }
}

/// SIGTERM through kill(1): the workspace forbids `unsafe`, which `libc::kill` needs.
/// The pid is still ours: the caller has not reaped the child.
fn sigterm(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = sent {
        tracing::warn!(pid, error = %e, "could not send SIGTERM");
    }
}

async fn wait_exit(child: &mut Child, within: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a member")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!("pid {} did not exit within {within:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status code of `GET path`, or `None` if there is no answer within a second.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let mut len = 0;
        while len < 12 {
            let n = s.read(&mut head[len..]).await.ok()?;
            if n == 0 {
                break;
            }
            len += n;
        }
        let line = std::str::from_utf8(&head[..len]).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange).await.ok().flatten()
}

pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
