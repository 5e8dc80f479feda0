//! Third-party SMPP stacks as peers: the jSMPP, Cloudhopper and gosmpp programs that
//! tests/smpp-peers builds (its `SMSC_TEST_SMPP_PEERS` directory). An ESME peer runs the
//! script of docs/testing.md ("Interop") by itself (binds, submits, matches receipts with
//! its stack's own parser, rebinds) and asks the test, one line on stdout at a time, for
//! what only the SMSC's side can do: a handset's MO, a server-side unbind.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::esme::PASSWORD;

/// How long a peer may stay silent before the test fails (the peers bound their own
/// waits by `--timeout-secs`, which is longer than any of their steps).
const SILENCE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stack {
    Jsmpp,
    Cloudhopper,
    Gosmpp,
}

impl Stack {
    pub(crate) const ALL: [Stack; 3] = [Stack::Jsmpp, Stack::Cloudhopper, Stack::Gosmpp];

    /// The program's name in the peers' directory (also a valid system_id).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stack::Jsmpp => "jsmpp",
            Stack::Cloudhopper => "cloudhopper",
            Stack::Gosmpp => "gosmpp",
        }
    }
}

/// One transceiver session, or a transmitter and a receiver.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    Trx,
    TxRx,
}

/// The directory tests/smpp-peers printed, or `None` (skipped) under `SMSC_SKIP_INTEROP=1`.
pub(crate) fn peers() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SMSC_TEST_SMPP_PEERS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if std::env::var("SMSC_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("\n*** SKIPPED: third-party SMPP stacks (SMSC_SKIP_INTEROP=1) ***\n");
        return None;
    }
    panic!(
        "no SMPP peers: run this test through tests/run (it exports SMSC_TEST_SMPP_PEERS from \
         tests/smpp-peers install), or set SMSC_SKIP_INTEROP=1 to skip it"
    );
}

/// Where and how an ESME peer binds.
pub(crate) struct EsmeArgs<'a> {
    pub(crate) smpp: SocketAddr,
    /// The receiver's edge in [`Mode::TxRx`] (the transmitter's when `None`).
    pub(crate) rx: Option<SocketAddr>,
    pub(crate) system_id: &'a str,
    pub(crate) mode: Mode,
    /// The account's short code, where the MO it asks for goes.
    pub(crate) short_code: &'a str,
}

/// What a running ESME peer asks of the test next.
#[derive(Debug)]
pub(crate) enum Ask {
    /// A handset's MO with this text to the account's short code.
    Mo(String),
    /// A server-side unbind of its sessions (the edge stops gracefully and comes back).
    Unbind,
    /// Every check passed and it unbound.
    Pass,
}

/// A peer program running, killed when dropped.
pub(crate) struct Peer {
    stack: Stack,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Everything it said, for the failure message.
    said: Vec<String>,
    submitted: HashSet<String>,
    receipted: HashSet<String>,
}

impl Peer {
    fn spawn(dir: &std::path::Path, stack: Stack, args: &[String]) -> Self {
        let program = dir.join(stack.name());
        let mut child = Command::new(&program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            stack,
            child,
            lines: BufReader::new(stdout).lines(),
            said: Vec::new(),
            submitted: HashSet::new(),
            receipted: HashSet::new(),
        }
    }

    /// Starts the stack's ESME program against an SMSC.
    pub(crate) fn esme(dir: &std::path::Path, stack: Stack, a: &EsmeArgs<'_>) -> Self {
        Self::spawn(dir, stack, &Self::esme_args(a, PASSWORD, &[]))
    }

    /// Binds once with a wrong password: the stack must report the refusal with
    /// ESME_RINVPASWD (as its API gives a bind's command_status to its users).
    pub(crate) async fn refused_bind(dir: &std::path::Path, stack: Stack, a: &EsmeArgs<'_>) {
        let args = Self::esme_args(a, "wrong", &["--expect-bind-status", "14"]);
        let mut peer = Self::spawn(dir, stack, &args);
        assert_eq!(peer.line().await, "BIND-REFUSED 14");
        assert_eq!(peer.line().await, "PASS");
        peer.finish().await;
    }

    fn esme_args(a: &EsmeArgs<'_>, password: &str, extra: &[&str]) -> Vec<String> {
        let mode = match a.mode {
            Mode::Trx => "trx",
            Mode::TxRx => "txrx",
        };
        let rx = a.rx.unwrap_or(a.smpp);
        let args = [
            "esme",
            "--host",
            &a.smpp.ip().to_string(),
            "--port",
            &a.smpp.port().to_string(),
            "--rx-port",
            &rx.port().to_string(),
            "--system-id",
            a.system_id,
            "--password",
            password,
            "--mode",
            mode,
            "--short-code",
            a.short_code,
            "--timeout-secs",
            "90",
        ];
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    }

