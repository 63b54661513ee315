//! Prometheus metrics. Label values come from small fixed sets (kinds, results,
//! scanner kinds, outcomes) or the cluster's namespaces: never image names or digests.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::scan_error::ScanError;

mod shared;
pub use shared::{SharedEvent, SharedMetrics};

/// Scan files skipped because they could not be read. Process-wide, as scanners are
/// built before the metrics registry exists; the registry registers it.
static SKIPPED_FILES: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The counter of skipped scan files, which the file scanner adds to.
pub(crate) fn skipped_files_counter() -> Counter {
    SKIPPED_FILES.clone()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    kind: &'static str,
    result: &'static str,
}

/// Object kinds with a series of their own (the kinds vulngate judges), else
/// `other`. Metrics sit below the admission wire format, so the list is written
/// here; tests/metrics_kinds.rs checks it against `admission::JUDGED_KINDS`.
const KINDS_WITH_SERIES: [&str; 8] = [
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

fn kind_label(kind: &str) -> &'static str {
    KINDS_WITH_SERIES
        .iter()
        .find(|judged| **judged == kind)
        .copied()
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScannerLabels {
    scanner: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    result: &'static str,
}

/// What a check of a cached summary against its scanner found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshResult {
    Unchanged,
    Changed,
    Failed,
}

