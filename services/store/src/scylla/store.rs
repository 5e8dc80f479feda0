//! [`ScyllaStore`]: the session (routing, consistency, TLS), the prepared statements and
//! the [`Store`] implementation on them.

use std::sync::Arc;
use std::time::Duration;

use crate::DeliveryState;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use smsc_runtime::config::ClientTls;

use super::config::ScyllaConfig;
use super::cql::Cql;
use super::errors::{ScyllaError, execution_error, next_row_error, pager_error, rows_error};
use super::rows::{
    CqlRow, ParkValues, QUOTA_CAS_ROUNDS, QuotaInsertValues, QuotaLwt, QuotaUpdateValues,
    RefreshSlotValues, SLOT_CLAIM_ROUNDS, SlotLwt, SlotValues, UpstreamLinkValues, applied,
    corrupt, lease_from_row, lease_to_row, message_from_row, message_lwt_outcome, message_to_row,
    notification_from_row, notification_to_row, quota_lwt, quota_used, slot_lwt, transition_ttl,
    ttl_secs, update_to_row, upstream_entry_from_row,
};
use crate::{
    Applied, Page, PendingNotification, SessionLease, SlotClaim, Store, StoreError, StoreResult,
    StoredMessage, Update, UpstreamEntry, UpstreamLink,
};

/// Rows per page of every paged read.
const PAGE_SIZE: i32 = 500;

#[derive(Debug)]
struct Prepared {
    insert_message: PreparedStatement,
    select_message: PreparedStatement,
    select_message_ttl: PreparedStatement,
    /// At LOCAL_SERIAL: the row as the last Paxos round left it.
    select_message_row: PreparedStatement,
    update_message: PreparedStatement,
    upsert_session: PreparedStatement,
    delete_session: PreparedStatement,
    select_sessions: PreparedStatement,
    upsert_pending: PreparedStatement,
    select_pending: PreparedStatement,
    select_pending_after: PreparedStatement,
    delete_pending: PreparedStatement,
    upsert_upstream_link: PreparedStatement,
    park_upstream_receipt: PreparedStatement,
    select_upstream: PreparedStatement,
    insert_slot: PreparedStatement,
    refresh_slot: PreparedStatement,
    delete_slot: PreparedStatement,
    /// At LOCAL_SERIAL, like `select_message_row`.
    select_quota: PreparedStatement,
    insert_quota: PreparedStatement,
    update_quota: PreparedStatement,
}

#[derive(Debug)]
pub struct ScyllaStore {
    session: Arc<Session>,
    statements: Prepared,
    config: ScyllaConfig,
}

/// A session with the store's routing and defaults.
pub async fn connect_session(config: &ScyllaConfig) -> Result<Session, ScyllaError> {
    config.validate()?;
    let policy = DefaultPolicy::builder()
        .prefer_datacenter(config.local_dc.clone())
        .token_aware(true)
        .build();
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(config.request_timeout))
        .load_balancing_policy(policy)
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.uris)
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(user, password);
    }
    if let Some(tls) = &config.tls {
        builder = builder.tls_context(Some(tls_connector(tls)?));
    }
    builder.build().await.map_err(|e| ScyllaError::Connect(Box::new(e)))
}

/// OpenSSL (the driver's TLS backend that shares librdkafka's library; its rustls one
/// would bring a second crypto provider) trusting `ca` only, with the client
/// certificate when one is configured.
pub(super) fn tls_connector(tls: &ClientTls) -> Result<SslConnectorBuilder, ScyllaError> {
    let at = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| ScyllaError::Tls { path, source }
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(at(&tls.ca))?;
    let pem = std::fs::read(&tls.ca).map_err(|e| ScyllaError::Config {
        key: "tls.ca",
        reason: format!("{}: {e}", tls.ca.display()),
    })?;
    let certs = X509::stack_from_pem(&pem).map_err(at(&tls.ca))?;
    if certs.is_empty() {
        let reason = format!("{} holds no PEM certificate", tls.ca.display());
        return Err(ScyllaError::Config { key: "tls.ca", reason });
    }
    let mut store = X509StoreBuilder::new().map_err(at(&tls.ca))?;
    for cert in certs {
        store.add_cert(cert).map_err(at(&tls.ca))?;
    }
    builder.set_cert_store(store.build());
    builder.set_verify(SslVerifyMode::PEER);
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        builder.set_certificate_chain_file(cert).map_err(at(cert))?;
        builder.set_private_key_file(key, SslFiletype::PEM).map_err(at(key))?;
        builder.check_private_key().map_err(at(key))?;
    }
    Ok(builder)
}

