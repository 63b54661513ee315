//! The summary cache's behaviour: freshness, single flight, failures, purges.

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
    let gave_up = tokio::time::timeout(Duration::from_millis(10), highs(&cache, &scanner)).await;
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
    assert!(
        metrics
            .encode()
            .contains("refreshes_total{result=\"changed\"} 1")
    );
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
