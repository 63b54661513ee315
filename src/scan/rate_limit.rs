//! Per-route limits on scanner calls (`maxRequestsPerSecond`, `maxConcurrent`).
//!
//! The limited scanner wraps the route's scanner, so every caller (admission, the
//! background audit, `vulngate audit` and `precheck`) shares one budget per route.
//! A call waits for a slot and a token instead of being throttled by the vendor;
//! the review that asked stops waiting at its deadline like for any slow call.

use crate::config::ConfigError;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::{ScanTarget, Scanner};
use crate::domain::scan_error::ScanError;
use crate::domain::summary::ScanSummary;
use crate::image::ImageRef;

pub struct RateLimited {
    inner: Arc<dyn Scanner>,
    /// Evenly spaced calls (a burst of one): a vendor counting per second never
    /// sees more than the limit.
    per_second: Option<DefaultDirectRateLimiter>,
    concurrent: Option<Semaphore>,
}

impl RateLimited {
    /// `inner` itself when neither limit is set.
    pub fn wrap(
        inner: Arc<dyn Scanner>,
        max_per_second: Option<f64>,
        max_concurrent: Option<u32>,
    ) -> Result<Arc<dyn Scanner>, ConfigError> {
        if max_per_second.is_none() && max_concurrent.is_none() {
            return Ok(inner);
        }
        let per_second = match max_per_second {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0 => {
                let period = Duration::from_secs_f64(1.0 / rate);
                let quota = Quota::with_period(period)
                    .ok_or_else(|| ConfigError::invalid("maxRequestsPerSecond", "too large"))?
                    .allow_burst(NonZeroU32::MIN);
                Some(RateLimiter::direct(quota))
            }
            Some(rate) => {
                return Err(ConfigError::invalid(
                    "maxRequestsPerSecond",
                    format!("{rate} is not a positive number of requests per second"),
                ));
            }
        };
        let concurrent = match max_concurrent {
            None => None,
            Some(0) => return Err(ConfigError::invalid("maxConcurrent", "must be at least 1")),
            Some(n) => Some(Semaphore::new(n as usize)),
        };
        Ok(Arc::new(RateLimited {
            inner,
            per_second,
            concurrent,
        }))
    }

    /// Waits for a slot, then for a token; the slot is held until the call ends.
    async fn admit(&self) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, ScanError> {
        let permit = match &self.concurrent {
            Some(slots) => Some(slots.acquire().await.map_err(|_| ScanError::Unavailable {
                scanner: self.inner.kind(),
                message: "the scanner's call limiter is closed".into(),
            })?),
            None => None,
        };
        if let Some(bucket) = &self.per_second {
            bucket.until_ready().await;
        }
        Ok(permit)
    }
}

#[async_trait]
impl Scanner for RateLimited {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        let _slot = self.admit().await?;
        self.inner.summary(target).await
    }

    async fn summary_shared(&self, target: &ScanTarget<'_>) -> Result<Arc<ScanSummary>, ScanError> {
        let _slot = self.admit().await?;
        self.inner.summary_shared(target).await
    }

    fn digest_for_tag(&self, image: &ImageRef) -> Option<String> {
        self.inner.digest_for_tag(image)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::domain::summary::ScanStatus;

    /// Records how many calls run at once, and when each started.
    #[derive(Default)]
    struct Recording {
        running: AtomicUsize,
        most: AtomicUsize,
        starts: std::sync::Mutex<Vec<Instant>>,
    }

    #[async_trait]
    impl Scanner for Recording {
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn summary(&self, _t: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
            self.starts.lock().unwrap().push(Instant::now());
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(ScanSummary::status_only("test", ScanStatus::Complete))
        }
    }

    async fn call_many(scanner: Arc<dyn Scanner>, n: usize) {
        let image = ImageRef::parse("registry.example.com/app:1").unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let calls = (0..n).map(|_| {
            let (scanner, image, digest) = (Arc::clone(&scanner), image.clone(), digest.clone());
            tokio::spawn(async move {
                let target = ScanTarget {
                    image: &image,
                    digest: &digest,
                };
                scanner.summary_shared(&target).await.map(|_| ())
            })
        });
        for call in futures::future::join_all(calls).await {
            assert!(call.unwrap().is_ok());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_calls_at_once_than_max_concurrent() {
        let recording = Arc::new(Recording::default());
        let limited = RateLimited::wrap(recording.clone(), None, Some(3)).unwrap();
        call_many(limited, 20).await;
        assert_eq!(recording.most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_are_spaced_by_max_requests_per_second() {
        let recording = Arc::new(Recording::default());
        let limited = RateLimited::wrap(recording.clone(), Some(50.0), None).unwrap();
        call_many(limited, 11).await;
        let starts = recording.starts.lock().unwrap().clone();
        let span = starts
            .iter()
            .max()
            .unwrap()
            .duration_since(*starts.iter().min().unwrap());
        // 11 calls at 50/s: the last starts 10 periods (200 ms) after the first.
        assert!(span >= Duration::from_millis(190), "{span:?}");
    }

    #[test]
    fn bad_limits_are_named() {
        let scanner: Arc<dyn Scanner> = Arc::new(Recording::default());
        for (rate, slots, key) in [
            (Some(0.0), None, "maxRequestsPerSecond"),
            (Some(f64::NAN), None, "maxRequestsPerSecond"),
            (None, Some(0), "maxConcurrent"),
        ] {
            let err = RateLimited::wrap(Arc::clone(&scanner), rate, slots).err();
            assert!(err.is_some_and(|e| e.to_string().contains(key)));
        }
    }
}
