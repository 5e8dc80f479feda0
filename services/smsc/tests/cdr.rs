//! CDRs read back from `smsc all`'s `cdr.file`: one per destination per final state,
//! for a delivered two-part text, an expired, an undeliverable and a cancelled message,
//! each with the fields billing needs and a key of its own.

mod common;
mod esme;
mod http;
mod node;

use std::collections::HashMap;

use serde_json::{Value, json};
use smsc_accounts::testing::PASSWORD;

use esme::eventually;
use http::{basic, request};
use node::Node;

/// A 2xx answer's body, as `cdrbank`.
async fn call(at: std::net::SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = basic("cdrbank", PASSWORD);
    let a = request(at, method, path, Some(&auth), "application/json", &body).await;
    assert!((200..300).contains(&a.status), "{a:?}");
    a.body
}

fn id(answer: &Value, part: usize) -> String {
    answer["message_ids"][part].as_str().expect("an id").to_owned()
}

/// The CDRs in `path`, by message id (a message's destinations and parts share none).
fn cdrs(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdrs_of_delivered_expired_undeliverable_and_cancelled_messages() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cdr.jsonl");
    let node = Node::start(&format!(
        r#"
node_id: cdr-test
admin_listen: "{{admin}}"
edge: {{ smpp_listen: "{{smpp}}", grpc_listen: "127.0.0.1:0", http_listen: "{{http}}" }}
accounts:
  - system_id: cdrbank
    password_hash: "{{hash}}"
    class: bulk
routing:
  mt: [{{ prefix: "44", connector: sim, name: uk-mobile }}]
connectors:
  sim:
    kind: simulator
    profiles:
      - {{ prefix: "4479", unreachable: true, error_code: 27 }}
      - {{ prefix: "4478", permanent: true, error_code: 1 }}
retry: {{ tiers: [100ms] }}
worker: {{ simulator_listen: "{{simulator}}" }}
cdr: {{ file: "{file}" }}
"#,
        file = file.display()
    ))
    .await;
    node.ready().await;
    let at = node.http;
    let text = "Your parcel is on its way. ".repeat(8); // 216 characters: 2 parts
    let delivered = call(
        at,
        "POST",
        "/v1/messages",
        Some(json!({ "from": "Shop", "to": "447700900001", "text": text })),
    )
    .await;
    let expired = call(
        at,
        "POST",
        "/v1/messages",
        Some(json!({ "from": "Shop", "to": "447900900002", "text": "x", "validity": 1 })),
    )
    .await;
    let undeliverable = call(
        at,
        "POST",
        "/v1/messages",
        Some(json!({ "from": "Shop", "to": "447800900003", "text": "x" })),
    )
    .await;
    let later = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let scheduled = call(at, "POST", "/v1/messages", Some(json!({ "from": "Shop", "to": "447700900004", "text": "x", "schedule": later.to_rfc3339() }))).await;
    let cancel = format!("/v1/messages/{}", id(&scheduled, 0));
    eventually("the scheduled message stored, then cancelled", || async {
        let auth = basic("cdrbank", PASSWORD);
        let a = request(at, "DELETE", &cancel, Some(&auth), "", "").await;
        (a.status == 204).then_some(())
    })
    .await;

    let wanted = [
        (id(&delivered, 0), "DELIVERED"),
        (id(&delivered, 1), "DELIVERED"),
        (id(&expired, 0), "EXPIRED"),
        (id(&undeliverable, 0), "UNDELIVERABLE"),
        (id(&scheduled, 0), "DELETED"),
    ];
    let records = eventually("a CDR for each", || async {
        let all = cdrs(&file);
        let by_id: HashMap<String, Value> = all
            .iter()
            .map(|c| (c["message_id"].as_str().unwrap_or_default().to_owned(), c.clone()))
            .collect();
        wanted.iter().all(|(id, _)| by_id.contains_key(id)).then_some((all, by_id))
    })
    .await;
    let (all, by_id) = records;
    let keys: std::collections::HashSet<&str> =
        all.iter().filter_map(|c| c["idempotency_key"].as_str()).collect();
    assert_eq!(keys.len(), all.len(), "one record per final state: {all:#?}");

    for (id, state) in &wanted {
        let c = &by_id[id];
        assert_eq!(c["state"], json!(state), "{c}");
        assert_eq!(c["system_id"], json!("cdrbank"), "{c}");
        assert_eq!(c["origin"], json!("http"), "{c}");
        assert_eq!(c["class"], json!("bulk"), "{c}");
        assert_eq!(c["route"], json!("uk-mobile"), "{c}");
        let key = format!("{id}:0:{state}:{}", c["final_at_ms"]);
        assert_eq!(c["idempotency_key"], json!(key), "{c}");
        assert!(c["final_at_ms"].as_i64() >= c["submitted_at_ms"].as_i64(), "{c}");
    }
    let first = &by_id[&wanted[0].0];
    let second = &by_id[&wanted[1].0];
    assert_eq!((first["part"].as_u64(), first["parts"].as_u64()), (Some(1), Some(2)), "{first}");
    assert_eq!((second["part"].as_u64(), second["parts"].as_u64()), (Some(2), Some(2)));
    assert_eq!(first["dest"]["addr"], json!("447700900001"));
    assert_eq!(first["source"]["addr"], json!("Shop"));
    for c in [first, second, &by_id[&wanted[2].0], &by_id[&wanted[3].0]] {
        assert_eq!(c["connector"], json!("sim"), "{c}");
        assert!(c["attempts"].as_u64() >= Some(1), "{c}");
        let first_attempt = c["first_attempt_at_ms"].as_i64().expect("a time");
        assert!(first_attempt >= c["submitted_at_ms"].as_i64().expect("a time"), "{c}");
        assert!(first_attempt <= c["final_at_ms"].as_i64().expect("a time"), "{c}");
    }
    assert_eq!(by_id[&wanted[2].0]["error_code"], json!(27), "expired: the last attempt's code");
    assert_eq!(by_id[&wanted[3].0]["error_code"], json!(1));
    let cancelled = &by_id[&wanted[4].0];
    assert_eq!(
        (cancelled["attempts"].as_u64(), cancelled["first_attempt_at_ms"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(cancelled["connector"], json!(""), "never handed to one");
    node.stop().await;
}
