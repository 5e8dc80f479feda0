//! Errors: [`ScyllaError`] when the store cannot be set up, and the driver's errors of
//! one operation as the store reports them ([`StoreError`]).

use scylla::errors::{
    DbError, ExecutionError, IntoRowsResultError, NewSessionError, NextPageError, NextRowError,
    PagerExecutionError, PrepareError, RequestAttemptError, RequestError,
};

use crate::StoreError;

/// Failure to set the store up (per-operation failures are [`StoreError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScyllaError {
    #[error("invalid ScyllaDB config: {key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("cannot connect to ScyllaDB")]
    Connect(#[source] Box<NewSessionError>),
    #[error("store.tls: {path}")]
    Tls {
        path: String,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("cannot prepare `{statement}`")]
    Prepare {
        statement: String,
        #[source]
        source: Box<PrepareError>,
    },
    /// `store.migrate` is off and the keyspace lacks migrations this build needs.
    #[error(
        "keyspace {keyspace} lacks schema migrations {missing:?} and store.migrate is off: run \
         `smsc migrate` with a role allowed to change the schema (the chart's migration Job)"
    )]
    SchemaBehind { keyspace: String, missing: Vec<u32> },
    #[error("schema migration {version} ({name}) failed")]
    Migrate {
        version: u32,
        name: &'static str,
        #[source]
        source: StoreError,
    },
}

/// A driver error as the store reports it: timeouts (client-side, or the coordinator's
/// read/write timeout) are `Timeout`; for a conditional write the outcome is then
/// unknown and the caller re-reads. Everything else is `Unavailable`.
pub(super) fn execution_error(e: ExecutionError) -> StoreError {
    match e {
        ExecutionError::RequestTimeout(_) => StoreError::Timeout,
        ExecutionError::LastAttemptError(e) => attempt_error(e),
        other => StoreError::unavailable_by("the request failed", other),
    }
}

fn attempt_error(e: RequestAttemptError) -> StoreError {
    match e {
        RequestAttemptError::DbError(db, reason) => db_error(db, &reason),
        other => StoreError::unavailable_by("the request failed", other),
    }
}

fn db_error(db: DbError, reason: &str) -> StoreError {
    match db {
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => StoreError::Timeout,
        other => StoreError::unavailable_by(format!("the database refused: {reason}"), other),
    }
}

fn request_error(e: RequestError) -> StoreError {
    match e {
        RequestError::RequestTimeout(_) => StoreError::Timeout,
        RequestError::LastAttemptError(e) => attempt_error(e),
        other => StoreError::unavailable_by("the request failed", other),
    }
}

pub(super) fn pager_error(e: PagerExecutionError) -> StoreError {
    match e {
        PagerExecutionError::NextPageError(e) => next_page_error(e),
        other => StoreError::unavailable_by("the paged query failed", other),
    }
}

fn next_page_error(e: NextPageError) -> StoreError {
    match e {
        NextPageError::RequestFailure(e) => request_error(e),
        other => StoreError::unavailable_by("the next page failed", other),
    }
}

pub(super) fn next_row_error(e: NextRowError) -> StoreError {
    match e {
        NextRowError::NextPageError(e) => next_page_error(e),
        NextRowError::RowDeserializationError(e) => StoreError::corrupt_by("a row", e),
        other => StoreError::unavailable_by("the next row failed", other),
    }
}

pub(super) fn rows_error(e: IntoRowsResultError) -> StoreError {
    StoreError::unavailable_by("an unexpected result", e)
}