pub(super) async fn prepare(
    session: &Session,
    cql: &str,
    config: &ScyllaConfig,
    idempotent: bool,
) -> Result<PreparedStatement, ScyllaError> {
    let mut statement = session
        .prepare(cql)
        .await
        .map_err(|e| ScyllaError::Prepare { statement: cql.to_owned(), source: Box::new(e) })?;
    // Set on the statement, not only the session profile, so that a session passed to
    // `with_session` cannot weaken them.
    statement.set_consistency(Consistency::LocalQuorum);
    statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    statement.set_request_timeout(Some(config.request_timeout));
    statement.set_page_size(PAGE_SIZE);
    // Lets the driver retry reads and plain upserts; never a conditional write.
    statement.set_is_idempotent(idempotent);
    Ok(statement)
}

impl ScyllaStore {
    /// Connects, applies the schema (with `migrate` off: checks it) and prepares every
    /// statement.
    pub async fn connect(config: ScyllaConfig) -> Result<Self, ScyllaError> {
        let session = connect_session(&config).await?;
        if config.migrate {
            Self::migrate(&session, &config).await?;
        } else {
            Self::check_schema(&session, &config).await?;
        }
        Self::with_session(Arc::new(session), config).await
    }

    /// Prepares every statement on an existing session; the schema must exist.
    pub async fn with_session(
        session: Arc<Session>,
        config: ScyllaConfig,
    ) -> Result<Self, ScyllaError> {
        config.validate()?;
        let cql = Cql::new(&config.keyspace);
        let s = &*session;
        let c = &config;
        let mut select_message_row = prepare(s, &cql.select_message_row, c, true).await?;
        select_message_row.set_consistency(Consistency::LocalSerial);
        let mut select_quota = prepare(s, &cql.select_quota, c, true).await?;
        select_quota.set_consistency(Consistency::LocalSerial);
        let statements = Prepared {
            insert_message: prepare(s, &cql.insert_message, c, false).await?,
            select_message: prepare(s, &cql.select_message, c, true).await?,
            select_message_ttl: prepare(s, &cql.select_message_ttl, c, true).await?,
            select_message_row,
            update_message: prepare(s, &cql.update_message, c, false).await?,
            upsert_session: prepare(s, &cql.upsert_session, c, true).await?,
            delete_session: prepare(s, &cql.delete_session, c, true).await?,
            select_sessions: prepare(s, &cql.select_sessions, c, true).await?,
            upsert_pending: prepare(s, &cql.upsert_pending, c, true).await?,
            select_pending: prepare(s, &cql.select_pending, c, true).await?,
            select_pending_after: prepare(s, &cql.select_pending_after, c, true).await?,
            delete_pending: prepare(s, &cql.delete_pending, c, false).await?,
            upsert_upstream_link: prepare(s, &cql.upsert_upstream_link, c, true).await?,
            park_upstream_receipt: prepare(s, &cql.park_upstream_receipt, c, true).await?,
            select_upstream: prepare(s, &cql.select_upstream, c, true).await?,
            insert_slot: prepare(s, &cql.insert_slot, c, false).await?,
            refresh_slot: prepare(s, &cql.refresh_slot, c, false).await?,
            delete_slot: prepare(s, &cql.delete_slot, c, false).await?,
            select_quota,
            insert_quota: prepare(s, &cql.insert_quota, c, false).await?,
            update_quota: prepare(s, &cql.update_quota, c, false).await?,
        };
        Ok(Self { session, statements, config })
    }

    pub fn config(&self) -> &ScyllaConfig {
        &self.config
    }

