//! A fake kube-apiserver behind `tower_test::mock`: enough of list, watch and status
//! apply for the watchers under test, with objects the test puts in and takes out.
//!
//! - list: every object of the collection, with the current resourceVersion;
//! - watch (`watch=true&resourceVersion=N`): held until some event of that collection is
//!   newer than N, then answered with all of them (the body ends, and the watcher
//!   watches again from the last one, as after a server-side timeout);
//! - PATCH `.../<name>/status` (server-side apply): recorded, and merged into the object
//!   roughly as the apiserver does (each field manager owns its `status.pods` entries;
//!   other status fields come from the latest apply that sets them), then announced as a
//!   MODIFIED event.
//! - PATCH `.../<name>` (JSON merge patch of `metadata.annotations`): recorded, merged
//!   into the object if it exists (404 otherwise), announced as a MODIFIED event.
//!
//! Anything else is answered 404; a collection can be made to fail its lists, and the
//! server its next merge patches.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One status apply as received.
#[derive(Debug, Clone)]
pub struct Applied {
    pub name: String,
    pub manager: String,
    pub force: bool,
    pub status: Value,
    /// When it came (tokio time, so paused-time tests can check spacing).
    pub at: tokio::time::Instant,
}

/// One merge patch as received.
#[derive(Debug, Clone)]
pub struct Patched {
    pub path: String,
    pub manager: String,
    pub content_type: String,
    pub body: Value,
    pub at: tokio::time::Instant,
}

#[derive(Debug, Default)]
struct Collection {
    /// Object JSON by name.
    objects: BTreeMap<String, Value>,
    /// (resourceVersion, watch event).
    events: Vec<(u64, Value)>,
    /// Lists to answer 500 before answering properly.
    failing_lists: usize,
    /// Per object: each manager's applied status, in the order applied.
    applies: BTreeMap<String, Vec<(String, Value)>>,
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    /// By collection path: `/apis/smsc.io/v1alpha1/namespaces/smsc/smppaccounts`.
    collections: BTreeMap<String, Collection>,
    applied: Vec<Applied>,
    patched: Vec<Patched>,
    /// Merge patches to answer 500 before answering properly.
    failing_patches: usize,
    requests: Vec<String>,
}

/// The test's side of the fake apiserver.
#[derive(Debug, Clone)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
    version: watch::Sender<u64>,
}

pub const NS: &str = "smsc";

pub fn accounts_path() -> String {
    format!("/apis/smsc.io/v1alpha1/namespaces/{NS}/smppaccounts")
}

pub fn secrets_path() -> String {
    format!("/api/v1/namespaces/{NS}/secrets")
}

pub fn pods_path() -> String {
    format!("/api/v1/namespaces/{NS}/pods")
}

pub fn slices_path() -> String {
    format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices")
}

