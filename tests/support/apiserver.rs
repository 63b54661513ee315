//! An in-process fake Kubernetes API server for tests: plain HTTP on 127.0.0.1, the real
//! wire protocol (paths, lists, watches, Status errors), objects kept as JSON.
//!
//! What it does like a real apiserver:
//! - one global, monotonically increasing `resourceVersion` for every write;
//! - `GET` collection: `{kind: XList, apiVersion, metadata: {resourceVersion}, items}`;
//!   `limit`/`continue` paginate a consistent snapshot (an evicted token is `410 Expired`);
//!   `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`) and
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`, `=`/`==`/`!=`);
//! - `GET ...?watch=1&resourceVersion=N`: newline-delimited `ADDED|MODIFIED|DELETED|BOOKMARK`
//!   events after N; with no (or `0`) resourceVersion, synthetic `ADDED` for the current
//!   objects first (and with `sendInitialEvents=true` an initial-events-end bookmark);
//!   `timeoutSeconds` ends the stream (with a bookmark when `allowWatchBookmarks`); a
//!   resourceVersion older than the kept history is answered, as the apiserver's watch
//!   cache does, with `200` and one `ERROR` event carrying the `410 Expired` Status;
//!   objects that stop/start matching a label selector arrive as `DELETED`/`ADDED`;
//! - `GET`/`POST`/`PUT`/`PATCH`/`DELETE` of one object, `404 NotFound`,
//!   `409 AlreadyExists`, `409 Conflict` on a stale `metadata.resourceVersion`,
//!   `generateName`, uid and creationTimestamp, the `status` subresource;
//! - objects with `metadata.finalizers` are only marked (`deletionTimestamp`) by DELETE and
//!   go away when the last finalizer is removed; deleting a namespace deletes its objects;
//! - creating a namespaced object over HTTP in a namespace that does not exist is `404`.
//!
//! Simplifications, stated so no test relies on them by mistake: a namespace is removed at
//! once (no `Terminating` phase); strategic merge patch and server-side apply are applied as
//! JSON merge patches (lists replaced, no field managers); no authentication, no
//! discovery beyond `/version`, no protobuf.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

const DEFAULT_HISTORY_LIMIT: usize = 1000;
const SNAPSHOT_LIMIT: usize = 32;
const DEFAULT_WATCH_TIMEOUT_SECS: u64 = 1800;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// A `watch=1|true` GET.
    pub watch: bool,
}

/// Where an object lives: `api_version` is `v1` or `group/version`; `namespace` is empty
/// for cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub api_version: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone)]
struct ResourceInfo {
    kind: String,
    namespaced: bool,
    status_subresource: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone)]
struct HistoryEvent {
    rv: u64,
    kind: EventType,
    key: ObjectKey,
    /// The object before the change (for label-selector transitions).
    old: Option<Value>,
    object: Value,
}

struct Snapshot {
    rv: u64,
    remaining: Vec<Value>,
}

type Matcher = Box<dyn Fn(&RequestRecord) -> bool + Send + Sync>;

struct FailRule {
    remaining: usize,
    code: u16,
    matcher: Option<Matcher>,
}

struct Inner {
    resources: HashMap<(String, String), ResourceInfo>,
    objects: BTreeMap<ObjectKey, Value>,
    rv: u64,
    history: VecDeque<HistoryEvent>,
    history_limit: usize,
    /// Events at or below this resourceVersion are forgotten: watching from an older one
    /// is `410 Gone`.
    compacted: u64,
    snapshots: HashMap<String, Snapshot>,
    snapshot_order: VecDeque<String>,
    next_id: u64,
    failures: VecDeque<FailRule>,
    requests: Vec<RequestRecord>,
    watches_paused: bool,
    expired_watch_as_http: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped on every write and on resume: wakes the watch streams.
    changed: watch::Sender<u64>,
    /// Bumped by `drop_watches`: every open watch stream aborts its connection.
    drops: watch::Sender<u64>,
    open_watches: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The fake apiserver. Dropping it stops accepting connections and ends open watches.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.drops.send_modify(|n| *n += 1);
        self.task.abort();
    }
}

fn default_resources() -> HashMap<(String, String), ResourceInfo> {
    // (apiVersion, plural, kind, namespaced, status subresource)
    let table: &[(&str, &str, &str, bool, bool)] = &[
        ("v1", "namespaces", "Namespace", false, true),
        ("v1", "nodes", "Node", false, true),
        ("v1", "pods", "Pod", true, true),
        ("v1", "services", "Service", true, true),
        ("v1", "serviceaccounts", "ServiceAccount", true, false),
        ("v1", "secrets", "Secret", true, false),
        ("v1", "configmaps", "ConfigMap", true, false),
        ("v1", "events", "Event", true, false),
        (
            "v1",
            "replicationcontrollers",
            "ReplicationController",
            true,
            true,
        ),
        ("apps/v1", "deployments", "Deployment", true, true),
        ("apps/v1", "replicasets", "ReplicaSet", true, true),
        ("apps/v1", "statefulsets", "StatefulSet", true, true),
        ("apps/v1", "daemonsets", "DaemonSet", true, true),
        ("batch/v1", "jobs", "Job", true, true),
        ("batch/v1", "cronjobs", "CronJob", true, true),
        ("events.k8s.io/v1", "events", "Event", true, false),
        ("coordination.k8s.io/v1", "leases", "Lease", true, false),
        (
            "admissionregistration.k8s.io/v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            false,
        ),
    ];
    table
        .iter()
        .map(|(av, plural, kind, namespaced, status)| {
            (
                (av.to_string(), plural.to_string()),
                ResourceInfo {
                    kind: kind.to_string(),
                    namespaced: *namespaced,
                    status_subresource: *status,
                },
            )
        })
        .collect()
}

/// A Namespace object with the given annotations, ready for [`FakeApiServer::upsert`].
pub fn namespace(name: &str, annotations: &[(&str, &str)]) -> Value {
    let annotations: Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// A Running Pod with `(container name, image)` containers, as a kubelet reports it.
pub fn running_pod(namespace: &str, name: &str, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({"name": n, "image": i}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": containers},
        "status": {"phase": "Running"},
    })
}

impl FakeApiServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped. Starts with no objects
    /// (not even the `default` namespace).
    pub async fn start() -> Self {
        let (changed, _) = watch::channel(0);
        let (drops, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                resources: default_resources(),
                objects: BTreeMap::new(),
                rv: 1,
                history: VecDeque::new(),
                history_limit: DEFAULT_HISTORY_LIMIT,
                compacted: 0,
                snapshots: HashMap::new(),
                snapshot_order: VecDeque::new(),
                next_id: 1,
                failures: VecDeque::new(),
                requests: Vec::new(),
                watches_paused: false,
                expired_watch_as_http: false,
            }),
            changed,
            drops,
            open_watches: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig naming this server (no credentials, namespace `default`) to
    /// `dir/kubeconfig`, for a child process's `KUBECONFIG`.
    pub fn write_kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: test, namespace: default}}\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// A kube client for this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        // kube's connector is built with rustls even for plain HTTP; with more than one
        // crypto backend compiled in, rustls needs the process default chosen.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let uri = self.url().parse().expect("server url");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        kube::Client::try_from(config).expect("kube client")
    }

    /// Makes a resource known (besides the built-in table), e.g. a CRD's.
    pub fn register_resource(&self, api_version: &str, plural: &str, kind: &str, namespaced: bool) {
        self.shared.lock().resources.insert(
            (api_version.into(), plural.into()),
            ResourceInfo {
                kind: kind.into(),
                namespaced,
                status_subresource: false,
            },
        );
    }

    /// Creates or replaces an object, as a controller would (no admission checks), bumping
    /// the resourceVersion and notifying watchers. The resource comes from the object's
    /// `apiVersion` and `kind`. Returns the stored object.
    pub fn upsert(&self, object: Value) -> Value {
        let mut inner = self.shared.lock();
        let (key, _) = inner
            .key_of(&object)
            .expect("object of a known kind, with a name");
        let stored = match inner.objects.get(&key).cloned() {
            Some(old) => {
                let mut object = object;
                copy_identity(&old, &mut object);
                inner.write(key, Some(old), object)
            }
            None => {
                let object = inner.fill_new(object, &key);
                inner.write(key, None, object)
            }
        };
        drop(inner);
        self.shared.notify();
        stored
    }

    /// Sets (or, with `None`, removes) one annotation of an existing object.
    pub fn annotate(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Value {
        let mut object = self
            .get(api_version, plural, namespace, name)
            .expect("object to annotate exists");
        let meta = object["metadata"].as_object_mut().expect("metadata");
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        match value {
            Some(v) => annotations[key] = Value::String(v.into()),
            None => {
                if let Some(map) = annotations.as_object_mut() {
                    map.remove(key);
                }
            }
        }
        self.upsert(object)
    }

    /// Deletes an object at once (finalizers ignored), notifying watchers.
    pub fn delete(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = ObjectKey {
            api_version: api_version.into(),
            plural: plural.into(),
            namespace: namespace.unwrap_or_default().into(),
            name: name.into(),
        };
        let mut inner = self.shared.lock();
        let removed = inner.remove(&key);
        drop(inner);
        self.shared.notify();
        removed
    }

    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = ObjectKey {
            api_version: api_version.into(),
            plural: plural.into(),
            namespace: namespace.unwrap_or_default().into(),
            name: name.into(),
        };
        self.shared.lock().objects.get(&key).cloned()
    }

    /// Every stored object of a resource (all namespaces), ordered by namespace and name.
    pub fn list(&self, api_version: &str, plural: &str) -> Vec<Value> {
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| k.api_version == api_version && k.plural == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Aborts every open watch connection (as a network failure or an apiserver restart
    /// would); clients see the stream fail and must re-watch.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// How many watch streams are open right now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Holds back watch events (streams stay open, writes are kept) until
    /// [`resume_watches`](Self::resume_watches): a lagging watch, so that an object can
    /// exist on the server before a client's cache hears of it.
    pub fn pause_watches(&self) {
        self.shared.lock().watches_paused = true;
    }

    pub fn resume_watches(&self) {
        self.shared.lock().watches_paused = false;
        self.shared.notify();
    }

    /// Forgets all event history (and list continue tokens), like an etcd compaction:
    /// a watch from any resourceVersion older than the current one gets `410 Gone`.
    pub fn compact(&self) {
        let mut inner = self.shared.lock();
        inner.compacted = inner.rv;
        inner.history.clear();
        inner.snapshots.clear();
        inner.snapshot_order.clear();
    }

    /// Answers a watch from a forgotten resourceVersion with an HTTP `410 Expired` Status
    /// instead of the usual `200` and one `ERROR` event (what the watch cache sends): the
    /// other shape the API documents for the same condition.
    pub fn expire_watches_with_http_410(&self, yes: bool) {
        self.shared.lock().expired_watch_as_http = yes;
    }

    /// How many events are kept for watches to resume from (default 1000).
    pub fn set_history_limit(&self, limit: usize) {
        let mut inner = self.shared.lock();
        inner.history_limit = limit;
        inner.trim_history();
    }

    /// The next `n` requests fail with `code` (500 `InternalError` or 429 `TooManyRequests`
    /// with `Retry-After: 1`; any other code gets a generic Status). Code `0` means no
    /// answer at all: the request hangs until the client gives up.
    pub fn fail_next(&self, n: usize, code: u16) {
        self.shared.lock().failures.push_back(FailRule {
            remaining: n,
            code,
            matcher: None,
        });
    }

    /// Like [`fail_next`](Self::fail_next), counting only requests that `matcher` accepts.
    pub fn fail_next_matching(
        &self,
        n: usize,
        code: u16,
        matcher: impl Fn(&RequestRecord) -> bool + Send + Sync + 'static,
    ) {
        self.shared.lock().failures.push_back(FailRule {
            remaining: n,
            code,
            matcher: Some(Box::new(matcher)),
        });
    }

    /// Forgets the failures still pending from `fail_next*`.
    pub fn clear_failures(&self) {
        self.shared.lock().failures.clear();
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// How many requests had exactly this path (any method, any query).
    pub fn request_count(&self, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// Storage

impl Inner {
    fn key_of(&self, object: &Value) -> Option<(ObjectKey, ResourceInfo)> {
        let api_version = object["apiVersion"].as_str()?;
        let kind = object["kind"].as_str()?;
        let ((av, plural), info) = self
            .resources
            .iter()
            .find(|((av, _), info)| av == api_version && info.kind == kind)?;
        let name = object["metadata"]["name"].as_str()?;
        let namespace = if info.namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
        } else {
            ""
        };
        Some((
            ObjectKey {
                api_version: av.clone(),
                plural: plural.clone(),
                namespace: namespace.into(),
                name: name.into(),
            },
            info.clone(),
        ))
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Server-set fields of a new object.
    fn fill_new(&mut self, mut object: Value, key: &ObjectKey) -> Value {
        let id = self.next_id();
        let kind = self
            .resources
            .get(&(key.api_version.clone(), key.plural.clone()))
            .map(|i| i.kind.clone())
            .unwrap_or_default();
        if !object.is_object() {
            object = json!({});
        }
        object["apiVersion"] = json!(key.api_version);
        object["kind"] = json!(kind);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let meta = &mut object["metadata"];
        meta["name"] = json!(key.name);
        if key.namespace.is_empty() {
            if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        } else {
            meta["namespace"] = json!(key.namespace);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{id:012}"));
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        object
    }

    /// Stores `object` under `key` with a new resourceVersion and records the event.
    fn write(&mut self, key: ObjectKey, old: Option<Value>, mut object: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(HistoryEvent {
            rv,
            kind,
            key,
            old,
            object: object.clone(),
        });
        object
    }

    /// Removes an object (and, for a namespace, everything in it).
    fn remove(&mut self, key: &ObjectKey) -> Option<Value> {
        let mut removed = self.objects.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        removed["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(HistoryEvent {
            rv,
            kind: EventType::Deleted,
            key: key.clone(),
            old: None,
            object: removed.clone(),
        });
        if key.api_version == "v1" && key.plural == "namespaces" {
            let inside: Vec<ObjectKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            for k in inside {
                self.remove(&k);
            }
        }
        Some(removed)
    }

    fn record(&mut self, event: HistoryEvent) {
        self.history.push_back(event);
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    fn failure_for(&mut self, record: &RequestRecord) -> Option<u16> {
        let index = self.failures.iter().position(|rule| {
            rule.remaining > 0 && rule.matcher.as_ref().is_none_or(|m| m(record))
        })?;
        let rule = &mut self.failures[index];
        rule.remaining -= 1;
        let code = rule.code;
        if rule.remaining == 0 {
            self.failures.remove(index);
        }
        Some(code)
    }

    fn namespace_exists(&self, name: &str) -> bool {
        self.objects.contains_key(&ObjectKey {
            api_version: "v1".into(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: name.into(),
        })
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Keeps the server-owned fields of `old` on a replacement object.
fn copy_identity(old: &Value, new: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    new["metadata"]["name"] = old["metadata"]["name"].clone();
    if let Some(ns) = old["metadata"].get("namespace") {
        new["metadata"]["namespace"] = ns.clone();
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

fn status(code: u16, reason: &str, message: impl Into<String>, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    let mut response = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

fn details(key: &ObjectKey) -> Value {
    let group = key
        .api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("");
    let mut d = json!({"name": key.name, "kind": key.plural});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

fn resource_label(key: &ObjectKey) -> String {
    match key.api_version.rsplit_once('/') {
        Some((group, _)) => format!("{}.{}", key.plural, group),
        None => key.plural.clone(),
    }
}

fn not_found(key: &ObjectKey) -> Response {
    status(
        404,
        "NotFound",
        format!("{} \"{}\" not found", resource_label(key), key.name),
        Some(details(key)),
    )
}

/// An error answer from a helper, boxed: a `Response` is large.
type Rejection = Box<Response>;

/// What the apiserver says for a path that names no resource it serves.
fn not_served() -> Response {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        None,
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    status(400, "BadRequest", message, None)
}

fn json_response(code: StatusCode, value: Value) -> Response {
    (code, axum::Json(value)).into_response()
}

/// What a path names.
struct Target {
    api_version: String,
    plural: String,
    info: ResourceInfo,
    /// `Some` for a path under `/namespaces/{ns}/`.
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(inner: &Inner, path: &str) -> Result<Target, Rejection> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return Err(Box::new(not_served())),
    };
    let lookup = |plural: &str| {
        inner
            .resources
            .get(&(api_version.clone(), plural.to_string()))
            .cloned()
    };
    let unknown = || Box::new(not_served());
    let target = |plural: &str,
                  info: ResourceInfo,
                  namespace: Option<&str>,
                  name: Option<&str>,
                  sub: Option<&str>| Target {
        api_version: api_version.clone(),
        plural: plural.into(),
        info,
        namespace: namespace.map(Into::into),
        name: name.map(Into::into),
        subresource: sub.map(Into::into),
    };
    // `/namespaces/{ns}/{plural}...` when {plural} is a namespaced resource of this group.
    if let ["namespaces", ns, plural, tail @ ..] = rest {
        if let Some(info) = lookup(plural).filter(|i| i.namespaced) {
            return match tail {
                [] => Ok(target(plural, info, Some(ns), None, None)),
                [name] => Ok(target(plural, info, Some(ns), Some(name), None)),
                [name, sub] => Ok(target(plural, info, Some(ns), Some(name), Some(sub))),
                _ => Err(unknown()),
            };
        }
    }
    match rest {
        [plural] => lookup(plural)
            .map(|info| target(plural, info, None, None, None))
            .ok_or_else(unknown),
        [plural, name] => lookup(plural)
            .filter(|i| !i.namespaced)
            .map(|info| target(plural, info, None, Some(name), None))
            .ok_or_else(unknown),
        [plural, name, sub] => lookup(plural)
            .filter(|i| !i.namespaced)
            .map(|info| target(plural, info, None, Some(name), Some(sub)))
            .ok_or_else(unknown),
        _ => Err(unknown()),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let is_watch =
        method == Method::GET && query.get("watch").is_some_and(|w| w == "1" || w == "true");
    let record = RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        watch: is_watch,
    };
    let failure = {
        let mut inner = shared.lock();
        inner.requests.push(record.clone());
        inner.failure_for(&record)
    };
    if let Some(code) = failure {
        if code == 0 {
            // A request the server never answers.
            std::future::pending::<()>().await;
        }
        return match code {
            429 => status(
                429,
                "TooManyRequests",
                "injected: too many requests, please try again later",
                None,
            ),
            500 => status(500, "InternalError", "injected: internal error", None),
            c => status(c, "InternalError", format!("injected failure {c}"), None),
        };
    }
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}),
        );
    }
    let mut inner = shared.lock();
    let target = match parse_path(&inner, &path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let response = match (&method, &target.name) {
        (&Method::GET, None) if is_watch => {
            drop(inner);
            return start_watch(shared, target, &query);
        }
        (&Method::GET, None) => list(&mut inner, &target, &query),
        (&Method::GET, Some(_)) => get_one(&inner, &target),
        (&Method::POST, None) => create(&mut inner, &target, &body),
        (&Method::PUT, Some(_)) => replace(&mut inner, &target, &body),
        (&Method::PATCH, Some(_)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            patch(&mut inner, &target, &content_type, &body)
        }
        (&Method::DELETE, Some(_)) => delete(&mut inner, &target),
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
            None,
        ),
    };
    drop(inner);
    if method != Method::GET {
        shared.notify();
    }
    response
}

fn object_key(target: &Target, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: target.api_version.clone(),
        plural: target.plural.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.into(),
    }
}

fn check_subresource(target: &Target) -> Result<(), Rejection> {
    match target.subresource.as_deref() {
        None => Ok(()),
        Some("status") if target.info.status_subresource => Ok(()),
        Some(_) => Err(Box::new(not_served())),
    }
}

fn get_one(inner: &Inner, target: &Target) -> Response {
    if let Err(r) = check_subresource(target) {
        return *r;
    }
    let key = object_key(target, target.name.as_deref().unwrap_or_default());
    match inner.objects.get(&key) {
        Some(obj) => json_response(StatusCode::OK, obj.clone()),
        None => not_found(&key),
    }
}

// ----- selectors

enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_label_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let set = |v: &str| -> Result<Vec<String>, String> {
        let v = v.trim();
        let inside = v
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(|| format!("unable to parse requirement: expected (values) in {v:?}"))?;
        Ok(inside.split(',').map(|x| x.trim().to_string()).collect())
    };
    split_top_level(s)
        .into_iter()
        .map(|part| {
            if let Some((k, v)) = part.split_once("!=") {
                Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = part.split_once("==") {
                Ok(Requirement::Equals(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = part.split_once('=') {
                Ok(Requirement::Equals(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Ok(Requirement::NotIn(k.trim().into(), set(v)?))
            } else if let Some((k, v)) = part.split_once(" in ") {
                Ok(Requirement::In(k.trim().into(), set(v)?))
            } else if let Some(k) = part.strip_prefix('!') {
                Ok(Requirement::NotExists(k.trim().into()))
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Ok(Requirement::Exists(part))
            } else {
                Err(format!("unable to parse requirement: {part:?}"))
            }
        })
        .collect()
}

fn labels_match(requirements: &[Requirement], object: &Value) -> bool {
    let label = |k: &str| object["metadata"]["labels"][k].as_str().map(str::to_string);
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => label(k).as_deref() == Some(v),
        Requirement::NotEquals(k, v) => label(k).as_deref() != Some(v),
        Requirement::In(k, vs) => label(k).is_some_and(|l| vs.contains(&l)),
        Requirement::NotIn(k, vs) => label(k).is_none_or(|l| !vs.contains(&l)),
        Requirement::Exists(k) => label(k).is_some(),
        Requirement::NotExists(k) => label(k).is_none(),
    })
}

fn parse_field_selector(s: &str) -> Result<Vec<Requirement>, String> {
    split_top_level(s)
        .into_iter()
        .map(|part| {
            let (k, v, negate) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, v, false)
            } else {
                return Err(format!("invalid field selector: {part:?}"));
            };
            let k = k.trim();
            if k != "metadata.name" && k != "metadata.namespace" {
                return Err(format!("field label not supported: {k}"));
            }
            Ok(if negate {
                Requirement::NotEquals(k.into(), v.trim().into())
            } else {
                Requirement::Equals(k.into(), v.trim().into())
            })
        })
        .collect()
}

fn fields_match(requirements: &[Requirement], object: &Value) -> bool {
    let field = |k: &str| {
        let v = match k {
            "metadata.name" => &object["metadata"]["name"],
            _ => &object["metadata"]["namespace"],
        };
        v.as_str().unwrap_or("").to_string()
    };
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => field(k) == *v,
        Requirement::NotEquals(k, v) => field(k) != *v,
        _ => true,
    })
}

/// Which objects a list or watch selects.
struct Filter {
    api_version: String,
    plural: String,
    namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Filter {
    fn new(target: &Target, query: &HashMap<String, String>) -> Result<Self, Rejection> {
        let labels =
            parse_label_selector(query.get("labelSelector").map(String::as_str).unwrap_or(""))
                .map_err(bad_request)?;
        let fields =
            parse_field_selector(query.get("fieldSelector").map(String::as_str).unwrap_or(""))
                .map_err(bad_request)?;
        Ok(Self {
            api_version: target.api_version.clone(),
            plural: target.plural.clone(),
            namespace: target.namespace.clone(),
            labels,
            fields,
        })
    }

    fn in_scope(&self, key: &ObjectKey) -> bool {
        key.api_version == self.api_version
            && key.plural == self.plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
    }

    fn selects(&self, object: &Value) -> bool {
        labels_match(&self.labels, object) && fields_match(&self.fields, object)
    }
}

// ----- list

fn list(inner: &mut Inner, target: &Target, query: &HashMap<String, String>) -> Response {
    let filter = match Filter::new(target, query) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => return bad_request("limit must be a non-negative integer"),
    };
    let (rv, mut items) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match inner.snapshots.remove(token) {
            Some(snapshot) => (snapshot.rv, snapshot.remaining),
            None => {
                return status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    None,
                )
            }
        },
        None => {
            if let Some(r) = query.get("resourceVersion").filter(|r| !r.is_empty() && *r != "0") {
                let Ok(requested) = r.parse::<u64>() else {
                    return bad_request(format!("invalid resource version: {r}"));
                };
                let exact = query.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
                if exact && requested != inner.rv {
                    return status(410, "Expired", format!("too old resource version: {requested} ({})", inner.rv), None);
                }
                if requested > inner.rv {
                    return status(504, "Timeout", format!("Too large resource version: {requested}, current: {}", inner.rv), None);
                }
            }
            let items = inner
                .objects
                .iter()
                .filter(|(k, v)| filter.in_scope(k) && filter.selects(v))
                .map(|(_, v)| {
                    // Items of a list carry no kind/apiVersion of their own.
                    let mut v = v.clone();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    v
                })
                .collect();
            (inner.rv, items)
        }
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit.filter(|l| items.len() > *l) {
        let remaining = items.split_off(limit);
        let token = format!("fake-continue-{}", inner.next_id());
        metadata["continue"] = json!(token);
        metadata["remainingItemCount"] = json!(remaining.len());
        inner
            .snapshots
            .insert(token.clone(), Snapshot { rv, remaining });
        inner.snapshot_order.push_back(token);
        while inner.snapshot_order.len() > SNAPSHOT_LIMIT {
            if let Some(old) = inner.snapshot_order.pop_front() {
                inner.snapshots.remove(&old);
            }
        }
    }
    json_response(
        StatusCode::OK,
        json!({
            "kind": format!("{}List", target.info.kind),
            "apiVersion": target.api_version,
            "metadata": metadata,
            "items": items,
        }),
    )
}

// ----- writes

fn parse_body(body: &Bytes) -> Result<Value, Rejection> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(Box::new(bad_request("the body must be a JSON object")));
    }
    Ok(value)
}

fn create(inner: &mut Inner, target: &Target, body: &Bytes) -> Response {
    if target.subresource.is_some() {
        return status(
            405,
            "MethodNotAllowed",
            "POST is not supported on a subresource",
            None,
        );
    }
    let object = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if target.info.namespaced && target.namespace.is_none() {
        return bad_request("a namespaced object must be created under /namespaces/{namespace}/");
    }
    if let (Some(ns), Some(body_ns)) = (&target.namespace, object["metadata"]["namespace"].as_str())
    {
        if ns != body_ns {
            return bad_request("the namespace of the provided object does not match the namespace sent on the request");
        }
    }
    let name = match (object["metadata"]["name"].as_str(), object["metadata"]["generateName"].as_str()) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{:05x}", inner.next_id()),
        _ => {
            return status(
                422,
                "Invalid",
                format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", target.info.kind),
                None,
            )
        }
    };
    let key = object_key(target, &name);
    if let Some(ns) = &target.namespace {
        if !inner.namespace_exists(ns) {
            let ns_key = ObjectKey {
                api_version: "v1".into(),
                plural: "namespaces".into(),
                namespace: String::new(),
                name: ns.clone(),
            };
            return not_found(&ns_key);
        }
    }
    if inner.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", resource_label(&key), name),
            Some(details(&key)),
        );
    }
    let object = inner.fill_new(object, &key);
    let stored = inner.write(key, None, object);
    json_response(StatusCode::CREATED, stored)
}

fn conflict(key: &ObjectKey) -> Response {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            resource_label(key),
            key.name
        ),
        Some(details(key)),
    )
}

/// Writes `new` over the stored `old` under the rules of an update: a stale
/// resourceVersion is a conflict, server fields are kept, the status subresource splits
/// spec from status, a no-op writes nothing, the last finalizer gone completes a deletion.
fn update(
    inner: &mut Inner,
    target: &Target,
    key: ObjectKey,
    old: Value,
    mut new: Value,
) -> Response {
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str() {
        if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() {
            return conflict(&key);
        }
    }
    if new["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != key.name)
    {
        return bad_request("the name of the object does not match the name on the URL");
    }
    copy_identity(&old, &mut new);
    if target.info.status_subresource {
        let mut merged = old.clone();
        if target.subresource.as_deref() == Some("status") {
            merged["status"] = new["status"].clone();
        } else {
            let status = old.get("status").cloned();
            merged = new;
            match status {
                Some(s) => merged["status"] = s,
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        new = merged;
    }
    if new.get("spec") != old.get("spec") {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        new["metadata"]["generation"] = json!(generation);
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    if new == old {
        return json_response(StatusCode::OK, old);
    }
    let finalizers_gone = new["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty());
    if old["metadata"].get("deletionTimestamp").is_some() && finalizers_gone {
        inner.objects.insert(key.clone(), new);
        let removed = inner.remove(&key).unwrap_or_default();
        return json_response(StatusCode::OK, removed);
    }
    let stored = inner.write(key, Some(old), new);
    json_response(StatusCode::OK, stored)
}

fn replace(inner: &mut Inner, target: &Target, body: &Bytes) -> Response {
    if let Err(r) = check_subresource(target) {
        return *r;
    }
    let new = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let key = object_key(target, target.name.as_deref().unwrap_or_default());
    let Some(old) = inner.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    update(inner, target, key, old, new)
}

fn patch(inner: &mut Inner, target: &Target, content_type: &str, body: &Bytes) -> Response {
    if let Err(r) = check_subresource(target) {
        return *r;
    }
    let media = content_type.split(';').next().unwrap_or("").trim();
    let key = object_key(target, target.name.as_deref().unwrap_or_default());
    let old = inner.objects.get(&key).cloned();
    let patched = match media {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
            let patch: Value = if media == "application/apply-patch+yaml" {
                match serde_saphyr::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return bad_request(format!("invalid apply patch: {e}")),
                }
            } else {
                match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return bad_request(format!("invalid patch: {e}")),
                }
            };
            match (&old, media) {
                (None, "application/apply-patch+yaml") => {
                    // Server-side apply creates what does not exist.
                    if let Some(ns) = &target.namespace {
                        if !inner.namespace_exists(ns) {
                            return not_found(&ObjectKey {
                                api_version: "v1".into(),
                                plural: "namespaces".into(),
                                namespace: String::new(),
                                name: ns.clone(),
                            });
                        }
                    }
                    let object = inner.fill_new(patch, &key);
                    let stored = inner.write(key, None, object);
                    return json_response(StatusCode::CREATED, stored);
                }
                (None, _) => return not_found(&key),
                (Some(old), _) => {
                    let mut doc = old.clone();
                    merge_patch(&mut doc, &patch);
                    doc
                }
            }
        }
        "application/json-patch+json" => {
            let Some(old) = &old else {
                return not_found(&key);
            };
            let ops: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return bad_request(format!("invalid patch: {e}")),
            };
            let mut doc = old.clone();
            if let Err(e) = json_patch(&mut doc, &ops) {
                return status(422, "Invalid", e, Some(details(&key)));
            }
            doc
        }
        other => {
            return status(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"),
                None,
            )
        }
    };
    let Some(old) = old else {
        return not_found(&key);
    };
    update(inner, target, key, old, patched)
}

fn delete(inner: &mut Inner, target: &Target) -> Response {
    if target.subresource.is_some() {
        return status(
            405,
            "MethodNotAllowed",
            "DELETE is not supported on a subresource",
            None,
        );
    }
    let key = object_key(target, target.name.as_deref().unwrap_or_default());
    let Some(old) = inner.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    let has_finalizers = old["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if old["metadata"].get("deletionTimestamp").is_some() {
            return json_response(StatusCode::OK, old);
        }
        let mut marked = old.clone();
        marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        let stored = inner.write(key, Some(old), marked);
        return json_response(StatusCode::OK, stored);
    }
    let removed = inner.remove(&key).unwrap_or_default();
    json_response(StatusCode::OK, removed)
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn unescape_pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn pointer_get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn pointer_parent<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut v = doc;
    for t in &tokens[..tokens.len().saturating_sub(1)] {
        v = match v {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("missing path segment {t:?}"))?,
            Value::Array(a) => t
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| format!("missing index {t:?}"))?,
            _ => return Err(format!("cannot descend into {t:?}")),
        };
    }
    Ok(v)
}

fn pointer_add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some(last) = tokens.last() else {
        *doc = value;
        return Ok(());
    };
    match pointer_parent(doc, tokens)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) if last == "-" => {
            a.push(value);
            Ok(())
        }
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("invalid index {last:?}"))?;
            if i > a.len() {
                return Err(format!("index {i} out of bounds"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("add: parent is not a container".into()),
    }
}

fn pointer_remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let last = tokens.last().ok_or("cannot remove the whole document")?;
    match pointer_parent(doc, tokens)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("remove: no member {last:?}")),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("invalid index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("remove: index {i} out of bounds"));
            }
            Ok(a.remove(i))
        }
        _ => Err("remove: parent is not a container".into()),
    }
}

/// RFC 6902.
fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let path = unescape_pointer(op["path"].as_str().ok_or("op without path")?)?;
        match op["op"].as_str() {
            Some("add") => pointer_add(doc, &path, op["value"].clone())?,
            Some("remove") => {
                pointer_remove(doc, &path)?;
            }
            Some("replace") => {
                pointer_remove(doc, &path)?;
                pointer_add(doc, &path, op["value"].clone())?;
            }
            Some("test") => {
                if pointer_get(doc, &path) != Some(&op["value"]) {
                    return Err(format!("test operation failed at {}", op["path"]));
                }
            }
            Some(verb @ ("move" | "copy")) => {
                let from = unescape_pointer(op["from"].as_str().ok_or("op without from")?)?;
                let value = if verb == "move" {
                    pointer_remove(doc, &from)?
                } else {
                    pointer_get(doc, &from)
                        .cloned()
                        .ok_or("copy: from does not exist")?
                };
                pointer_add(doc, &path, value)?;
            }
            other => return Err(format!("unknown JSON patch op {other:?}")),
        }
    }
    Ok(())
}

// ----- watch

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn expired_status(requested: u64, current: u64) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {requested} ({current})"),
        "reason": "Expired",
        "code": 410,
    })
}

struct WatchCursor {
    shared: Arc<Shared>,
    filter: Filter,
    kind: String,
    last_rv: u64,
    queue: VecDeque<Bytes>,
    changed: watch::Receiver<u64>,
    drops: watch::Receiver<u64>,
    drop_generation: u64,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    done: bool,
}

impl Drop for WatchCursor {
    fn drop(&mut self) {
        self.shared.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchCursor {
    fn bookmark(&self, rv: u64, annotations: Option<Value>) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let Some(a) = annotations {
            metadata["annotations"] = a;
        }
        let api_version = &self.filter.api_version;
        event_line(
            "BOOKMARK",
            &json!({"kind": self.kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }

    /// Queues the events after `last_rv` that this watch selects.
    fn collect(&mut self) {
        let inner = self.shared.lock();
        if inner.watches_paused {
            return;
        }
        if self.last_rv < inner.compacted {
            // The events this watcher still needs are gone (it fell behind).
            self.queue
                .push_back(event_line("ERROR", &expired_status(self.last_rv, inner.rv)));
            self.done = true;
            return;
        }
        for e in inner
            .history
            .iter()
            .filter(|e| e.rv > self.last_rv && self.filter.in_scope(&e.key))
        {
            let now = self.filter.selects(&e.object);
            let before = e.old.as_ref().is_some_and(|o| self.filter.selects(o));
            let kind = match (e.kind, before, now) {
                (EventType::Deleted, _, true) => "DELETED",
                (EventType::Added, _, true) => "ADDED",
                (EventType::Modified, true, true) => "MODIFIED",
                (EventType::Modified, false, true) => "ADDED",
                (EventType::Modified, true, false) => "DELETED",
                _ => continue,
            };
            self.queue.push_back(event_line(kind, &e.object));
        }
        self.last_rv = inner.rv;
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if let Some(line) = self.queue.pop_front() {
                return Some(Ok(line));
            }
            if self.done {
                return None;
            }
            if *self.drops.borrow_and_update() != self.drop_generation {
                self.done = true;
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "watch dropped by the test",
                )));
            }
            self.changed.borrow_and_update();
            self.collect();
            if !self.queue.is_empty() {
                continue;
            }
            if tokio::time::Instant::now() >= self.deadline {
                if self.bookmarks {
                    let line = self.bookmark(self.last_rv, None);
                    self.queue.push_back(line);
                }
                self.done = true;
                continue;
            }
            tokio::select! {
                _ = self.changed.changed() => {}
                _ = self.drops.changed() => {}
                _ = tokio::time::sleep_until(self.deadline) => {}
            }
        }
    }
}

fn start_watch(shared: Arc<Shared>, target: Target, query: &HashMap<String, String>) -> Response {
    let filter = match Filter::new(&target, query) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "1" || v == "true");
    let bookmarks = flag("allowWatchBookmarks");
    let timeout = match query.get("timeoutSeconds").map(|t| t.parse::<u64>()) {
        None => DEFAULT_WATCH_TIMEOUT_SECS,
        Some(Ok(t)) => t,
        Some(Err(_)) => return bad_request("timeoutSeconds must be a non-negative integer"),
    };
    let requested = query
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0");
    let requested = match requested.map(|r| r.parse::<u64>()) {
        None => None,
        Some(Ok(rv)) => Some(rv),
        Some(Err(_)) => return bad_request("invalid resourceVersion"),
    };
    if let Some(rv) = requested {
        let inner = shared.lock();
        if inner.expired_watch_as_http && rv < inner.compacted {
            let current = inner.rv;
            return status(
                410,
                "Expired",
                format!("too old resource version: {rv} ({current})"),
                None,
            );
        }
    }
    let mut cursor = WatchCursor {
        changed: shared.changed.subscribe(),
        drops: shared.drops.subscribe(),
        drop_generation: *shared.drops.borrow(),
        shared: shared.clone(),
        kind: target.info.kind.clone(),
        filter,
        last_rv: 0,
        queue: VecDeque::new(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        bookmarks,
        done: false,
    };
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    match requested {
        Some(rv) => cursor.last_rv = rv,
        None => {
            // No resourceVersion: the current state as ADDED events, then changes.
            let inner = shared.lock();
            for (_, object) in inner
                .objects
                .iter()
                .filter(|(k, v)| cursor.filter.in_scope(k) && cursor.filter.selects(v))
            {
                cursor.queue.push_back(event_line("ADDED", object));
            }
            cursor.last_rv = inner.rv;
            drop(inner);
            if flag("sendInitialEvents") && bookmarks {
                let line = cursor.bookmark(
                    cursor.last_rv,
                    Some(json!({"k8s.io/initial-events-end": "true"})),
                );
                cursor.queue.push_back(line);
            }
        }
    }
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        let item = cursor.next().await?;
        Some((item, cursor))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(500, "InternalError", "response", None))
}
