//! A watch-backed cache of the cluster's Namespaces (kube `watcher` + `reflector`).
//!
//! The admission hot path asks for a namespace's annotations on every review, so answers
//! come from an in-memory store kept current by a watch; each entry holds only the
//! `vulngate.io/` annotations behind an `Arc`, which makes a lookup one map read and one
//! reference-count increment. A namespace the store does not hold yet (created a moment
//! ago, its watch event still in flight) is fetched from the apiserver directly.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, Lookup, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::{Annotations, NamespaceError, NamespaceSource};
use crate::domain::annotations::ANNOTATION_PREFIX;

/// How long a directly fetched answer (including "does not exist") is reused while the
/// watch has not delivered that namespace: long enough to turn a burst of reviews in a new
/// namespace into one GET, short enough not to matter once the watch catches up.
const FETCHED_TTL: Duration = Duration::from_secs(1);
const FETCHED_CAPACITY: u64 = 1024;
/// A direct fetch sits on the admission path: it must fail well inside a review's
/// deadline rather than wait for the client's long read timeout.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before starting a new watcher after an HTTP 410, so a server that keeps
/// answering so is not listed in a tight loop.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// While watch errors keep coming, repeat the warning at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One cached namespace: its name and its `vulngate.io/` annotations.
#[derive(Debug, Clone)]
pub(crate) struct NamespaceEntry {
    name: String,
    resource_version: Option<String>,
    uid: Option<String>,
    annotations: Annotations,
}

impl From<Namespace> for NamespaceEntry {
    fn from(ns: Namespace) -> Self {
        let meta = ns.metadata;
        Self {
            name: meta.name.unwrap_or_default(),
            resource_version: meta.resource_version,
            uid: meta.uid,
            annotations: Arc::new(policy_annotations(meta.annotations.unwrap_or_default())),
        }
    }
}

/// Keeps only the annotations vulngate reads; the rest of a namespace is not our business
/// and would only cost memory.
fn policy_annotations(all: BTreeMap<String, String>) -> BTreeMap<String, String> {
    all.into_iter()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .collect()
}

// The reflector's store is generic over `Lookup`; implementing it for the slim entry lets
// the store hold entries instead of whole Namespace objects.
impl Lookup for NamespaceEntry {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Namespace".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "namespaces".into()
    }
    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        None
    }
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        self.resource_version.as_deref().map(Cow::Borrowed)
    }
    fn uid(&self) -> Option<Cow<'_, str>> {
        self.uid.as_deref().map(Cow::Borrowed)
    }
}

fn entry_event(event: watcher::Event<Namespace>) -> watcher::Event<NamespaceEntry> {
    use watcher::Event::*;
    match event {
        Apply(ns) => Apply(ns.into()),
        Delete(ns) => Delete(ns.into()),
        Init => Init,
        InitApply(ns) => InitApply(ns.into()),
        InitDone => InitDone,
    }
}

/// Namespace annotations from the cluster, served from a watch-backed cache.
///
/// **Readiness**: [`is_ready`](NamespaceSource::is_ready) turns true once the first full
/// list of Namespaces has been loaded into the store, and stays true from then on: when the
/// watch connection drops or the apiserver is unreachable, the watcher re-watches (or
/// re-lists, after a `410 Gone`) with exponential backoff while lookups keep being served
/// from the last synced state, and a re-list replaces the store atomically once complete.
/// It is false again only if the watch task itself has ended (it does not, short of a
/// panic).
pub struct ClusterNamespaces {
    api: Api<Namespace>,
    store: Store<NamespaceEntry>,
    ready: Arc<AtomicBool>,
    fetched: moka::future::Cache<String, Option<Annotations>>,
    task: JoinHandle<()>,
}

impl ClusterNamespaces {
    /// Starts watching Namespaces through `client`. Must be called inside a Tokio runtime.
    pub fn new(client: Client) -> Self {
        let api: Api<Namespace> = Api::all(client);
        let writer = reflector::store::Writer::<NamespaceEntry>::default();
        let store = writer.as_reader();
        let ready = Arc::new(AtomicBool::new(false));
        let fetched = moka::future::Cache::builder()
            .max_capacity(FETCHED_CAPACITY)
            .time_to_live(FETCHED_TTL)
            .build();
        let task = tokio::spawn(run_watch(
            api.clone(),
            writer,
            ready.clone(),
            fetched.clone(),
        ));
        Self {
            api,
            store,
            ready,
            fetched,
            task,
        }
    }

