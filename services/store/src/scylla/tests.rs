use std::collections::BTreeSet;
use std::time::Duration;

use crate::DeliveryState;
use bytes::Bytes;
use scylla::deserialize::FrameSlice;
use scylla::deserialize::value::DeserializeValue;
use scylla::errors::{
    DbError, DeserializationError, ExecutionError, NextPageError, NextRowError,
    RequestAttemptError, RequestError, WriteType,
};
use scylla::frame::response::result::{ColumnSpec, ColumnType, NativeType, TableSpec};
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::writers::RowWriter;
use scylla::statement::Consistency;
use scylla::value::CqlValue;
use smsc_runtime::config::ClientTls;

use super::config::{MAX_TTL_SECS, ScyllaConfig};
use super::cql::{Cql, MESSAGE_COLUMNS, UPDATABLE_COLUMNS};
use super::errors::{ScyllaError, execution_error, next_row_error};
use super::rows::{
    CqlRow, ParkValues, QuotaLwt, RefreshSlotValues, SlotLwt, SlotValues, UpstreamLinkValues,
    applied, lease_from_row, lease_to_row, message_from_row, message_lwt_outcome, message_to_row,
    notification_from_row, notification_to_row, quota_lwt, slot_lwt, state_to_cql, transition_ttl,
    ttl_secs, update_to_row, upstream_entry_from_row,
};
use super::schema::{MIGRATIONS, pending_migrations};
use super::store::tls_connector;
use crate::config::StoreConfig;
use crate::contract::{sample_lease, sample_message};
use crate::{
    Address, Applied, BindKind, NotificationKind, PendingNotification, SessionLease, StoreError,
    StoreResult, StoredMessage, Update, UpstreamEntry, UpstreamLink,
};

const KS: &str = "smsc_test";

fn config() -> ScyllaConfig {
    ScyllaConfig {
        keyspace: KS.to_owned(),
        local_dc: "dc-east".to_owned(),
        ..ScyllaConfig::default()
    }
}

#[test]
fn from_config_reads_the_password_file_and_debug_hides_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret \n").expect("write");
    let yaml = format!(
        "{{ kind: scylla, uris: ['10.0.0.1:9042'], keyspace: ks, local_dc: eu, \
           auth: {{ username: smsc, password_file: {} }}, tls: {{ ca: /s/ca.crt }} }}",
        file.display()
    );
    let store: StoreConfig = serde_yaml::from_str(&yaml).expect("store section");
    let c = ScyllaConfig::from_config(&store).expect("config");
    assert_eq!(c.username.as_deref(), Some("smsc"));
    assert_eq!(c.password.as_deref(), Some("s3cret "), "only the final newline goes");
    assert_eq!(c.tls.as_ref().map(|t| t.ca.as_path()), Some(std::path::Path::new("/s/ca.crt")));
    assert_eq!(
        (c.uris.as_slice(), c.keyspace.as_str(), c.local_dc.as_str()),
        (&["10.0.0.1:9042".to_owned()][..], "ks", "eu")
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains("s3cret") && debug.contains("<redacted>"), "{debug}");

    std::fs::remove_file(&file).expect("remove");
    let e = ScyllaConfig::from_config(&store).expect_err("missing password file");
    assert!(matches!(e, ScyllaError::Config { key: "auth.password_file", .. }), "{e:?}");
    let none = ScyllaConfig::from_config(&StoreConfig::default()).expect("config");
    assert_eq!((none.username, none.password, none.tls), (None, None, None));
}

#[test]
fn a_bad_tls_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("garbage.pem");
    std::fs::write(&not_pem, "not a certificate").expect("write");
    let ca = dir.path().join("ca.crt");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["ca".to_owned()]).expect("params");
    std::fs::write(&ca, cert.self_signed(&key).expect("cert").pem()).expect("write");
    let tls = |ca: &std::path::Path, cert: Option<&std::path::Path>| ClientTls {
        ca: ca.to_owned(),
        cert: cert.map(ToOwned::to_owned),
        key: cert.map(ToOwned::to_owned),
    };
    for bad_ca in [not_pem.clone(), dir.path().join("missing.crt")] {
        let e = tls_connector(&tls(&bad_ca, None)).err().expect("a bad CA is an error");
        assert!(matches!(e, ScyllaError::Config { key: "tls.ca", .. }), "{e:?}");
    }
    assert!(tls_connector(&tls(&ca, None)).is_ok(), "a CA alone is enough");
    let e = tls_connector(&tls(&ca, Some(&not_pem))).err().expect("a bad client certificate");
    assert!(matches!(&e, ScyllaError::Tls { path, .. } if path.ends_with("garbage.pem")), "{e:?}");
}

/// Every statement of every migration file, rendered for `config()`.
fn ddl() -> Vec<String> {
    MIGRATIONS.iter().flat_map(|m| m.statements(&config())).collect()
}

