//! The baseline: vulngate's HTTP + TLS stack (the same rustls server config and
//! ECDSA P-256 certificate, the same hyper connection builder and connection loop,
//! the same axum layers and body limit) answering every review with vulngate's own
//! precomputed answer, without decoding or policy.
//!
//! It runs in a process of its own, on the runtime vulngate runs on, so that both
//! servers pay the same for being another process than the load generator: the
//! benchmark starts its own executable again with `--baseline-server`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tower_http::limit::RequestBodyLimitLayer;

use vulngate::config::serving::ConnectionsConfig;
use vulngate::connections::{self, Port, Timeouts};
use vulngate::server::BODY_LIMIT;
use vulngate::tls::{ReloadingCert, server_config};

use super::Result;

/// The argument that makes the benchmark's executable serve the baseline.
pub const SERVE_ARG: &str = "--baseline-server";

/// (request body length, response): the answer is picked by the body's length,
/// which needs no decoding.
type Answers = Arc<Vec<(usize, Bytes)>>;

pub struct Baseline {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Baseline {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn answer(State(answers): State<Answers>, body: Bytes) -> impl IntoResponse {
    let out = answers
        .iter()
        .find(|(len, _)| *len == body.len())
        .or(answers.first())
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
}

/// Starts the baseline on a loopback port chosen by the system.
pub async fn start(cert: &Path, key: &Path, answers: Vec<(usize, Bytes)>) -> Result<Baseline> {
    let cert = ReloadingCert::load(cert, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(server_config(cert, None)?));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = Router::new()
        .route("/validate", post(answer))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(23),
        ))
        .with_state(Arc::new(answers));
    // vulngate's connection limits, with a budget no benchmark reaches.
    let limits = ConnectionsConfig::default();
    let port = Port::new(
        "baseline",
        limits.max_connections_per_peer,
        limits.max_connections_per_peer,
        Timeouts::from_config(&limits, Duration::from_secs(23)),
    );
    let builder = Arc::new(connections::http_builder(&limits));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (live, closed) = connections::live_connections();
        let stopped = async move {
            let _ = stopped.await;
        };
        connections::accept_until(&listener, &port, stopped, |tcp, peer, admitted| {
            let acceptor = acceptor.clone();
            connections::serve_connection(
                tcp,
                peer,
                admitted,
                move |tcp| acceptor.accept(tcp),
                Arc::clone(&builder),
                router.clone(),
                live.clone(),
            )
        })
        .await;
        drop(listener);
        drop(live);
        port.stop();
        let _ = tokio::time::timeout(Duration::from_secs(2), closed.wait()).await;
    });
    Ok(Baseline { addr, stop, task })
}

/// The baseline server process.
pub struct BaselineProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl BaselineProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BaselineProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts this executable again as the baseline server, answering with `answers`
/// (written to `dir`), and reads the address it listens on.
pub fn spawn(
    dir: &Path,
    cert: &Path,
    key: &Path,
    answers: &[(usize, Bytes)],
) -> Result<BaselineProcess> {
    let answers_dir = dir.join("baseline-answers");
    std::fs::create_dir_all(&answers_dir)?;
    for (body_len, response) in answers {
        std::fs::write(answers_dir.join(body_len.to_string()), response)?;
    }
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .arg(SERVE_ARG)
        .arg(cert)
        .arg(key)
        .arg(&answers_dir)
        // It serves until this end of its stdin closes, so it never outlives us.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the baseline ({}): {e}", exe.display()))?;
    let line = child
        .stdout
        .take()
        .and_then(|out| BufReader::new(out).lines().next())
        .and_then(|l| l.ok())
        .unwrap_or_default();
    match line
        .strip_prefix("baseline on ")
        .and_then(|a| a.parse().ok())
    {
        Some(addr) => Ok(BaselineProcess { child, addr }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the baseline did not start (it printed {line:?})").into())
        }
    }
}

/// When this executable was started as the baseline server (`SERVE_ARG CERT KEY
/// ANSWERS_DIR`), serves until stdin closes and says how it ended; `None` otherwise.
/// Called first by every `main` that runs the benchmark.
pub fn serve_if_asked(args: &[String]) -> Option<std::process::ExitCode> {
    if args.first().map(String::as_str) != Some(SERVE_ARG) {
        return None;
    }
    Some(match serve_main(&args[1..]) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baseline server: {e}");
            std::process::ExitCode::FAILURE
        }
    })
}

fn serve_main(args: &[String]) -> Result<()> {
    let [cert, key, answers_dir] = args else {
        return Err(format!("usage: {SERVE_ARG} CERT KEY ANSWERS_DIR").into());
    };
    let mut answers = Vec::new();
    for entry in std::fs::read_dir(answers_dir)? {
        let path: PathBuf = entry?.path();
        let body_len = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("unexpected file {}", path.display()))?;
        answers.push((body_len, Bytes::from(std::fs::read(&path)?)));
    }
    let runtime = vulngate::server::runtime()?;
    runtime.block_on(async {
        let baseline = start(Path::new(cert), Path::new(key), answers).await?;
        let mut out = std::io::stdout();
        writeln!(out, "baseline on {}", baseline.addr)?;
        out.flush()?;
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await??;
        baseline.stop().await;
        Ok(())
    })
}
