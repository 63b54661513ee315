//! An in-process fake Kubernetes API server for tests: plain HTTP on 127.0.0.1, the real
//! wire protocol, objects kept as JSON. It serves what vulngate calls (the namespace
//! watch, the audit's paged pod list, service account and Secret reads, Events) and what
//! its tests need to stage and break it, nothing more:
//! - one global, monotonically increasing `resourceVersion` for every write;
//! - `GET` collection: `{kind: XList, apiVersion, metadata: {resourceVersion}, items}`;
//!   `limit`/`continue` paginate a consistent snapshot (an evicted token is `410 Expired`);
//! - `GET ...?watch=1&resourceVersion=N` (store.rs keeps the history, watch.rs streams
//!   it): newline-delimited `ADDED|MODIFIED|DELETED` events after N; with no (or `0`)
//!   resourceVersion, synthetic `ADDED` for the current objects first; `timeoutSeconds`
//!   ends the stream (with a `BOOKMARK` when `allowWatchBookmarks`); a resourceVersion
//!   older than the kept history is answered, as the apiserver's watch cache does, with
//!   `200` and one `ERROR` event carrying the `410 Expired` Status;
//! - `GET` and `POST` of one object and `PATCH` as a JSON merge patch (http.rs),
//!   `404 NotFound` (also for an object created in a namespace that does not exist),
//!   `409 AlreadyExists`, uid and creationTimestamp;
//! - injected failures (`429` with `Retry-After`, `500`, no answer), dropped and paused
//!   watches, compaction, and a record of every request.
//!
//! Not served (a `404` or `405`, so no test relies on it by mistake): other resources,
//! label and field selectors, PUT, DELETE over HTTP (tests delete through
//! [`FakeApiServer::delete`], which takes a namespace's objects with it), JSON patch and
//! server-side apply, subresources, finalizers, authentication, discovery beyond `/version`.
#![allow(dead_code)]

mod http;
mod store;
mod watch;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::Method;
use serde_json::{Map, Value, json};
use tokio::sync::watch as channel;

use store::{FailRule, Inner, copy_identity, default_resources};

const DEFAULT_HISTORY_LIMIT: usize = 1000;

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

impl ObjectKey {
    pub fn of(api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            api_version: api_version.into(),
            plural: plural.into(),
            namespace: namespace.unwrap_or_default().into(),
            name: name.into(),
        }
    }

    pub fn namespace(name: &str) -> Self {
        Self::of("v1", "namespaces", None, name)
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped on every write and on resume: wakes the watch streams.
    changed: channel::Sender<u64>,
    /// Bumped by `drop_watches`: every open watch stream aborts its connection.
    drops: channel::Sender<u64>,
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
        let (changed, _) = channel::channel(0);
        let (drops, _) = channel::channel(0);
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
            .fallback(http::handle)
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
        // kube's connector is built with rustls even for plain HTTP, on the process provider.
        vulngate::crypto::install_default_provider();
        let uri = self.url().parse().expect("server url");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        kube::Client::try_from(config).expect("kube client")
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

    /// Deletes an object (a namespace with everything in it), notifying watchers.
    pub fn delete(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = ObjectKey::of(api_version, plural, namespace, name);
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
        let key = ObjectKey::of(api_version, plural, namespace, name);
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