/// (name, CQL type) of each column of `table`, from its CREATE TABLE.
fn schema(table: &str) -> Vec<(String, String)> {
    let head = format!("CREATE TABLE IF NOT EXISTS {KS}.{table} (");
    let statements = ddl();
    let create = statements.iter().find(|s| s.starts_with(&head)).expect("table in the DDL");
    let body = &create[head.len()..create.find("PRIMARY KEY").expect("primary key")];
    let mut columns: Vec<(String, String)> = body
        .split(',')
        .filter_map(|col| {
            let mut words = col.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect();
    // And the columns later migrations add.
    let alter = format!("ALTER TABLE {KS}.{table} ADD ");
    for added in statements.iter().filter_map(|s| s.strip_prefix(&alter)) {
        let mut words = added.split_whitespace();
        if let (Some(name), Some(ty)) = (words.next(), words.next()) {
            columns.push((name.to_owned(), ty.to_owned()));
        }
    }
    columns
}

fn native(cql_type: &str) -> ColumnType<'static> {
    ColumnType::Native(match cql_type {
        "text" => NativeType::Text,
        "bigint" => NativeType::BigInt,
        "int" => NativeType::Int,
        "smallint" => NativeType::SmallInt,
        "tinyint" => NativeType::TinyInt,
        "blob" => NativeType::Blob,
        "timestamp" => NativeType::Timestamp,
        "boolean" => NativeType::Boolean,
        other => panic!("type {other} not in the test's table"),
    })
}

fn spec(table: &str, name: &str, cql_type: &str) -> ColumnSpec<'static> {
    ColumnSpec::owned(
        name.to_owned(),
        native(cql_type),
        TableSpec::owned(KS.to_owned(), table.to_owned()),
    )
}

/// The bind markers of an INSERT as the server would describe them: its column list
/// typed from the schema, then `[ttl]`.
fn insert_specs(table: &str, statement: &str) -> Vec<ColumnSpec<'static>> {
    let types = schema(table);
    let cols = &statement[statement.find('(').expect("(") + 1..statement.find(')').expect(")")];
    let mut specs: Vec<_> = cols
        .split(',')
        .map(|c| c.trim())
        .map(|c| {
            let (_, t) = types.iter().find(|(n, _)| n == c).expect("inserted column in the schema");
            spec(table, c, t)
        })
        .collect();
    assert!(statement.ends_with("USING TTL ?"), "{statement}");
    specs.push(spec(table, "[ttl]", "int"));
    specs
}

