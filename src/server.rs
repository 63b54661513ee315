//! The servers: the TLS webhook (`POST /validate`, and `POST /mutate` when
//! `pinDigests.enabled`, see pin.rs; HTTP/1.1 and HTTP/2) and the
//! plain-HTTP ops port (`/healthz`, `/readyz`, `/metrics`; `POST /cache/purge` when
//! configured, see purge.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower_http::limit::RequestBodyLimitLayer;

use crate::config::serving::ConnectionsConfig;
use crate::connections::{self, Port, Timeouts};
use crate::engine::Engine;
use crate::purge::PurgeAccess;
use crate::tls::{ReloadingCert, ReloadingClientCa};

mod error;
pub use error::ServeError;

/// What controller-runtime accepts; the apiserver sends far less.
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub ops_listen: SocketAddr,
    /// After SIGTERM: keep serving (readiness false) this long so endpoints drain.
    pub drain_delay: Duration,
    /// Longest wait for in-flight reviews after the listener closes.
    pub grace: Duration,
    /// Request timeout beyond the review deadline: time to read the body.
    pub request_timeout: Duration,
    /// Timeouts and connection budgets of both ports.
    pub connections: ConnectionsConfig,
    /// The soft open-file limit in force: the webhook's connection slots follow it.
    pub open_file_limit: usize,
    /// With `tls.clientCAFile`: clients must present a certificate it signed.
    pub client_ca: Option<Arc<ReloadingClientCa>>,
}

pub struct AppState {
    pub engine: Arc<Engine>,
    shutting_down: AtomicBool,
    /// `POST /cache/purge`, when configured (`ops.purge`).
    purge: Option<PurgeAccess>,
    /// `POST /mutate` is served (`pinDigests.enabled`).
    pin_digests: bool,
}

impl AppState {
    /// The state of servers without `POST /cache/purge`.
    pub fn new(engine: Arc<Engine>) -> Arc<AppState> {
        AppState::with_purge(engine, None)
    }

    pub(crate) fn with_purge(engine: Arc<Engine>, purge: Option<PurgeAccess>) -> Arc<AppState> {
        AppState::with_pinning(engine, purge, false)
    }

    /// The state of servers that also answer `POST /mutate` when `pin_digests`.
    pub fn with_pinning(
        engine: Arc<Engine>,
        purge: Option<PurgeAccess>,
        pin_digests: bool,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            engine,
            shutting_down: AtomicBool::new(false),
            purge,
            pin_digests,
        })
    }

    pub(crate) fn purge_access(&self) -> Option<&PurgeAccess> {
        self.purge.as_ref()
    }

    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed) && self.engine.namespaces_ready()
    }
}

/// `POST /validate`; `POST /mutate` only when pinning is on (else a 404).
pub(crate) fn webhook_router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let router = Router::new().route("/validate", post(validate));
    let router = if state.pin_digests {
        router.route("/mutate", post(mutate))
    } else {
        router
    };
    router
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

/// Health and metrics; `POST /cache/purge` only when configured (else a 404).
pub(crate) fn ops_router(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let router = if state.purge_access().is_some() {
        router.route("/cache/purge", post(purge))
    } else {
        router
    };
    router.with_state(state)
}

async fn purge(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match state.purge_access() {
        Some(access) => {
            crate::purge::purge(access, state.engine.cache(), &headers, query.as_deref()).await
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What `POST /validate` and `POST /mutate` read besides the body, taken from the request head by
/// reference (no copy of its header map or query).
struct ReviewHead {
    json: bool,
    deadline: Option<Duration>,
}

impl<S: Send + Sync> FromRequestParts<S> for ReviewHead {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        Ok(ReviewHead {
            json,
            deadline: parts.uri.query().and_then(apiserver_timeout),
        })
    }
}

async fn validate(State(state): State<Arc<AppState>>, head: ReviewHead, body: Bytes) -> Response {
    answer(&head, || state.engine.review(&body, head.deadline)).await
}

async fn mutate(State(state): State<Arc<AppState>>, head: ReviewHead, body: Bytes) -> Response {
    answer(&head, || {
        crate::pin::review(&state.engine, &body, head.deadline)
    })
    .await
}

/// A review's HTTP answer: 415 unless JSON, 400 when undecodable, else the review.
async fn answer<F>(head: &ReviewHead, decide: impl FnOnce() -> F) -> Response
where
    F: std::future::Future<Output = Result<Vec<u8>, crate::admission::BadReview>>,
{
    if !head.json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an AdmissionReview is sent as Content-Type: application/json\n",
        )
            .into_response();
    }
    match decide().await {
        Ok(out) => ([(header::CONTENT_TYPE, "application/json")], out).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable review");
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}

/// The apiserver's `?timeout=10s`, less a margin so the answer arrives before it gives up.
pub fn apiserver_timeout(query: &str) -> Option<Duration> {
    let value = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))?;
    let timeout = humantime::parse_duration(value).ok()?;
    let margin = (timeout / 10).min(Duration::from_secs(1));
    Some(timeout.saturating_sub(margin))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if state.shutting_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace cache not synced\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics().encode(),
    )
        .into_response()
}

