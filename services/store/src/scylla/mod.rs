//! The ScyllaDB [`Store`]: the cluster implementation of the store contract.
//!
//! - Schema: versioned CQL files in `services/store/cql/`, embedded at build time and
//!   applied at start-up by [`ScyllaStore::migrate`] (every DDL is `IF NOT EXISTS`;
//!   `schema_migrations` records the versions applied).
//! - Every statement is prepared once in [`ScyllaStore::with_session`] and runs at
//!   LOCAL_QUORUM (LOCAL_SERIAL for the Paxos phase of lightweight transactions) with the
//!   configured request timeout, routed token-aware to the local datacenter.
//! - State transitions are lightweight transactions: `INSERT … IF NOT EXISTS`,
//!   `UPDATE … IF state = …`, `DELETE … IF EXISTS`.
//! - The mapping between our types and CQL rows is a set of pure functions
//!   (`*_to_row` / `*_from_row`), unit-tested offline like the CQL text; the contract
//!   suite runs against a real cluster in `tests/contract_scylla.rs` when `SCYLLA_URI`
//!   is set.
//!
//! Time-to-live: a row's TTL is set by the write (`USING TTL`). A transition writes its
//! cells with the TTL the row has left, read just before, so that they expire with it.
//! TTLs have one-second granularity on the server: an updated cell may outlive the cells
//! of the insert by up to about a second. Such a remnant has no `system_id` and is read as
//! "no row" (see [`message_from_row`](rows::message_from_row)).

#[cfg(doc)]
use crate::{Store, StoreError};

/// [`ScyllaConfig`]: keys, defaults, validation, from the config file's `store` section.
mod config;
/// The CQL text of every statement the store prepares, and the column lists.
mod cql;
/// [`ScyllaError`] (set-up failures), and driver errors as [`StoreError`]s.
mod errors;
/// Row mapping: bind values of the writes, `CqlRow` and the `*_to_row` / `*_from_row`
/// functions, LWT results.
mod rows;
/// The versioned CQL files and [`ScyllaStore::migrate`].
mod schema;
/// [`ScyllaStore`]: the session, the prepared statements, the [`Store`] impl.
mod store;
/// Offline tests of the CQL text, the migrations, the config, the row mapping and the
/// driver errors.
#[cfg(test)]
mod tests;

pub use config::ScyllaConfig;
pub use errors::ScyllaError;
pub use schema::migrate;
pub use store::{ScyllaStore, connect_session};
