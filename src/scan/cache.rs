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
use moka::sync::Cache;
use moka::Expiry;

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
    pub fn set_shared(&mut self, shared: Arc<SharedTier>) {
        self.shared = Some(shared);
    }

    /// The cached summary, or one fetched from the scanner (one call for many
    /// concurrent callers of the same key).
    pub async fn get_or_fetch(
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
                Err(error) => tracing::warn!(error, "shared cache not purged"),
            }
        }
        keys.len() as u64
    }

    pub async fn entry_count(&self) -> u64 {
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
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::summary::{ScanStatus, SeverityCounts};

    /// Answers `high` highs, or fails while `down`; counts its calls.
    #[derive(Default)]
    struct Changing {
        high: AtomicU64,
        down: std::sync::atomic::AtomicBool,
        calls: AtomicUsize,
        /// How long each call takes, in milliseconds.
        latency_ms: AtomicU64,
    }

    #[async_trait]
    impl Scanner for Changing {
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn summary(&self, _t: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let latency = self.latency_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(latency)).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(ScanError::Unavailable {
                    scanner: "test",
                    message: "down".into(),
                });
            }
            let mut s = ScanSummary::status_only("test", ScanStatus::Complete);
            s.counts = SeverityCounts::zero();
            s.counts.high = Some(self.high.load(Ordering::SeqCst));
            Ok(s)
        }
    }

    fn cache(ttl: Duration) -> (SummaryCache, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let config = CacheConfig {
            ttl,
            ..CacheConfig::default()
        };
        (SummaryCache::new(&config, Arc::clone(&metrics)), metrics)
    }

    async fn highs(cache: &SummaryCache, scanner: &Arc<dyn Scanner>) -> Option<u64> {
        match lookup(cache, scanner).await {
            Ok(s) => s.counts.high,
            Err(e) => panic!("{e}"),
        }
    }

    async fn lookup(
        cache: &SummaryCache,
        scanner: &Arc<dyn Scanner>,
    ) -> Result<Arc<ScanSummary>, Arc<ScanError>> {
        let image = ImageRef::parse("registry.example.com/app:1").unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let target = ScanTarget {
            image: &image,
            digest: &digest,
        };
        cache.get_or_fetch(0, scanner, &target).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_make_one_call_and_all_get_its_answer() {
        let (cache, _) = cache(Duration::from_secs(3600));
        let changing = Arc::new(Changing::default());
        changing.high.store(2, Ordering::SeqCst);
        changing.latency_ms.store(50, Ordering::SeqCst);
        let scanner: Arc<dyn Scanner> = changing.clone();
        let waiting: Vec<_> = (0..200)
            .map(|_| {
                let (cache, scanner) = (cache.clone(), Arc::clone(&scanner));
                tokio::spawn(async move { highs(&cache, &scanner).await })
            })
            .collect();
        for review in waiting {
            assert_eq!(review.await.unwrap(), Some(2));
        }
        assert_eq!(changing.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_call_outlives_the_reviews_that_gave_up_and_its_answer_is_cached() {
        let (cache, _) = cache(Duration::from_secs(3600));
        let changing = Arc::new(Changing::default());
        changing.latency_ms.store(100, Ordering::SeqCst);
        let scanner: Arc<dyn Scanner> = changing.clone();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), highs(&cache, &scanner)).await;
        assert!(gave_up.is_err(), "the scanner answers after 100 ms");
        tokio::time::sleep(Duration::from_millis(200)).await;
        changing.latency_ms.store(0, Ordering::SeqCst);
        changing.high.store(7, Ordering::SeqCst);
        // The first call's answer (0 highs), from the cache: no second call.
        assert_eq!(highs(&cache, &scanner).await, Some(0));
        assert_eq!(changing.calls.load(Ordering::SeqCst), 1);
    }

    fn cache_with_failure_ttl(failure_ttl: Duration) -> SummaryCache {
        let config = CacheConfig {
            ttl: Duration::from_secs(3600),
            failure_ttl,
            ..CacheConfig::default()
        };
        SummaryCache::new(&config, Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn a_failed_call_is_answered_again_until_failure_ttl_ends() {
        let cache = cache_with_failure_ttl(Duration::from_millis(300));
        let changing = Arc::new(Changing::default());
        changing.down.store(true, Ordering::SeqCst);
        let scanner: Arc<dyn Scanner> = changing.clone();
        for _ in 0..5 {
            let failed = lookup(&cache, &scanner).await;
            assert!(failed.is_err_and(|e| e.to_string().contains("test unavailable: down")));
        }
        assert_eq!(
            changing.calls.load(Ordering::SeqCst),
            1,
            "one call, then remembered"
        );
        changing.down.store(false, Ordering::SeqCst);
        changing.high.store(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(highs(&cache, &scanner).await, Some(1));
        assert_eq!(changing.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_zero_failure_ttl_remembers_no_failure() {
        let cache = cache_with_failure_ttl(Duration::ZERO);
        let changing = Arc::new(Changing::default());
        changing.down.store(true, Ordering::SeqCst);
        let scanner: Arc<dyn Scanner> = changing.clone();
        assert!(lookup(&cache, &scanner).await.is_err());
        changing.down.store(false, Ordering::SeqCst);
        assert_eq!(highs(&cache, &scanner).await, Some(0));
        assert_eq!(changing.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_purge_forgets_remembered_failures() {
        let cache = cache_with_failure_ttl(Duration::from_secs(3600));
        let changing = Arc::new(Changing::default());
        changing.down.store(true, Ordering::SeqCst);
        let scanner: Arc<dyn Scanner> = changing.clone();
        assert!(lookup(&cache, &scanner).await.is_err());
        changing.down.store(false, Ordering::SeqCst);
        assert!(lookup(&cache, &scanner).await.is_err(), "still remembered");
        cache
            .purge(Some(&format!("sha256:{}", "a".repeat(64))))
            .await;
        assert_eq!(highs(&cache, &scanner).await, Some(0));
        assert_eq!(changing.calls.load(Ordering::SeqCst), 2);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_purge_reaches_the_copies_other_threads_read() {
        let (cache, _) = cache(Duration::from_secs(3600));
        let changing = Arc::new(Changing::default());
        let scanner: Arc<dyn Scanner> = changing.clone();
        let (read, purged) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let rt = runtime();
                // Fetched, then read again from this thread's copy.
                let before = [0, 1].map(|_| rt.block_on(highs(&cache, &scanner)));
                read.wait();
                purged.wait();
                (before, rt.block_on(highs(&cache, &scanner)))
            });
            read.wait();
            changing.high.store(5, Ordering::SeqCst);
            assert_eq!(runtime().block_on(cache.purge(None)), 1);
            purged.wait();
            assert_eq!(reader.join().unwrap(), ([Some(0), Some(0)], Some(5)));
        });
        assert_eq!(changing.calls.load(Ordering::SeqCst), 2);
    }

    /// Polls until `f` holds (the check runs in the background).
    async fn eventually(mut f: impl AsyncFnMut() -> bool) -> bool {
        for _ in 0..200 {
            if f().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn within_ttl_the_scanner_is_not_asked_again() {
        let (cache, _) = cache(Duration::from_secs(3600));
        let changing = Arc::new(Changing::default());
        let scanner: Arc<dyn Scanner> = changing.clone();
        assert_eq!(highs(&cache, &scanner).await, Some(0));
        changing.high.store(3, Ordering::SeqCst);
        for _ in 0..10 {
            assert_eq!(highs(&cache, &scanner).await, Some(0));
        }
        assert_eq!(changing.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_newer_scan_replaces_the_entry_and_a_failed_check_keeps_it() {
        let (cache, metrics) = cache(Duration::from_millis(50));
        let changing = Arc::new(Changing::default());
        let scanner: Arc<dyn Scanner> = changing.clone();
        assert_eq!(highs(&cache, &scanner).await, Some(0));

        // The scanner is down: the cached summary keeps deciding.
        changing.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(highs(&cache, &scanner).await, Some(0));
        assert!(
            eventually(async || metrics
                .encode()
                .contains("refreshes_total{result=\"failed\"} 1"))
            .await,
            "{}",
            metrics.encode()
        );
        assert_eq!(highs(&cache, &scanner).await, Some(0));

        // Back, with a newer scan: seen after the next check.
        changing.down.store(false, Ordering::SeqCst);
        changing.high.store(4, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(eventually(async || highs(&cache, &scanner).await == Some(4)).await);
        assert!(metrics
            .encode()
            .contains("refreshes_total{result=\"changed\"} 1"));
    }

    #[tokio::test]
    async fn purge_by_digest_and_all() {
        let (cache, _) = cache(Duration::from_secs(3600));
        let scanner: Arc<dyn Scanner> = Arc::new(Changing::default());
        highs(&cache, &scanner).await;
        assert_eq!(
            cache
                .purge(Some(&format!("sha256:{}", "b".repeat(64))))
                .await,
            0
        );
        assert_eq!(
            cache
                .purge(Some(&format!("sha256:{}", "a".repeat(64))))
                .await,
            1
        );
        assert_eq!(cache.entry_count().await, 0);
    }
}
