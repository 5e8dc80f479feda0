//! What every role of the SMSC shares.
//!
//! - [`bus`]: the `Bus` trait (Kafka in a cluster) and [`bus::embedded`].
//! - [`store`]: the `Store` trait (ScyllaDB in a cluster) and [`store::embedded`].
//! - [`ids`]: cluster-unique message ids without coordination.
//! - [`config`]: the one YAML config file, with `SMSC_*` environment overrides.
//! - [`grpc_tls`]: mutual TLS for the gRPC between pods.
//! - [`accounts`]: ESME accounts and the directory binds are checked against, reloaded
//!   on file change and SIGHUP.
//! - [`telemetry`]: tracing setup and the process's Prometheus metrics.
//! - [`admin`]: the `/metrics`, `/live`, `/ready` HTTP server and [`admin::Readiness`].
//! - [`shutdown`]: SIGTERM/SIGINT and SIGHUP.
//! - `engines` (feature `contract-tests`): private Apache Kafka brokers for tests
//!   that break them.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod bus;
pub mod config;
#[cfg(feature = "contract-tests")]
pub mod engines;
pub mod grpc_tls;
pub mod ids;
pub mod pipeline;
pub mod shutdown;
pub mod store;
pub mod telemetry;
