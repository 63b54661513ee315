//! What one client may hold on a port: a slot among a fixed number of open
//! connections, a budget per client address, and a supervisor per connection that
//! closes it when it is idle, too old, or when the server stops.
//!
//! hyper's own timers cover only part of this: its header-read timeout starts at the
//! first byte, so a client that finishes the TLS handshake and then sends nothing was
//! never timed out, and an HTTP/2 client that answers PINGs was never closed. The
//! supervisor here counts from accept and watches requests in flight.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::config::serving::ConnectionsConfig;

/// File descriptors kept for everything that is not a client connection: scanner,
/// registry and apiserver clients, config and report files, the log.
const RESERVED_FDS: usize = 256;
/// Above this, memory (TLS and HTTP buffers, ~40 KiB a connection) runs out before
/// file descriptors do.
const MAX_DERIVED_SLOTS: usize = 16_384;

/// Raises the soft RLIMIT_NOFILE to the hard limit, as the Go runtime does at start
/// (containers often start with a soft limit of 1024). Returns the soft limit in force.
#[allow(unsafe_code, reason = "libc rlimit calls, see SAFETY")]
pub fn raise_open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), soft = limit.rlim_cur, "cannot raise the open-file limit");
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Webhook connection slots: what the open-file limit leaves after the ops port's
/// slots and the reserve, unless `maxConnections` says otherwise.
pub(crate) fn webhook_slots(config: &ConnectionsConfig, open_file_limit: usize) -> usize {
    config.max_connections.unwrap_or_else(|| {
        open_file_limit
            .saturating_sub(RESERVED_FDS + config.ops_max_connections)
            .clamp(64, MAX_DERIVED_SLOTS)
    })
}

/// The timeouts of every connection on a port.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub first_request: Duration,
    pub idle: Duration,
    pub max_age: Duration,
    /// How long a connection asked to close may finish its requests before it is dropped.
    pub close_grace: Duration,
}

impl Timeouts {
    pub fn from_config(config: &ConnectionsConfig, request_timeout: Duration) -> Timeouts {
        Timeouts {
            first_request: config.first_request_timeout,
            idle: config.idle_timeout,
            max_age: config.max_connection_age,
            close_grace: request_timeout,
        }
    }
}

/// The HTTP/1.1 + HTTP/2 settings of a port (also the benchmark baseline's, so both
/// serve with the same stack).
pub fn http_builder(config: &ConnectionsConfig) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's header timer also runs between keep-alive requests; the supervisor
    // applies the first-request and idle timeouts, this only backs it up.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.first_request_timeout.max(config.idle_timeout))
        .max_buf_size(config.max_header_bytes as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_bytes)
        .keep_alive_interval(config.keep_alive_interval)
        .keep_alive_timeout(config.keep_alive_timeout);
    builder
}

/// Open connections per client address.
#[derive(Debug)]
struct PeerBudget {
    per_peer: usize,
    open: Mutex<HashMap<IpAddr, usize, crate::FastHashState>>,
}

/// One connection counted against its address until dropped.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    budget: Arc<PeerBudget>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .budget
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A port's limits and its shutdown state, shared by its accept loop and connections.
#[derive(Debug)]
pub struct Port {
    name: &'static str,
    slots: Arc<Semaphore>,
    peers: Arc<PeerBudget>,
    timeouts: Timeouts,
    /// Once set, HTTP/1.1 answers carry `Connection: close`.
    draining: AtomicBool,
    /// Set when the listener has closed: idle connections are closed.
    stop: watch::Sender<bool>,
    refused: AtomicU64,
}

/// A connection admitted on a port: its slot, its address's share, and the port.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _peer: PeerSlot,
    port: Arc<Port>,
    accepted: Instant,
}

impl Port {
    pub fn new(name: &'static str, slots: usize, per_peer: usize, timeouts: Timeouts) -> Arc<Port> {
        Arc::new(Port {
            name,
            slots: Arc::new(Semaphore::new(slots)),
            peers: Arc::new(PeerBudget {
                per_peer,
                open: Mutex::new(HashMap::default()),
            }),
            timeouts,
            draining: AtomicBool::new(false),
            stop: watch::channel(false).0,
            refused: AtomicU64::new(0),
        })
    }

