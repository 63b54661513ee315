//! The summary cache: finished scans kept `ttl`, unfinished ones `pendingTtl`;
//! concurrent misses for one key make one scanner call; errors are not cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::{ScanError, ScanSummary, ScanTarget, Scanner};
use crate::config::CacheConfig;
use crate::metrics::Metrics;

/// Summaries are per scanner route and digest: the same digest may be held by
/// two scanners with different answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub route: usize,
    pub digest: Arc<str>,
}

struct ByStatus {
    ttl: Duration,
    pending_ttl: Duration,
}

impl Expiry<CacheKey, Arc<ScanSummary>> for ByStatus {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<ScanSummary>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(if value.status.is_pending() {
            self.pending_ttl
        } else {
            self.ttl
        })
    }
}

#[derive(Clone)]
pub struct SummaryCache {
    cache: Cache<CacheKey, Arc<ScanSummary>>,
    metrics: Arc<Metrics>,
}

impl SummaryCache {
    pub fn new(config: &CacheConfig, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(ByStatus {
                ttl: config.ttl,
                pending_ttl: config.pending_ttl,
            })
            .build();
        SummaryCache { cache, metrics }
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
            digest: Arc::from(target.digest),
        };
        if let Some(hit) = self.cache.get(&key).await {
            self.metrics.cache_hit();
            return Ok(hit);
        }
        self.metrics.cache_miss();
        self.cache
            .try_get_with(key, async {
                let started = Instant::now();
                let result = scanner.summary(target).await;
                self.metrics
                    .scanner_call(scanner.kind(), &result, started.elapsed());
                result.map(Arc::new)
            })
            .await
    }

    /// Drops one digest (every route) or, with `None`, everything; returns how many
    /// entries were dropped.
    pub async fn purge(&self, digest: Option<&str>) -> u64 {
        // Evictions are applied lazily; settle them so the count is what is held.
        self.cache.run_pending_tasks().await;
        let keys: Vec<Arc<CacheKey>> = self
            .cache
            .iter()
            .filter(|(k, _)| digest.is_none_or(|d| &*k.digest == d))
            .map(|(k, _)| k)
            .collect();
        for key in &keys {
            self.cache.invalidate(key.as_ref()).await;
        }
        keys.len() as u64
    }

    pub async fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}