/// The raw cells a row serializes to: `None` null, `Some(None)` unset.
fn serialize(values: &impl SerializeRow, specs: &[ColumnSpec<'_>]) -> Vec<Option<Option<Vec<u8>>>> {
    let mut buf = Vec::new();
    let ctx = RowSerializationContext::from_specs(specs);
    values
        .serialize(&ctx, &mut RowWriter::new(&mut buf))
        .expect("values match the markers by name and type");
    let mut cells = Vec::new();
    let mut rest = &buf[..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = i32::from_be_bytes(*len);
        rest = tail;
        cells.push(match len {
            -1 => None,
            -2 => Some(None),
            n => {
                let (cell, tail) = rest.split_at(usize::try_from(n).expect("length"));
                rest = tail;
                Some(Some(cell.to_vec()))
            }
        });
    }
    assert_eq!(cells.len(), specs.len(), "one cell per marker");
    cells
}

/// Serialized bind values read back as the result row a SELECT of those columns
/// returns (an unset cell reads as null), without the `[ttl]` marker.
fn as_result_row(values: &impl SerializeRow, specs: &[ColumnSpec<'_>]) -> CqlRow {
    let cells = serialize(values, specs);
    let columns = specs
        .iter()
        .zip(cells)
        .filter(|(s, _)| s.name() != "[ttl]")
        .map(|(s, cell)| {
            let bytes = cell.flatten();
            let slice = bytes.as_deref().map(FrameSlice::new_borrowed);
            let value = <Option<CqlValue>>::deserialize(s.typ(), slice).expect("deserialize");
            (s.name().to_owned(), value)
        })
        .collect();
    CqlRow { columns }
}

fn full_message() -> StoredMessage {
    StoredMessage {
        dest_index: 254,
        source: Address::new(smsc_smpp::Ton(255), smsc_smpp::Npi(18), "SHOP").expect("address"),
        dest: Address::new(smsc_smpp::Ton(1), smsc_smpp::Npi(1), "447946000001").expect("address"),
        service_type: "CMT".to_owned(),
        registered_delivery: 0x11,
        data_coding: 0xf0,
        esm_class: 0x40,
        payload: Bytes::from_static(&[0, 1, 0xff, 0x80]),
        state: DeliveryState::Undeliverable,
        error_code: u16::MAX,
        attempts: u32::MAX,
        submitted_at: -1,
        schedule_at: Some(1_700_000_000_123),
        final_at: Some(1_700_000_001_000),
        ..sample_message("m-1", 0, "acct")
    }
}

fn message_row(m: &StoredMessage) -> CqlRow {
    let cql = Cql::new(KS);
    let values = message_to_row(m, 60).expect("to_row");
    as_result_row(&values, &insert_specs("messages", &cql.insert_message))
}

fn with(row: &CqlRow, column: &str, value: Option<CqlValue>) -> CqlRow {
    let mut row = row.clone();
    let slot = row.columns.iter_mut().find(|(n, _)| n == column).expect("column");
    slot.1 = value;
    row
}

fn without(row: &CqlRow, column: &str) -> CqlRow {
    CqlRow { columns: row.columns.iter().filter(|(n, _)| n != column).cloned().collect() }
}

fn corrupt_column(result: StoreResult<impl std::fmt::Debug>) -> String {
    match result {
        Err(StoreError::Corrupt { what, .. }) => what,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

// --- CQL text -------------------------------------------------------------------

#[test]
fn insert_is_conditional_with_a_ttl_and_binds_every_column() {
    let insert = Cql::new(KS).insert_message;
    assert!(insert.starts_with(&format!("INSERT INTO {KS}.messages (")), "{insert}");
    assert!(insert.ends_with(") IF NOT EXISTS USING TTL ?"), "{insert}");
    let schema: Vec<String> = schema("messages").into_iter().map(|(n, _)| n).collect();
    assert_eq!(schema, MESSAGE_COLUMNS, "the insert writes every column of the table");
    assert_eq!(
        insert.matches('?').count(),
        MESSAGE_COLUMNS.len() + 1,
        "a marker each, and the TTL"
    );
}

#[test]
fn every_update_is_conditional_on_the_state_and_keeps_the_ttl() {
    let cql = Cql::new(KS);
    let updates: Vec<_> = cql
        .data_path()
        .into_iter()
        .filter(|(_, s)| s.starts_with(&format!("UPDATE {KS}.messages ")))
        .collect();
    assert_eq!(updates.len(), 1);
    for (name, update) in updates {
        assert!(update.ends_with(" IF state = :expected_state"), "{name}: {update}");
        assert!(update.contains(" USING TTL :ttl SET "), "{name}: {update}");
        assert!(update.contains(" WHERE message_id = :message_id AND dest_index = :dest_index "));
    }
    // Only the insert writes messages otherwise, conditionally.
    for (name, s) in cql.data_path() {
        if s.contains(".messages") && !s.starts_with("SELECT") {
            assert!(s.contains(" IF "), "{name} writes messages unconditionally: {s}");
        }
    }
}

#[test]
fn delete_pending_is_if_exists_and_no_statement_filters() {
    let cql = Cql::new(KS);
    assert!(cql.delete_pending.ends_with("WHERE system_id = ? AND id = ? IF EXISTS"));
    let all = cql.data_path().into_iter().map(|(_, s)| s.to_owned()).chain(ddl());
    for s in all.chain([cql.select_migrations.clone(), cql.insert_migration.clone()]) {
        assert!(!s.to_ascii_uppercase().contains("ALLOW FILTERING"), "{s}");
    }
}

/// No statement scans the cluster: each restricts its table's partition key.
#[test]
fn every_statement_names_its_partition() {
    let cql = Cql::new(KS);
    for (name, s) in cql.data_path() {
        let key = if s.contains(".messages") {
            "message_id"
        } else if s.contains(".upstream_ids") {
            "connector"
        } else if s.contains(".bind_slots") {
            "pool"
        } else {
            "system_id"
        };
        if s.starts_with("INSERT") {
            assert!(s.contains(&format!("({key}, ")), "{name}: {s}");
        } else {
            assert!(s.contains(&format!("WHERE {key} = ")), "{name}: {s}");
        }
        if s.contains(".upstream_ids") && !s.starts_with("INSERT") {
            assert!(s.contains("connector = ? AND upstream_id = ?"), "{name}: {s}");
        }
        assert!(s.contains(&format!(" {KS}.")), "{name} is qualified with the keyspace: {s}");
    }
}

#[test]
fn pending_pages_by_clustering_order_with_a_bound_limit() {
    let cql = Cql::new(KS);
    assert!(cql.select_pending.ends_with("WHERE system_id = ? LIMIT ?"));
    assert!(cql.select_pending_after.ends_with("WHERE system_id = ? AND id > ? LIMIT ?"));
    let ddl = ddl().into_iter().find(|s| s.contains(".pending_notifications (")).expect("table");
    assert!(
        ddl.contains("PRIMARY KEY ((system_id), id) ) WITH CLUSTERING ORDER BY (id ASC)"),
        "{ddl}"
    );
}

#[test]
fn tables_have_the_designed_keys() {
    let ddl = ddl().join("\n");
    assert!(ddl.contains("PRIMARY KEY ((message_id), dest_index)"));
    assert!(ddl.contains("PRIMARY KEY ((system_id), session_id)"));
    assert!(ddl.contains("PRIMARY KEY ((component), version)"));
    assert!(ddl.contains("PRIMARY KEY ((connector, upstream_id))"));
    assert!(ddl.contains("PRIMARY KEY ((pool), slot)"));
    assert!(ddl.contains("PRIMARY KEY ((system_id, period))"));
    for s in [Cql::new(KS).upsert_session, Cql::new(KS).upsert_pending] {
        assert!(s.ends_with(") USING TTL ?"), "{s}");
    }
}

// --- migrations -----------------------------------------------------------------

#[test]
fn migrations_are_every_file_in_version_order() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cql");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("cql dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let names: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.cql", m.name)).collect();
    assert_eq!(names, files, "every file embedded, in file-name order");
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version, u32::try_from(i + 1).expect("small"), "versions are 1, 2, …");
        assert!(m.name.starts_with(&format!("{:03}_", m.version)), "{} numbered", m.name);
    }
}

#[test]
fn every_ddl_is_if_not_exists_and_fully_substituted() {
    let statements = ddl();
    assert!(statements.len() >= 5);
    for s in &statements {
        let create = s.starts_with("CREATE KEYSPACE IF NOT EXISTS ")
            || s.starts_with("CREATE TABLE IF NOT EXISTS ");
        // The migration runner skips a column that exists already: idempotent too.
        let add_one_column = s.starts_with("ALTER TABLE ")
            && s.split_once(" ADD ").is_some_and(|(_, col)| col.split_whitespace().count() == 2);
        assert!(create || add_one_column, "not idempotent: {s}");
        assert!(!s.contains("${"), "unsubstituted: {s}");
        assert!(!s.contains("--"), "comment left in: {s}");
    }
    let keyspace = &statements[0];
    assert_eq!(
        keyspace,
        "CREATE KEYSPACE IF NOT EXISTS smsc_test WITH replication = \
         {'class': 'NetworkTopologyStrategy', 'dc-east': 3} AND durable_writes = true"
    );
    let rf5 = ScyllaConfig { replication_factor: 5, ..config() };
    assert!(MIGRATIONS[0].statements(&rf5)[0].contains("'dc-east': 5}"));
}

#[test]
fn pending_migrations_skip_recorded_versions_but_not_the_bootstrap() {
    let plan = |applied: &[u32]| -> Vec<u32> {
        let applied: BTreeSet<u32> = applied.iter().copied().collect();
        pending_migrations(&applied).map(|m| m.version).collect()
    };
    assert_eq!(plan(&[]), [1, 2, 3, 4, 5]);
    assert_eq!(plan(&[1]), [1, 2, 3, 4, 5]);
    assert_eq!(plan(&[1, 2]), [1, 3, 4, 5]);
    assert_eq!(plan(&[1, 2, 3]), [1, 4, 5], "a store of an older release gets the new table");
    assert_eq!(plan(&[1, 2, 3, 4]), [1, 5], "and the new columns");
    assert_eq!(plan(&[1, 2, 3, 4, 5]), [1]);
    assert_eq!(plan(&[2]), [1, 3, 4, 5], "an out-of-order record still skips its version");
}

// --- config ---------------------------------------------------------------------

#[test]
fn config_is_checked_before_it_reaches_cql() {
    assert!(ScyllaConfig::default().validate().is_ok());
    assert_eq!(ScyllaConfig::default().keyspace, "smsc");
    let key = |c: ScyllaConfig| match c.validate() {
        Err(ScyllaError::Config { key, .. }) => key,
        other => panic!("expected a config error, got {other:?}"),
    };
    let base = ScyllaConfig::default;
    assert_eq!(key(ScyllaConfig { uris: vec![], ..base() }), "uris");
    assert_eq!(
        key(ScyllaConfig { keyspace: "smsc; DROP KEYSPACE x".to_owned(), ..base() }),
        "keyspace"
    );
    assert_eq!(key(ScyllaConfig { keyspace: "Smsc".to_owned(), ..base() }), "keyspace");
    assert_eq!(key(ScyllaConfig { keyspace: "a".repeat(49), ..base() }), "keyspace");
    assert_eq!(key(ScyllaConfig { local_dc: "dc1': 1, 'x".to_owned(), ..base() }), "local_dc");
    assert_eq!(key(ScyllaConfig { replication_factor: 0, ..base() }), "replication_factor");
    assert_eq!(
        key(ScyllaConfig { message_ttl: Duration::from_millis(999), ..base() }),
        "message_ttl"
    );
    assert_eq!(key(ScyllaConfig { request_timeout: Duration::ZERO, ..base() }), "request_timeout");
    assert_eq!(key(ScyllaConfig { username: Some("u".to_owned()), ..base() }), "password");
    let secret = ScyllaConfig {
        username: Some("u".to_owned()),
        password: Some("hunter2".to_owned()),
        ..base()
    };
    assert!(!format!("{secret:?}").contains("hunter2"));
}

#[test]
fn ttls_are_whole_seconds_never_zero() {
    assert_eq!(ttl_secs(Duration::ZERO), 1, "0 would mean no expiry");
    assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
    assert_eq!(ttl_secs(Duration::from_secs(4)), 4);
    assert_eq!(ttl_secs(Duration::from_secs(u64::MAX)), MAX_TTL_SECS);
}

// --- row mapping ----------------------------------------------------------------

#[test]
fn a_message_round_trips_through_its_row() {
    let plain = sample_message("m-0", 0, "acct");
    assert_eq!(plain.schedule_at, None);
    for m in [plain, full_message()] {
        assert_eq!(message_from_row(&message_row(&m)).expect("from_row"), Some(m));
    }
}

#[test]
fn an_absent_schedule_is_left_unset_not_written_as_null() {
    let cql = Cql::new(KS);
    let specs = insert_specs("messages", &cql.insert_message);
    let at = |name: &str| specs.iter().position(|s| s.name() == name).expect("marker");
    let m = sample_message("m", 0, "acct");
    let cells = serialize(&message_to_row(&m, 60).expect("to_row"), &specs);
    assert_eq!(cells[at("schedule_at")], Some(None), "unset: no tombstone");
    assert_eq!(cells[at("final_at")], Some(None));
    assert_eq!(cells[at("[ttl]")], Some(Some(60_i32.to_be_bytes().to_vec())));
}

#[test]
fn every_state_round_trips_under_its_code() {
    let codes = (0..=9).chain([64, 65]);
    for state in codes.map(|c| DeliveryState::from_code(c).expect("a state")) {
        let m = StoredMessage { state, ..sample_message("m", 0, "a") };
        assert_eq!(message_from_row(&message_row(&m)).expect("from_row"), Some(m));
        assert_eq!(state_to_cql(state), state.code() as i8);
    }
    assert_eq!(state_to_cql(DeliveryState::InDelivery), 64);
}

#[test]
fn a_malformed_message_row_is_corrupt_naming_the_column() {
    let row = message_row(&full_message());
    let cases = [
        (with(&row, "state", Some(CqlValue::TinyInt(42))), "messages.state"),
        (with(&row, "state", Some(CqlValue::TinyInt(-1))), "messages.state"),
        (with(&row, "dest_index", Some(CqlValue::BigInt(-1))), "messages.dest_index"),
        (with(&row, "attempts", Some(CqlValue::BigInt(1 << 32))), "messages.attempts"),
        (with(&row, "source_ton", Some(CqlValue::SmallInt(256))), "messages.source_ton"),
        (with(&row, "esm_class", Some(CqlValue::SmallInt(-1))), "messages.esm_class"),
        (with(&row, "error_code", Some(CqlValue::Int(65_536))), "messages.error_code"),
        (with(&row, "payload", Some(CqlValue::Text("x".to_owned()))), "messages.payload"),
        (with(&row, "expire_at", None), "messages.expire_at"),
        (with(&row, "message_id", None), "messages.message_id"),
        (without(&row, "event"), "messages.event"),
    ];
    for (row, column) in cases {
        let what = corrupt_column(message_from_row(&row));
        assert!(what.starts_with(&format!("{column}: ")), "{what}");
    }
}

#[test]
fn a_row_without_system_id_is_an_expiring_remnant() {
    let row = with(&message_row(&full_message()), "system_id", None);
    let remnant = CqlRow {
        columns: row
            .columns
            .into_iter()
            .map(|(n, v)| if n == "state" { (n, v) } else { (n, None) })
            .collect(),
    };
    assert_eq!(message_from_row(&remnant).expect("from_row"), None);
}

#[test]
fn a_lease_round_trips_and_an_unknown_bind_is_corrupt() {
    let cql = Cql::new(KS);
    let specs = insert_specs("sessions", &cql.upsert_session);
    for bind in [BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver] {
        let lease = SessionLease { bind, ..sample_lease("acct", "edge-0/7") };
        let row = as_result_row(&lease_to_row(&lease, 30), &specs);
        assert_eq!(lease_from_row(&row).expect("from_row"), lease);
    }
    let row = as_result_row(&lease_to_row(&sample_lease("a", "s"), 30), &specs);
    let bad = with(&row, "bind", Some(CqlValue::Text("admin".to_owned())));
    assert!(corrupt_column(lease_from_row(&bad)).starts_with("sessions.bind: "));
    let bad = with(&row, "bound_at", Some(CqlValue::BigInt(1)));
    assert!(corrupt_column(lease_from_row(&bad)).starts_with("sessions.bound_at: "));
}

#[test]
fn a_notification_round_trips_and_an_unknown_kind_is_corrupt() {
    let cql = Cql::new(KS);
    let specs = insert_specs("pending_notifications", &cql.upsert_pending);
    for kind in [NotificationKind::Receipt, NotificationKind::Mo, NotificationKind::WebhookReceipt]
    {
        let n = PendingNotification {
            id: "0001-edge-0".to_owned(),
            kind,
            message_id: "m-1".to_owned(),
            pdu: Bytes::from_static(b"\x00\x00\x00\x10deliver_sm"),
            created_at: 1_700_000_000_000,
        };
        let row = as_result_row(&notification_to_row("acct", &n, 60), &specs);
        assert_eq!(row.get("system_id"), Some(&Some(CqlValue::Text("acct".to_owned()))));
        assert_eq!(notification_from_row(&row).expect("from_row"), n);
        let bad = with(&row, "kind", Some(CqlValue::Text("sms".to_owned())));
        let what = corrupt_column(notification_from_row(&bad));
        assert!(what.starts_with("pending_notifications.kind: "), "{what}");
    }
}

/// The UPDATE's named markers, typed from the schema.
fn update_specs() -> Vec<ColumnSpec<'static>> {
    let update = Cql::new(KS).update_message;
    let types = schema("messages");
    let type_of =
        |c: &str| types.iter().find(|(n, _)| n == c).map(|(_, t)| t.clone()).expect("column");
    let mut specs = vec![spec("messages", "ttl", "int")];
    for (column, marker) in update.split(' ').zip(update.split(' ').skip(2)).filter_map(|(c, m)| {
        let m = m.trim_end_matches(',').strip_prefix(':')?;
        (m != "ttl").then_some((c, m))
    }) {
        specs.push(spec("messages", marker, &type_of(column)));
    }
    let names: Vec<&str> = specs.iter().map(|s| s.name()).collect();
    let mut expected = vec!["ttl"];
    expected.extend(UPDATABLE_COLUMNS);
    expected.extend(["message_id", "dest_index", "expected_state"]);
    assert_eq!(names, expected, "{update}");
    specs
}

