//! Starts the real `vulngate` binary and talks to it the way the apiserver does:
//! HTTPS with a client that trusts only the CA vulngate generated.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_vulngate");

/// The repository's `../shared/fixtures` directory.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

/// A digest made from a label, for test summaries.
pub fn digest(label: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(label.as_bytes())))
}

pub struct Webhook {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `https://localhost:PORT`
    pub base: String,
    /// `http://127.0.0.1:PORT` (health, readiness, metrics)
    pub ops: String,
    pub ca_pem: Vec<u8>,
    stdout: mpsc::Receiver<String>,
    stderr_path: PathBuf,
}

/// A config whose paths point into the test's directory: `scans/` and `namespaces.yaml`.
pub fn basic_config(extra: &str) -> String {
    config_with_routes("", extra)
}

/// [`basic_config`] with `routes` (YAML list items) before its catch-all `file` route.
pub fn config_with_routes(routes: &str, extra: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls: {{generateDir: tls}}
deadline: 5s
namespacesFile: namespaces.yaml
registries:
{routes}  - match: "*"
    scanner: {{file: {{path: scans}}}}
    registry: {{resolve: false}}
log: {{format: json, level: info}}
{extra}"#
    )
}

impl Webhook {
    /// Writes `files` (path relative to a temp dir -> content) and `config.yaml`,
    /// starts `vulngate serve --config`, and waits until it is ready.
    pub fn start(config: &str, files: &[(&str, String)]) -> Webhook {
        Webhook::start_in(tempfile::tempdir().expect("temp dir"), config, files)
    }

