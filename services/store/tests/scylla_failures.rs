//! How the ScyllaDB store fails, through `scylla-proxy` in dry mode: a CQL endpoint on a
//! loopback address that completes the driver's handshake, answers PREPARE with forged
//! metadata and reacts to EXECUTE as each test says (an error, silence, a dropped
//! connection). No ScyllaDB is involved, so these always run.
//!
//! What they pin down: a coordinator's Unavailable / WriteTimeout, a request that never
//! gets an answer and a broken connection come back as `StoreError::Unavailable` or
//! `StoreError::Timeout`, within the configured request timeout, on both the paged
//! reads and the lightweight transactions.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use scylla::client::session_builder::SessionBuilder;
use scylla_proxy::{
    Condition, Node, Proxy, Reaction as _, RequestFrame, RequestOpcode, RequestReaction,
    RequestRule, ResponseFrame, ResponseOpcode, RunningProxy, example_db_errors,
};
use smsc_store::scylla::{ScyllaConfig, ScyllaStore};
use smsc_store::{Store, StoreError};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);

/// The bind markers of a statement as `(name, CQL type id)`, named after the column they
/// are compared with. Statements whose markers are not all of that form (INSERT, UPDATE)
/// get none: these tests never execute them.
fn markers(query: &str) -> Vec<(String, u16)> {
    const VARCHAR: u16 = 0x000D;
    const BIGINT: u16 = 0x0002;
    const INT: u16 = 0x0009;
    let words: Vec<&str> = query.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if word.trim_end_matches([',', ')']) != "?" {
            continue;
        }
        let marker = match (i.checked_sub(2).map(|j| words[j]), i.checked_sub(1).map(|j| words[j]))
        {
            (_, Some("LIMIT")) => ("[limit]".to_owned(), INT),
            (Some("dest_index"), Some("=")) => ("dest_index".to_owned(), BIGINT),
            (Some(column), Some("=" | ">")) => (column.to_owned(), VARCHAR),
            _ => return Vec::new(),
        };
        out.push(marker);
    }
    out
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_u16(u16::try_from(s.len()).expect("short string"));
    buf.put_slice(s.as_bytes());
}

/// A RESULT/Prepared response (protocol v4) for the PREPARE in `frame`.
fn prepared(frame: RequestFrame) -> ResponseFrame {
    let body = &frame.body;
    let query = std::str::from_utf8(body.get(4..).unwrap_or_default()).expect("utf-8 query");
    let markers = markers(query);
    let mut hasher = DefaultHasher::new();
    query.hash(&mut hasher);

    let mut buf = BytesMut::new();
    buf.put_i32(0x0004); // Prepared
    buf.put_u16(8);
    buf.put_u64(hasher.finish()); // the same id for the same query, on every connection
    buf.put_i32(0x0001); // global table spec
    buf.put_i32(i32::try_from(markers.len()).expect("few markers"));
    buf.put_i32(i32::from(!markers.is_empty())); // the first marker is the partition key
    if !markers.is_empty() {
        buf.put_u16(0);
    }
    put_string(&mut buf, "smsc");
    put_string(&mut buf, "t");
    for (name, type_id) in &markers {
        put_string(&mut buf, name);
        buf.put_u16(*type_id);
    }
    buf.put_i32(0x0004); // result metadata: none
    buf.put_i32(0);
    ResponseFrame::new(frame.params.for_response(), ResponseOpcode::Result, buf.freeze())
}

/// A dry-mode node that lets a session and the store's preparation complete; EXECUTE
/// fails with a server error until [`store_behind`] installs the test's reaction.
async fn proxy() -> (SocketAddr, RunningProxy) {
    let address = SocketAddr::new(scylla_proxy::get_exclusive_local_address(), 9042);
    let rules = vec![
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Options),
            RequestReaction::forge_response(Arc::new(|frame: RequestFrame| {
                ResponseFrame::forged_supported(frame.params, &HashMap::default())
                    .expect("SUPPORTED")
            })),
        ),
        RequestRule(
            Condition::or(
                Condition::RequestOpcode(RequestOpcode::Startup),
                Condition::RequestOpcode(RequestOpcode::Register),
            ),
            RequestReaction::forge_response(Arc::new(|frame: RequestFrame| {
                ResponseFrame::forged_ready(frame.params)
            })),
        ),
        // The driver's topology and schema queries: it carries on with the known node.
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Query),
            RequestReaction::forge().server_error(),
        ),
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Prepare),
            RequestReaction::forge_response(Arc::new(prepared)),
        ),
        // The driver's own prepared metadata queries, before the store exists.
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Execute),
            RequestReaction::forge().server_error(),
        ),
    ];
    let node = Node::builder().proxy_address(address).request_rules(rules).build_dry_mode();
    let running = Proxy::builder().with_node(node).build().run().await.expect("proxy runs");
    (address, running)
}

