//! The real server code (`vulngate::server::serve`) run in-process with parts of the
//! test's own: a scanner, a namespace source or a resolver that is slow or fails.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use vulngate::config::{Config, HostPattern};
use vulngate::domain::scan_error::ScanError;
use vulngate::domain::summary::{ScanStatus, ScanSummary, SeverityCounts};
use vulngate::engine::{Engine, EngineParts};
use vulngate::image::ImageRef;
use vulngate::metrics::Metrics;
use vulngate::namespaces::file::FileNamespaces;
use vulngate::namespaces::{Annotations, NamespaceError, NamespaceSource};
use vulngate::resolve::{DigestResolver, PullContext, ResolveError, Resolved};
use vulngate::scan::{Route, ScanTarget, Scanner, ScannerRouter};
use vulngate::server::{self, AppState, ServeOptions};
use vulngate::tls::ReloadingCert;

use crate::support::Client;

pub const NAMESPACES: &str = "kind: List\nitems:\n- kind: Namespace\n  metadata: {name: default}\n";

pub fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

pub fn image(n: u8) -> String {
    format!("registry.example.com/app@{}", digest(n))
}

pub struct Parts {
    pub scanner: Arc<dyn Scanner>,
    pub namespaces: Arc<dyn NamespaceSource>,
    pub resolver: Option<Arc<dyn DigestResolver>>,
}

impl Parts {
    pub fn with_scanner(scanner: Arc<dyn Scanner>) -> Parts {
        Parts {
            scanner,
            namespaces: Arc::new(FileNamespaces::parse(NAMESPACES).unwrap()),
            resolver: None,
        }
    }
}

pub struct InProcess {
    pub client: Client,
    pub ops: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), vulngate::server::ServeError>>,
    _dir: tempfile::TempDir,
}

/// Serves `policy_yaml` (top-level config keys; `registries` is added) with `parts`.
pub async fn start(policy_yaml: &str, parts: Parts) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{policy_yaml}\nregistries: [{{match: \"*\", scanner: {{file: {{path: unused}}}}}}]\n"
    );
    let config = Config::from_yaml(&yaml, dir.path()).unwrap();
    let engine = Engine::new(
        &config,
        EngineParts {
            namespaces: parts.namespaces,
            router: ScannerRouter::from_routes(vec![Route {
                index: 0,
                pattern: HostPattern("*".into()),
                scanner: parts.scanner,
            }]),
            resolver: parts.resolver,
            metrics: Arc::new(Metrics::new()),
        },
    );
    let tls = vulngate::tls::generate(&dir.path().join("tls"), &[]).unwrap();
    let cert = ReloadingCert::load(&tls.cert_file, &tls.key_file).unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ops_listen: "127.0.0.1:0".parse().unwrap(),
        drain_delay: Duration::ZERO,
        grace: Duration::from_secs(5),
        request_timeout: config.deadline + Duration::from_secs(15),
        connections: config.connections.clone(),
        // What containers often start with: 512 webhook slots.
        open_file_limit: 1024,
        client_ca: None,
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = oneshot::channel();
    let state = AppState::new(Arc::new(engine));
    let task = tokio::spawn(server::serve(
        options,
        state,
        cert,
        async move {
            let _ = stop_rx.await;
        },
        move |webhook, ops| {
            let _ = addr_tx.send((webhook, ops));
        },
    ));
    let (webhook, ops) = addr_rx.await.expect("server listening");
    let ca = std::fs::read(&tls.ca_file).unwrap();
    InProcess {
        client: Client::new(webhook, &[&ca]),
        ops,
        stop: Some(stop_tx),
        task,
        _dir: dir,
    }
}

impl InProcess {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn complete(high: u64) -> ScanSummary {
    let mut s = ScanSummary::status_only("test", ScanStatus::Complete);
    s.counts = SeverityCounts {
        high: Some(high),
        ..SeverityCounts::zero()
    };
    s
}

/// Answers clean summaries, after `delay` for the digests in `slow`.
pub struct SlowScanner {
    pub delay: Duration,
    pub slow: Vec<String>,
    pub calls: std::sync::atomic::AtomicU64,
}

impl SlowScanner {
    pub fn new(delay: Duration, slow: Vec<String>) -> SlowScanner {
        SlowScanner {
            delay,
            slow,
            calls: Default::default(),
        }
    }
}

#[async_trait]
impl Scanner for SlowScanner {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.slow.iter().any(|d| d == target.digest) {
            tokio::time::sleep(self.delay).await;
        }
        Ok(complete(0))
    }
}

/// Fails every call, as a scanner that is down (5xx) does.
#[derive(Default)]
pub struct FailingScanner {
    pub calls: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl Scanner for FailingScanner {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn summary(&self, _target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(ScanError::Unavailable {
            scanner: "test",
            message: "HTTP 503 Service Unavailable".into(),
        })
    }
}

/// A namespace source that is down (a dropped watch that has not recovered) or slow.
pub struct BrokenNamespaces {
    pub delay: Option<Duration>,
}

#[async_trait]
impl NamespaceSource for BrokenNamespaces {
    async fn annotations(&self, _name: &str) -> Result<Option<Annotations>, NamespaceError> {
        match self.delay {
            Some(d) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            None => Err(NamespaceError(
                "watch of Namespaces lost: connection reset".into(),
            )),
        }
    }
    fn is_ready(&self) -> bool {
        true
    }
}

/// A registry that is down, or that never answers.
pub struct BrokenRegistry {
    pub hang: bool,
}

#[async_trait]
impl DigestResolver for BrokenRegistry {
    async fn resolve(
        &self,
        _image: &ImageRef,
        _ctx: &PullContext,
    ) -> Result<Option<Resolved>, ResolveError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Err(ResolveError::Backend(
            "registry.example.com: connection refused".into(),
        ))
    }
}
