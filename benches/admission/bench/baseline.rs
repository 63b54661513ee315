//! The baseline: vulngate's HTTP + TLS stack (the same rustls server config and
//! ECDSA P-256 certificate, the same hyper connection builder and connection loop,
//! the same axum layers and body limit) answering every review with vulngate's own
//! precomputed answer, without decoding or policy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tower_http::limit::RequestBodyLimitLayer;

use vulngate::server::{connection_builder, serve_connection, BODY_LIMIT};
use vulngate::tls::{server_config, ReloadingCert};

use super::Result;

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
    let acceptor = TlsAcceptor::from(Arc::new(server_config(cert)?));
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
    let builder = Arc::new(connection_builder());
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            tokio::spawn(serve_connection(
                acceptor.clone(),
                Arc::clone(&builder),
                router.clone(),
                graceful.watcher(),
                tcp,
                peer,
                None,
            ));
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    });
    Ok(Baseline { addr, stop, task })
}