    /// The one result row of an LWT.
    async fn lwt(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<CqlRow> {
        let result =
            self.session.execute_unpaged(statement, values).await.map_err(execution_error)?;
        first_row(result)?.ok_or_else(|| StoreError::corrupt("LWT result: no row"))
    }

    /// Sets the quota counter of `system_id` for `period` to what `change` makes of the
    /// value seen (`seen`, then each failed compare-and-set's), by compare-and-set.
    async fn change_quota<T>(
        &self,
        system_id: &str,
        period: &str,
        ttl: Duration,
        mut seen: Option<u64>,
        change: impl Fn(u64) -> (u64, T),
    ) -> StoreResult<T> {
        let ttl = ttl_secs(ttl);
        let to_cql = |n: u64| {
            i64::try_from(n).map_err(|_| corrupt("quota_usage", "used", format_args!("{n}")))
        };
        for _ in 0..QUOTA_CAS_ROUNDS {
            let (used, out) = change(seen.unwrap_or(0));
            let row = match seen {
                // Unchanged (nothing left to take): no write.
                Some(expected) if expected == used => return Ok(out),
                Some(expected) => {
                    let (used, expected) = (to_cql(used)?, to_cql(expected)?);
                    let values = QuotaUpdateValues { ttl, used, system_id, period, expected };
                    self.lwt(&self.statements.update_quota, values).await?
                }
                None => {
                    let values = QuotaInsertValues { system_id, period, used: to_cql(used)?, ttl };
                    self.lwt(&self.statements.insert_quota, values).await?
                }
            };
            match quota_lwt(&row)? {
                QuotaLwt::Applied => return Ok(out),
                QuotaLwt::Saw(now) => seen = now,
            }
        }
        Err(StoreError::unavailable(format!(
            "quota_usage: the counter of {system_id}/{period} kept changing"
        )))
    }

    /// The row as of the last Paxos round (a linearizable read).
    async fn current_row(
        &self,
        message_id: &str,
        dest_index: i64,
    ) -> StoreResult<Option<StoredMessage>> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_message_row, (message_id, dest_index))
            .await
            .map_err(execution_error)?;
        match first_row(result)? {
            Some(row) => message_from_row(&row),
            None => Ok(None),
        }
    }

    async fn message_outcome(
        &self,
        row: &CqlRow,
        message_id: &str,
        dest_index: u32,
    ) -> StoreResult<Applied> {
        match message_lwt_outcome(row)? {
            Some(outcome) => Ok(outcome),
            None => Ok(Applied::No(self.current_row(message_id, i64::from(dest_index)).await?)),
        }
    }

    async fn transition_inner(
        &self,
        message_id: &str,
        dest_index: u32,
        from: DeliveryState,
        update: &Update,
    ) -> StoreResult<Applied> {
        let dest = i64::from(dest_index);
        let result = self
            .session
            .execute_unpaged(&self.statements.select_message_ttl, (message_id, dest))
            .await
            .map_err(execution_error)?;
        let Some(row) = first_row(result)? else { return Ok(Applied::No(None)) };
        let Some(ttl) = transition_ttl(&row)? else { return Ok(Applied::No(None)) };
        let values = update_to_row(message_id, dest_index, from, update, ttl)?;
        let row = self.lwt(&self.statements.update_message, values).await?;
        self.message_outcome(&row, message_id, dest_index).await
    }
}

fn first_row(result: QueryResult) -> StoreResult<Option<CqlRow>> {
    let rows = result.into_rows_result().map_err(rows_error)?;
    let mut rows =
        rows.rows::<CqlRow>().map_err(|e| StoreError::corrupt_by("the result's rows", e))?;
    rows.next().transpose().map_err(|e| StoreError::corrupt_by("a row", e))
}

/// Every row of a paged read, mapped as they arrive; at most `limit` of them.
async fn select_mapped<T>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    limit: usize,
    mut map: impl FnMut(&CqlRow) -> StoreResult<Option<T>>,
) -> StoreResult<Vec<T>> {
    let pager = session.execute_iter(statement.clone(), values).await.map_err(pager_error)?;
    let mut rows = pager
        .rows_stream::<CqlRow>()
        .map_err(|e| StoreError::corrupt_by("the result's rows", e))?;
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(row) = rows.next().await
    {
        if let Some(item) = map(&row.map_err(next_row_error)?)? {
            out.push(item);
        }
    }
    Ok(out)
}

