//! The HTTP API of `smsc all` over real HTTP/1.1: submits delivered by the simulator and
//! read back with `GET`, cancelling, the refusals (problem+json with the SMPP status),
//! the account's rate, and Schemathesis checking the server against its own OpenAPI
//! document (`SMSC_TEST_SCHEMATHESIS`, which tests/run installs).

mod common;
mod esme;
mod http;
mod node;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use smsc_accounts::testing::PASSWORD;

use esme::eventually;
use http::{Answer, basic, receiver, request, taken};
use node::Node;

const BANK: &str = "httpbank";
const OTHER: &str = "httpother";
const SLOW: &str = "httpslow";

async fn start() -> Node {
    start_with("", "").await
}

/// `smsc all` with the test accounts, and `extra` accounts and MO routes.
async fn start_with(extra_accounts: &str, mo_routes: &str) -> Node {
    let yaml = r#"
node_id: http-api-test
admin_listen: "{admin}"
edge:
  smpp_listen: "{smpp}"
  grpc_listen: "127.0.0.1:0"
  http_listen: "{http}"
  http: { max_messages: 50 }
accounts:
  - system_id: httpbank
    password_hash: "{hash}"
    source_addresses: ["Bank", "447*"]
    max_validity: 2d
  - system_id: httpother
    password_hash: "{hash}"
  - system_id: httpslow
    password_hash: "{hash}"
    max_submit_rate: 2
  - system_id: httpfar
    password_hash: "{hash}"
    allowed_cidrs: ["10.0.0.0/8"]
  - system_id: httpoff
    password_hash: "{hash}"
    enabled: false
EXTRA
routing:
  mo: [ MO ]
worker:
  pending_interval: 100ms
  simulator_listen: "{simulator}"
"#;
    let yaml = yaml.replace("EXTRA", extra_accounts).replace("MO", mo_routes);
    let node = Node::start(&yaml).await;
    node.ready().await;
    node
}

async fn post(at: SocketAddr, path: &str, account: &str, body: Value) -> Answer {
    request(
        at,
        "POST",
        path,
        Some(&basic(account, PASSWORD)),
        "application/json",
        &body.to_string(),
    )
    .await
}

async fn get(at: SocketAddr, id: &str, account: &str) -> Answer {
    request(at, "GET", &format!("/v1/messages/{id}"), Some(&basic(account, PASSWORD)), "", "").await
}