#[test]
fn an_update_sets_exactly_its_fields() {
    let specs = update_specs();
    let at = |name: &str| specs.iter().position(|s| s.name() == name).expect("marker");
    let empty = Update::default();
    let cells =
        serialize(&update_to_row("m", 3, DeliveryState::Enroute, &empty, 10).expect("row"), &specs);
    for column in UPDATABLE_COLUMNS {
        assert_eq!(cells[at(column)], Some(None), "{column} unset");
    }
    assert_eq!(cells[at("expected_state")], Some(Some(vec![1])));
    assert_eq!(cells[at("dest_index")], Some(Some(3_i64.to_be_bytes().to_vec())));

    let update = Update {
        state: Some(DeliveryState::Delivered),
        final_at: Some(7),
        schedule_at: Some(None),
        payload: Some(Bytes::new()),
        ..Update::default()
    };
    let cells = serialize(
        &update_to_row("m", 0, DeliveryState::Enroute, &update, 10).expect("row"),
        &specs,
    );
    assert_eq!(cells[at("state")], Some(Some(vec![2])));
    assert_eq!(cells[at("final_at")], Some(Some(7_i64.to_be_bytes().to_vec())));
    assert_eq!(cells[at("schedule_at")], None, "Some(None) clears the schedule");
    assert_eq!(cells[at("payload")], Some(Some(Vec::new())), "an empty payload is a value");
    assert_eq!(cells[at("attempts")], Some(None));
}