/// Runs both servers until `shutdown` fires, then drains: readiness turns false and
/// HTTP/1.1 answers carry `Connection: close`; the listener closes after
/// `drain_delay`, idle connections are closed, and in-flight reviews finish within
/// `grace`.
pub async fn serve(
    options: ServeOptions,
    state: Arc<AppState>,
    cert: Arc<ReloadingCert>,
    shutdown: impl std::future::Future<Output = ()> + Send,
    on_listening: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), ServeError> {
    let tls = crate::tls::server_config(cert, options.client_ca.clone())?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listen = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen { addr, source })
    };
    let listener = listen(options.listen).await?;
    let ops_listener = listen(options.ops_listen).await?;
    let webhook_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let ops_addr = ops_listener.local_addr().map_err(ServeError::LocalAddr)?;
    on_listening(webhook_addr, ops_addr);

    let limits = &options.connections;
    let timeouts = Timeouts::from_config(limits, options.request_timeout);
    let slots = connections::webhook_slots(limits, options.open_file_limit);
    tracing::info!(
        slots,
        per_peer = limits.max_connections_per_peer,
        open_file_limit = options.open_file_limit,
        "webhook connection limits"
    );
    let webhook_port = Port::new("webhook", slots, limits.max_connections_per_peer, timeouts);
    let ops_port = Port::new(
        "ops",
        limits.ops_max_connections,
        limits.ops_max_connections_per_peer,
        timeouts,
    );
    let builder = Arc::new(connections::http_builder(limits));

    let (ops_stop_tx, mut ops_stop_rx) = watch::channel(false);
    let (ops_live, ops_closed) = connections::live_connections();
    let ops = tokio::spawn({
        let (port, builder) = (Arc::clone(&ops_port), Arc::clone(&builder));
        let router = ops_router(Arc::clone(&state));
        async move {
            let stop = async move {
                let _ = ops_stop_rx.wait_for(|s| *s).await;
            };
            let plain = |tcp| std::future::ready(Ok(tcp));
            connections::accept_until(&ops_listener, &port, stop, |tcp, peer, admitted| {
                let live = ops_live.clone();
                connections::serve_connection(
                    tcp,
                    peer,
                    admitted,
                    plain,
                    Arc::clone(&builder),
                    router.clone(),
                    live,
                )
            })
            .await;
        }
    });

    let router = webhook_router(Arc::clone(&state), options.request_timeout);
    let (live, closed) = connections::live_connections();
    let serve_webhook = |tcp, peer, admitted| {
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
    };
    connections::accept_until(&listener, &webhook_port, shutdown, &serve_webhook).await;

    state.shutting_down.store(true, Ordering::Relaxed);
    webhook_port.start_draining();
    tracing::info!(drain_delay = ?options.drain_delay, "shutting down: readiness is false");
    // Keep accepting while endpoints controllers remove this pod.
    let drained = tokio::time::sleep(options.drain_delay);
    connections::accept_until(&listener, &webhook_port, drained, &serve_webhook).await;
    drop(listener);
    drop(live);
    webhook_port.stop();
    if tokio::time::timeout(options.grace, closed.wait())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?options.grace, "connections still open after the grace period");
    }
    let _ = ops_stop_tx.send(true);
    let _ = ops.await;
    ops_port.stop();
    // Probes and scrapes are short; nothing waits on an idle one.
    let _ = tokio::time::timeout(Duration::from_secs(1), ops_closed.wait()).await;
    tracing::info!("stopped");
    Ok(())
}

/// The runtime every vulngate command runs on (also the benchmark's baseline server,
/// so both serve on the same scheduler).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apiserver_timeout_keeps_a_margin() {
        assert_eq!(
            apiserver_timeout("timeout=10s"),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            apiserver_timeout("a=b&timeout=2s"),
            Some(Duration::from_millis(1800))
        );
        assert_eq!(apiserver_timeout("timeout=bogus"), None);
        assert_eq!(apiserver_timeout(""), None);
    }
}