    /// A free slot and room in the address's budget, or `None`: the caller closes the
    /// connection at once rather than leaving it in the accept queue.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admitted> {
        let ip = canonical_ip(peer.ip());
        let peer_slot = {
            let mut open = self
                .peers
                .open
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let n = open.entry(ip).or_insert(0);
            if *n >= self.peers.per_peer {
                None
            } else {
                *n += 1;
                Some(PeerSlot {
                    budget: Arc::clone(&self.peers),
                    ip,
                })
            }
        };
        let admitted = peer_slot.and_then(|peer_slot| {
            let slot = Arc::clone(&self.slots).try_acquire_owned().ok()?;
            Some(Admitted {
                _slot: slot,
                _peer: peer_slot,
                port: Arc::clone(self),
                accepted: Instant::now(),
            })
        });
        if admitted.is_none() {
            let refused = self.refused.fetch_add(1, Ordering::Relaxed);
            // One line per thousand refusals: a flood must not flood the log too.
            if refused % 1000 == 0 {
                tracing::warn!(port = self.name, %ip, refused = refused + 1, "connection refused: no free slot for this client");
            }
        }
        admitted
    }

    /// Draining: answers close their HTTP/1.1 connections, so keep-alive clients
    /// reconnect (to another replica) instead of sending more here.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The listener is closed: idle connections are closed now, busy ones after
    /// their request.
    pub fn stop(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.stop.send_replace(true);
    }
}

/// `::ffff:10.0.0.1` and `10.0.0.1` are one client.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Accepts connections until `stop` resolves, each one admitted or closed at once,
/// and hands the admitted ones to `serve`.
pub async fn accept_until<F, Fut>(
    listener: &TcpListener,
    port: &Arc<Port>,
    stop: impl Future<Output = ()>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Admitted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait for connections to close.
                    tracing::warn!(port = port.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match port.admit(peer) {
            Some(admitted) => {
                tokio::spawn(serve(tcp, peer, admitted));
            }
            None => drop(tcp),
        }
    }
}

/// Counts live connections so shutdown can wait for them: held, never used to send.
#[derive(Debug, Clone)]
pub struct LiveConnections(#[allow(dead_code)] mpsc::Sender<()>);

/// Resolves when every [`LiveConnections`] clone is gone.
pub struct AllClosed(mpsc::Receiver<()>);

pub fn live_connections() -> (LiveConnections, AllClosed) {
    let (tx, rx) = mpsc::channel(1);
    (LiveConnections(tx), AllClosed(rx))
}

impl AllClosed {
    pub async fn wait(mut self) {
        let _ = self.0.recv().await;
    }
}

/// Requests in flight on one connection, and when the last one finished.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicU64,
    changed: Notify,
    last_done: Mutex<Instant>,
}

impl Activity {
    fn new(now: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            changed: Notify::new(),
            last_done: Mutex::new(now),
        })
    }

    fn last_done(&self) -> Instant {
        *self
            .last_done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ends the request's activity when dropped (answered, failed or cancelled).
struct RequestInFlight(Arc<Activity>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        *self
            .0
            .last_done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        self.0.served.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

/// The router as a hyper service that tells the connection's supervisor about its
/// requests, and closes HTTP/1.1 connections once the port drains.
#[derive(Clone)]
struct TrackedService {
    inner: TowerToHyperService<axum::Router>,
    activity: Arc<Activity>,
    port: Arc<Port>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        self.activity.changed.notify_one();
        let guard = RequestInFlight(Arc::clone(&self.activity));
        let http1 = req.version() <= Version::HTTP_11;
        let port = Arc::clone(&self.port);
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut resp = answer.await?;
            if http1 && port.draining.load(Ordering::Relaxed) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(guard);
            Ok(resp)
        })
    }
}

