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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{Barrier, oneshot};

use vulngate::config::{Config, HostPattern};
use vulngate::domain::scan_error::ScanError;
use vulngate::domain::summary::{ScanStatus, ScanSummary, SeverityCounts};
use vulngate::engine::{Engine, EngineParts};
use vulngate::metrics::Metrics;
use vulngate::namespaces::file::FileNamespaces;
use vulngate::scan::{Route, ScanTarget, Scanner, ScannerRouter};
use vulngate::server::{AppState, ServeOptions, serve};
use vulngate::tls::ReloadingCert;

use super::Result;
use super::client::{self, Proto, Target};
use super::setup::{self, Files};

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
    /// When the scanner was called and when it answered, from the burst's release.
    pub scanner_called_ms: f64,
    pub scanner_answered_ms: f64,
    /// From the scanner's answer until the last review was answered.
    pub last_answer_after_scanner_ms: f64,
    /// The same burst with the digest cached.
    pub warm_p50_ms: f64,
    pub warm_p99_ms: f64,
}

impl ColdResult {
    /// One line for the progress output and the report.
    pub fn summary(&self) -> String {
        format!(
            "cold path: {} concurrent reviews of one uncached digest over {} h2 connections: {} scanner call(s) (called {:.2} ms after release, answered at {:.2} ms, last review answered {:.2} ms after that), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors; the same burst cached: p50 {:.2} ms, p99 {:.2} ms",
            self.reviews,
            self.connections,
            self.scanner_calls,
            self.scanner_called_ms,
            self.scanner_answered_ms,
            self.last_answer_after_scanner_ms,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.errors,
            self.warm_p50_ms,
            self.warm_p99_ms
        )
    }
}

/// What one burst measured.
pub struct Burst {
    /// Each review's latency from release to full answer, in microseconds.
    pub latencies: hdrhistogram::Histogram<u64>,
    pub errors: u64,
    released: Instant,
    last_answer: Instant,
}

/// An engine on the benchmark's namespaces whose only scanner is `scanner`.
pub fn engine(files: &Files, scanner: Arc<dyn Scanner>) -> Result<Engine> {
    engine_with(files, scanner, "").map(|(engine, _)| engine)
}

/// [`engine`] with `extra` config YAML (top-level keys), and the config it read.
pub fn engine_with(
    files: &Files,
    scanner: Arc<dyn Scanner>,
    extra: &str,
) -> Result<(Engine, Config)> {
    let yaml = format!(
        "namespacesFile: {}\nregistries:\n  - match: \"*\"\n    scanner: {{file: {{path: unused}}}}\nlog: {{format: json, level: warn}}\n{extra}",
        files.namespaces.display()
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("/"))?;
    let engine = Engine::new(
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
    );
    Ok((engine, config))
}

/// An engine served on loopback by `vulngate::server::serve`, on a runtime of its own.
pub struct Served {
    pub target: Target,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<std::result::Result<(), String>>,
}

impl Served {
    pub async fn start(engine: Engine, files: &Files) -> Result<Served> {
        Served::start_with(move || Ok(engine), files).await
    }

    /// The engine `make` builds on the server's runtime: what it spawns (the shared
    /// tier's Redis connection) runs there, as in `vulngate serve`.
    pub async fn start_with(
        make: impl FnOnce() -> std::result::Result<Engine, String> + Send + 'static,
        files: &Files,
    ) -> Result<Served> {
        let cert = ReloadingCert::load(&files.cert, &files.key)?;
        let options = ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            connections: Default::default(),
            open_file_limit: vulngate::connections::raise_open_file_limit(),
            client_ca: None,
        };
        let (addr_tx, addr_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        // The server on a runtime of its own, as vulngate serves, not among the
        // load generator's tasks.
        let runtime = vulngate::server::runtime()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let engine = make()?;
                serve(
                    options,
                    AppState::new(Arc::new(engine)),
                    cert,
                    async move {
                        let _ = stop_rx.await;
                    },
                    move |webhook, _ops| {
                        let _ = addr_tx.send(webhook);
                    },
                )
                .await
                .map_err(|e| e.to_string())
            })
        });
        let addr = addr_rx.await?;
        Ok(Served {
            target: Target::new(addr, &files.ca_pem)?,
            stop,
            thread,
        })
    }

    /// `n` HTTP/2 connections to the server, each with its target.
    pub async fn connect(&self, n: usize) -> Result<Vec<(client::Sender, Target)>> {
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            senders.push((
                client::connect(&self.target, Proto::Http2).await?,
                self.target.clone(),
            ));
        }
        Ok(senders)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// A scanner that sleeps, then reports a clean scan.
