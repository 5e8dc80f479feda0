//! The Store contract suite against a real ScyllaDB.
//!
//! Runs when `SCYLLA_URI` is set (`host:port`, comma-separated for several contact
//! points); `SCYLLA_DC` names the local datacenter (default `datacenter1`) and
//! `SCYLLA_RF` the replication factor (default 1). Each run migrates into a fresh
//! keyspace with a random suffix and drops it when the suite passed (a failed run leaves
//! it for inspection). Messages live 4 s there: the TTL properties wait in real time.
//!
//! Without `SCYLLA_URI` the test prints a SKIPPED line to stderr and returns: no CQL
//! server can run on the development machines, and nothing here pretends to be one.

use std::sync::Arc;
use std::time::Duration;

use scylla::statement::unprepared::Statement;
use smsc_runtime::config::ClientTls;
use smsc_store::contract::{self, RealTime};
use smsc_store::scylla::{ScyllaConfig, ScyllaError, ScyllaStore, connect_session};

/// Long enough for the suite's writes to land, short enough to wait out twice.
const MESSAGE_TTL: Duration = Duration::from_secs(4);

fn config(uri: &str) -> ScyllaConfig {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    ScyllaConfig {
        uris: uri.split(',').map(|u| u.trim().to_owned()).collect(),
        keyspace: format!("smsc_contract_{:08x}", rand::random::<u32>()),
        local_dc: env("SCYLLA_DC").unwrap_or_else(|| "datacenter1".to_owned()),
        replication_factor: env("SCYLLA_RF").map_or(1, |rf| rf.parse().expect("SCYLLA_RF")),
        message_ttl: MESSAGE_TTL,
        request_timeout: Duration::from_secs(10),
        username: env("SCYLLA_USERNAME"),
        password: env("SCYLLA_PASSWORD"),
        // SCYLLA_CA: run the tier over TLS (a PEM CA the nodes' certificates chain to).
        tls: env("SCYLLA_CA").map(|ca| ClientTls { ca: ca.into(), cert: None, key: None }),
        migrate: true,
    }
}

/// Two workers, so the racing transitions really run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_keeps_the_store_contract() {
    let Some(uri) = std::env::var("SCYLLA_URI").ok().filter(|u| !u.is_empty()) else {
        eprintln!("SKIPPED: ScyllaDB contract tier (SCYLLA_URI not set)");
        return;
    };
    let config = config(&uri);
    eprintln!("ScyllaDB contract tier: {uri}, keyspace {}", config.keyspace);
    // A role that may not migrate (store.migrate off) finds no schema and says what to run.
    let checking = ScyllaConfig { migrate: false, ..config.clone() };
    let Err(e) = ScyllaStore::connect(checking.clone()).await else {
        panic!("connected without migrating before any migration");
    };
    assert!(
        matches!(&e, ScyllaError::SchemaBehind { missing, .. } if missing.first() == Some(&1)),
        "{e:?}"
    );
    assert!(e.to_string().contains("smsc migrate"), "{e}");
    let store = ScyllaStore::connect(config.clone()).await.expect("connect and migrate");
    // Once migrated, it connects.
    ScyllaStore::connect(checking).await.expect("connect without migrating, schema applied");

    // Migrating again is a no-op: every version is recorded.
    let session = connect_session(&config).await.expect("second session");
    let again = ScyllaStore::migrate(&session, &config).await.expect("migrate again");
    assert!(again.is_empty(), "versions applied twice: {again:?}");
    // A migration that added its columns but was not recorded (the process stopped in
    // between, or another one migrated at the same time) runs again without failing.
    let forget = Statement::new(format!(
        "DELETE FROM {}.schema_migrations WHERE component = 'store' AND version = 5",
        config.keyspace
    ));
    session.query_unpaged(forget, ()).await.expect("forget migration 5");
    let redone = ScyllaStore::migrate(&session, &config).await.expect("migrate over added columns");
    assert_eq!(redone, [5], "recorded again");

    contract::run_all(Arc::new(store), &RealTime, MESSAGE_TTL).await;

    let drop = Statement::new(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace));
    session.query_unpaged(drop, ()).await.expect("drop the test keyspace");
}