/// Until every destination of message `id` is final; the message then.
async fn final_message(at: SocketAddr, id: &str) -> Value {
    eventually("the message final at every destination", || async {
        let a = get(at, id, BANK).await;
        let dests = a.body["destinations"].as_array()?;
        dests.iter().all(|d| d["final"] == json!(true)).then_some(a.body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_text_to_two_numbers_is_delivered_and_read_back() {
    let node = start().await;
    let text = "Your code is 1234. ".repeat(12); // 228 GSM characters: 2 parts
    let a = post(
        node.http,
        "/v1/messages",
        BANK,
        json!({ "from": "Bank", "to": ["447700900001", "+447700900002"], "text": text }),
    )
    .await;
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.body["parts"], json!(2));
    assert_eq!(a.body["data_coding"], json!(0), "GSM 7-bit");
    assert_eq!(a.body["to"], json!(["447700900001", "+447700900002"]));
    let ids: Vec<String> = serde_json::from_value(a.body["message_ids"].clone()).expect("ids");
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        let m = final_message(node.http, id).await;
        assert_eq!(m["message_id"], json!(id));
        assert_eq!(m["from"], json!("Bank"));
        let dests = m["destinations"].as_array().expect("destinations");
        let to: Vec<&str> = dests.iter().filter_map(|d| d["to"].as_str()).collect();
        assert_eq!(to, ["447700900001", "447700900002"], "every destination, in order");
        for d in dests {
            assert_eq!(d["state"], json!("DELIVERED"), "{m}");
            assert!(d["attempts"].as_u64() >= Some(1), "{m}");
            assert!(d["final_at"].is_string(), "{m}");
        }
    }
    // Another account does not see it, as query_sm has it.
    let other = get(node.http, &ids[0], OTHER).await;
    other.refused(404, Some("ESME_RQUERYFAIL"));
    assert_eq!(
        node.metric(r#"smsc_edge_submit_total{command="http",status="ESME_ROK"}"#).await,
        4.0
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_all_or_nothing_and_ucs2_and_binary_bodies_pass() {
    let node = start().await;
    let ok = json!({ "messages": [
        { "from": "Bank", "to": "447700900010", "text": "Привет" },
        { "from": "Bank", "to": "447700900011", "data": "0102ff", "data_coding": 4 },
    ]});
    let a = post(node.http, "/v1/messages/batch", BANK, ok).await;
    assert_eq!(a.status, 202, "{a:?}");
    let results = a.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["data_coding"], json!(8), "UCS2 for Cyrillic");
    assert_eq!(results[1]["data_coding"], json!(4));

    // The second message's source is not one the account may use: nothing is taken.
    let before = node.metric(r#"smsc_edge_submit_total{command="http",status="ESME_ROK"}"#).await;
    let bad = json!({ "messages": [
        { "from": "Bank", "to": "447700900012", "text": "first" },
        { "from": "Other", "to": "447700900013", "text": "second" },
    ]});
    let a = post(node.http, "/v1/messages/batch", BANK, bad).await;
    a.refused(422, Some("ESME_RINVSRCADR"));
    assert_eq!(a.body["index"], json!(1), "names the message refused");
    let after = node.metric(r#"smsc_edge_submit_total{command="http",status="ESME_ROK"}"#).await;
    assert_eq!(before, after, "nothing of a refused batch was submitted");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_is_cancelled_and_a_delivered_one_is_not() {
    let node = start().await;
    let later = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let body = json!({ "from": "Bank", "to": "447700900020", "text": "later",
                       "schedule": later.to_rfc3339(), "validity": 3600 });
    let a = post(node.http, "/v1/messages", BANK, body).await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = a.body["message_ids"][0].as_str().expect("id").to_owned();
    let scheduled = eventually("the scheduled message stored", || async {
        let a = get(node.http, &id, BANK).await;
        (a.status == 200).then_some(a.body)
    })
    .await;
    assert_eq!(scheduled["destinations"][0]["state"], json!("SCHEDULED"), "{scheduled}");
    assert!(scheduled["schedule_at"].is_string(), "{scheduled}");
    let path = format!("/v1/messages/{id}");
    let a = request(node.http, "DELETE", &path, Some(&basic(OTHER, PASSWORD)), "", "").await;
    a.refused(404, Some("ESME_RQUERYFAIL"));
    let a = request(node.http, "DELETE", &path, Some(&basic(BANK, PASSWORD)), "", "").await;
    assert_eq!(a.status, 204, "{a:?}");
    let m = get(node.http, &id, BANK).await;
    assert_eq!(m.body["destinations"][0]["state"], json!("DELETED"), "{m:?}");

    let a = post(
        node.http,
        "/v1/messages",
        BANK,
        json!({ "from": "Bank", "to": "447700900021", "text": "now" }),
    )
    .await;
    let id = a.body["message_ids"][0].as_str().expect("id").to_owned();
    final_message(node.http, &id).await;
    let path = format!("/v1/messages/{id}");
    let a = request(node.http, "DELETE", &path, Some(&basic(BANK, PASSWORD)), "", "").await;
    a.refused(409, Some("ESME_RCANCELFAIL"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_problem_json_with_the_smpp_status() {
    let node = start().await;
    let at = node.http;
    let msg = json!({ "from": "Bank", "to": "447700900030", "text": "hi" }).to_string();

    let a = request(at, "POST", "/v1/messages", None, "application/json", &msg).await;
    a.refused(401, None);
    assert!(a.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{a:?}");
    let a =
        request(at, "POST", "/v1/messages", Some(&basic(BANK, "wrong")), "application/json", &msg)
            .await;
    a.refused(401, Some("ESME_RINVPASWD"));
    let a =
        request(at, "POST", "/v1/messages", Some(&basic(BANK, PASSWORD)), "text/plain", &msg).await;
    a.refused(415, None);
    let a =
        request(at, "POST", "/v1/messages", Some(&basic(BANK, PASSWORD)), "application/json", "{")
            .await;
    a.refused(400, None);
    for (body, status, smpp) in [
        (json!({ "from": "Bank", "to": "44770090003x", "text": "hi" }), 400, None),
        (json!({ "from": "Bank", "to": "447700900030" }), 400, None),
        (
            json!({ "from": "Bank", "to": "447700900030", "text": "hi", "data_coding": 8 }),
            400,
            None,
        ),
        (json!({ "from": "Bank", "to": "447700900030", "text": "hi", "extra": 1 }), 400, None),
        (json!({ "from": "Bank", "to": "447700900030", "text": null }), 400, None),
        (
            json!({ "from": "Bank", "to": "447700900030", "data": "abc", "data_coding": 4 }),
            400,
            None,
        ),
        (
            json!({ "from": "Bank", "to": "447700900030", "data": "abcdef", "data_coding": 8 }),
            400,
            None,
        ),
        (json!({ "from": "Bank", "to": "447700900030", "text": "hi", "priority": 4 }), 400, None),
        // A receipt goes to a webhook, and this account has none.
        (
            json!({ "from": "Bank", "to": "447700900030", "text": "hi", "receipt": true }),
            422,
            Some("ESME_RINVREGDLVFLG"),
        ),
        (
            json!({ "from": "Someone", "to": "447700900030", "text": "hi" }),
            422,
            Some("ESME_RINVSRCADR"),
        ),
        (
            json!({ "from": "Bank", "to": "447700900030", "text": "hi",
                 "schedule": (chrono::Utc::now() + chrono::TimeDelta::days(3)).to_rfc3339() }),
            422,
            Some("ESME_RINVSCHED"),
        ),
        // 51 messages: over edge.http.max_messages (50).
        (json!({ "from": "Bank", "to": vec!["447700900030"; 51], "text": "hi" }), 413, None),
    ] {
        post(at, "/v1/messages", BANK, body).await.refused(status, smpp);
    }
    // Accounts that may not submit from here, or at all: 403 with the bind's status.
    for account in ["httpfar", "httpoff"] {
        post(
            at,
            "/v1/messages",
            account,
            json!({ "from": "Bank", "to": "447700900030", "text": "hi" }),
        )
        .await
        .refused(403, Some("ESME_RBINDFAIL"));
    }
    // Over edge.http.max_body_bytes (1 MiB): refused before it is parsed.
    let big = json!({ "from": "Bank", "to": "447700900030", "text": "x".repeat(1_100_000) });
    post(at, "/v1/messages", BANK, big).await.refused(413, None);
    let a = request(at, "GET", "/v1/nothing", Some(&basic(BANK, PASSWORD)), "", "").await;
    a.refused(404, None);
    let a = get(at, "0123456789abcdef0123456789abcdef", BANK).await;
    a.refused(404, Some("ESME_RQUERYFAIL"));
    let a = request(at, "GET", "/v1/openapi.json", None, "", "").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["openapi"], json!("3.1.0"));
    node.stop().await;
}

/// The account's rate (2/s) holds over HTTP: a request of 3 messages passes only on a
/// full bucket and leaves it in debt; the next is refused 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_rate_answers_429_with_retry_after() {
    let node = start().await;
    let body = json!({ "from": "Bank", "to": ["447700900040", "447700900041", "447700900042"], "text": "x" });
    let first = eventually("a full bucket takes the request", || async {
        let a = post(node.http, "/v1/messages", SLOW, body.clone()).await;
        (a.status == 202).then_some(a)
    })
    .await;
    assert_eq!(first.body["to"].as_array().map(Vec::len), Some(3));
    let a = post(node.http, "/v1/messages", SLOW, body.clone()).await;
    a.refused(429, Some("ESME_RTHROTTLED"));
    assert_eq!(a.header("retry-after"), Some("1"), "{a:?}");
    node.stop().await;
}

/// Schemathesis (PyPI) generates requests from `/v1/openapi.json`, valid and not, and
/// checks every answer against the document: status codes, problem+json bodies, the
/// schema-valid accepted and the schema-invalid refused (tests/http/schemathesis.toml).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_passes_on_the_openapi_document() {
    let Some(st) = std::env::var("SMSC_TEST_SCHEMATHESIS").ok().filter(|v| !v.is_empty()) else {
        if std::env::var("SMSC_SKIP_SCHEMATHESIS").as_deref() == Ok("1") {
            eprintln!("\n*** SKIPPED: schemathesis (SMSC_SKIP_SCHEMATHESIS=1) ***\n");
            return;
        }
        panic!("run through tests/run (SMSC_TEST_SCHEMATHESIS), or set SMSC_SKIP_SCHEMATHESIS=1");
    };
    let node = start().await;
    let url = format!("http://{}", node.http);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/http/schemathesis.toml");
    // Its own working directory: Hypothesis keeps an example database there, which must
    // neither land in the repository nor replay one run's examples in the next.
    let cwd = tempfile::tempdir().expect("a working directory");
    let run = tokio::process::Command::new(st)
        .current_dir(cwd.path())
        .args(["--no-color", "--config-file", config, "run"])
        .arg(format!("{url}/v1/openapi.json"))
        // An account with no source rule: more of the generated messages get through.
        .args(["--url", &url, "--auth", &format!("{OTHER}:{PASSWORD}")])
        .args(["--max-examples", "60", "--seed", "1", "--workers", "1"])
        .env("SCHEMATHESIS_HOOKS", "")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis within 10 minutes")
        .expect("schemathesis runs");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis failed:\n{log}");
    assert!(log.contains("passed"), "{log}");
    node.stop().await;
}

const HOOK_SECRET: &str = "0123456789abcdef-hook";

/// A receipt asked for over HTTP reaches the account's webhook, signed, after the
/// endpoint failed once (kept pending, retried after its backoff); an MO to the account
/// with no SMPP receiver bound goes there too; an API key stands for the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_mo_reach_the_webhook_signed_and_retried() {
    let (hook, hits) = receiver(1).await;
    let (key, digest) = smsc_accounts::new_api_key().expect("a key");
    let accounts = format!(
        "  - system_id: httphook\n    password_hash: \"{{hash}}\"\n    api_key_sha256: [\"{digest}\"]\n    webhook: {{ url: \"http://{hook}/events\", secret: \"{HOOK_SECRET}\" }}\n"
    );
    let node = start_with(&accounts, r#"{ prefix: "7878", account: httphook }"#).await;
    let at = node.http;

    let to = ["447700900050", "447700900051"];
    let body = json!({ "from": "Shop", "to": to, "text": "order shipped", "receipt": true });
    let text = body.to_string();
    let a = request(
        at,
        "POST",
        "/v1/messages",
        Some(&format!("Bearer {key}")),
        "application/json",
        &text,
    )
    .await;
    assert_eq!(a.status, 202, "an API key authenticates: {a:?}");
    let id = a.body["message_ids"][0].as_str().expect("id").to_owned();
    let other = smsc_accounts::new_api_key().expect("a key").0;
    let a = request(
        at,
        "POST",
        "/v1/messages",
        Some(&format!("Bearer {other}")),
        "application/json",
        &text,
    )
    .await;
    a.refused(401, Some("ESME_RINVPASWD"));

    // One receipt per number, each an event of its own.
    let receipts = eventually("a receipt per number taken by the webhook", || async {
        let mine: Vec<_> = taken(&hits, "receipt")
            .into_iter()
            .filter(|h| h.event()["message_id"] == json!(id))
            .collect();
        (mine.len() == 2).then_some(mine)
    })
    .await;
    let mut numbers: Vec<String> =
        receipts.iter().filter_map(|h| h.event()["to"].as_str().map(str::to_owned)).collect();
    numbers.sort();
    assert_eq!(numbers, to);
    let receipt = &receipts[0];
    let e = receipt.event();
    assert_eq!(e["state"], json!("DELIVERED"), "{e}");
    assert_eq!(e["from"], json!("Shop"), "{e}");
    assert_eq!(e["account"], json!("httphook"), "{e}");
    let event_id = format!("receipt:{id}:{}", e["to"].as_str().unwrap_or_default());
    assert_eq!(receipt.header("smsc-event-id"), Some(event_id.as_str()));
    assert_ne!(receipts[0].header("smsc-event-id"), receipts[1].header("smsc-event-id"));
    let ts = receipt.header("smsc-timestamp").expect("a timestamp");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(receipt.body.as_bytes());
    let tag = hex::encode(ring::hmac::sign(&key, &signed));
    assert_eq!(receipt.header("smsc-signature"), Some(format!("v1={tag}").as_str()));
    let failed = hits.lock().expect("hits").iter().filter(|h| h.answered == 503).count();
    assert_eq!(failed, 1, "the first request failed and the event was sent again");

    // No SMPP receiver is bound: the MO goes to the webhook.
    let ids = esme::inject_mo(node.simulator, "7878", "STOP").await;
    let mo = eventually("the MO taken by the webhook", || async {
        taken(&hits, "mo").into_iter().find(|h| h.event()["id"] == json!(ids[0]))
    })
    .await;
    let e = mo.event();
    assert_eq!((e["text"].as_str(), e["to"].as_str()), (Some("STOP"), Some("7878")), "{e}");
    assert_eq!(e["from"], json!("447700900555"), "{e}");
    assert!(node.metric(r#"smsc_worker_webhook_requests_total{result="delivered"}"#).await >= 2.0);
    node.stop().await;
}

/// The bind lockout holds over HTTP: after `edge.lockout.max_failures` (5) wrong
/// passwords for an account from this address, even the right one is refused 403 without
/// a check, while other accounts go on; API keys are counted together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_an_account_or_api_keys_out_from_an_address() {
    let (key, digest) = smsc_accounts::new_api_key().expect("a key");
    let keyed = format!(
        "  - system_id: httpkeyed\n    password_hash: \"{{hash}}\"\n    api_key_sha256: [\"{digest}\"]\n"
    );
    let node = start_with(&keyed, "").await;
    let at = node.http;
    let msg = json!({ "from": "Bank", "to": "447700900060", "text": "hi" }).to_string();
    let send = |auth: String| {
        let msg = msg.clone();
        async move { request(at, "POST", "/v1/messages", Some(&auth), "application/json", &msg).await }
    };
    for _ in 0..5 {
        send(basic(BANK, "wrong")).await.refused(401, Some("ESME_RINVPASWD"));
    }
    send(basic(BANK, PASSWORD)).await.refused(403, Some("ESME_RBINDFAIL"));
    assert_eq!(send(basic(OTHER, PASSWORD)).await.status, 202, "another account goes on");

    let wrong_keys: Vec<String> =
        (0..5).map(|_| smsc_accounts::new_api_key().expect("a key").0).collect();
    for wrong in &wrong_keys {
        send(format!("Bearer {wrong}")).await.refused(401, Some("ESME_RINVPASWD"));
    }
    send(format!("Bearer {key}")).await.refused(403, Some("ESME_RBINDFAIL"));
    assert_eq!(send(basic("httpkeyed", PASSWORD)).await.status, 202, "its password still works");
    assert!(node.metric(r#"smsc_edge_lockouts_total{reason="bind_failures"}"#).await >= 2.0);
    node.stop().await;
}