#[test]
fn upstream_writes_touch_only_their_own_columns() {
    let cql = Cql::new(KS);
    let link_specs = insert_specs("upstream_ids", &cql.upsert_upstream_link);
    let names: Vec<&str> = link_specs.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["connector", "upstream_id", "message_id", "dest_index", "[ttl]"]);
    let values = UpstreamLinkValues {
        connector: "up",
        upstream_id: "3B9ACA01",
        message_id: "m-1",
        dest_index: 2,
        ttl: 60,
    };
    let row = as_result_row(&values, &link_specs);
    let mut row_with_receipt = row.clone();
    row_with_receipt.columns.push(("parked_receipt".to_owned(), None));
    let link = UpstreamLink { message_id: "m-1".to_owned(), dest_index: 2 };
    let entry = upstream_entry_from_row(&row_with_receipt).expect("from_row");
    assert_eq!(entry, Some(UpstreamEntry { link: Some(link.clone()), parked_receipt: None }));

    let park_specs = insert_specs("upstream_ids", &cql.park_upstream_receipt);
    let names: Vec<&str> = park_specs.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["connector", "upstream_id", "parked_receipt", "[ttl]"]);
    let values = ParkValues { connector: "up", upstream_id: "1", parked_receipt: b"pdu", ttl: 600 };
    let parked = as_result_row(&values, &park_specs);
    let mut only_parked = parked.clone();
    only_parked.columns.push(("message_id".to_owned(), None));
    only_parked.columns.push(("dest_index".to_owned(), None));
    let entry = upstream_entry_from_row(&only_parked).expect("from_row");
    let receipt = Bytes::from_static(b"pdu");
    assert_eq!(entry, Some(UpstreamEntry { link: None, parked_receipt: Some(receipt) }));

    let nothing = with(&with(&only_parked, "parked_receipt", None), "message_id", None);
    assert_eq!(upstream_entry_from_row(&nothing).expect("from_row"), None, "a remnant");
    let half = with(&row_with_receipt, "dest_index", None);
    assert!(corrupt_column(upstream_entry_from_row(&half)).starts_with("upstream_ids."));
    assert!(cql.select_upstream.starts_with("SELECT message_id, dest_index, parked_receipt "));
}