    /// Like `start`, in a directory the test has prepared.
    pub fn start_in(dir: tempfile::TempDir, config: &str, files: &[(&str, String)]) -> Webhook {
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write test file");
        }
        std::fs::write(dir.path().join("config.yaml"), config).expect("write config");
        let args = vec![
            "serve".to_string(),
            "--config".to_string(),
            dir.path().join("config.yaml").display().to_string(),
        ];
        let ca = if config.contains("certFile") {
            let ca = files
                .iter()
                .find(|(name, _)| name.ends_with("ca.crt"))
                .map(|(_, pem)| pem.clone().into_bytes())
                .expect("a config with certFile needs a ca.crt among the files");
            Some(ca)
        } else {
            None
        };
        Webhook::spawn(dir, args, ca)
    }

    /// `vulngate serve` on its embedded default, in a temp state dir, on free ports.
    pub fn start_embedded() -> Webhook {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = vec![
            "serve".to_string(),
            "--state-dir".to_string(),
            dir.path().join("state").display().to_string(),
            "--listen".to_string(),
            "127.0.0.1:0".to_string(),
            "--ops-listen".to_string(),
            "127.0.0.1:0".to_string(),
        ];
        Webhook::spawn(dir, args, None)
    }

    /// `ca`: the CA of a configured certificate; `None` when vulngate generates one.
    fn spawn(dir: tempfile::TempDir, args: Vec<String>, ca: Option<Vec<u8>>) -> Webhook {
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut command = Command::new(BIN);
        // A test with an apiserver writes its kubeconfig into the webhook's directory.
        let kubeconfig = dir.path().join("kubeconfig");
        if kubeconfig.exists() {
            command
                .env("KUBECONFIG", &kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST");
        }
        let mut child = command
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start vulngate");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut webhook = Webhook {
            child,
            dir,
            base: String::new(),
            ops: String::new(),
            ca_pem: Vec::new(),
            stdout: rx,
            stderr_path,
        };
        let mut ca_file = None;
        let started = Instant::now();
        while webhook.base.is_empty() || (ca.is_none() && ca_file.is_none()) {
            let line = webhook
                .stdout
                .recv_timeout(Duration::from_secs(30).saturating_sub(started.elapsed()))
                .unwrap_or_else(|_| panic!("vulngate did not start: {}", webhook.stderr()));
            if let Some(rest) = line.strip_prefix("vulngate: webhook on https://") {
                let (addr, rest) = rest.split_once("/validate").expect("webhook address");
                let port = addr.rsplit_once(':').expect("port").1;
                webhook.base = format!("https://localhost:{port}");
                let ops = rest.rsplit_once("http://").expect("ops address").1;
                webhook.ops = format!("http://{ops}");
            }
            if let Some(path) = line.strip_prefix("vulngate: generated TLS CA ") {
                ca_file = Some(PathBuf::from(path));
            }
        }
        webhook.ca_pem = match (ca, ca_file) {
            (Some(ca), _) => ca,
            (None, Some(file)) => {
                let path = if file.is_absolute() {
                    file
                } else {
                    webhook.dir.path().join(file)
                };
                std::fs::read(&path).expect("read generated CA")
            }
            (None, None) => unreachable!("loop waits for one"),
        };
        webhook.wait_ready();
        webhook
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr (its logs) so far. The server writes log
    /// lines from a thread of its own (vulngate::log_writer), so this reads once the
    /// file has stopped growing for longer than that thread gathers lines.
    pub fn stderr(&self) -> String {
        let quiet = vulngate::log_writer::INTERVAL * 3;
        let read = || std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let mut text = read();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            std::thread::sleep(quiet);
            let now = read();
            if now.len() == text.len() || Instant::now() > deadline {
                return now;
            }
            text = now;
        }
    }

    /// Lines the server printed on stdout, up to and including the first that contains
    /// `needle` (waiting up to 10 s for it: readiness can be seen before the reader thread
    /// has passed on what was printed), or all that came within that time.
    pub fn stdout_until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    lines.push(line);
                    if found {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        lines
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = ureq_get(&format!("{}/readyz", self.ops)) {
                if r.0 == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "vulngate never became ready: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client that trusts only the generated CA; HTTP/2 (by ALPN) or HTTP/1.1.
    pub fn client(&self, http2: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).expect("CA PEM");
        let builder = vulngate::crypto::http_client()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(30));
        let builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        builder.build().expect("client")
    }

    /// POSTs a review; returns the HTTP status, the HTTP version and the body.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::Version, String) {
        self.post_to(client, "/validate", body).await
    }

    /// POSTs a body to `path` (`/validate` or `/mutate`) as the API server does.
    pub async fn post_to(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::Version, String) {
        let response = client
            .post(format!("{}{path}?timeout=10s", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send review");
        let status = response.status().as_u16();
        let version = response.version();
        (status, version, response.text().await.expect("body"))
    }

    /// POSTs a review and returns the `response` part of the AdmissionReview.
    pub async fn review(&self, client: &reqwest::Client, review: &Value) -> Value {
        self.answer(client, "/validate", review).await["response"].clone()
    }

    /// POSTs a review to `path`; returns the whole AdmissionReview answered, checked
    /// for its status, kind and uid.
    pub async fn answer(&self, client: &reqwest::Client, path: &str, review: &Value) -> Value {
        let (status, _, body) = self.post_to(client, path, review.to_string()).await;
        assert_eq!(status, 200, "{path} answered {status}: {body}");
        let out: Value = serde_json::from_str(&body).expect("response JSON");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], review["request"]["uid"]);
        out
    }

    pub fn ops_get(&self, path: &str) -> (u16, String) {
        ureq_get(&format!("{}{path}", self.ops)).expect("ops request")
    }

    pub fn ops_post(&self, path: &str) -> (u16, String) {
        plain_http("POST", &format!("{}{path}", self.ops), "").expect("ops request")
    }

    /// A POST to the ops port with `Authorization: Bearer <token>`.
    pub fn ops_post_bearer(&self, path: &str, token: &str) -> (u16, String) {
        let header = format!("Authorization: Bearer {token}\r\n");
        plain_http("POST", &format!("{}{path}", self.ops), &header).expect("ops request")
    }

    pub fn terminate(&self) {
        // SIGTERM, as the kubelet sends it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit; `None` if it did not within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain-HTTP GET without an async runtime (for the ops port).
pub fn ureq_get(url: &str) -> Result<(u16, String), String> {
    plain_http("GET", url, "")
}

/// `headers`: extra header lines, each ending in CRLF.
fn plain_http(method: &str, url: &str, headers: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// An AdmissionReview v1 for `object` of `kind`.
pub fn review(
    uid: &str,
    kind: &str,
    operation: &str,
    namespace: &str,
    object: Value,
    old: Option<Value>,
) -> Value {
    let (group, version) = match kind {
        "Pod" | "ReplicationController" => ("", "v1"),
        "Job" | "CronJob" => ("batch", "v1"),
        _ => ("apps", "v1"),
    };
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": "test",
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

/// The `status.message` of an admission response ("" when it has none).
pub fn status_message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A pod spec with `(container name, image)` pairs.
pub fn pod_spec(containers: &[(&str, &str)]) -> Value {
    let list: Vec<Value> = containers
        .iter()
        .map(|(n, i)| serde_json::json!({"name": n, "image": i}))
        .collect();
    serde_json::json!({"containers": list})
}

/// An object of `kind` carrying `spec` where that kind carries its pod spec.
pub fn object_with_pod_spec(kind: &str, spec: Value) -> Value {
    let meta = serde_json::json!({"name": "test"});
    match kind {
        "Pod" => serde_json::json!({"kind": kind, "metadata": meta, "spec": spec}),
        "CronJob" => serde_json::json!({"kind": kind, "metadata": meta, "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
        _ => {
            serde_json::json!({"kind": kind, "metadata": meta, "spec": {"template": {"spec": spec}}})
        }
    }
}