impl ApiServer {
    /// A client whose requests this server answers (spawned on the current runtime).
    pub fn start() -> (ApiServer, kube::Client) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (version, _) = watch::channel(0);
        let server = ApiServer { state: Arc::default(), version };
        tokio::spawn(server.clone().serve(handle));
        (server, kube::Client::new(service, NS))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or replaces an object (`kind`/`apiVersion`/`metadata.name` required).
    pub fn put(&self, collection: &str, mut object: Value) {
        let name = object["metadata"]["name"].as_str().expect("metadata.name").to_owned();
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv;
        let c = s.collections.entry(collection.to_owned()).or_default();
        object["metadata"]["namespace"] = json!(NS);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if object["metadata"]["creationTimestamp"].is_null() {
            // Later objects are younger, as in a real cluster.
            let t = format!("2026-01-01T{:02}:{:02}:{:02}Z", rv / 3600 % 24, rv / 60 % 60, rv % 60);
            object["metadata"]["creationTimestamp"] = json!(t);
        }
        // A status given here stands for what other writers applied before.
        if let Some(status) = object.get("status") {
            c.applies.insert(name.clone(), vec![("test-setup".to_owned(), status.clone())]);
        }
        // The apiserver keeps the status when the spec is replaced.
        let kind = match c.objects.get(&name) {
            Some(old) => {
                if object.get("status").is_none()
                    && let Some(status) = old.get("status")
                {
                    object["status"] = status.clone();
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let spec_changed = old.get("spec") != object.get("spec");
                object["metadata"]["generation"] =
                    json!(if spec_changed { generation + 1 } else { generation });
                "MODIFIED"
            }
            None => {
                object["metadata"]["generation"] = json!(1);
                "ADDED"
            }
        };
        c.objects.insert(name, object.clone());
        c.events.push((rv, json!({ "type": kind, "object": object })));
        drop(s);
        self.version.send_replace(rv);
    }

    pub fn delete(&self, collection: &str, name: &str) {
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv;
        let c = s.collections.entry(collection.to_owned()).or_default();
        let Some(mut object) = c.objects.remove(name) else { return };
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        c.events.push((rv, json!({ "type": "DELETED", "object": object })));
        drop(s);
        self.version.send_replace(rv);
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.lock().collections.get(collection).and_then(|c| c.objects.get(name)).cloned()
    }

    /// The next `n` lists of `collection` answer 500.
    pub fn fail_lists(&self, collection: &str, n: usize) {
        self.lock().collections.entry(collection.to_owned()).or_default().failing_lists = n;
    }

    /// The next `n` merge patches answer 500.
    pub fn fail_patches(&self, n: usize) {
        self.lock().failing_patches = n;
    }

    /// Every merge patch received, failed ones included.
    pub fn patched(&self) -> Vec<Patched> {
        self.lock().patched.clone()
    }

    pub fn applied(&self) -> Vec<Applied> {
        self.lock().applied.clone()
    }

    pub fn applied_to(&self, name: &str) -> Vec<Applied> {
        self.applied().into_iter().filter(|a| a.name == name).collect()
    }

    /// Every request as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    async fn serve(self, mut handle: Handle) {
        while let Some((request, reply)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let query = query(request.uri().query().unwrap_or(""));
            self.lock().requests.push(format!("{method} {}", request.uri()));
            let selector = query.get("labelSelector").cloned();
            if query.get("watch").map(String::as_str) == Some("true") {
                let since = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
                let server = self.clone();
                tokio::spawn(async move {
                    let body = server.events_after(&path, since, selector.as_deref()).await;
                    reply.send_response(ok(body));
                });
                continue;
            }
            let response = if method == http::Method::GET {
                self.list(&path, selector.as_deref())
            } else if method == http::Method::PATCH && path.ends_with("/status") {
                let bytes = request.into_body().collect_bytes().await.expect("request body");
                self.apply_status(&path, &query, &bytes)
            } else if method == http::Method::PATCH {
                let content_type = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = request.into_body().collect_bytes().await.expect("request body");
                self.merge_patch(&path, &query, &content_type, &bytes)
            } else {
                not_found()
            };
            reply.send_response(response);
        }
    }

    fn list(&self, path: &str, selector: Option<&str>) -> Response<Body> {
        let mut s = self.lock();
        let rv = s.rv;
        let Some(c) = s.collections.get_mut(path) else {
            return ok(json!({ "metadata": { "resourceVersion": rv.to_string() }, "items": [] })
                .to_string()
                .into_bytes());
        };
        if c.failing_lists > 0 {
            c.failing_lists -= 1;
            return status(StatusCode::INTERNAL_SERVER_ERROR, "etcd is having a bad day");
        }
        let items: Vec<&Value> = c.objects.values().filter(|o| selects(selector, o)).collect();
        ok(json!({ "metadata": { "resourceVersion": rv.to_string() }, "items": items })
            .to_string()
            .into_bytes())
    }

    /// Waits for events of `path` newer than `since`; returns them as a watch body.
    async fn events_after(&self, path: &str, since: u64, selector: Option<&str>) -> Vec<u8> {
        let mut version = self.version.subscribe();
        loop {
            {
                let s = self.lock();
                if let Some(c) = s.collections.get(path) {
                    let newer: Vec<String> = c
                        .events
                        .iter()
                        .filter(|(rv, e)| *rv > since && selects(selector, &e["object"]))
                        .map(|(_, e)| e.to_string())
                        .collect();
                    if !newer.is_empty() {
                        return (newer.join("\n") + "\n").into_bytes();
                    }
                }
            }
            if version.changed().await.is_err() {
                return Vec::new();
            }
        }
    }

