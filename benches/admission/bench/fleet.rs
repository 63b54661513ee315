//! Many replicas, one scanner bill (issue 31).
//!
//! Replicas: 1, 2 and 3 in-process replicas (each an `Engine` with its own caches,
//! served on a runtime of its own), with and without the shared tier on one real
//! `redis-server`; a burst of concurrent reviews of one uncached digest spread over
//! them; scanner calls and latency.
//!
//! Audit: a generated cluster in the tests' in-process apiserver, audited as
//! `vulngate audit` does against a scanner that throttles above its limit (a token
//! bucket of `rate` per second, as vendors' gateways count), with the route's
//! `maxRequestsPerSecond` set to that limit: calls made, time taken, throttled calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use vulngate::domain::scan_error::ScanError;
use vulngate::domain::summary::{ScanStatus, ScanSummary, SeverityCounts};
use vulngate::scan::rate_limit::RateLimited;
use vulngate::scan::{ScanTarget, Scanner};
use vulngate::shared_cache::SharedTier;

use super::Result;
use super::apiserver::{self, FakeApiServer};
use super::cold::{self, Served, SlowScanner};
use super::redis::Redis;
use super::setup::{self, Files};

/// HTTP/2 connections per replica.
const CONNECTIONS_PER_REPLICA: usize = 3;

#[derive(Debug, Clone)]
pub struct ReplicaRow {
    pub replicas: usize,
    pub shared: bool,
    pub reviews: usize,
    pub scanner_calls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Summed over the replicas: Redis operations that failed, waits for a lock.
    pub shared_errors: u64,
    pub lock_waits: u64,
}

impl ReplicaRow {
    pub fn line(&self) -> String {
        format!(
            "replicas {} {}: {} reviews of one cold digest: {} scanner call(s), p50 {:.2} ms, p99 {:.2} ms, {} errors ({} lock waits, {} Redis errors)",
            self.replicas,
            if self.shared {
                "with the shared tier"
            } else {
                "without"
            },
            self.reviews,
            self.scanner_calls,
            self.p50_ms,
            self.p99_ms,
            self.errors,
            self.lock_waits,
            self.shared_errors
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "lock_waits": self.lock_waits, "shared_errors": self.shared_errors,
            "replicas": self.replicas, "shared": self.shared, "reviews": self.reviews,
            "scanner_calls": self.scanner_calls, "errors": self.errors,
            "p50_ms": super::round(self.p50_ms, 3), "p99_ms": super::round(self.p99_ms, 3),
        })
    }
}

/// The YAML of a `cache.shared` on `redis`, with its key file under `dir`.
fn shared_yaml(redis: &Redis, dir: &std::path::Path) -> Result<String> {
    let key = dir.join("hmac-key");
    std::fs::write(&key, "bench-hmac-key-0123456789abcdef")?;
    Ok(format!(
        "cache:\n  shared:\n    redis: {{url: \"{}\", timeout: 250ms}}\n    hmacKeys: [{{id: k1, secret: {{file: {}}}}}]\n",
        redis.url(),
        key.display()
    ))
}

