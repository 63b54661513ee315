//! The load generator: a fixed number of TLS connections (HTTP/1.1 keep-alive or
//! HTTP/2), each sending one review after another; latencies in an HDR histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http1 => "http1",
            Proto::Http2 => "h2",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Proto::Http1 => b"http/1.1",
            Proto::Http2 => b"h2",
        }
    }
}

/// A server to load: its address and TLS client settings trusting its CA.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    http1: Arc<rustls::ClientConfig>,
    http2: Arc<rustls::ClientConfig>,
}

impl Target {
    pub fn new(addr: SocketAddr, ca_pem: &[u8]) -> Result<Target> {
        let config = |proto: Proto| -> Result<Arc<rustls::ClientConfig>> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                roots.add(cert?)?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![proto.alpn().to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Target {
            addr,
            http1: config(Proto::Http1)?,
            http2: config(Proto::Http2)?,
        })
    }
}

/// One connection's request sender.
pub enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// Opens a TLS connection and runs the HTTP handshake of `proto` on it.
pub async fn connect(target: &Target, proto: Proto) -> Result<Sender> {
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let config = match proto {
        Proto::Http1 => Arc::clone(&target.http1),
        Proto::Http2 => Arc::clone(&target.http2),
    };
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if negotiated.as_deref() != Some(proto.alpn()) {
        return Err(format!("server did not negotiate {}", proto.as_str()).into());
    }
    let io = TokioIo::new(tls);
    Ok(match proto {
        Proto::Http1 => {
            let (sender, conn) = http1::handshake(io).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::Http1(sender)
        }
        Proto::Http2 => {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::Http2(sender)
        }
    })
}

fn request(proto: Proto, body: Bytes) -> Result<Request<Full<Bytes>>> {
    let builder = match proto {
        // HTTP/1.1 in origin form with a Host header; HTTP/2 takes the authority
        // from the URI.
        Proto::Http1 => Request::post("/validate?timeout=10s").header("host", "localhost"),
        Proto::Http2 => Request::post("https://localhost/validate?timeout=10s"),
    };
    Ok(builder
        .header("content-type", "application/json")
        .body(Full::new(body))?)
}

impl Sender {
    pub fn proto(&self) -> Proto {
        match self {
            Sender::Http1(_) => Proto::Http1,
            Sender::Http2(_) => Proto::Http2,
        }
    }

    /// A second handle on the same HTTP/2 connection (HTTP/1.1: `None`).
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::Http2(s) => Some(Sender::Http2(s.clone())),
            Sender::Http1(_) => None,
        }
    }

    /// Sends one review and reads the whole answer.
    pub async fn send(&mut self, _target: &Target, body: Bytes) -> Result<(StatusCode, Bytes)> {
        let req = request(self.proto(), body)?;
        let response = match self {
            Sender::Http1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::Http2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub histogram: Histogram<u64>,
    /// CPU time the server process used during the measured load.
    pub server_cpu: Duration,
    /// The part of it spent in the kernel (system calls, the network stack,
    /// scheduling), from 0 to 1.
    pub server_kernel_share: f64,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The server's CPU time per answered review: its own cost, whatever else
    /// runs on the machine.
    pub fn server_cpu_us_per_request(&self) -> f64 {
        if self.requests > 0 {
            self.server_cpu.as_secs_f64() * 1e6 / self.requests as f64
        } else {
            0.0
        }
    }

    /// Of [`Self::server_cpu_us_per_request`], the kernel's part.
    pub fn server_kernel_us_per_request(&self) -> f64 {
        self.server_cpu_us_per_request() * self.server_kernel_share
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }
}

pub fn new_histogram() -> Result<Histogram<u64>> {
    // 1 us to 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// `connections` connections (opened before the clock starts), each sending `body`
/// back to back: `warmup` unmeasured, then `measure` measured. Only 2xx answers count
/// as requests; anything else is an error. `server_pid`'s CPU time is read over
/// the measured part.
pub async fn run_load(
    target: &Target,
    server_pid: u32,
    proto: Proto,
    connections: usize,
    body: Bytes,
    warmup: Duration,
    measure: Duration,
) -> Result<LoadResult> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(target, proto).await?);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut tasks = Vec::with_capacity(connections);
    for mut sender in senders {
        let body = body.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            let (mut requests, mut errors) = (0u64, 0u64);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let result = sender.send(&target, body.clone()).await;
                let micros = t0.elapsed().as_micros() as u64;
                let measured = t0 >= measure_from;
                match result {
                    Ok((status, _)) if status.is_success() => {
                        if measured {
                            requests += 1;
                            histogram.saturating_record(micros.max(1));
                        }
                    }
                    Ok(_) => errors += u64::from(measured),
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, super::Error>((histogram, requests, errors))
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = process_cpu(server_pid)?;
    let ticks_from = user_and_system_ticks(server_pid)?;
    let mut histogram = new_histogram()?;
    let (mut requests, mut errors) = (0u64, 0u64);
    for task in tasks {
        let (h, r, e) = task.await??;
        histogram.add(&h)?;
        requests += r;
        errors += e;
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    let server_cpu = process_cpu(server_pid)?.saturating_sub(cpu_from);
    let ticks_to = user_and_system_ticks(server_pid)?;
    let user = ticks_to.0.saturating_sub(ticks_from.0);
    let system = ticks_to.1.saturating_sub(ticks_from.1);
    Ok(LoadResult {
        requests,
        errors,
        elapsed,
        histogram,
        server_cpu,
        server_kernel_share: if user + system > 0 {
            system as f64 / (user + system) as f64
        } else {
            0.0
        },
    })
}

/// User and system time of a process so far, in clock ticks, from `/proc/PID/stat`
/// (fields 14 and 15; the command name before them may hold spaces, so fields are
/// counted from its closing parenthesis). Ticks are coarse, but over a measured
/// load of seconds they split [`process_cpu`] finely enough.
pub fn user_and_system_ticks(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("/proc/{pid}/stat: no command name"))?;
    // After the name: field 3 (state) is the first, so utime (14) is the 12th.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut tick = |name: &str| {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no {name}"))
    };
    Ok((tick("utime")?, tick("stime")?))
}

/// CPU time of every thread of a process so far, from `/proc/PID/task/*/schedstat`
/// (nanoseconds, where `/proc/PID/stat` counts 10 ms ticks).
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue; // a thread that just ended
        };
        nanos += stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(Duration::from_nanos(nanos))
}
