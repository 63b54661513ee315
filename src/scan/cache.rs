//! The summary cache. Finished scans stay until evicted by `maxEntries`, and are
//! checked against their scanner at most every `ttl`: a different answer (a newer
//! scan) replaces the entry; a failed check keeps it, so an unreachable scanner does
//! not turn known images into errors. The check runs in the background, so no review
//! waits for it. Unfinished scans expire after `pendingTtl`. Concurrent misses for
//! one key make one scanner call, and every review waiting for it wakes at once when
//! it ends. A failed call is remembered for `failureTtl` (its own short timer), so a
//! review repeated at once does not call a failing scanner again for each image; a
//! success or a purge forgets it. Each thread reads finished entries from copies of
//! its own for as long as nothing in the cache has changed since it read them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::Expiry;
use moka::sync::Cache;

use super::{ScanTarget, Scanner};
use crate::config::CacheConfig;
use crate::domain::digest_key::DigestKey;
use crate::domain::scan_error::ScanError;
use crate::domain::summary::ScanSummary;
use crate::image::ImageRef;
use crate::metrics::{Metrics, RefreshResult};
use crate::shared_cache::SharedTier;
use crate::thread_cache::PerThreadMap;

/// Summaries are per scanner route and digest: the same digest may be held by
/// two scanners with different answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub route: usize,
    pub digest: DigestKey,
}

#[derive(Clone)]
struct Entry {
    summary: Arc<ScanSummary>,
    /// When the scanner last gave (or confirmed) this summary.
    checked: Instant,
}

struct ByStatus {
    pending_ttl: Duration,
}

impl Expiry<CacheKey, Entry> for ByStatus {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        // Finished scans have no timer: they are checked for newer scans instead.
        value
            .summary
            .status
            .is_pending()
            .then_some(self.pending_ttl)
    }

    fn expire_after_update(
        &self,
        key: &CacheKey,
        value: &Entry,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

/// A scanner call under way, awaited by every review that missed its key.
type Fetching = Shared<BoxFuture<'static, Result<Arc<ScanSummary>, Arc<ScanError>>>>;

#[derive(Clone)]
pub struct SummaryCache {
    cache: Cache<CacheKey, Entry, crate::FastHashState>,
    /// Each thread's copies of finished entries it read, valid while `generation`
    /// is what it was when they were read. A hit here touches no line another
    /// thread writes; a moka hit records the read in queues every thread shares.
    front: Arc<PerThreadMap<CacheKey, (u64, Entry)>>,
    /// Bumped after every change to what the cache holds (insert, replacement,
    /// eviction, purge), so no thread's front outlives a change.
    generation: Arc<AtomicU64>,
    ttl: Duration,
    /// Keys whose check against the scanner is under way (one check per key).
    checking: Arc<Mutex<HashSet<CacheKey>>>,
    /// Keys being fetched for the first time. Not moka's `try_get_with`: its waiters
    /// wake one after another (each woken one wakes the next), so a thousand reviews
    /// waiting for one digest were answered as a chain; a `Shared` wakes them all.
    fetching: Arc<Mutex<HashMap<CacheKey, Fetching>>>,
    /// Failed scanner calls, answered again until `failureTtl` ends; `None` when it is 0.
    failures: Option<Cache<CacheKey, Arc<ScanError>, crate::FastHashState>>,
    metrics: Arc<Metrics>,
    /// Redis shared by the replicas, asked before the scanner (`cache.shared`).
    shared: Option<Arc<SharedTier>>,
}

/// Entries a thread's front holds at most; it starts over when full.
const FRONT_ENTRIES: usize = 4096;

/// What a background scanner call owns of its target.
struct OwnedTarget {
    image: ImageRef,
    digest: String,
}

impl OwnedTarget {
    fn new(target: &ScanTarget<'_>) -> OwnedTarget {
        OwnedTarget {
            image: target.image.clone(),
            digest: target.digest.to_string(),
        }
    }

    fn target(&self) -> ScanTarget<'_> {
        ScanTarget {
            image: &self.image,
            digest: &self.digest,
        }
    }
}

/// Takes a key out of the in-flight map when its fetch ends, even by a panic, so a
/// failed fetch is never awaited again.
struct FetchDone {
    fetching: Arc<Mutex<HashMap<CacheKey, Fetching>>>,
    key: CacheKey,
}

