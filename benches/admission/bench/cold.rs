//! The cold path: many concurrent reviews naming one digest no cache holds, against a
//! scanner that answers after a fixed latency and counts its calls. In process: an
//! `Engine` with that scanner served by `vulngate::server::serve` on loopback, on a
//! runtime of its own (`vulngate::server::runtime`).
//!
//! The same burst is then sent again, the digest now cached: how long the client and
//! server take to get that many reviews through at all. The cold burst's p99 beyond
//! the warm one's is what the cold digest cost, to compare with the scanner latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Barrier};

use vulngate::config::{Config, HostPattern};
use vulngate::engine::{Engine, EngineParts};
use vulngate::metrics::Metrics;
use vulngate::namespaces::file::FileNamespaces;
use vulngate::scan::{
    Route, ScanError, ScanStatus, ScanSummary, ScanTarget, Scanner, ScannerRouter, SeverityCounts,
};
use vulngate::server::{serve, AppState, ServeOptions};
use vulngate::tls::ReloadingCert;

use super::client::{self, Proto, Target};
use super::setup::{self, Files};
use super::Result;

/// HTTP/2 connections the concurrent reviews are spread over.
const CONNECTIONS: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct ColdResult {
    pub reviews: usize,
    pub connections: usize,
    pub scanner_calls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same burst with the digest cached.
    pub warm_p50_ms: f64,
    pub warm_p99_ms: f64,
}

/// An engine on the benchmark's namespaces whose only scanner is `scanner`.
pub fn engine(files: &Files, scanner: Arc<dyn Scanner>) -> Result<Engine> {
    let yaml = format!(
        "namespacesFile: {}\nregistries:\n  - match: \"*\"\n    scanner: {{file: {{path: unused}}}}\nlog: {{format: json, level: warn}}\n",
        files.namespaces.display()
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("/"))?;
    Ok(Engine::new(
        &config,
        EngineParts {
            namespaces: Arc::new(FileNamespaces::load(&files.namespaces)?),
            router: ScannerRouter::from_routes(vec![Route {
                index: 0,
                pattern: HostPattern("*".into()),
                scanner,
            }]),
            resolver: None,
            metrics: Arc::new(Metrics::new()),
        },
    ))
}

/// A scanner that sleeps, then reports a clean scan.
pub struct SlowScanner {
    pub latency: Duration,
    pub calls: Arc<AtomicU64>,
}

#[async_trait]
impl Scanner for SlowScanner {
    fn kind(&self) -> &'static str {
        "bench"
    }

    async fn summary(
        &self,
        _target: &ScanTarget<'_>,
    ) -> std::result::Result<ScanSummary, ScanError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        let mut summary = ScanSummary::status_only("bench", ScanStatus::Complete);
        summary.counts = SeverityCounts::zero();
        Ok(summary)
    }
}

pub async fn run(files: &Files, reviews: usize, latency: Duration) -> Result<ColdResult> {
    let calls = Arc::new(AtomicU64::new(0));
    let engine = engine(
        files,
        Arc::new(SlowScanner {
            latency,
            calls: Arc::clone(&calls),
        }),
    )?;
    let cert = ReloadingCert::load(&files.cert, &files.key)?;
    let options = ServeOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        drain_delay: Duration::ZERO,
        grace: Duration::from_secs(2),
        request_timeout: Duration::from_secs(30),
    };
    let (addr_tx, addr_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // The server on a runtime of its own, as vulngate serves, not among the
    // load generator's tasks.
    let runtime = vulngate::server::runtime()?;
    let server = std::thread::spawn(move || {
        runtime.block_on(serve(
            options,
            AppState::new(Arc::new(engine)),
            cert,
            async move {
                let _ = stop_rx.await;
            },
            move |webhook, _ops| {
                let _ = addr_tx.send(webhook);
            },
        ))
    });
    let addr = addr_rx.await?;
    let target = Target::new(addr, &files.ca_pem)?;

    // One image no cache holds, the same in every review.
    let image = setup::generated_image("cold", 0);
    let mut senders = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        senders.push(client::connect(&target, Proto::Http2).await?);
    }
    let cold = burst(&senders, &target, files, &image, reviews, "cold").await?;
    let warm = burst(&senders, &target, files, &image, reviews, "warm").await?;
    let _ = stop_tx.send(());
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(ColdResult {
        reviews,
        connections: CONNECTIONS,
        scanner_calls: calls.load(Ordering::SeqCst),
        errors: cold.1 + warm.1,
        p50_ms: ms(&cold.0, 0.5),
        p99_ms: ms(&cold.0, 0.99),
        max_ms: ms(&cold.0, 1.0),
        warm_p50_ms: ms(&warm.0, 0.5),
        warm_p99_ms: ms(&warm.0, 0.99),
    })
}

/// `reviews` reviews of `image`, released at once over the open connections: the
/// latency of each from release to full answer, and how many failed.
async fn burst(
    senders: &[client::Sender],
    target: &Target,
    files: &Files,
    image: &str,
    reviews: usize,
    label: &str,
) -> Result<(hdrhistogram::Histogram<u64>, u64)> {
    let barrier = Arc::new(Barrier::new(reviews));
    let mut tasks = Vec::with_capacity(reviews);
    for i in 0..reviews {
        let Some(mut sender) = senders[i % senders.len()].share() else {
            return Err("HTTP/2 sender expected".into());
        };
        let review = setup::review_with(
            &files.template,
            &format!("{label}-{i:06}"),
            &[image.to_string()],
        );
        let body = Bytes::from(serde_json::to_vec(&review)?);
        let barrier = Arc::clone(&barrier);
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let t0 = Instant::now();
            let result = sender.send(&target, body).await;
            let micros = t0.elapsed().as_micros() as u64;
            let ok = match result {
                Ok((status, bytes)) if status.is_success() => {
                    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    answer["response"]["allowed"] == json!(true)
                }
                _ => false,
            };
            (micros, ok)
        }));
    }
    let mut histogram = client::new_histogram()?;
    let mut errors = 0;
    for task in tasks {
        let (micros, ok) = task.await?;
        histogram.saturating_record(micros.max(1));
        errors += u64::from(!ok);
    }
    Ok((histogram, errors))
}