async fn store_behind(on_execute: RequestReaction) -> (ScyllaStore, RunningProxy) {
    let (address, mut proxy) = proxy().await;
    let session = SessionBuilder::new()
        .known_node_addr(address)
        .build()
        .await
        .expect("session through the proxy");
    let config = ScyllaConfig { request_timeout: REQUEST_TIMEOUT, ..ScyllaConfig::default() };
    let store =
        ScyllaStore::with_session(Arc::new(session), config).await.expect("statements prepare");
    let on_execute = RequestRule(Condition::RequestOpcode(RequestOpcode::Execute), on_execute);
    proxy.running_nodes[0].prepend_request_rules(vec![on_execute]);
    (store, proxy)
}

/// Runs `op`, checks it fails within the request timeout (plus slack) as `expect` says.
async fn fails_within_timeout<T: std::fmt::Debug>(
    what: &str,
    op: impl Future<Output = Result<T, StoreError>>,
    expect: impl Fn(&StoreError) -> bool,
) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(REQUEST_TIMEOUT + SLACK, op).await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(Err(e)) => assert!(expect(&e), "{what}: unexpected error {e:?}"),
        Ok(Ok(v)) => panic!("{what}: succeeded through a failing node: {v:?}"),
        Err(_) => panic!("{what}: no answer within {:?}", REQUEST_TIMEOUT + SLACK),
    }
    assert!(elapsed < REQUEST_TIMEOUT + SLACK, "{what}: took {elapsed:?}");
}

/// Unavailable for the reason the node gave, not, say, a serialization error here.
fn is_replicas_unavailable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable { .. }) && chain(e).contains("Not enough nodes are alive")
}

fn is_connection_lost(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable { .. }) && chain(e).to_lowercase().contains("connection")
}

/// The error with its causes: the driver's words are in the causes.
fn chain(e: &StoreError) -> String {
    smsc_runtime::telemetry::error_chain(e).to_string()
}

fn is_timeout(e: &StoreError) -> bool {
    matches!(e, StoreError::Timeout)
}

#[tokio::test]
async fn a_coordinator_without_replicas_is_unavailable() {
    let unavailable = RequestReaction::forge_with_error(example_db_errors::unavailable());
    let (store, proxy) = store_behind(unavailable).await;
    fails_within_timeout("get_message", store.get_message("m-1"), is_replicas_unavailable).await;
    fails_within_timeout("sessions", store.sessions("acct"), is_replicas_unavailable).await;
    fails_within_timeout(
        "delete_pending",
        store.delete_pending("acct", "n1"),
        is_replicas_unavailable,
    )
    .await;
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn a_coordinator_write_timeout_is_a_timeout() {
    let write_timeout = RequestReaction::forge_with_error(example_db_errors::write_timeout());
    let (store, proxy) = store_behind(write_timeout).await;
    fails_within_timeout("delete_pending", store.delete_pending("acct", "n1"), is_timeout).await;
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn an_unanswered_request_times_out_after_the_request_timeout() {
    let (store, proxy) = store_behind(RequestReaction::drop_frame()).await;
    let started = Instant::now();
    fails_within_timeout("delete_pending", store.delete_pending("acct", "n1"), is_timeout).await;
    assert!(started.elapsed() >= REQUEST_TIMEOUT, "gave up before the timeout");
    fails_within_timeout("get_message", store.get_message("m-1"), is_timeout).await;
    fails_within_timeout("pending", store.pending("acct", Some("n0"), 10), is_timeout).await;
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn a_dropped_connection_is_unavailable() {
    let (store, proxy) = store_behind(RequestReaction::drop_connection()).await;
    fails_within_timeout("delete_pending", store.delete_pending("acct", "n1"), is_connection_lost)
        .await;
    fails_within_timeout("sessions", store.sessions("acct"), is_connection_lost).await;
    let _ = proxy.finish().await;
}

/// The forged metadata matches what the store binds, or the tests above would fail on
/// serialization instead of on the node.
#[test]
fn markers_are_named_after_their_columns() {
    let names = |q: &str| markers(q).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(
        names("SELECT a FROM ks.t WHERE system_id = ? AND id > ? LIMIT ?"),
        ["system_id", "id", "[limit]"]
    );
    assert_eq!(
        markers("SELECT a FROM ks.messages WHERE message_id = ? AND dest_index = ?")[1].1,
        2
    );
    assert!(markers("INSERT INTO ks.t (a, b) VALUES (?, ?) USING TTL ?").is_empty());
}
