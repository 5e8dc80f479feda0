//! `smsc cluster`: a local multi-process cluster on loopback, for development and for
//! the end-to-end and chaos tests that drive [`Cluster`] from `services/smsc/tests/`.
//!
//! Every member is a child process of the same `smsc` binary with a generated config
//! in the cluster's directory: the edges, the routers and the workers, on the production
//! engines: Apache Kafka and a CQL store (Apache Cassandra here, ScyllaDB in production),
//! either given or started with `tests/engines` and stopped with the cluster. The store is
//! a keyspace of the cluster's own, so clusters can share one CQL server. Each member gets
//! its own free loopback ports; its stdout and stderr go to `<dir>/logs/<name>.log`.
//!
//! Members stay in this process's process group on purpose: whatever kills the group
//! (Ctrl-C in a terminal, a test runner timing a test out) reaches them too, so a
//! crashed test does not leave an SMSC running. [`Cluster`] kills what is left when it
//! is dropped; [`Cluster::stop`] is the orderly way (SIGTERM, then SIGKILL).
//!
//! The files of this module:
//! - `options.rs`: how to start a cluster ([`ClusterOptions`]): its members, accounts,
//!   engines, routes and timeouts.
//! - `plan.rs`: the layout: every member's free loopback ports and files ([`Member`],
//!   [`Endpoints`]), and the config file generated for each.
//! - `process.rs`: the members' processes: spawning, readiness, kill, terminate, restart,
//!   stop, and how each exited ([`Exited`]).
//! - `engines.rs`: Kafka and Cassandra started and stopped with `tests/engines`, and
//!   the broker and CQL node faults ([`Cluster::kill_broker`], [`Cluster::restart_cql`]).
//! - `args.rs`: the `smsc cluster` command: its flags ([`ClusterArgs`]) and [`run`].

mod args;
mod engines;
mod options;
mod plan;
mod process;
#[cfg(test)]
mod tests;

use std::fs;
use std::process::Child;

use anyhow::{Context as _, bail};

use engines::OwnEngines;
use plan::{new_temp_dir, rand_u32};

pub use args::{ClusterArgs, run};
pub use options::{ClusterAccount, ClusterOptions, ClusterRole};
pub use plan::{Endpoints, Member};
pub use process::{Exited, http_status};

/// A running multi-process cluster. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    options: ClusterOptions,
    endpoints: Endpoints,
    /// By the index of `endpoints.members`; `None` while not running.
    children: Vec<Option<Child>>,
    engines: Option<OwnEngines>,
}

impl Cluster {
    /// Starts the engines (unless given), then every member, and returns once every
    /// member's `/ready` answers 200. On failure, whatever was started is stopped again and
    /// the error carries the failed member's log tail.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        if !options.binary.is_file() {
            bail!("no smsc binary at {}", options.binary.display());
        }
        let dir = match &options.dir {
            Some(d) => d.clone(),
            None => new_temp_dir()?,
        };
        fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.join("logs").display()))?;

        let keyspace = match &options.keyspace {
            Some(k) => k.clone(),
            None => format!("smsc_cluster_{:08x}", rand_u32()),
        };
        let mut cluster = Cluster {
            endpoints: Endpoints {
                brokers: options.brokers.clone().unwrap_or_default(),
                cql: options.cql.clone().unwrap_or_default(),
                keyspace,
                dir: dir.clone(),
                members: Vec::new(),
            },
            children: Vec::new(),
            engines: None,
            options,
        };
        // From here on, an early return drops `cluster`, which stops what was started.
        cluster.start_engines().await?;
        cluster.endpoints.members = cluster.plan()?;
        cluster.children = cluster.endpoints.members.iter().map(|_| None).collect();
        cluster.write_configs()?;

        // One member first: it creates the keyspace and applies the migrations, which the
        // others then find recorded (concurrent schema changes are what Cassandra handles
        // worst).
        cluster.spawn(0)?;
        cluster.wait_ready(&[0]).await?;
        let rest: Vec<usize> = (1..cluster.endpoints.members.len()).collect();
        for &i in &rest {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(&rest).await?;
        Ok(cluster)
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }
}
