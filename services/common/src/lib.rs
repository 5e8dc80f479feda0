//! What every role of the SMSC shares.
//!
//! - [`bus`]: the `Bus` trait (Kafka in a cluster) and [`bus::embedded`].
//! - [`store`]: the `Store` trait (ScyllaDB in a cluster) and [`store::embedded`].
//! - [`ids`]: cluster-unique message ids without coordination.
#![forbid(unsafe_code)]

pub mod bus;
pub mod ids;
pub mod store;