#[test]
fn quota_counters_change_by_compare_and_set() {
    let cql = Cql::new(KS);
    assert!(cql.insert_quota.ends_with(") IF NOT EXISTS USING TTL ?"), "{}", cql.insert_quota);
    assert!(cql.update_quota.ends_with("IF used = :expected"), "{}", cql.update_quota);
    let lwt = |cols: Vec<(String, Option<CqlValue>)>| quota_lwt(&CqlRow { columns: cols });
    let flag = |b: bool| ("[applied]".to_owned(), Some(CqlValue::Boolean(b)));
    let used = |v: Option<CqlValue>| ("used".to_owned(), v);
    assert_eq!(lwt(vec![flag(true)]).expect("lwt"), QuotaLwt::Applied);
    let seen = lwt(vec![flag(false), used(Some(CqlValue::BigInt(7)))]).expect("lwt");
    assert_eq!(seen, QuotaLwt::Saw(Some(7)), "not applied: the counter as it is");
    assert_eq!(lwt(vec![flag(false)]).expect("lwt"), QuotaLwt::Saw(None), "no row");
    assert_eq!(lwt(vec![flag(false), used(None)]).expect("lwt"), QuotaLwt::Saw(None));
    let negative = lwt(vec![flag(false), used(Some(CqlValue::BigInt(-1)))]);
    assert!(corrupt_column(negative).starts_with("quota_usage.used: "));
    let text = lwt(vec![flag(false), used(Some(CqlValue::Text("7".into())))]);
    assert!(corrupt_column(text).starts_with("quota_usage.used: "));
}