/// Serves one admitted connection: `handshake` (TLS, or nothing on the ops port)
/// within the first-request timeout, then HTTP until the client leaves, a timeout
/// closes it, or the port stops.
pub async fn serve_connection<S, H, HF>(
    tcp: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    handshake: H,
    builder: Arc<Builder<TokioExecutor>>,
    router: axum::Router,
    live: LiveConnections,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: FnOnce(TcpStream) -> HF,
    HF: Future<Output = std::io::Result<S>>,
{
    let _live = live;
    let port = Arc::clone(&admitted.port);
    let timeouts = port.timeouts;
    let first_request_by = admitted.accepted + timeouts.first_request;
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout_at(first_request_by, handshake(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    };
    let activity = Activity::new(admitted.accepted);
    let service = TrackedService {
        inner: TowerToHyperService::new(router),
        activity: Arc::clone(&activity),
        port: Arc::clone(&port),
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stop = port.stop.subscribe();
    let mut stopping = *stop.borrow_and_update();
    // Set once the connection was asked to close: it is dropped if still open then.
    let mut close_by: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let served = activity.served.load(Ordering::Relaxed);
        let idle_since =
            (activity.in_flight.load(Ordering::Relaxed) == 0).then(|| activity.last_done());
        let verdict = supervise(
            &timeouts,
            admitted.accepted,
            now,
            served,
            idle_since,
            stopping,
        );
        match verdict {
            Verdict::Drop => {
                tracing::debug!(%peer, "connection closed: no request in time");
                return;
            }
            Verdict::Close if close_by.is_none() => {
                conn.as_mut().graceful_shutdown();
                close_by = Some(now + timeouts.close_grace);
            }
            Verdict::Close | Verdict::KeepUntil(_) => {}
        }
        let mut wake = match verdict {
            Verdict::KeepUntil(at) => at,
            _ => now + timeouts.close_grace,
        };
        if let Some(by) = close_by {
            if now >= by {
                tracing::debug!(%peer, "connection dropped: still open after being asked to close");
                return;
            }
            wake = wake.min(by);
        }
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = stop.changed(), if !stopping => stopping = true,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// What to do with a connection now.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing yet; look again at this instant.
    KeepUntil(Instant),
    /// Ask it to close (HTTP/2 GOAWAY; HTTP/1.1 after its request in flight).
    Close,
    /// Drop it: it never sent a request in time.
    Drop,
}

fn supervise(
    timeouts: &Timeouts,
    accepted: Instant,
    now: Instant,
    served: u64,
    // `None` while a request is in flight.
    idle_since: Option<Instant>,
    stopping: bool,
) -> Verdict {
    let too_old = accepted + timeouts.max_age;
    if now >= too_old {
        return Verdict::Close;
    }
    let Some(idle_since) = idle_since else {
        return Verdict::KeepUntil(too_old);
    };
    if served == 0 {
        // Not even one request yet: served if it comes in time, even while stopping
        // (an HTTP/1.1 client that connected during the drain sends its request).
        let by = accepted + timeouts.first_request;
        return if now >= by {
            Verdict::Drop
        } else {
            Verdict::KeepUntil(by.min(too_old))
        };
    }
    let idle_by = idle_since + timeouts.idle;
    if stopping || now >= idle_by {
        Verdict::Close
    } else {
        Verdict::KeepUntil(idle_by.min(too_old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            close_grace: Duration::from_secs(20),
        }
    }

    #[test]
    fn a_connection_without_a_request_is_dropped_at_the_first_request_timeout() {
        let t = timeouts();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            supervise(&t, start, at(1), 0, Some(start), false),
            Verdict::KeepUntil(at(10))
        );
        assert_eq!(
            supervise(&t, start, at(10), 0, Some(start), false),
            Verdict::Drop
        );
        // Stopping does not cut off a client that connected and is about to ask.
        assert_eq!(
            supervise(&t, start, at(1), 0, Some(start), true),
            Verdict::KeepUntil(at(10))
        );
    }

    #[test]
    fn idle_old_and_stopping_connections_are_closed_busy_ones_kept() {
        let t = timeouts();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            supervise(&t, start, at(30), 1, Some(at(20)), false),
            Verdict::KeepUntil(at(80))
        );
        assert_eq!(
            supervise(&t, start, at(80), 1, Some(at(20)), false),
            Verdict::Close
        );
        assert_eq!(
            supervise(&t, start, at(30), 1, None, false),
            Verdict::KeepUntil(at(3600))
        );
        assert_eq!(
            supervise(&t, start, at(30), 1, Some(at(20)), true),
            Verdict::Close
        );
        assert_eq!(
            supervise(&t, start, at(3600), 5, None, false),
            Verdict::Close
        );
    }

    #[test]
    fn one_address_gets_its_budget_and_no_more() {
        let port = Port::new("test", 10, 2, timeouts());
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:1001".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let first = port.admit(a).expect("first");
        let _second = port.admit(mapped).expect("second");
        assert!(port.admit(a).is_none(), "a third from the same address");
        assert!(
            port.admit(b).is_some(),
            "another address has its own budget"
        );
        drop(first);
        assert!(
            port.admit(a).is_some(),
            "a closed connection frees its share"
        );
    }

    #[test]
    fn slots_leave_room_for_the_ops_port_and_the_reserve() {
        let config = ConnectionsConfig::default();
        assert_eq!(webhook_slots(&config, 10_000), 10_000 - 256 - 256);
        assert_eq!(webhook_slots(&config, 1024), 1024 - 256 - 256);
        assert_eq!(webhook_slots(&config, 1 << 20), MAX_DERIVED_SLOTS);
        let fixed = ConnectionsConfig {
            max_connections: Some(100),
            ..ConnectionsConfig::default()
        };
        assert_eq!(webhook_slots(&fixed, 20_000), 100);
    }
}
