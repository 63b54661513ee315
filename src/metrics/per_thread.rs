//! The metrics every review writes (reviews by kind and result, the decision
//! histogram, reviews in flight, summary cache hits), kept per thread and summed
//! when scraped. prometheus-client's counters, family lock and histogram lock are
//! cache lines that both workers write for every review; here each thread writes
//! only its own, with a plain load and store (no locked instruction).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use thread_local::ThreadLocal;

use super::ReviewLabels;

/// Object kinds with a series of their own (the kinds vulngate judges), then
/// `other`. Metrics sit below the admission wire format, so the list is written
/// here; tests/metrics_kinds.rs checks it against `admission::JUDGED_KINDS`.
pub(crate) const KINDS_WITH_SERIES: [&str; 8] = [
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];
const KINDS: usize = KINDS_WITH_SERIES.len() + 1;
const OTHER_KIND: usize = KINDS - 1;

fn kind_name(index: usize) -> &'static str {
    KINDS_WITH_SERIES.get(index).copied().unwrap_or("other")
}

pub(crate) const RESULTS: [&str; 4] = ["allowed", "denied", "warned", "invalid"];

/// Upper bounds of the decision histogram's buckets in seconds (then +Inf):
/// 50 µs doubling 18 times, up to about 6.5 s.
fn decision_bounds() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 18)
}
const BUCKETS: usize = 18 + 1;

/// One thread's counts. Aligned so two threads' counts never share a cache line.
#[derive(Default)]
#[repr(align(128))]
struct Slot {
    reviews: [[AtomicU64; RESULTS.len()]; KINDS],
    in_flight: AtomicI64,
    cache_hits: AtomicU64,
    /// Per bucket, not cumulative; the last is +Inf.
    buckets: [AtomicU64; BUCKETS],
    /// The f64 sum of the decision seconds, as bits (0 is 0.0).
    seconds_sum: AtomicU64,
}

/// Only the slot's own thread adds, so a load and a store cannot lose a count.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

struct Slots {
    slots: ThreadLocal<Slot>,
    bounds: [f64; BUCKETS],
}

impl Slots {
    fn mine(&self) -> &Slot {
        self.slots.get_or_default()
    }

    fn sum<T: std::iter::Sum>(&self, read: impl Fn(&Slot) -> T) -> T {
        self.slots.iter().map(read).sum()
    }
}

/// The review metrics, shared by the engine and the registry's encoders.
#[derive(Clone)]
pub(crate) struct ReviewMetrics(Arc<Slots>);

impl Default for ReviewMetrics {
    fn default() -> Self {
        let mut bounds = [f64::MAX; BUCKETS];
        for (bound, value) in bounds.iter_mut().zip(decision_bounds()) {
            *bound = value;
        }
        ReviewMetrics(Arc::new(Slots {
            slots: ThreadLocal::new(),
            bounds,
        }))
    }
}

impl fmt::Debug for ReviewMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReviewMetrics")
    }
}

impl ReviewMetrics {
    /// One review decided (or found invalid): its kind, result and duration.
    pub fn review(&self, kind: &str, result: &str, elapsed: Duration) {
        let slot = self.0.mine();
        let kind = KINDS_WITH_SERIES
            .iter()
            .position(|judged| *judged == kind)
            .unwrap_or(OTHER_KIND);
        let result = RESULTS
            .iter()
            .position(|r| *r == result)
            .unwrap_or(RESULTS.len() - 1);
        if let Some(counter) = slot.reviews.get(kind).and_then(|r| r.get(result)) {
            add(counter, 1);
        }
        let seconds = elapsed.as_secs_f64();
        let bucket = self
            .0
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS - 1);
        if let Some(counter) = slot.buckets.get(bucket) {
            add(counter, 1);
        }
        let sum = f64::from_bits(slot.seconds_sum.load(Relaxed)) + seconds;
        slot.seconds_sum.store(sum.to_bits(), Relaxed);
    }

    pub(crate) fn cache_hits(&self, hits: u64) {
        add(&self.0.mine().cache_hits, hits);
    }

    /// Counts a review in flight until the guard drops (maybe on another thread:
    /// the sum over threads is what is reported).
    pub fn in_flight(&self) -> InFlight<'_> {
        self.step_in_flight(1);
        InFlight(self)
    }

    fn step_in_flight(&self, by: i64) {
        let gauge = &self.0.mine().in_flight;
        gauge.store(gauge.load(Relaxed).wrapping_add(by), Relaxed);
    }

    /// One of the review metrics, for the registry.
    pub(crate) fn encoder(
        &self,
        series: Series,
    ) -> impl EncodeMetric + fmt::Debug + Send + Sync + 'static + use<> {
        Encoded(self.clone(), series)
    }
}

pub struct InFlight<'a>(&'a ReviewMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.step_in_flight(-1);
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Series {
    Reviews,
    Decision,
    InFlight,
    CacheHits,
}

/// One of the review metrics as the registry encodes it.
#[derive(Debug)]
struct Encoded(ReviewMetrics, Series);

