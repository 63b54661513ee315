//! Helpers of the reliability tests: the real `vulngate` binary (or the real server
//! code in-process, with a scanner of the test's own), a TLS client that trusts only
//! the CA it is given, and a raw HTTP/1.1 exchange so tests control every byte.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const EMBEDDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/embedded");
/// Scanned, under the default limits (critical 0, high 0): allowed.
pub const ALLOWED_IMAGE: &str = "nginx:1.27-alpine";
/// Scanned, over the default limits: denied.
pub const DENIED_IMAGE: &str = "nginx:1.25";
/// Not in any scan report: unscanned, denied by default.
pub const UNSCANNED_IMAGE: &str = "registry.example.com/never/scanned:1";
/// Generous bound for anything that should happen "soon" (CI machines are slow).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A config for the binary: the embedded namespaces and scan reports, ports chosen
/// by the kernel, a generated certificate in `dir`; `extra` is appended (top-level keys).
pub fn config_yaml(dir: &Path, extra: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls:
  generateDir: {tls}
namespacesFile: {EMBEDDED}/namespaces.yaml
policy:
  defaults: {{mode: enforce, limits: {{critical: 0, high: 0}}, unscanned: deny, onError: deny}}
  exemptNamespaces: [kube-system]
registries:
  - match: "*"
    scanner: {{file: {{path: {EMBEDDED}/scans}}}}
    registry: {{resolve: false}}
log: {{format: text, level: warn}}
{extra}
"#,
        tls = dir.join("tls").display(),
    )
}

/// How [`ServerProcess::launch`] starts the binary.
#[derive(Debug, Default)]
pub struct Launch {
    /// The CA file the client trusts (default: the generated one in `dir/tls`).
    pub ca: Option<PathBuf>,
    /// The soft RLIMIT_NOFILE the process starts with (default: the test's).
    pub soft_open_files: Option<u64>,
    /// Where its stderr goes (default: the test's).
    pub stderr: Option<PathBuf>,
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit and returns it: tests
/// that hold thousands of connections need as many descriptors on their side.
#[allow(unsafe_code, reason = "libc rlimit calls, see SAFETY")]
pub fn raise_own_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// The soft and hard "Max open files" of a process, from /proc.
pub fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

/// The real binary, serving on loopback ports it chose.
pub struct ServerProcess {
    child: Child,
    pub dir: tempfile::TempDir,
    pub client: Client,
    pub ops: SocketAddr,
}

impl ServerProcess {
    /// Starts `vulngate serve` with [`config_yaml`] plus `extra`.
    pub fn start(extra: &str) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let yaml = config_yaml(dir.path(), extra);
        ServerProcess::start_with(dir, &yaml, None)
    }

    /// Starts `vulngate serve` with a config of the caller's; `ca` is the CA file the
    /// client trusts (default: the generated one in `dir/tls`).
    pub fn start_with(dir: tempfile::TempDir, yaml: &str, ca: Option<PathBuf>) -> ServerProcess {
        ServerProcess::launch(
            dir,
            yaml,
            Launch {
                ca,
                ..Launch::default()
            },
        )
    }

