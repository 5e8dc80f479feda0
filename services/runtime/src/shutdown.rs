//! Process signals: SIGTERM/SIGINT to shut down, SIGHUP to reload.
//!
//! Handlers are registered when these functions are called, not when the returned
//! future is first polled, so a failure shows at startup and a signal that arrives
//! between startup and the first poll is not lost (nor does it kill the process).

use std::future::Future;
use std::io;

use tokio::signal::unix::{SignalKind, signal as unix_signal};

/// Which signal asked for shutdown, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }
}

/// Registers SIGTERM and SIGINT and returns a future that resolves on the first of
/// them: pass it (or a `CancellationToken` it cancels) as a `run(..., shutdown)`
/// argument. Must be called inside a tokio runtime.
pub fn signal() -> io::Result<impl Future<Output = Signal> + Send + 'static> {
    let mut term = unix_signal(SignalKind::terminate())?;
    let mut int = unix_signal(SignalKind::interrupt())?;
    Ok(async move {
        // `None` means the signal driver is gone (runtime shutting down): treat it as
        // the request it would have been rather than hang.
        tokio::select! {
            _ = term.recv() => Signal::Terminate,
            _ = int.recv() => Signal::Interrupt,
        }
    })
}

/// A stream of SIGHUPs (`recv().await` per signal), for config reloads. Registering it
/// stops SIGHUP from terminating the process. Must be called inside a tokio runtime.
pub fn sighup() -> io::Result<tokio::signal::unix::Signal> {
    unix_signal(SignalKind::hangup())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Sends `sig` to this test process through the shell's `kill` builtin.
    fn raise(sig: &str) {
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -{sig} {}", std::process::id())])
            .status()
            .expect("run sh");
        assert!(status.success());
    }

    #[tokio::test]
    async fn sigterm_resolves_signal() {
        let shutdown = signal().expect("register");
        raise("TERM");
        let got = tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("signal");
        assert_eq!(got, Signal::Terminate);
        assert_eq!(got.as_str(), "SIGTERM");
    }

    #[tokio::test]
    async fn sighup_is_a_stream() {
        let mut hup = sighup().expect("register");
        for _ in 0..2 {
            raise("HUP");
            tokio::time::timeout(Duration::from_secs(10), hup.recv())
                .await
                .expect("SIGHUP delivered")
                .expect("stream open");
        }
    }
}