#[test]
fn slot_leases_are_lightweight_transactions_on_the_holder() {
    let cql = Cql::new(KS);
    assert!(cql.insert_slot.ends_with(") IF NOT EXISTS USING TTL ?"), "{}", cql.insert_slot);
    let specs = insert_specs("bind_slots", &cql.insert_slot);
    let values = SlotValues { pool: "up", slot: 3, holder: "w-1/0", ttl: 30 };
    let row = as_result_row(&values, &specs);
    assert_eq!(row.get("holder"), Some(&Some(CqlValue::Text("w-1/0".to_owned()))));
    assert_eq!(row.get("slot"), Some(&Some(CqlValue::Int(3))));
    assert_eq!(
        cql.refresh_slot,
        format!(
            "UPDATE {KS}.bind_slots USING TTL :ttl SET holder = :holder \
             WHERE pool = :pool AND slot = :slot IF holder = :expected_holder"
        )
    );
    let refresh_specs = vec![
        spec("bind_slots", "ttl", "int"),
        spec("bind_slots", "holder", "text"),
        spec("bind_slots", "pool", "text"),
        spec("bind_slots", "slot", "int"),
        spec("bind_slots", "expected_holder", "text"),
    ];
    let values =
        RefreshSlotValues { ttl: 30, holder: "w", pool: "up", slot: 0, expected_holder: "w" };
    let cells = serialize(&values, &refresh_specs);
    assert_eq!(cells[4], Some(Some(b"w".to_vec())));
    assert!(cql.delete_slot.ends_with("WHERE pool = ? AND slot = ? IF holder = ?"));

    let applied_col = |b: bool| ("[applied]".to_owned(), Some(CqlValue::Boolean(b)));
    let lwt = |cols: Vec<(String, Option<CqlValue>)>| slot_lwt(&CqlRow { columns: cols });
    assert_eq!(lwt(vec![applied_col(true)]).expect("lwt"), SlotLwt::Applied);
    let held = vec![applied_col(false), ("holder".to_owned(), Some(CqlValue::Text("x".into())))];
    assert_eq!(lwt(held).expect("lwt"), SlotLwt::HeldBy("x".to_owned()));
    let gone = vec![applied_col(false), ("holder".to_owned(), None)];
    assert_eq!(lwt(gone).expect("lwt"), SlotLwt::Gone);
    assert_eq!(lwt(vec![applied_col(false)]).expect("lwt"), SlotLwt::Gone);
    let bad = vec![applied_col(false), ("holder".to_owned(), Some(CqlValue::Int(1)))];
    assert!(corrupt_column(lwt(bad)).starts_with("bind_slots.holder: "));
}