    /// Starts `vulngate serve` with a config of the caller's, as `launch` says.
    pub fn launch(dir: tempfile::TempDir, yaml: &str, launch: Launch) -> ServerProcess {
        let Launch {
            ca,
            soft_open_files,
            stderr,
        } = launch;
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_vulngate"));
        command
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match stderr {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            });
        if let Some(soft) = soft_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            #[allow(unsafe_code, reason = "pre_exec, see SAFETY")]
            unsafe {
                command.pre_exec(move || {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    limit.rlim_cur = soft.min(limit.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start vulngate");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("vulngate: webhook on https://") {
                    let webhook = rest.split('/').next().unwrap().to_string();
                    let ops = rest.rsplit("http://").next().unwrap().to_string();
                    let _ = tx.send((webhook, ops));
                }
            }
        });
        let (webhook, ops) = match rx.recv_timeout(PATIENCE) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!("vulngate did not announce its ports: {:?}", child.wait());
            }
        };
        let ca = ca.unwrap_or_else(|| dir.path().join("tls/ca.crt"));
        let ca_pem = std::fs::read(&ca).unwrap();
        ServerProcess {
            child,
            dir,
            client: Client::new(webhook.parse().unwrap(), &[&ca_pem]),
            ops: ops.parse().unwrap(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the ops port: (status, body).
    pub async fn ops_get(&self, path: &str) -> Option<(u16, String)> {
        let mut tcp = TcpStream::connect(self.ops).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.ok()?;
        let resp = tokio::time::timeout(PATIENCE, read_response(&mut tcp))
            .await
            .ok()?
            .ok()?;
        Some((
            resp.status,
            String::from_utf8_lossy(&resp.body).into_owned(),
        ))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A TLS client trusting only the given CAs, speaking HTTP/1.1.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
}

pub fn client_config(ca_pems: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection makes a full handshake, as the apiserver's webhook client does:
    // a resumed TLS 1.3 session would report the certificate of its first handshake.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pems: &[&[u8]]) -> Client {
        Client {
            addr,
            tls: client_config(ca_pems),
        }
    }

    pub async fn connect(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        self.handshake(tcp).await
    }

    /// An HTTP/2 connection (ALPN h2) whose PINGs the client answers, as hyper does;
    /// the task ends when the connection does.
    pub async fn connect_h2(&self) -> (H2Sender, tokio::task::JoinHandle<()>) {
        let mut config = (*self.tls).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        (sender, task)
    }

    /// A TLS connection from the loopback address `from` (127.0.0.2, 127.0.0.3...):
    /// to the server, another client.
    pub async fn connect_from(
        &self,
        from: std::net::IpAddr,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = tcp_from(from, self.addr).await?;
        self.handshake(tcp).await
    }

    pub async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(
            PATIENCE,
            TlsConnector::from(Arc::clone(&self.tls)).connect(name, tcp),
        )
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
    }

    /// One request on a new connection (`Connection: close`).
    pub async fn post(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut tls = self.connect().await?;
        tls.write_all(&request_bytes(path, content_type, body, false))
            .await?;
        tls.flush().await?;
        let resp = tokio::time::timeout(PATIENCE, read_response(&mut tls))
            .await
            .map_err(|_| std::io::Error::other("no response in time"))??;
        Ok(resp)
    }

    pub async fn review(&self, body: &[u8]) -> Response {
        self.post("/validate", Some("application/json"), body)
            .await
            .expect("review request")
    }

    /// A normal review is answered: the server is still serving.
    pub async fn assert_serving(&self) {
        let uid = format!("alive-{}", rand_suffix());
        let body = pod_review(&uid, "default", &[ALLOWED_IMAGE]);
        let resp = self.review(&body).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v = resp.json();
        assert_eq!(v["response"]["uid"], uid.as_str());
        assert_eq!(v["response"]["allowed"], true, "{v}");
    }
}

pub type H2Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;
pub type H2Sender = hyper::client::conn::http2::SendRequest<H2Body>;

/// One review of [`ALLOWED_IMAGE`] on an open keep-alive connection.
pub async fn keep_alive_review<S>(stream: &mut S, uid: &str) -> std::io::Result<Response>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let body = pod_review(uid, "default", &[ALLOWED_IMAGE]);
    stream
        .write_all(&request_bytes(
            "/validate",
            Some("application/json"),
            &body,
            true,
        ))
        .await?;
    read_response(stream).await
}

/// A TCP connection to `to` from the local address `from`.
pub async fn tcp_from(from: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}

pub fn request_bytes(
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

/// Reads one HTTP/1.1 response (Content-Length, chunked, or until EOF).
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a response ({} bytes read)",
                    buf.len()
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut rest = buf[header_end..].to_vec();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let mut chunk = vec![0u8; (len - rest.len()).min(65536)];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            while !rest.windows(2).any(|w| w == b"\r\n") {
                read_more(s, &mut rest).await?;
            }
            let i = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..i])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .map_err(std::io::Error::other)?;
            rest.drain(..i + 2);
            while rest.len() < size + 2 {
                read_more(s, &mut rest).await?;
            }
            body.extend_from_slice(&rest[..size]);
            rest.drain(..size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        let _ = s.read_to_end(&mut rest).await;
        rest
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

async fn read_more<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// An AdmissionReview v1 of a Pod CREATE with one container per image.
pub fn pod_review(uid: &str, namespace: &str, images: &[&str]) -> Vec<u8> {
    let containers: Vec<serde_json::Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| serde_json::json!({"name": format!("c{i}"), "image": image}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": namespace},
                "spec": {"containers": containers}
            }
        }
    }))
    .unwrap()
}

/// Polls `check` every 100 ms until it is true, at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