pub(super) async fn select_all(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> StoreResult<Vec<CqlRow>> {
    select_mapped(session, statement, values, usize::MAX, |row| Ok(Some(row.clone()))).await
}

impl Store for ScyllaStore {
    fn insert_message(&self, message: StoredMessage) -> BoxFuture<'_, StoreResult<Applied>> {
        Box::pin(async move {
            let values = message_to_row(&message, ttl_secs(self.config.message_ttl))?;
            let row = self.lwt(&self.statements.insert_message, values).await?;
            self.message_outcome(&row, &message.message_id, message.dest_index).await
        })
    }

    fn get_message(&self, message_id: &str) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>> {
        let message_id = message_id.to_owned();
        Box::pin(async move {
            let statement = &self.statements.select_message;
            select_mapped(&self.session, statement, (&message_id,), usize::MAX, message_from_row)
                .await
        })
    }

    fn transition(
        &self,
        message_id: &str,
        dest_index: u32,
        from: DeliveryState,
        update: Update,
    ) -> BoxFuture<'_, StoreResult<Applied>> {
        let message_id = message_id.to_owned();
        Box::pin(async move { self.transition_inner(&message_id, dest_index, from, &update).await })
    }

    fn put_session(&self, lease: SessionLease, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let values = lease_to_row(&lease, ttl_secs(ttl));
            self.session
                .execute_unpaged(&self.statements.upsert_session, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    fn remove_session(&self, system_id: &str, session_id: &str) -> BoxFuture<'_, StoreResult<()>> {
        let (system_id, session_id) = (system_id.to_owned(), session_id.to_owned());
        Box::pin(async move {
            self.session
                .execute_unpaged(&self.statements.delete_session, (&system_id, &session_id))
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    /// Ordered by session_id.
    fn sessions(&self, system_id: &str) -> BoxFuture<'_, StoreResult<Vec<SessionLease>>> {
        let system_id = system_id.to_owned();
        Box::pin(async move {
            let statement = &self.statements.select_sessions;
            select_mapped(&self.session, statement, (&system_id,), usize::MAX, |row| {
                lease_from_row(row).map(Some)
            })
            .await
        })
    }

    /// An upsert, like the embedded store: pushing an id again replaces it.
    fn push_pending(
        &self,
        system_id: &str,
        notification: PendingNotification,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let system_id = system_id.to_owned();
        Box::pin(async move {
            let ttl = ttl_secs(self.config.message_ttl);
            let values = notification_to_row(&system_id, &notification, ttl);
            self.session
                .execute_unpaged(&self.statements.upsert_pending, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    /// Reads one row past `limit` to tell whether the page ends the list.
    fn pending(
        &self,
        system_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        let system_id = system_id.to_owned();
        let after = after.map(str::to_owned);
        Box::pin(async move {
            if limit == 0 {
                return Ok(Page { items: Vec::new(), next: after });
            }
            let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
            let wanted = usize::try_from(fetch).unwrap_or(usize::MAX);
            let map = |row: &CqlRow| notification_from_row(row).map(Some);
            let st = &self.statements;
            let mut items = match &after {
                None => {
                    let values = (&system_id, fetch);
                    select_mapped(&self.session, &st.select_pending, values, wanted, map).await?
                }
                Some(after) => {
                    let values = (&system_id, after, fetch);
                    select_mapped(&self.session, &st.select_pending_after, values, wanted, map)
                        .await?
                }
            };
            let more = items.len() > limit;
            items.truncate(limit);
            let next = if more { items.last().map(|n| n.id.clone()) } else { None };
            Ok(Page { items, next })
        })
    }

    fn delete_pending(&self, system_id: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (system_id, id) = (system_id.to_owned(), id.to_owned());
        Box::pin(async move {
            let row = self.lwt(&self.statements.delete_pending, (&system_id, &id)).await?;
            applied(&row)
        })
    }

    fn put_upstream_link(
        &self,
        connector: &str,
        upstream_id: &str,
        link: UpstreamLink,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (connector, upstream_id) = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            let values = UpstreamLinkValues {
                connector: &connector,
                upstream_id: &upstream_id,
                message_id: &link.message_id,
                dest_index: i64::from(link.dest_index),
                ttl: ttl_secs(ttl),
            };
            self.session
                .execute_unpaged(&self.statements.upsert_upstream_link, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    fn park_upstream_receipt(
        &self,
        connector: &str,
        upstream_id: &str,
        deliver_sm: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (connector, upstream_id) = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            let values = ParkValues {
                connector: &connector,
                upstream_id: &upstream_id,
                parked_receipt: &deliver_sm,
                ttl: ttl_secs(ttl),
            };
            self.session
                .execute_unpaged(&self.statements.park_upstream_receipt, values)
                .await
                .map_err(execution_error)?;
            Ok(())
        })
    }

    fn upstream_entry(
        &self,
        connector: &str,
        upstream_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<UpstreamEntry>>> {
        let (connector, upstream_id) = (connector.to_owned(), upstream_id.to_owned());
        Box::pin(async move {
            let result = self
                .session
                .execute_unpaged(&self.statements.select_upstream, (&connector, &upstream_id))
                .await
                .map_err(execution_error)?;
            match first_row(result)? {
                Some(row) => upstream_entry_from_row(&row),
                None => Ok(None),
            }
        })
    }

    fn claim_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<SlotClaim>> {
        let (pool, holder) = (pool.to_owned(), holder.to_owned());
        Box::pin(async move {
            let slot = i32::try_from(slot)
                .map_err(|_| corrupt("bind_slots", "slot", format_args!("{slot} is not an int")))?;
            let ttl = ttl_secs(ttl);
            for _ in 0..SLOT_CLAIM_ROUNDS {
                let values = SlotValues { pool: &pool, slot, holder: &holder, ttl };
                match slot_lwt(&self.lwt(&self.statements.insert_slot, values).await?)? {
                    SlotLwt::Applied => return Ok(SlotClaim::Held),
                    SlotLwt::Gone => continue,
                    SlotLwt::HeldBy(h) if h != holder => return Ok(SlotClaim::Busy { holder: h }),
                    SlotLwt::HeldBy(_) => {}
                }
                let values = RefreshSlotValues {
                    ttl,
                    holder: &holder,
                    pool: &pool,
                    slot,
                    expected_holder: &holder,
                };
                match slot_lwt(&self.lwt(&self.statements.refresh_slot, values).await?)? {
                    SlotLwt::Applied => return Ok(SlotClaim::Held),
                    SlotLwt::HeldBy(h) if h != holder => return Ok(SlotClaim::Busy { holder: h }),
                    SlotLwt::HeldBy(_) | SlotLwt::Gone => continue,
                }
            }
            Err(StoreError::unavailable(format!(
                "bind_slots: the lease of {pool}/{slot} kept changing"
            )))
        })
    }

    fn release_slot(
        &self,
        pool: &str,
        slot: u32,
        holder: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (pool, holder) = (pool.to_owned(), holder.to_owned());
        Box::pin(async move {
            let Ok(slot) = i32::try_from(slot) else { return Ok(false) };
            let row = self.lwt(&self.statements.delete_slot, (&pool, slot, &holder)).await?;
            applied(&row)
        })
    }

    fn take_quota(
        &self,
        system_id: &str,
        period: &str,
        want: u64,
        limit: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        let (system_id, period) = (system_id.to_owned(), period.to_owned());
        Box::pin(async move {
            // The first take of a period inserts; a failed insert tells what is there.
            let take = |used| crate::quota_take(used, want, limit);
            self.change_quota(&system_id, &period, ttl, None, take).await
        })
    }

    fn give_back_quota(
        &self,
        system_id: &str,
        period: &str,
        n: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (system_id, period) = (system_id.to_owned(), period.to_owned());
        Box::pin(async move {
            let result = self
                .session
                .execute_unpaged(&self.statements.select_quota, (&system_id, &period))
                .await
                .map_err(execution_error)?;
            let Some(seen) = first_row(result)?.map(|row| quota_used(&row)).transpose()?.flatten()
            else {
                return Ok(()); // expired: nothing to give back to
            };
            let change = |used: u64| (used.saturating_sub(n), ());
            self.change_quota(&system_id, &period, ttl, Some(seen), change).await
        })
    }
}