#[test]
fn lwt_results_map_to_applied() {
    let applied_col = |b: bool| ("[applied]".to_owned(), Some(CqlValue::Boolean(b)));
    let yes = CqlRow { columns: vec![applied_col(true)] };
    assert_eq!(message_lwt_outcome(&yes).expect("outcome"), Some(Applied::Yes));

    let m = full_message();
    let mut full = message_row(&m);
    full.columns.insert(0, applied_col(false));
    assert_eq!(message_lwt_outcome(&full).expect("outcome"), Some(Applied::No(Some(m))));

    // Only the tested column (Cassandra's IF state = ?), or nothing (no row): read it.
    let partial = CqlRow {
        columns: vec![applied_col(false), ("state".to_owned(), Some(CqlValue::TinyInt(2)))],
    };
    assert_eq!(message_lwt_outcome(&partial).expect("outcome"), None);
    assert_eq!(
        message_lwt_outcome(&CqlRow { columns: vec![applied_col(false)] }).expect("outcome"),
        None
    );

    let bad = CqlRow { columns: vec![("[applied]".to_owned(), None)] };
    assert!(matches!(message_lwt_outcome(&bad), Err(StoreError::Corrupt { .. })));
    assert!(matches!(applied(&CqlRow::default()), Err(StoreError::Corrupt { .. })));
    assert!(!applied(&CqlRow { columns: vec![applied_col(false)] }).expect("applied"));
}

#[test]
fn a_transition_keeps_the_ttl_the_row_has_left() {
    let row = |system_id: Option<&str>, ttl: Option<i32>| CqlRow {
        columns: vec![
            ("system_id".to_owned(), system_id.map(|s| CqlValue::Text(s.to_owned()))),
            ("remaining_ttl".to_owned(), ttl.map(CqlValue::Int)),
        ],
    };
    assert_eq!(transition_ttl(&row(Some("a"), Some(17))).expect("ttl"), Some(17));
    assert_eq!(transition_ttl(&row(Some("a"), Some(0))).expect("ttl"), Some(1), "never 0");
    assert_eq!(transition_ttl(&row(Some("a"), None)).expect("ttl"), Some(0), "none stays none");
    assert_eq!(transition_ttl(&row(None, Some(1))).expect("ttl"), None, "a remnant");
    let bad =
        CqlRow { columns: vec![("system_id".to_owned(), Some(CqlValue::Text("a".to_owned())))] };
    assert!(corrupt_column(transition_ttl(&bad)).starts_with("messages.ttl(system_id): "));
}

// --- driver errors --------------------------------------------------------------

fn db(error: DbError) -> ExecutionError {
    ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "reason".to_owned()))
}

#[test]
fn driver_errors_map_to_timeout_or_unavailable() {
    let timeout = |e| matches!(e, StoreError::Timeout);
    let unavailable = |e| matches!(e, StoreError::Unavailable { .. });
    assert!(timeout(execution_error(ExecutionError::RequestTimeout(Duration::from_secs(1)))));
    let write_timeout = DbError::WriteTimeout {
        consistency: Consistency::LocalSerial,
        received: 1,
        required: 2,
        write_type: WriteType::Cas,
    };
    assert!(timeout(execution_error(db(write_timeout))));
    let read_timeout = DbError::ReadTimeout {
        consistency: Consistency::LocalQuorum,
        received: 1,
        required: 2,
        data_present: false,
    };
    assert!(timeout(execution_error(db(read_timeout))));
    let down =
        DbError::Unavailable { consistency: Consistency::LocalQuorum, required: 2, alive: 1 };
    let e = execution_error(db(down));
    assert!(unavailable(e.clone()), "{e:?}");
    // The node's words stay in the chain: the reason it gave and its DbError.
    let what = smsc_runtime::telemetry::error_chain(&e).to_string();
    assert!(what.contains("alive: 1") && what.contains("reason"), "{what}");
    assert!(unavailable(execution_error(db(DbError::Overloaded))));
    assert!(unavailable(execution_error(db(DbError::Invalid))));
    assert!(unavailable(execution_error(ExecutionError::EmptyPlan)));
    let broken = RequestAttemptError::UnableToAllocStreamId;
    assert!(unavailable(execution_error(ExecutionError::LastAttemptError(broken))));

    let page_timeout = NextRowError::NextPageError(NextPageError::RequestFailure(
        RequestError::RequestTimeout(Duration::from_secs(1)),
    ));
    assert!(timeout(next_row_error(page_timeout)));
    let page_down =
        NextRowError::NextPageError(NextPageError::RequestFailure(RequestError::EmptyPlan));
    assert!(unavailable(next_row_error(page_down)));
    let bad_row = NextRowError::RowDeserializationError(DeserializationError::new(std::fmt::Error));
    assert!(matches!(next_row_error(bad_row), StoreError::Corrupt { .. }));
}