    /// How many namespaces the store holds.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    async fn fetch(&self, name: &str) -> Result<Option<Annotations>, NamespaceError> {
        let api = self.api.clone();
        let owned = name.to_string();
        self.fetched
            .try_get_with(owned.clone(), async move {
                match tokio::time::timeout(FETCH_TIMEOUT, api.get_opt(&owned)).await {
                    Ok(Ok(ns)) => Ok(ns.map(|ns| NamespaceEntry::from(ns).annotations)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
                }
            })
            .await
            .map_err(|e| NamespaceError(format!("get namespace {name}: {e}")))
    }
}

impl Drop for ClusterNamespaces {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl NamespaceSource for ClusterNamespaces {
    async fn annotations(&self, name: &str) -> Result<Option<Annotations>, NamespaceError> {
        if !is_dns_label(name) {
            // No namespace can have this name; do not send it to the apiserver.
            return Ok(None);
        }
        if let Some(entry) = self.store.get(&ObjectRef::new(name)) {
            return Ok(Some(entry.annotations.clone()));
        }
        self.fetch(name).await
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.task.is_finished()
    }
}

/// Namespace names are RFC 1123 labels.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

async fn run_watch(
    api: Api<Namespace>,
    mut writer: reflector::store::Writer<NamespaceEntry>,
    ready: Arc<AtomicBool>,
    fetched: moka::future::Cache<String, Option<Annotations>>,
) {
    let mut log = ErrorLog::default();
    loop {
        // The watcher resumes from the last resourceVersion after a dropped connection and
        // re-lists after a 410 Gone watch event; the backoff spaces out retries while the
        // apiserver fails. The store keeps the last synced state throughout, and a re-list
        // replaces it only once complete (Init .. InitDone).
        let mut events = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .map_ok(entry_event)
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    log.recovered();
                    writer.apply_watcher_event(&event);
                    match &event {
                        watcher::Event::InitDone => {
                            if !ready.swap(true, Ordering::AcqRel) {
                                tracing::info!(
                                    namespaces = writer.as_reader().len(),
                                    "namespace cache synced"
                                );
                            }
                            // Anything fetched directly is now in the store or gone.
                            fetched.invalidate_all();
                        }
                        watcher::Event::Apply(e)
                        | watcher::Event::Delete(e)
                        | watcher::Event::InitApply(e) => fetched.invalidate(&e.name).await,
                        watcher::Event::Init => {}
                    }
                }
                Err(err) => {
                    log.error(&err);
                    if is_gone_at_watch_start(&err) {
                        break;
                    }
                }
            }
        }
        // Only a watch refused with an HTTP 410 gets here: kube's watcher would retry that
        // resourceVersion forever, so start over with a fresh list.
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

/// A watch request answered with an HTTP `410 Gone` (rather than a 410 watch event, which
/// the watcher handles itself): the resourceVersion is gone for good.
fn is_gone_at_watch_start(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410)
}

/// Warns on the first error of a streak, then at most once per [`ERROR_LOG_INTERVAL`]
/// with the count, so an unreachable apiserver does not flood the log.
#[derive(Default)]
struct ErrorLog {
    streak: u64,
    last_warned: Option<Instant>,
}

impl ErrorLog {
    fn error(&mut self, err: &watcher::Error) {
        self.streak += 1;
        let due = self
            .last_warned
            .is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL);
        if self.streak == 1 || due {
            tracing::warn!(error = %err, errors_in_a_row = self.streak, "namespace watch error; retrying with backoff, serving from cache");
            self.last_warned = Some(Instant::now());
        } else {
            tracing::debug!(error = %err, errors_in_a_row = self.streak, "namespace watch error");
        }
    }

    fn recovered(&mut self) {
        if self.streak > 0 {
            tracing::info!(errors = self.streak, "namespace watch recovered");
            self.streak = 0;
            self.last_warned = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn entry_keeps_only_vulngate_annotations() {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                annotations: Some(BTreeMap::from([
                    ("vulngate.io/max-high".to_string(), "3".to_string()),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".into(),
                        "{}".into(),
                    ),
                    ("vulngate.iox/other".into(), "1".into()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        let entry = NamespaceEntry::from(ns);
        assert_eq!(entry.name, "shop");
        assert_eq!(
            *entry.annotations,
            BTreeMap::from([("vulngate.io/max-high".to_string(), "3".to_string())])
        );
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("kube-system"));
        assert!(is_dns_label("a1"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a/../b"));
        assert!(!is_dns_label("Shop"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