impl Drop for FetchDone {
    fn drop(&mut self) {
        lock(&self.fetching).remove(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SummaryCache {
    pub fn new(config: &CacheConfig, metrics: Arc<Metrics>) -> Self {
        let generation = Arc::new(AtomicU64::new(0));
        let removed = Arc::clone(&generation);
        let cache = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(ByStatus {
                pending_ttl: config.pending_ttl,
            })
            .eviction_listener(move |_, _, _| {
                removed.fetch_add(1, Ordering::Release);
            })
            .build_with_hasher(crate::FastHashState::new());
        SummaryCache {
            cache,
            front: Arc::new(PerThreadMap::new(FRONT_ENTRIES)),
            generation,
            ttl: config.ttl,
            checking: Arc::default(),
            fetching: Arc::default(),
            failures: (!config.failure_ttl.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(config.max_entries)
                    .time_to_live(config.failure_ttl)
                    .build_with_hasher(crate::FastHashState::new())
            }),
            metrics,
            shared: None,
        }
    }

    /// Misses (and checks of old entries) ask `shared` before the scanner, and
    /// purges reach it too.
    pub(crate) fn set_shared(&mut self, shared: Arc<SharedTier>) {
        self.shared = Some(shared);
    }

    /// The cached summary, or one fetched from the scanner (one call for many
    /// concurrent callers of the same key).
    pub(crate) async fn get_or_fetch(
        &self,
        route: usize,
        scanner: &Arc<dyn Scanner>,
        target: &ScanTarget<'_>,
    ) -> Result<Arc<ScanSummary>, Arc<ScanError>> {
        let key = CacheKey {
            route,
            digest: DigestKey::new(target.digest),
        };
        if let Some(summary) = self.cached(&key, scanner, target, Instant::now()) {
            self.metrics.cache_hits(1);
            return Ok(summary);
        }
        self.metrics.cache_miss();
        let mut unless_cached = true;
        loop {
            match self.join_or_start(&key, scanner, target, unless_cached) {
                Some(fetching) => return fetching.await,
                None => {
                    if let Some(hit) = self.cache.get(&key) {
                        return Ok(hit.summary);
                    }
                }
            }
            // Cached a moment ago and purged or evicted since: fetch it.
            unless_cached = false;
        }
    }

    /// The cached summary of `key` (the digest of `target`), without waiting: what
    /// most reviews are decided from. A hit older than `ttl` at `now` is checked
    /// against the scanner in the background. Neither hits nor misses are counted
    /// here: a review counts its hits once ([`Metrics::cache_hits`]), and misses are
    /// counted by [`SummaryCache::get_or_fetch`], which the caller goes on to.
    pub fn cached(
        &self,
        key: &CacheKey,
        scanner: &Arc<dyn Scanner>,
        target: &ScanTarget<'_>,
        now: Instant,
    ) -> Option<Arc<ScanSummary>> {
        let hit = self.read(key)?;
        if now.saturating_duration_since(hit.checked) >= self.ttl {
            self.check_later(key.clone(), scanner, target, hit.summary.clone());
        }
        Some(hit.summary)
    }

    /// `key`'s entry: from this thread's front while nothing changed since it was
    /// read, else from moka. Unfinished scans are not kept in front: they expire.
    fn read(&self, key: &CacheKey) -> Option<Entry> {
        // Read before moka: a change after this load makes the copy stale at once.
        let generation = self.generation.load(Ordering::Acquire);
        let copy = self.front.find(key, |(read_at, entry)| {
            (*read_at == generation).then(|| entry.clone())
        });
        if copy.is_some() {
            return copy;
        }
        let entry = self.cache.get(key)?;
        if !entry.summary.status.is_pending() {
            self.front.insert(key.clone(), (generation, entry.clone()));
        }
        Some(entry)
    }

    /// After a change to what moka holds: every front copy is stale.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The fetch under way for `key`, or a new one; `None` when `unless_cached` and
    /// the entry landed since the caller missed it.
    fn join_or_start(
        &self,
        key: &CacheKey,
        scanner: &Arc<dyn Scanner>,
        target: &ScanTarget<'_>,
        unless_cached: bool,
    ) -> Option<Fetching> {
        let mut fetching = lock(&self.fetching);
        if let Some(under_way) = fetching.get(key) {
            return Some(under_way.clone());
        }
        // Checked under the lock: a fetch records its failure before leaving the map.
        if let Some(failed) = self.failures.as_ref().and_then(|f| f.get(key)) {
            return Some(futures::future::ready(Err(failed)).boxed().shared());
        }
        // A fetch inserts its entry before it leaves the map: a key in neither is
        // being fetched by nobody.
        if unless_cached && self.cache.contains_key(key) {
            return None;
        }
        let done = FetchDone {
            fetching: Arc::clone(&self.fetching),
            key: key.clone(),
        };
        let this = self.clone();
        let kind = scanner.kind();
        let scanner = Arc::clone(scanner);
        let owned = OwnedTarget::new(target);
        // A task of its own: the call goes on when the reviews that asked give up
        // at their deadline, and its answer is cached for the next ones.
        let task = tokio::spawn(async move {
            let result = this
                .fetch(done.key.route, scanner.as_ref(), &owned.target())
                .await;
            let result = match result {
                Ok(summary) => {
                    let entry = Entry {
                        summary: Arc::clone(&summary),
                        checked: Instant::now(),
                    };
                    this.cache.insert(done.key.clone(), entry);
                    this.changed();
                    if let Some(failures) = &this.failures {
                        failures.invalidate(&done.key);
                    }
                    Ok(summary)
                }
                Err(e) => {
                    let e = Arc::new(e);
                    if let Some(failures) = &this.failures {
                        failures.insert(done.key.clone(), Arc::clone(&e));
                    }
                    Err(e)
                }
            };
            drop(done);
            result
        });
        let shared = async move {
            task.await.unwrap_or_else(|e| {
                Err(Arc::new(ScanError::Unavailable {
                    scanner: kind,
                    message: format!("the scanner call ended without an answer: {e}"),
                }))
            })
        }
        .boxed()
        .shared();
        fetching.insert(key.clone(), shared.clone());
        Some(shared)
    }

    /// Asks the scanner again, in the background, and replaces the entry when the
    /// answer differs.
    fn check_later(
        &self,
        key: CacheKey,
        scanner: &Arc<dyn Scanner>,
        target: &ScanTarget<'_>,
        cached: Arc<ScanSummary>,
    ) {
        {
            let mut checking = lock(&self.checking);
            if !checking.insert(key.clone()) {
                return;
            }
        }
        let this = self.clone();
        let scanner = Arc::clone(scanner);
        let owned = OwnedTarget::new(target);
        tokio::spawn(async move {
            let (summary, result) = match this
                .fetch(key.route, scanner.as_ref(), &owned.target())
                .await
            {
                Ok(fresh) if *fresh == *cached => (cached, RefreshResult::Unchanged),
                Ok(fresh) => {
                    tracing::info!(
                        scanner = scanner.kind(),
                        digest = %owned.digest,
                        status = fresh.status.as_str(),
                        "the scanner has a newer scan: cached summary replaced"
                    );
                    (fresh, RefreshResult::Changed)
                }
                Err(e) => {
                    tracing::warn!(
                        scanner = scanner.kind(),
                        error = %e,
                        "checking a cached summary failed; it stays in use until the next check"
                    );
                    (cached, RefreshResult::Failed)
                }
            };
            this.metrics.cache_refresh(result);
            // Not if it was purged or evicted meanwhile: that was someone's intent.
            if this.cache.contains_key(&key) {
                this.cache.insert(
                    key.clone(),
                    Entry {
                        summary,
                        checked: Instant::now(),
                    },
                );
                this.changed();
            }
            lock(&this.checking).remove(&key);
        });
    }

    /// Drops one digest (every route) or, with `None`, everything; returns how many
    /// entries were dropped.
    pub async fn purge(&self, digest: Option<&str>) -> u64 {
        // Evictions are applied lazily; settle them so the count is what is held.
        self.cache.run_pending_tasks();
        let keys: Vec<Arc<CacheKey>> = self
            .cache
            .iter()
            .filter(|(k, _)| digest.is_none_or(|d| k.digest.is(d)))
            .map(|(k, _)| k)
            .collect();
        for key in &keys {
            self.cache.invalidate(key.as_ref());
        }
        if let Some(failures) = &self.failures {
            match digest {
                None => failures.invalidate_all(),
                Some(d) => {
                    let failed: Vec<Arc<CacheKey>> = failures
                        .iter()
                        .filter(|(k, _)| k.digest.is(d))
                        .map(|(k, _)| k)
                        .collect();
                    for key in failed {
                        failures.invalidate(key.as_ref());
                    }
                }
            }
        }
        self.changed();
        if let Some(shared) = &self.shared {
            match shared.purge(digest).await {
                Ok(n) => tracing::info!(removed = n, "shared cache purged"),
                Err(error) => tracing::warn!(%error, "shared cache not purged"),
            }
        }
        keys.len() as u64
    }

    #[cfg(test)]
    pub(crate) async fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

impl SummaryCache {
    /// The scanner's answer, through the shared tier when there is one.
    async fn fetch(
        &self,
        route: usize,
        scanner: &dyn Scanner,
        target: &ScanTarget<'_>,
    ) -> Result<Arc<ScanSummary>, ScanError> {
        let call = || call_scanner(&self.metrics, scanner, target);
        match &self.shared {
            Some(shared) => {
                shared
                    .summary(route, scanner.kind(), target.digest, call)
                    .await
            }
            None => call().await,
        }
    }
}

async fn call_scanner(
    metrics: &Metrics,
    scanner: &dyn Scanner,
    target: &ScanTarget<'_>,
) -> Result<Arc<ScanSummary>, ScanError> {
    let started = Instant::now();
    let result = scanner.summary_shared(target).await;
    metrics.scanner_call(scanner.kind(), &result, started.elapsed());
    result
}

#[cfg(test)]
mod tests;