/// `engine` over the shared tier its config names, if any.
fn with_tier(
    mut engine: vulngate::engine::Engine,
    config: &vulngate::config::Config,
) -> std::result::Result<vulngate::engine::Engine, String> {
    if let Some(shared) = &config.cache.shared {
        let metrics = Arc::clone(engine.metrics());
        engine.set_shared_cache(
            SharedTier::new(shared, &config.cache, &config.registries, metrics)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(engine)
}

pub async fn replicas(
    files: &Files,
    dir: &std::path::Path,
    reviews: usize,
    latency: Duration,
) -> Result<Vec<ReplicaRow>> {
    let redis = Redis::start();
    let shared = shared_yaml(&redis, dir)?;
    let mut rows = Vec::new();
    for with_shared in [false, true] {
        for replicas in 1..=3 {
            redis.cli_text(&["FLUSHALL"]);
            let calls = Arc::new(AtomicU64::new(0));
            let scanner: Arc<dyn Scanner> = Arc::new(SlowScanner {
                latency,
                calls: Arc::clone(&calls),
                last_call: Arc::new(Mutex::new(None)),
            });
            let mut served = Vec::with_capacity(replicas);
            let mut per_replica = Vec::with_capacity(replicas);
            let mut metrics = Vec::with_capacity(replicas);
            for _ in 0..replicas {
                let extra = if with_shared { shared.as_str() } else { "" };
                let (engine, config) = cold::engine_with(files, Arc::clone(&scanner), extra)?;
                metrics.push(Arc::clone(engine.metrics()));
                let server = Served::start_with(move || with_tier(engine, &config), files).await?;
                per_replica.push(server.connect(CONNECTIONS_PER_REPLICA).await?.into_iter());
                served.push(server);
            }
            // The replicas' connections taken in turn, so reviews alternate between them.
            let mut senders = Vec::new();
            for _ in 0..CONNECTIONS_PER_REPLICA {
                senders.extend(per_replica.iter_mut().filter_map(Iterator::next));
            }
            let image = setup::generated_image(&format!("replicas-{with_shared}-{replicas}"), 0);
            let burst = cold::burst(&senders, files, &image, reviews, "replicas").await?;
            for server in served {
                server.stop().await;
            }
            let ms = |q: f64| burst.latencies.value_at_quantile(q) as f64 / 1000.0;
            let event = |name: &str| -> u64 {
                let sample = format!("vulngate_shared_cache_events_total{{event=\"{name}\"}} ");
                metrics
                    .iter()
                    .filter_map(|m| {
                        let text = m.encode();
                        text.lines().find_map(|l| {
                            l.strip_prefix(sample.as_str())?.trim().parse::<u64>().ok()
                        })
                    })
                    .sum()
            };
            let row = ReplicaRow {
                replicas,
                shared: with_shared,
                reviews,
                scanner_calls: calls.load(Ordering::SeqCst),
                errors: burst.errors,
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
                shared_errors: event("error"),
                lock_waits: event("lock_wait"),
            };
            eprintln!("{}", row.line());
            rows.push(row);
        }
    }
    Ok(rows)
}

#[derive(Debug, Clone)]
pub struct AuditResult {
    pub pods: usize,
    pub images: usize,
    pub limit_per_second: f64,
    pub scanner_calls: u64,
    pub throttled: u64,
    pub seconds: f64,
    pub pods_judged: usize,
}

impl AuditResult {
    pub fn line(&self) -> String {
        format!(
            "audit of {} pods / {} images against a scanner limited to {} req/s (maxRequestsPerSecond {}): {} scanner calls, {:.1} s, {} throttled, {} pods judged",
            self.pods,
            self.images,
            self.limit_per_second,
            self.limit_per_second,
            self.scanner_calls,
            self.seconds,
            self.throttled,
            self.pods_judged
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "pods": self.pods, "images": self.images,
            "limit_per_second": self.limit_per_second,
            "scanner_calls": self.scanner_calls, "throttled": self.throttled,
            "seconds": super::round(self.seconds, 2), "pods_judged": self.pods_judged,
        })
    }
}

/// A scanner behind a vendor's gateway: a token bucket of `rate` tokens refilled at
/// `rate` per second; a call without a token is throttled (an error, counted).
struct Throttling {
    rate: f64,
    calls: AtomicU64,
    throttled: AtomicU64,
    /// Tokens left and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

#[async_trait]
impl Scanner for Throttling {
    fn kind(&self) -> &'static str {
        "bench"
    }

    async fn summary(&self, _t: &ScanTarget<'_>) -> std::result::Result<ScanSummary, ScanError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let allowed = {
            let mut bucket = self.bucket.lock().map_err(|_| ScanError::Unavailable {
                scanner: "bench",
                message: "poisoned".into(),
            })?;
            let refill = now.duration_since(bucket.1).as_secs_f64() * self.rate;
            *bucket = ((bucket.0 + refill).min(self.rate), now);
            if bucket.0 >= 1.0 {
                bucket.0 -= 1.0;
                true
            } else {
                false
            }
        };
        if !allowed {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(ScanError::Unavailable {
                scanner: "bench",
                message: "Throttling.User: request was denied due to user flow control".into(),
            });
        }
        let mut summary = ScanSummary::status_only("bench", ScanStatus::Complete);
        summary.counts = SeverityCounts::zero();
        Ok(summary)
    }
}

pub async fn audit(files: &Files, pods: usize, images: usize, rate: f64) -> Result<AuditResult> {
    let api = FakeApiServer::start().await;
    api.upsert(apiserver::namespace(setup::NAMESPACE, &[]));
    let image_of = |i: usize| setup::generated_image("audit", i % images);
    for i in 0..pods {
        let containers = [("app", image_of(i))];
        let refs: Vec<(&str, &str)> = containers.iter().map(|(n, i)| (*n, i.as_str())).collect();
        api.upsert(apiserver::running_pod(
            setup::NAMESPACE,
            &format!("pod-{i:05}"),
            &refs,
        ));
    }
    let scanner = Arc::new(Throttling {
        rate,
        calls: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        // The gateway starts full, as one that has been idle.
        bucket: Mutex::new((rate, Instant::now())),
    });
    let limited = RateLimited::wrap(scanner.clone(), Some(rate), None)?;
    let engine = cold::engine(files, limited)?;
    let started = Instant::now();
    let listed = vulngate::audit::running_pods(api.client(), None).await?;
    let report = vulngate::audit::audit(&engine, &listed, &Default::default()).await;
    let seconds = started.elapsed().as_secs_f64();
    let pods_judged = report
        .containers
        .iter()
        .map(|r| (&r.namespace, &r.pod))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(AuditResult {
        pods,
        images,
        limit_per_second: rate,
        scanner_calls: scanner.calls.load(Ordering::SeqCst),
        throttled: scanner.throttled.load(Ordering::SeqCst),
        seconds,
        pods_judged,
    })
}
