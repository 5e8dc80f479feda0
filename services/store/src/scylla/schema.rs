//! The schema: versioned CQL files in `services/store/cql/`, embedded at build time, and
//! their application ([`ScyllaStore::migrate`], [`migrate`]). Every DDL is
//! `IF NOT EXISTS`; `schema_migrations` records the versions applied.

use std::collections::BTreeSet;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlTimestamp, CqlValue};

use super::config::ScyllaConfig;
use super::cql::Cql;
use super::errors::{ScyllaError, execution_error};
use super::rows::corrupt;
use super::store::{ScyllaStore, connect_session, prepare, select_all};

/// One versioned CQL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Migration {
    pub(super) version: u32,
    pub(super) name: &'static str,
    cql: &'static str,
}

/// In version order. The first creates `schema_migrations` and runs at every start.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "001_keyspace", cql: include_str!("../../cql/001_keyspace.cql") },
    Migration { version: 2, name: "002_tables", cql: include_str!("../../cql/002_tables.cql") },
    Migration { version: 3, name: "003_upstream", cql: include_str!("../../cql/003_upstream.cql") },
    Migration { version: 4, name: "004_quota", cql: include_str!("../../cql/004_quota.cql") },
    Migration { version: 5, name: "005_cdr", cql: include_str!("../../cql/005_cdr.cql") },
];

/// The `component` key of our rows in `schema_migrations`.
const MIGRATION_COMPONENT: &str = "store";

impl Migration {
    /// The file's statements with the config substituted, comments dropped.
    pub(super) fn statements(&self, config: &ScyllaConfig) -> Vec<String> {
        let text: String = self
            .cql
            .lines()
            .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("${keyspace}", &config.keyspace)
            .replace("${local_dc}", &config.local_dc)
            .replace("${replication_factor}", &config.replication_factor.to_string());
        text.split(';')
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Migrations still to apply, in version order; the bootstrap one always.
pub(super) fn pending_migrations(
    applied: &BTreeSet<u32>,
) -> impl Iterator<Item = &'static Migration> + '_ {
    MIGRATIONS
        .iter()
        .enumerate()
        .filter(|(i, m)| *i == 0 || !applied.contains(&m.version))
        .map(|(_, m)| m)
}

/// Applies the schema (for `smsc migrate`): connects, migrates, disconnects.
pub async fn migrate(config: &ScyllaConfig) -> Result<Vec<u32>, ScyllaError> {
    let session = connect_session(config).await?;
    ScyllaStore::migrate(&session, config).await
}

/// Timeout for schema changes, which wait for schema agreement across the cluster.
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

impl ScyllaStore {
    /// Applies the migrations not yet recorded in `schema_migrations`, in version order,
    /// and records them. Returns the versions applied now.
    pub async fn migrate(
        session: &Session,
        config: &ScyllaConfig,
    ) -> Result<Vec<u32>, ScyllaError> {
        config.validate()?;
        let cql = Cql::new(&config.keyspace);
        let failed = |m: &Migration| {
            let (version, name) = (m.version, m.name);
            move |source| ScyllaError::Migrate { version, name, source }
        };
        let run_file = |m: &'static Migration| async move {
            for text in m.statements(config) {
                let adds_column = text.starts_with("ALTER TABLE") && text.contains(" ADD ");
                let mut statement = Statement::new(text);
                statement.set_request_timeout(Some(config.request_timeout.max(DDL_TIMEOUT)));
                match session.query_unpaged(statement, ()).await {
                    Ok(_) => {}
                    // Added by another process migrating at the same time (or by a run
                    // that stopped before recording the migration). Cassandra says
                    // "already exists", ScyllaDB "conflicts with an existing column".
                    Err(e) if adds_column && column_exists(&e.to_string()) => {}
                    Err(e) => return Err(failed(m)(execution_error(e))),
                }
            }
            Ok::<_, ScyllaError>(())
        };

        let bootstrap = &MIGRATIONS[0];
        run_file(bootstrap).await?;
        let applied = Self::applied_migrations(session, config).await?;
        let record = prepare(session, &cql.insert_migration, config, false).await?;

        let mut done = Vec::new();
        for m in pending_migrations(&applied) {
            if m.version != bootstrap.version {
                run_file(m).await?;
            }
            if !applied.contains(&m.version) {
                let version = i32::try_from(m.version).unwrap_or(i32::MAX);
                let now = CqlTimestamp(crate::Clock::now_ms(&crate::SystemClock));
                let values = (MIGRATION_COMPONENT, version, m.name, now);
                session
                    .execute_unpaged(&record, values)
                    .await
                    .map_err(execution_error)
                    .map_err(failed(m))?;
                done.push(m.version);
            }
        }
        Ok(done)
    }

    /// The versions `schema_migrations` records.
    async fn applied_migrations(
        session: &Session,
        config: &ScyllaConfig,
    ) -> Result<BTreeSet<u32>, ScyllaError> {
        let cql = Cql::new(&config.keyspace);
        let bootstrap = &MIGRATIONS[0];
        let failed = |source| ScyllaError::Migrate {
            version: bootstrap.version,
            name: bootstrap.name,
            source,
        };
        let select = prepare(session, &cql.select_migrations, config, true).await?;
        let rows = select_all(session, &select, (MIGRATION_COMPONENT,)).await.map_err(failed)?;
        let mut applied = BTreeSet::new();
        for row in rows {
            match row.get("version") {
                Some(Some(CqlValue::Int(v))) if *v >= 0 => applied.insert(v.unsigned_abs()),
                other => {
                    let e = corrupt("schema_migrations", "version", format_args!("{other:?}"));
                    return Err(failed(e));
                }
            };
        }
        Ok(applied)
    }

    /// With `store.migrate` off: the schema must already be this build's (applied by
    /// `smsc migrate`, the chart's migration Job), read with SELECT only.
    pub async fn check_schema(session: &Session, config: &ScyllaConfig) -> Result<(), ScyllaError> {
        config.validate()?;
        let applied = match Self::applied_migrations(session, config).await {
            Ok(applied) => applied,
            // No keyspace or no schema_migrations table yet: nothing applied. (Other
            // refusals, such as a role without SELECT, stay what they are.)
            Err(e @ ScyllaError::Prepare { .. }) if names_a_missing_table(&e) => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        let missing: Vec<u32> =
            MIGRATIONS.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ScyllaError::SchemaBehind { keyspace: config.keyspace.clone(), missing })
    }
}

/// Whether a prepare failed because the keyspace or table does not exist (Cassandra and
/// ScyllaDB say "unconfigured table" or "Keyspace ... does not exist").
fn names_a_missing_table(e: &ScyllaError) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("unconfigured table") || text.contains("does not exist") {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error refusing an `ADD` of a column the table has.
fn column_exists(error: &str) -> bool {
    error.contains("already exists") || error.contains("conflicts with an existing column")
}
