//! The [`Store`] over gRPC (`smsc.v1.StoreService`, `proto/smsc/v1/store.proto`), so
//! that the processes of a local cluster share one in-memory store.
//!
//! - [`StoreServer`] serves any [`Store`] (`smsc store-server` puts an
//!   [`EmbeddedStore`](super::embedded::EmbeddedStore) behind it).
//! - [`RemoteStore`] implements [`Store`] as a client of it: every call is bounded by a
//!   request timeout ([`StoreError::Timeout`]); a transport failure or a server that is
//!   down is [`StoreError::Unavailable`]; a reply that does not convert is
//!   [`StoreError::Corrupt`].
//! - The `*_to_proto` / `*_from_proto` functions convert between the store's types and
//!   the generated ones, checking every narrowing (a `uint32` that must fit a `u8`).
//!
//! A development tool, not a production store: the server keeps everything in the
//! memory of one process, so its restart loses every row. The semantics (conditional
//! writes, TTLs, page order) are the wrapped store's: the server adds none of its own.

use std::time::Duration;

#[cfg(doc)]
use crate::{Store, StoreError};

/// [`RemoteStore`], the client: a batching gRPC client that implements [`Store`].
mod client;
/// Conversions between the store's types and the generated ones, and store errors as
/// gRPC statuses.
mod convert;
/// [`StoreServer`]: `smsc.v1.StoreService` over any [`Store`].
mod server;
/// Round trips of every conversion, and of store errors through gRPC statuses.
#[cfg(test)]
mod tests;

pub use client::{RemoteStore, RemoteStoreConfig};
pub use convert::{
    ConvertError, address_from_proto, address_to_proto, applied_from_proto, applied_to_proto,
    bind_from_proto, bind_to_proto, error_from_status, error_to_status, lease_from_proto,
    lease_to_proto, message_from_proto, message_to_proto, notification_from_proto,
    notification_to_proto, page_from_proto, page_to_proto, slot_claim_from_proto,
    slot_claim_to_proto, update_from_proto, update_to_proto, upstream_entry_from_proto,
    upstream_entry_to_proto, upstream_link_from_proto, upstream_link_to_proto,
};
pub use server::StoreServer;

/// How long one store call may take, end to end, by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long establishing the connection may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest message either side decodes: a page of pending notifications can exceed
/// tonic's default of 4 MiB.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
