//! What every SMSC process runs on, whatever its role.
//!
//! - [`telemetry`]: tracing setup, error chains, the process's one Prometheus registry.
//! - [`admin`]: the `/metrics`, `/live`, `/ready` HTTP server and [`admin::Readiness`].
//! - [`shutdown`]: SIGTERM/SIGINT and SIGHUP.
//! - [`grpc_tls`]: mutual TLS for the gRPC between pods.
//! - [`ids`]: cluster-unique message ids without coordination.
//! - [`listen`]: binding listeners, naming the config key on failure.
//! - [`clock`]: time as the store and the embedded bus see it.
//! - [`config`]: how the one YAML config file is read (errors, `SMSC_*` overrides); each
//!   role declares its own section.
//! - `testing` (feature `testing`): time under a test's control, for the contract suites.
#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod config;
pub mod grpc_tls;
pub mod ids;
pub mod listen;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