impl RefreshResult {
    fn as_str(self) -> &'static str {
        match self {
            RefreshResult::Unchanged => "unchanged",
            RefreshResult::Changed => "changed",
            RefreshResult::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScannerKindLabel {
    scanner: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceVerdictLabels {
    namespace: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Running pods over their limits in one namespace, by the verdict admission would give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OverLimit {
    pub denied: i64,
    pub warned: i64,
}

pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    decision_seconds: Histogram,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_refreshes: Family<RefreshLabels, Counter>,
    scanner_calls: Family<ScannerLabels, Counter>,
    scanner_seconds: Family<ScannerKindLabel, Histogram>,
    tls_reloads: Counter,
    tls_certificate_expiry: Gauge,
    controller_pods_warned: Counter,
    images_pinned: Counter,
    in_flight: Gauge,
    pods_over_limit: Family<NamespaceVerdictLabels, Gauge>,
    /// Namespaces with a `pods_over_limit` series, so a namespace gone is removed.
    audited_namespaces: std::sync::Mutex<std::collections::BTreeSet<String>>,
    audit_runs: Family<ResultLabel, Counter>,
    audit_last_success: Gauge,
    /// Every scanner call, whatever its outcome (the sum of `scanner_calls`).
    scanner_calls_total: std::sync::atomic::AtomicU64,
    shared: SharedMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vulngate");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "Admission reviews by object kind and result (allowed, denied, warned, invalid)",
            reviews.clone(),
        );
        // 50 µs doubling 18 times, up to about 6.5 s.
        let decision_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 18));
        registry.register(
            "decision_duration_seconds",
            "Time from a received review to its response",
            decision_seconds.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "summary_cache_hits",
            "Scan summary cache hits",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "summary_cache_misses",
            "Scan summary cache misses",
            cache_misses.clone(),
        );
        let cache_refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "summary_cache_refreshes",
            "Checks of cached summaries against their scanner (result: unchanged, changed, failed)",
            cache_refreshes.clone(),
        );
        let scanner_calls = Family::<ScannerLabels, Counter>::default();
        registry.register(
            "scanner_calls",
            "Scanner calls by scanner kind and outcome (ok, unavailable, config_error)",
            scanner_calls.clone(),
        );
        let scanner_seconds = Family::<ScannerKindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "scanner_call_duration_seconds",
            "Scanner call latency by scanner kind",
            scanner_seconds.clone(),
        );
        let tls_reloads = Counter::default();
        registry.register(
            "tls_certificate_reloads",
            "Serving certificate reloads from disk",
            tls_reloads.clone(),
        );
        registry.register(
            "scan_files_skipped",
            "Scan files of the file scanner skipped (or kept at their last good content) because they could not be read",
            skipped_files_counter(),
        );
        let tls_certificate_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate in use expires (follows reloads)",
            tls_certificate_expiry.clone(),
        );
        let controller_pods_warned = Counter::default();
        registry.register(
            "controller_pods_warned",
            "Pods over their limits allowed with a warning because a built-in controller created them",
            controller_pods_warned.clone(),
        );
        let images_pinned = Counter::default();
        registry.register(
            "images_pinned",
            "Images rewritten by POST /mutate to the digest their tag resolved to when judged",
            images_pinned.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reviews_in_flight",
            "Reviews being decided",
            in_flight.clone(),
        );
        let pods_over_limit = Family::<NamespaceVerdictLabels, Gauge>::default();
        registry.register(
            "running_pods_over_limit",
            "Running pods with an image over its namespace's limits at the last background audit, by namespace and the verdict admission would give (denied, warned)",
            pods_over_limit.clone(),
        );
        let audit_runs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "audit_runs",
            "Background audit runs by result (ok, error)",
            audit_runs.clone(),
        );
        let audit_last_success = Gauge::default();
        registry.register(
            "audit_last_success_timestamp_seconds",
            "Unix time at which the last successful background audit finished",
            audit_last_success.clone(),
        );
        let shared = SharedMetrics::register(&mut registry);
        Metrics {
            shared,
            registry,
            pods_over_limit,
            audited_namespaces: std::sync::Mutex::new(Default::default()),
            audit_runs,
            audit_last_success,
            reviews,
            decision_seconds,
            cache_hits,
            cache_misses,
            cache_refreshes,
            scanner_calls,
            scanner_seconds,
            tls_reloads,
            tls_certificate_expiry,
            controller_pods_warned,
            images_pinned,
            in_flight,
            scanner_calls_total: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A review answered: its object kind, result and how long it took.
    pub fn review(&self, kind: &str, result: &'static str, elapsed: Duration) {
        self.reviews
            .get_or_create(&ReviewLabels {
                kind: kind_label(kind),
                result,
            })
            .inc();
        self.decision_seconds.observe(elapsed.as_secs_f64());
    }

    /// A body that is not an AdmissionReview: kind `other`, result `invalid`.
    pub(crate) fn invalid_review(&self, elapsed: Duration) {
        self.review("other", "invalid", elapsed);
    }

    pub(crate) fn cache_hits(&self, hits: u64) {
        if hits > 0 {
            self.cache_hits.inc_by(hits);
        }
    }

    pub(crate) fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    pub(crate) fn cache_refresh(&self, result: RefreshResult) {
        self.cache_refreshes
            .get_or_create(&RefreshLabels {
                result: result.as_str(),
            })
            .inc();
    }

    pub(crate) fn scanner_call<T>(
        &self,
        scanner: &'static str,
        result: &Result<T, ScanError>,
        elapsed: Duration,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.scanner_calls
            .get_or_create(&ScannerLabels { scanner, outcome })
            .inc();
        self.scanner_calls_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.scanner_seconds
            .get_or_create(&ScannerKindLabel { scanner })
            .observe(elapsed.as_secs_f64());
    }

    /// How many times a scanner was asked for a summary, over every scanner.
    pub(crate) fn scanner_calls_total(&self) -> u64 {
        self.scanner_calls_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The shared tier's series (`shared_cache_*`).
    pub fn shared(&self) -> &SharedMetrics {
        &self.shared
    }

    pub(crate) fn controller_pod_warned(&self) {
        self.controller_pods_warned.inc();
    }

    /// Images one `POST /mutate` answer pinned to their digests.
    pub(crate) fn images_pinned(&self, count: usize) {
        self.images_pinned.inc_by(count as u64);
    }

    pub(crate) fn tls_reloaded(&self) {
        self.tls_reloads.inc();
    }

    /// The notAfter of the serving certificate in use, in unix seconds.
    pub(crate) fn tls_certificate_expires_at(&self, unix_seconds: i64) {
        self.tls_certificate_expiry.set(unix_seconds);
    }

    /// Counts a review in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// The result of one background audit: every namespace with running pods is set
    /// (0 when none offends), and namespaces no longer running any pod are removed.
    pub(crate) fn audit_succeeded(
        &self,
        by_namespace: &std::collections::BTreeMap<String, OverLimit>,
    ) {
        let mut known = self
            .audited_namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for gone in known.iter().filter(|ns| !by_namespace.contains_key(*ns)) {
            for verdict in ["denied", "warned"] {
                self.pods_over_limit.remove(&NamespaceVerdictLabels {
                    namespace: gone.clone(),
                    verdict,
                });
            }
        }
        for (namespace, counts) in by_namespace {
            for (verdict, n) in [("denied", counts.denied), ("warned", counts.warned)] {
                self.pods_over_limit
                    .get_or_create(&NamespaceVerdictLabels {
                        namespace: namespace.clone(),
                        verdict,
                    })
                    .set(n);
            }
        }
        *known = by_namespace.keys().cloned().collect();
        self.audit_runs
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.audit_last_success.set(now);
    }

    /// A background audit that could not list pods: the gauges keep the last result.
    pub(crate) fn audit_failed(&self) {
        self.audit_runs
            .get_or_create(&ResultLabel { result: "error" })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn reviews_from_every_thread_are_counted_by_kind_and_result() {
        let metrics = Metrics::new();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let metrics = &metrics;
                scope.spawn(move || {
                    for i in 0..200u64 {
                        let kind = if t == 0 { "Deployment" } else { "Pod" };
                        let result = if i % 4 == 0 { "denied" } else { "allowed" };
                        metrics.review(kind, result, Duration::from_micros(i * i * 7));
                        metrics.cache_hits(5);
                    }
                });
            }
        });
        metrics.review("Widget", "allowed", Duration::from_millis(1));
        metrics.invalid_review(Duration::from_millis(1));
        let text = metrics.encode();
        for line in [
            "vulngate_reviews_total{kind=\"Pod\",result=\"allowed\"} 450",
            "vulngate_reviews_total{kind=\"Pod\",result=\"denied\"} 150",
            "vulngate_reviews_total{kind=\"Deployment\",result=\"allowed\"} 150",
            "vulngate_reviews_total{kind=\"Deployment\",result=\"denied\"} 50",
            "vulngate_reviews_total{kind=\"other\",result=\"allowed\"} 1",
            "vulngate_reviews_total{kind=\"other\",result=\"invalid\"} 1",
            "vulngate_summary_cache_hits_total 4000",
            "vulngate_decision_duration_seconds_count 802",
            "vulngate_decision_duration_seconds_bucket{le=\"0.0001\"} 16",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("result=\"warned\""),
            "no warned series yet:\n{text}"
        );
    }

    #[test]
    fn a_review_in_flight_is_counted_until_its_guard_drops_on_any_thread() {
        let metrics = Metrics::new();
        let gauge = |metrics: &Metrics| {
            metrics
                .encode()
                .lines()
                .find_map(|l| l.strip_prefix("vulngate_reviews_in_flight "))
                .map(str::to_string)
        };
        std::thread::scope(|scope| {
            let first = metrics.in_flight();
            let second = metrics.in_flight();
            assert_eq!(gauge(&metrics).as_deref(), Some("2"));
            // Dropped by another thread than the one that counted it.
            scope.spawn(move || drop(first)).join().unwrap();
            assert_eq!(gauge(&metrics).as_deref(), Some("1"));
            drop(second);
        });
        assert_eq!(gauge(&metrics).as_deref(), Some("0"));
    }

    fn over(denied: i64, warned: i64) -> OverLimit {
        OverLimit { denied, warned }
    }

    #[test]
    fn pods_over_limit_follow_each_run_and_forget_namespaces_gone() {
        let metrics = Metrics::new();
        let first: BTreeMap<String, OverLimit> = [
            ("shop".to_string(), over(2, 0)),
            ("lab".to_string(), over(0, 1)),
        ]
        .into_iter()
        .collect();
        metrics.audit_succeeded(&first);
        let text = metrics.encode();
        assert!(
            text.contains(
                "vulngate_running_pods_over_limit{namespace=\"shop\",verdict=\"denied\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "vulngate_running_pods_over_limit{namespace=\"lab\",verdict=\"warned\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("vulngate_audit_runs_total{result=\"ok\"} 1"),
            "{text}"
        );

        let second: BTreeMap<String, OverLimit> =
            [("shop".to_string(), over(0, 0))].into_iter().collect();
        metrics.audit_succeeded(&second);
        metrics.audit_failed();
        let text = metrics.encode();
        assert!(
            text.contains(
                "vulngate_running_pods_over_limit{namespace=\"shop\",verdict=\"denied\"} 0"
            ),
            "{text}"
        );
        assert!(!text.contains("namespace=\"lab\""), "{text}");
        assert!(
            text.contains("vulngate_audit_runs_total{result=\"error\"} 1"),
            "{text}"
        );
    }
}