pub struct SlowScanner {
    pub latency: Duration,
    pub calls: Arc<AtomicU64>,
    /// When the last call started and when it answered.
    pub last_call: Arc<Mutex<Option<(Instant, Instant)>>>,
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
        let called = Instant::now();
        tokio::time::sleep(self.latency).await;
        if let Ok(mut last) = self.last_call.lock() {
            *last = Some((called, Instant::now()));
        }
        let mut summary = ScanSummary::status_only("bench", ScanStatus::Complete);
        summary.counts = SeverityCounts::zero();
        Ok(summary)
    }
}

pub async fn run(files: &Files, reviews: usize, latency: Duration) -> Result<ColdResult> {
    let calls = Arc::new(AtomicU64::new(0));
    let last_call = Arc::new(Mutex::new(None));
    let engine = engine(
        files,
        Arc::new(SlowScanner {
            latency,
            calls: Arc::clone(&calls),
            last_call: Arc::clone(&last_call),
        }),
    )?;
    let served = Served::start(engine, files).await?;
    // One image no cache holds, the same in every review.
    let image = setup::generated_image("cold", 0);
    let senders = served.connect(CONNECTIONS).await?;
    let cold = burst(&senders, files, &image, reviews, "cold").await?;
    let warm = burst(&senders, files, &image, reviews, "warm").await?;
    served.stop().await;
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let since =
        |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    let (called, answered) = last_call
        .lock()
        .ok()
        .and_then(|l| *l)
        .ok_or("the cold burst never called the scanner")?;
    Ok(ColdResult {
        reviews,
        connections: CONNECTIONS,
        scanner_calls: calls.load(Ordering::SeqCst),
        errors: cold.errors + warm.errors,
        p50_ms: ms(&cold.latencies, 0.5),
        p99_ms: ms(&cold.latencies, 0.99),
        max_ms: ms(&cold.latencies, 1.0),
        scanner_called_ms: since(cold.released, called),
        scanner_answered_ms: since(cold.released, answered),
        last_answer_after_scanner_ms: since(answered, cold.last_answer),
        warm_p50_ms: ms(&warm.latencies, 0.5),
        warm_p99_ms: ms(&warm.latencies, 0.99),
    })
}

/// `reviews` reviews of `image`, released at once over the open connections (of one
/// server or several). Answers are checked after the burst, so the client's own
/// reading does not delay the clocks of the reviews still waiting.
pub async fn burst(
    senders: &[(client::Sender, Target)],
    files: &Files,
    image: &str,
    reviews: usize,
    label: &str,
) -> Result<Burst> {
    let barrier = Arc::new(Barrier::new(reviews + 1));
    let mut tasks = Vec::with_capacity(reviews);
    for i in 0..reviews {
        let (sender, target) = &senders[i % senders.len()];
        let Some(mut sender) = sender.share() else {
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
            let done = Instant::now();
            (done.saturating_duration_since(t0), done, result.ok())
        }));
    }
    let released = Instant::now();
    barrier.wait().await;
    let mut answers = Vec::with_capacity(reviews);
    for task in tasks {
        answers.push(task.await?);
    }
    let mut latencies = client::new_histogram()?;
    let mut errors = 0;
    let mut last_answer = released;
    for (latency, done, answer) in answers {
        latencies.saturating_record((latency.as_micros() as u64).max(1));
        last_answer = last_answer.max(done);
        let ok = answer.is_some_and(|(status, bytes)| {
            status.is_success()
                && serde_json::from_slice::<Value>(&bytes)
                    .is_ok_and(|a| a["response"]["allowed"] == json!(true))
        });
        errors += u64::from(!ok);
    }
    Ok(Burst {
        latencies,
        errors,
        released,
        last_answer,
    })
}
