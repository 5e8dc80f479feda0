//! `smsc all` running inside the test process (the real roles on the embedded bus and
//! store), for the end-to-end tests that drive it over SMPP and `/metrics`.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;

use smsc::Role;
use smsc::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::esme::{STEP, eventually, metric};
use smsc_accounts::testing::password_hash;

/// A port nothing listens on now (for listeners whose address the test must know).
pub(crate) fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("bound")
}

/// One `smsc all` running in this process until [`Node::stop`].
pub(crate) struct Node {
    pub(crate) smpp: SocketAddr,
    pub(crate) simulator: SocketAddr,
    pub(crate) admin: SocketAddr,
    /// The HTTP API's address, for a config that opens it at `{http}`.
    pub(crate) http: SocketAddr,
    /// The config it runs, with its addresses filled in (what [`Node::restart`] reuses).
    yaml: String,
    stop: oneshot::Sender<()>,
    running: JoinHandle<anyhow::Result<()>>,
}

impl Node {
    /// `yaml` gets `{smpp}`, `{simulator}`, `{admin}`, `{http}` and `{hash}` (of the
    /// tests' password) filled in.
    pub(crate) async fn start(yaml: &str) -> Self {
        let (smpp, simulator, admin, http) = (free_port(), free_port(), free_port(), free_port());
        let yaml = yaml
            .replace("{http}", &http.to_string())
            .replace("{smpp}", &smpp.to_string())
            .replace("{simulator}", &simulator.to_string())
            .replace("{admin}", &admin.to_string())
            .replace("{hash}", &password_hash());
        Self::run([smpp, simulator, admin, http], yaml)
    }

    fn run([smpp, simulator, admin, http]: [SocketAddr; 4], yaml: String) -> Self {
        let config = Config::from_yaml_str(&yaml, []).unwrap_or_else(|e| panic!("{e}: {yaml}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(smsc::run(Role::All, config, async {
            let _ = stopped.await;
        }));
        Self { smpp, simulator, admin, http, yaml, stop, running }
    }

    /// Stops (the edge unbinds its sessions, as in a rolling update) and starts again on
    /// the same addresses, with empty embedded state.
    pub(crate) async fn restart(self) -> Self {
        let (addrs, yaml) = ([self.smpp, self.simulator, self.admin, self.http], self.yaml.clone());
        self.stop().await;
        Self::run(addrs, yaml)
    }

    /// Shuts down and waits for `run` to return cleanly.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(STEP, self.running).await.expect("stops in time");
        ended.expect("run task").expect("run ends Ok");
    }

    /// Until `/ready` answers 200: every role is up and the SMPP listener accepts (for a
    /// client that does not retry its first bind).
    pub(crate) async fn ready(&self) {
        let admin = self.admin;
        eventually("smsc all ready", || async {
            (smsc::cluster::http_status(admin, "/ready").await == Some(200)).then_some(())
        })
        .await;
    }

    /// The value of one sample line of `/metrics`, 0 when absent.
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        metric(&[self.admin], series).await
    }
}