    /// Starts the stack's upstream SMSC on a free loopback port, accepting `system_id`
    /// with the tests' password, dropping the connection after every `drop_every`-th
    /// submit_sm it answers; returns it with the address it listens on.
    pub(crate) async fn upstream(
        dir: &std::path::Path,
        stack: Stack,
        system_id: &str,
        drop_every: u32,
    ) -> (Self, SocketAddr) {
        let args = [
            "upstream",
            "--port",
            "0",
            "--system-id",
            system_id,
            "--password",
            PASSWORD,
            "--drop-every",
            &drop_every.to_string(),
        ];
        let mut peer = Self::spawn(dir, stack, &args.map(String::from));
        let line = peer.line().await;
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| peer.fail(&format!("expected LISTENING <port>, got {line:?}")));
        (peer, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Its next line on stdout; the test fails when it ends or says nothing for too long.
    pub(crate) async fn line(&mut self) -> String {
        match tokio::time::timeout(SILENCE, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                eprintln!("[{}] {line}", self.stack.name());
                self.said.push(line.clone());
                line
            }
            Ok(Ok(None)) => self.fail("its output ended"),
            Ok(Err(e)) => self.fail(&format!("reading its output: {e}")),
            Err(_) => self.fail(&format!("silent for {SILENCE:?}")),
        }
    }

    /// The ESME's next request. On `Pass`, also checks what it reported along the way:
    /// a DELIVRD receipt for every message id it was given, and for no other.
    pub(crate) async fn next(&mut self) -> Ask {
        loop {
            let line = self.line().await;
            let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match word {
                "SUBMITTED" => {
                    let fresh = self.submitted.insert(rest.to_owned());
                    assert!(fresh, "{}: message id {rest} given twice", self.stack.name());
                }
                "RECEIPT" => {
                    let (id, stat) = rest.split_once(' ').unwrap_or((rest, ""));
                    assert_eq!(stat, "DELIVRD", "{}: {line}", self.stack.name());
                    assert!(
                        self.receipted.insert(id.to_owned()),
                        "{}: two receipts for {id}",
                        self.stack.name()
                    );
                }
                "WANT-MO" => return Ask::Mo(rest.to_owned()),
                "WANT-UNBIND" => return Ask::Unbind,
                "PASS" => {
                    self.check_the_whole_script();
                    return Ask::Pass;
                }
                "FAIL" => self.fail("it failed"),
                _ => {}
            }
        }
    }

    /// What a PASS stands for: every step said, in order, and a DELIVRD receipt for
    /// every id given (GSM, UCS2, a long text in parts, one after the rebind), no other.
    fn check_the_whole_script(&self) {
        let name = self.stack.name();
        let words: Vec<&str> = self.said.iter().filter_map(|l| l.split(' ').next()).collect();
        let at = |word: &str| words.iter().position(|w| *w == word);
        let steps = ["BOUND", "WANT-MO", "MO-OK", "WANT-UNBIND", "REBOUND", "PASS"].map(at);
        assert!(
            steps.iter().all(Option::is_some) && steps.is_sorted(),
            "{name}: steps missing or out of order: {steps:?}"
        );
        let after_rebind = words[steps[4].unwrap_or(0)..].iter().filter(|w| **w == "SUBMITTED");
        assert!(after_rebind.count() >= 1, "{name}: no submit after the rebind");
        assert!(self.submitted.len() >= 5, "{name}: only {:?}", self.submitted);
        assert_eq!(self.receipted, self.submitted, "{name}: receipts vs submits");
    }

    /// Waits for it to exit, which must be with status 0.
    pub(crate) async fn finish(mut self) {
        let status = tokio::time::timeout(SILENCE, self.child.wait()).await;
        match status {
            Ok(Ok(s)) if s.success() => {}
            other => self.fail(&format!("exit: {other:?}")),
        }
    }

    /// Kills it (an upstream runs until then) and returns every line it said.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill().await;
        while let Ok(Ok(Some(line))) = tokio::time::timeout(SILENCE, self.lines.next_line()).await {
            self.said.push(line);
        }
        self.said
    }

    fn fail(&self, why: &str) -> ! {
        panic!("{} peer: {why}; it said:\n{}", self.stack.name(), self.said.join("\n"))
    }
}
