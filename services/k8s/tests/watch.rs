//! The SmppAccount watcher against a fake apiserver (`tower_test::mock`): accounts
//! appear, change and go; bad resources are skipped and say why; a missing Secret that
//! turns up later is picked up; status is written per pod, rate-limited, only on change.

mod apiserver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver::{ApiServer, accounts_path, secrets_path};
use serde_json::{Value, json};
use smsc_accounts::AccountDirectory;
use smsc_k8s::watch::{self, Settings, StatusSettings};
use smsc_runtime::admin::Readiness;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// argon2id of "secret" with tiny parameters (m=8 KiB, t=1).
const HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$Zml4dHVyZS1zYWx0$WJEFL8NndZsdrq5NkUV09qPFpNjBbMQcMNAkey5WW+o";
const INTERVAL: Duration = Duration::from_secs(10);

fn account(name: &str, system_id: &str, secret: &str, extra: Value) -> Value {
    let mut spec = json!({
        "systemId": system_id,
        "passwordSecretRef": { "name": secret, "key": "hash" },
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    json!({
        "apiVersion": "smsc.io/v1alpha1",
        "kind": "SmppAccount",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn secret(name: &str, key: &str, value: &str) -> Value {
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some([(key.to_owned(), k8s_openapi::ByteString(value.as_bytes().to_vec()))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let mut v = serde_json::to_value(secret).expect("serialises");
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Secret");
    v
}

/// A watcher running as pod `edge-a`, its session counts set by the test.
struct Running {
    server: ApiServer,
    directory: Arc<AccountDirectory>,
    readiness: Readiness,
    sessions: Arc<Mutex<HashMap<String, usize>>>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(server: ApiServer, client: kube::Client) -> Self {
        let directory = Arc::new(AccountDirectory::new(Vec::new()));
        let readiness = Readiness::new();
        let loaded = readiness.condition("accounts");
        let sessions: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counts = sessions.clone();
        let settings = Settings {
            namespace: apiserver::NS.into(),
            secret_selector: None,
            max_validity_cap: Duration::from_secs(72 * 3600),
            status: Some(StatusSettings {
                pod: "edge-a".into(),
                interval: INTERVAL,
                sessions: Arc::new(move |id: &str| {
                    counts.lock().unwrap_or_else(|e| e.into_inner()).get(id).copied().unwrap_or(0)
                }),
            }),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch::run(
            client,
            settings,
            directory.clone(),
            Some(loaded),
            shutdown.clone(),
        ));
        Self { server, directory, readiness, sessions, shutdown, task }
    }

    fn set_sessions(&self, system_id: &str, n: usize) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(system_id.into(), n);
    }

    fn loaded(&self) -> bool {
        self.readiness.unmet().is_empty()
    }

    async fn until(&self, what: &str, mut check: impl FnMut(&Self) -> bool) {
        for _ in 0..2000 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never reached: {what}; requests: {:#?}", self.server.requests());
    }

    /// The resource's status as the fake apiserver holds it.
    fn status(&self, name: &str) -> Value {
        self.server.get(&accounts_path(), name).map(|o| o["status"].clone()).unwrap_or(Value::Null)
    }

    fn ready_reason(&self, name: &str) -> Option<String> {
        self.status(name)["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| c["reason"].as_str().map(str::to_owned))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the watcher stops on shutdown")
            .expect("the watcher did not panic");
    }
}

#[tokio::test(start_paused = true)]
async fn accounts_are_added_updated_and_deleted() {
    let (server, client) = ApiServer::start();
    server.put(&secrets_path(), secret("bank-pw", "hash", HASH));
    server.put(&accounts_path(), account("bank", "BANK", "bank-pw", json!({ "window": 10 })));
    let w = Running::start(server.clone(), client);
    assert!(!w.loaded(), "not ready before the first complete list");

    w.until("bank loaded", |w| w.directory.get("BANK").is_some()).await;
    assert!(w.loaded());
    let bank = w.directory.get("BANK").expect("bank");
    assert_eq!(bank.window, 10);
    assert!(bank.verify_password(b"secret"));
    assert!(!bank.verify_password(b"wrong"));

    // Added.
    server.put(&accounts_path(), account("shop", "SHOP", "bank-pw", json!({ "enabled": false })));
    w.until("shop loaded", |w| w.directory.get("SHOP").is_some()).await;
    assert!(!w.directory.get("SHOP").expect("shop").enabled);
    // Updated.
    server.put(
        &accounts_path(),
        account("bank", "BANK", "bank-pw", json!({ "window": 20, "allowedCidrs": ["10.0.0.0/8"] })),
    );
    w.until("bank window 20", |w| w.directory.get("BANK").is_some_and(|a| a.window == 20)).await;
    let bank = w.directory.get("BANK").expect("bank");
    assert!(bank.client_allowed("10.1.2.3".parse().expect("ip")));
    assert!(!bank.client_allowed("192.0.2.1".parse().expect("ip")));
    // A new password hash in the Secret is used without touching the resource.
    let rotated = smsc_accounts::hash_password("rotated").expect("hash");
    server.put(&secrets_path(), secret("bank-pw", "hash", &rotated));
    w.until("password rotated", |w| {
        w.directory.get("BANK").is_some_and(|a| a.verify_password(b"rotated"))
    })
    .await;
    // Deleted.
    server.delete(&accounts_path(), "shop");
    w.until("shop gone", |w| w.directory.get("SHOP").is_none()).await;
    assert!(w.directory.get("BANK").is_some());
    assert_eq!(w.directory.len(), 1);

    w.until("bank Accepted", |w| w.ready_reason("bank").as_deref() == Some("Accepted")).await;
    assert_eq!(w.status("bank")["conditions"][0]["status"], "True");
    assert_eq!(w.status("bank")["observedGeneration"], 2);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_bad_resource_is_skipped_and_reported_and_the_others_load() {
    let (server, client) = ApiServer::start();
    server.put(&secrets_path(), secret("pw", "hash", HASH));
    server.put(&accounts_path(), account("good", "GOOD", "pw", json!({})));
    server.put(
        &accounts_path(),
        account("bad-cidr", "BADCIDR", "pw", json!({ "allowedCidrs": ["10.0.0.0/33"] })),
    );
    server.put(&accounts_path(), account("bad-hash", "BADHASH", "plain", json!({})));
    server.put(&secrets_path(), secret("plain", "hash", "hunter2"));
    server.put(&accounts_path(), account("dup", "GOOD", "pw", json!({})));
    let w = Running::start(server.clone(), client);

    w.until("good loaded", |w| w.directory.get("GOOD").is_some()).await;
    assert_eq!(w.directory.len(), 1, "{:?}", w.directory);
    w.until("problems reported", |w| {
        w.ready_reason("bad-cidr").as_deref() == Some("InvalidSpec")
            && w.ready_reason("bad-hash").as_deref() == Some("InvalidPasswordHash")
            && w.ready_reason("dup").as_deref() == Some("DuplicateSystemId")
            && w.ready_reason("good").as_deref() == Some("Accepted")
    })
    .await;
    let bad = w.status("bad-cidr");
    assert_eq!(bad["conditions"][0]["status"], "False");
    let message = bad["message"].as_str().expect("message");
    assert!(message.contains("allowedCidrs[0]") && message.contains("10.0.0.0/33"), "{message}");
    let message = w.status("bad-hash")["message"].as_str().expect("message").to_owned();
    assert!(!message.contains("hunter2"), "the Secret's value never shows: {message}");

    // Fixed: it loads, and says so.
    server.put(&accounts_path(), account("bad-cidr", "BADCIDR", "pw", json!({})));
    w.until("fixed", |w| {
        w.directory.get("BADCIDR").is_some()
            && w.ready_reason("bad-cidr").as_deref() == Some("Accepted")
    })
    .await;
    assert_eq!(w.status("bad-cidr").get("message"), None);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_secret_that_turns_up_later_is_used() {
    let (server, client) = ApiServer::start();
    server.put(&accounts_path(), account("bank", "BANK", "bank-pw", json!({})));
    server.put(&accounts_path(), account("other", "OTHER", "other-pw", json!({})));
    server.put(&secrets_path(), secret("other-pw", "hash", HASH));
    let w = Running::start(server.clone(), client);

    w.until("SecretNotFound", |w| w.ready_reason("bank").as_deref() == Some("SecretNotFound"))
        .await;
    assert!(w.loaded(), "one bad resource does not hold the pod back");
    assert!(w.directory.get("BANK").is_none());
    assert!(w.directory.get("OTHER").is_some());

    // The Secret appears, with the wrong key first.
    server.put(&secrets_path(), secret("bank-pw", "password", HASH));
    w.until("SecretKeyNotFound", |w| {
        w.ready_reason("bank").as_deref() == Some("SecretKeyNotFound")
    })
    .await;
    assert!(w.directory.get("BANK").is_none());
    server.put(&secrets_path(), secret("bank-pw", "hash", HASH));
    w.until("bank loaded", |w| w.directory.get("BANK").is_some()).await;
    w.until("Accepted", |w| w.ready_reason("bank").as_deref() == Some("Accepted")).await;

    // The Secret goes: so does the account (binds stop), the others stay.
    server.delete(&secrets_path(), "bank-pw");
    w.until("bank gone", |w| w.directory.get("BANK").is_none()).await;
    assert!(w.directory.get("OTHER").is_some());
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_webhook_secret_is_watched_as_the_password_secret() {
    let (server, client) = ApiServer::start();
    let hook = json!({
        "webhook": {
            "url": "http://receipts.bank.svc/smsc",
            "secretRef": { "name": "bank-hook", "key": "signing" },
        },
    });
    server.put(&accounts_path(), account("bank", "BANK", "bank-pw", hook));
    server.put(&secrets_path(), secret("bank-pw", "hash", HASH));
    let w = Running::start(server.clone(), client);

    w.until("SecretNotFound", |w| w.ready_reason("bank").as_deref() == Some("SecretNotFound"))
        .await;
    assert!(w.loaded());
    assert!(w.directory.get("BANK").is_none(), "no account without its webhook secret");

    server.put(&secrets_path(), secret("bank-hook", "signing", "short"));
    w.until("InvalidWebhookSecret", |w| {
        w.ready_reason("bank").as_deref() == Some("InvalidWebhookSecret")
    })
    .await;
    let message = w.status("bank")["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("bank-hook") && !message.contains("short\""), "{message}");

    let first = "first-signing-secret";
    server.put(&secrets_path(), secret("bank-hook", "signing", first));
    w.until("bank loaded", |w| w.directory.get("BANK").is_some()).await;
    let secret_of = |w: &Running| {
        w.directory.get("BANK").and_then(|a| a.webhook.as_ref().map(|h| h.secret().to_vec()))
    };
    assert_eq!(secret_of(&w).as_deref(), Some(first.as_bytes()));

    // A rotated signing secret is used without touching the resource.
    let second = "second-signing-secret";
    server.put(&secrets_path(), secret("bank-hook", "signing", second));
    w.until("rotated", |w| secret_of(w).as_deref() == Some(second.as_bytes())).await;

    // The webhook Secret goes: so does the account.
    server.delete(&secrets_path(), "bank-hook");
    w.until("bank gone", |w| w.directory.get("BANK").is_none()).await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn sessions_are_reported_per_pod_at_most_once_an_interval_and_only_on_change() {
    let (server, client) = ApiServer::start();
    server.put(&secrets_path(), secret("pw", "hash", HASH));
    server.put(&accounts_path(), account("bank", "BANK", "pw", json!({})));
    // Another pod already reports 2 sessions.
    let mut other = account("bank", "BANK", "pw", json!({}));
    other["status"] = json!({
        "sessions": 2,
        "pods": [{ "pod": "edge-b", "sessions": 2, "updated": now_rfc3339() }],
    });
    server.put(&accounts_path(), other);
    let w = Running::start(server.clone(), client);
    w.set_sessions("BANK", 3);

    w.until("edge-a reports 3", |w| w.status("bank")["sessions"] == 5).await;
    let first = server.applied_to("bank");
    let a = first.last().expect("an apply");
    assert_eq!(a.manager, "smsc-edge/edge-a");
    assert!(a.force);
    assert_eq!(
        a.status["pods"],
        json!([{ "pod": "edge-a", "sessions": 3, "updated": a.status["pods"][0]["updated"] }])
    );
    let pods = w.status("bank")["pods"].as_array().expect("pods").len();
    assert_eq!(pods, 2, "each pod its own entry: {}", w.status("bank"));

    // Nothing changes: nothing is written over several intervals.
    let writes = server.applied_to("bank").len();
    tokio::time::sleep(INTERVAL * 5).await;
    assert_eq!(server.applied_to("bank").len(), writes, "{:#?}", server.applied_to("bank"));

    // Counts moving fast are written at most once an interval, the latest value.
    for n in [4, 5, 6, 7] {
        w.set_sessions("BANK", n);
        tokio::time::sleep(INTERVAL / 4).await;
    }
    w.until("edge-a reports 7", |w| w.status("bank")["sessions"] == 9).await;
    let applies = server.applied_to("bank");
    for pair in applies.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= INTERVAL,
            "two writes within an interval: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }

    // No sessions left: the entry goes.
    w.set_sessions("BANK", 0);
    w.until("edge-a entry removed", |w| {
        w.status("bank")["pods"].as_array().is_some_and(|p| p.len() == 1)
    })
    .await;
    assert_eq!(w.status("bank")["sessions"], 2);

    // At shutdown the pod takes its entry away.
    w.set_sessions("BANK", 4);
    w.until("edge-a back", |w| w.status("bank")["sessions"] == 6).await;
    let server = w.server.clone();
    w.stop().await;
    let last = server.applied_to("bank").pop().expect("an apply");
    assert_eq!(last.manager, "smsc-edge/edge-a");
    assert!(last.status.get("pods").is_none(), "{:?}", last.status);
}

#[tokio::test(start_paused = true)]
async fn api_errors_keep_the_pod_unready_then_load() {
    let (server, client) = ApiServer::start();
    server.put(&secrets_path(), secret("pw", "hash", HASH));
    server.put(&accounts_path(), account("bank", "BANK", "pw", json!({})));
    server.fail_lists(&accounts_path(), 3);
    let w = Running::start(server.clone(), client);
    w.until("bank loaded after the API recovered", |w| w.directory.get("BANK").is_some()).await;
    assert!(w.loaded());
    let lists = server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /apis/smsc.io") && !r.contains("watch=true"))
        .count();
    assert!(lists >= 4, "three failed lists and a good one: {lists}");
    w.stop().await;
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}