impl EncodeMetric for Encoded {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let slots = &self.0.0;
        match self.1 {
            Series::Reviews => {
                for k in 0..KINDS {
                    let kind = kind_name(k);
                    for (r, result) in RESULTS.iter().enumerate() {
                        let count = slots.sum(|s| s.reviews[k][r].load(Relaxed));
                        // Like a label family: a series appears once it has counted.
                        if count > 0 {
                            let labels = ReviewLabels { kind, result };
                            encoder
                                .encode_family(&labels)?
                                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                        }
                    }
                }
                Ok(())
            }
            Series::Decision => {
                let buckets: Vec<(f64, u64)> = (0..BUCKETS)
                    .map(|b| (slots.bounds[b], slots.sum(|s| s.buckets[b].load(Relaxed))))
                    .collect();
                let count = buckets.iter().map(|(_, n)| n).sum();
                let sum = slots.sum(|s| f64::from_bits(s.seconds_sum.load(Relaxed)));
                encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
            }
            Series::InFlight => {
                let in_flight: i64 = slots.sum(|s| s.in_flight.load(Relaxed));
                encoder.encode_gauge(&in_flight)
            }
            Series::CacheHits => {
                let hits = slots.sum(|s| s.cache_hits.load(Relaxed));
                encoder.encode_counter::<NoLabelSet, _, u64>(&hits, None)
            }
        }
    }

    fn metric_type(&self) -> MetricType {
        match self.1 {
            Series::Reviews | Series::CacheHits => MetricType::Counter,
            Series::Decision => MetricType::Histogram,
            Series::InFlight => MetricType::Gauge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn counts_from_every_thread_are_summed_and_the_histogram_encodes_like_prometheus_clients() {
        let metrics = ReviewMetrics::default();
        let mut ours = Registry::default();
        ours.register("reviews", "r", metrics.encoder(Series::Reviews));
        ours.register(
            "decision_duration_seconds",
            "d",
            metrics.encoder(Series::Decision),
        );
        ours.register(
            "summary_cache_hits",
            "h",
            metrics.encoder(Series::CacheHits),
        );
        let theirs_histogram = Histogram::new(decision_bounds());
        let mut theirs = Registry::default();
        theirs.register("decision_duration_seconds", "d", theirs_histogram.clone());

        let durations: Vec<Duration> = (0..200u64)
            .map(|i| Duration::from_micros(i * i * 7))
            .collect();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (metrics, durations) = (&metrics, &durations);
                scope.spawn(move || {
                    for (i, d) in durations.iter().enumerate() {
                        let kind = if t == 0 { "Deployment" } else { "Pod" };
                        let result = if i % 4 == 0 { "denied" } else { "allowed" };
                        metrics.review(kind, result, *d);
                        metrics.cache_hits(5);
                    }
                });
            }
        });
        metrics.review("Widget", "invalid", Duration::from_millis(1));
        for _ in 0..4 {
            durations
                .iter()
                .for_each(|d| theirs_histogram.observe(d.as_secs_f64()));
        }
        theirs_histogram.observe(0.001);

        let out = text(&ours);
        for line in [
            "reviews_total{kind=\"Pod\",result=\"allowed\"} 450",
            "reviews_total{kind=\"Pod\",result=\"denied\"} 150",
            "reviews_total{kind=\"Deployment\",result=\"allowed\"} 150",
            "reviews_total{kind=\"Deployment\",result=\"denied\"} 50",
            "reviews_total{kind=\"other\",result=\"invalid\"} 1",
            "summary_cache_hits_total 4000",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
        assert!(
            !out.contains("result=\"warned\""),
            "no warned series yet:\n{out}"
        );
        let histogram = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("decision_duration_seconds_"))
                .map(str::to_string)
                .collect()
        };
        let (ours, theirs) = (histogram(&out), histogram(&text(&theirs)));
        assert_eq!(ours.len(), 2 + BUCKETS, "{out}");
        // The sum is added in another order: equal to the last few digits.
        let sum =
            |lines: &[String]| -> f64 { lines[0].rsplit(' ').next().unwrap().parse().unwrap() };
        assert!(
            (sum(&ours) - sum(&theirs)).abs() < 1e-9,
            "{ours:?} vs {theirs:?}"
        );
        assert_eq!(ours[1..], theirs[1..]);
    }

    #[test]
    fn a_review_in_flight_is_counted_until_its_guard_drops_on_any_thread() {
        let metrics = ReviewMetrics::default();
        let mut registry = Registry::default();
        registry.register("reviews_in_flight", "f", metrics.encoder(Series::InFlight));
        let gauge = |registry: &Registry| {
            text(registry)
                .lines()
                .find_map(|l| l.strip_prefix("reviews_in_flight "))
                .map(str::to_string)
        };
        std::thread::scope(|scope| {
            let first = metrics.in_flight();
            let second = metrics.in_flight();
            assert_eq!(gauge(&registry).as_deref(), Some("2"));
            // Dropped by another thread than the one that counted it.
            scope.spawn(move || drop(first)).join().unwrap();
            assert_eq!(gauge(&registry).as_deref(), Some("1"));
            drop(second);
        });
        assert_eq!(gauge(&registry).as_deref(), Some("0"));
    }
}