    fn apply_status(
        &self,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Response<Body> {
        let Some(rest) = path.strip_suffix("/status") else { return not_found() };
        let Some((collection, name)) = rest.rsplit_once('/') else { return not_found() };
        let patch: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let manager = query.get("fieldManager").cloned().unwrap_or_default();
        let force = query.get("force").map(String::as_str) == Some("true");
        let applied_status = patch.get("status").cloned().unwrap_or(json!({}));
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv;
        s.applied.push(Applied {
            name: name.to_owned(),
            manager: manager.clone(),
            force,
            status: applied_status.clone(),
            at: tokio::time::Instant::now(),
        });
        let Some(c) = s.collections.get_mut(collection) else { return not_found() };
        if !c.objects.contains_key(name) {
            return not_found();
        }
        let applies = c.applies.entry(name.to_owned()).or_default();
        applies.retain(|(m, _)| *m != manager);
        applies.push((manager, applied_status));
        let merged = merge(applies);
        let object = c.objects.get_mut(name).expect("checked");
        object["status"] = merged;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let object = object.clone();
        c.events.push((rv, json!({ "type": "MODIFIED", "object": object })));
        drop(s);
        self.version.send_replace(rv);
        ok(object.to_string().into_bytes())
    }
}

impl ApiServer {
    fn merge_patch(
        &self,
        path: &str,
        query: &BTreeMap<String, String>,
        content_type: &str,
        body: &[u8],
    ) -> Response<Body> {
        let patch: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let mut s = self.lock();
        s.patched.push(Patched {
            path: path.to_owned(),
            manager: query.get("fieldManager").cloned().unwrap_or_default(),
            content_type: content_type.to_owned(),
            body: patch.clone(),
            at: tokio::time::Instant::now(),
        });
        if s.failing_patches > 0 {
            s.failing_patches -= 1;
            return status(StatusCode::INTERNAL_SERVER_ERROR, "etcd is having a bad day");
        }
        let Some((collection, name)) = path.rsplit_once('/') else { return not_found() };
        s.rv += 1;
        let rv = s.rv;
        let Some(object) = s.collections.get_mut(collection).and_then(|c| c.objects.get_mut(name))
        else {
            return not_found();
        };
        let annotations = patch["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
        for (key, value) in annotations {
            object["metadata"]["annotations"][key] = value;
        }
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let object = object.clone();
        let c = s.collections.get_mut(collection).expect("checked");
        c.events.push((rv, json!({ "type": "MODIFIED", "object": object })));
        drop(s);
        self.version.send_replace(rv);
        ok(object.to_string().into_bytes())
    }
}

/// The status the applies add up to: `pods` entries from every manager, every other
/// field from the latest apply that has it.
fn merge(applies: &[(String, Value)]) -> Value {
    let mut status = serde_json::Map::new();
    let mut pods = Vec::new();
    for (_, applied) in applies {
        let Some(fields) = applied.as_object() else { continue };
        for (key, value) in fields {
            if key == "pods" {
                pods.extend(value.as_array().cloned().unwrap_or_default());
            } else {
                status.insert(key.clone(), value.clone());
            }
        }
    }
    if !pods.is_empty() {
        status.insert("pods".into(), Value::Array(pods));
    }
    Value::Object(status)
}

/// Whether `object` matches a `key=value` label selector (the only form used here).
fn selects(selector: Option<&str>, object: &Value) -> bool {
    let Some((key, value)) = selector.and_then(|s| s.split_once('=')) else { return true };
    object["metadata"]["labels"][key] == value
}

fn query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2F", "/").replace("%3D", "=")))
        .collect()
}

fn ok(body: Vec<u8>) -> Response<Body> {
    Response::builder().status(StatusCode::OK).body(Body::from(body)).expect("response")
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": code.canonical_reason(), "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .body(Body::from(body.to_string().into_bytes()))
        .expect("response")
}

fn not_found() -> Response<Body> {
    status(StatusCode::NOT_FOUND, "the server could not find the requested resource")
}
