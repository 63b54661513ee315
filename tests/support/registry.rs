//! A real `docker-registry` for tests: started on a free loopback port with a temp
//! storage dir (open, htpasswd basic auth, or token auth behind an in-test token
//! server), images pushed to it over the distribution API, a counting / slow proxy.
//!
//! Reuse: `Registry::start(RegistryAuth::None)`, then `registry.push_image(..)` /
//! `registry.push_index(..)` return the digests; `registry.host()` is `127.0.0.1:PORT`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};

pub const SETUP_SCRIPT: &str = "tests/setup.d/registry.sh";
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Fails (never skips) when a tool the registry tests need is missing.
pub fn require_tools() {
    let missing: Vec<&str> = [REGISTRY_BIN, "skopeo", "htpasswd"]
        .into_iter()
        .filter(|t| {
            if t.starts_with('/') {
                !Path::new(t).exists()
            } else {
                Command::new("sh")
                    .args(["-c", &format!("command -v {t}")])
                    .stdout(Stdio::null())
                    .status()
                    .map(|s| !s.success())
                    .unwrap_or(true)
            }
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: run `bash {SETUP_SCRIPT}` (tests/run.sh does) to install them"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// How the registry authenticates clients.
#[derive(Clone)]
pub enum RegistryAuth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// `auth: token` with this in-test token server as realm.
    Token(Arc<TokenServer>),
}

/// A running `docker-registry serve`; killed on drop.
pub struct Registry {
    pub port: u16,
    pub auth: RegistryAuth,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// PEM of the CA that signed the registry's certificate, when serving HTTPS.
    ca_pem: Option<String>,
}

impl Registry {
    /// A plain-HTTP registry.
    pub async fn start(auth: RegistryAuth) -> Registry {
        Self::start_with(auth, false).await
    }

    /// With `tls`, the registry serves HTTPS with a certificate for 127.0.0.1 signed by
    /// a CA made for it (`ca_file()`).
    pub async fn start_with(auth: RegistryAuth, tls: bool) -> Registry {
        require_tools();
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let port = free_port();
        let auth_yaml = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic { username, password } => {
                let file = dir.path().join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", username, password])
                    .output()
                    .unwrap_or_else(|e| panic!("htpasswd ({SETUP_SCRIPT}): {e}"));
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(&file, out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: vulngate-test\n    path: {}\n",
                    file.display()
                )
            }
            RegistryAuth::Token(ts) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                ts.realm(),
                TokenServer::SERVICE,
                TokenServer::ISSUER,
                ts.cert_file.display()
            ),
        };
        let (tls_yaml, ca_pem) = if tls {
            let (ca_pem, cert_pem, key_pem) = ca_and_server_cert();
            let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert, cert_pem).expect("write cert");
            std::fs::write(&key, key_pem).expect("write key");
            std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write ca");
            (
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ),
                Some(ca_pem),
            )
        } else {
            (String::new(), None)
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: vulngate-test-secret\n{tls_yaml}{auth_yaml}",
            storage.display()
        );
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REGISTRY_BIN} ({SETUP_SCRIPT}): {e}"));
        let mut registry = Registry {
            port,
            auth,
            dir,
            child: Some(child),
            ca_pem,
        };
        registry.wait_ready().await;
        registry
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA bundle to trust for an HTTPS registry (`start_with(.., true)`).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca_pem.as_ref().map(|_| self.dir.path().join("ca.pem"))
    }

    /// Stops the registry (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn push_auth(&self) -> OciAuth {
        match &self.auth {
            RegistryAuth::None => OciAuth::Anonymous,
            RegistryAuth::Basic { username, password } => {
                OciAuth::Basic(username.clone(), password.clone())
            }
            RegistryAuth::Token(ts) => OciAuth::Basic(ts.username.clone(), ts.password.clone()),
        }
    }

    fn client(&self) -> Client {
        let (protocol, extra_root_certificates) = match &self.ca_pem {
            None => (ClientProtocol::Http, vec![]),
            Some(pem) => (
                ClientProtocol::Https,
                vec![oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: pem.as_bytes().to_vec(),
                }],
            ),
        };
        vulngate::crypto::install_default_provider();
        Client::try_from(ClientConfig {
            protocol,
            extra_root_certificates,
            ..ClientConfig::default()
        })
        .expect("push client")
    }

    /// Pushes a single-platform image `repo:tag` (distinct content per call) and
    /// returns its manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str, arch: &str) -> String {
        let reference = Reference::with_tag(self.host(), repo.to_string(), tag.to_string());
        let client = self.client();
        let auth = self.push_auth();
        client
            .auth(&reference, &auth, RegistryOperation::Push)
            .await
            .expect("auth for push");
        let (manifest, _) = self.upload_image(&client, &reference, arch).await;
        let digest = sha256(&manifest);
        client
            .push_manifest_raw(
                &reference,
                manifest,
                reqwest::header::HeaderValue::from_static(
                    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
                ),
            )
            .await
            .expect("push manifest");
        digest
    }

    /// Pushes a multi-arch OCI index `repo:tag` over one image per arch; returns the
    /// index digest and (`linux/ARCH`, manifest digest) per platform.
    pub async fn push_index(&self, repo: &str, tag: &str, arches: &[&str]) -> PushedIndex {
        let reference = Reference::with_tag(self.host(), repo.to_string(), tag.to_string());
        let client = self.client();
        let auth = self.push_auth();
        client
            .auth(&reference, &auth, RegistryOperation::Push)
            .await
            .expect("auth for push");
        let mut entries = Vec::new();
        let mut platforms = Vec::new();
        for arch in arches {
            let (manifest, _) = self.upload_image(&client, &reference, arch).await;
            let digest = sha256(&manifest);
            let by_digest = reference.clone_with_digest(digest.clone());
            client
                .push_manifest_raw(
                    &by_digest,
                    manifest.clone(),
                    reqwest::header::HeaderValue::from_static(
                        oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
                    ),
                )
                .await
                .expect("push platform manifest");
            entries.push(serde_json::json!({
                "mediaType": oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
                "digest": digest,
                "size": manifest.len(),
                "platform": {"os": "linux", "architecture": arch},
            }));
            platforms.push((format!("linux/{arch}"), digest));
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
            "manifests": entries,
        }))
        .expect("index json");
        let digest = sha256(&index);
        client
            .push_manifest_raw(
                &reference,
                index,
                reqwest::header::HeaderValue::from_static(
                    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
                ),
            )
            .await
            .expect("push index");
        PushedIndex { digest, platforms }
    }

    /// Uploads a layer and a config for `arch`; returns the manifest bytes (not pushed).
    async fn upload_image(
        &self,
        client: &Client,
        reference: &Reference,
        arch: &str,
    ) -> (Vec<u8>, String) {
        // An empty tar archive: two zero blocks.
        let layer = vec![0u8; 1024];
        let layer_digest = sha256(&layer);
        let nonce = format!(
            "{}-{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": {"test.vulngate/nonce": nonce}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .expect("config json");
        let config_digest = sha256(&config);
        client
            .push_blob(reference, layer.clone(), &layer_digest)
            .await
            .expect("push layer");
        client
            .push_blob(reference, config.clone(), &config_digest)
            .await
            .expect("push config");
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
            "config": {
                "mediaType": oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE,
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))
        .expect("manifest json");
        (manifest, config_digest)
    }
}

/// (CA PEM, server certificate PEM for 127.0.0.1, server key PEM).
fn ca_and_server_cert() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vulngate test registry CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone)]
pub struct PushedIndex {
    pub digest: String,
    pub platforms: Vec<(String, String)>,
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `skopeo inspect` of an image on a plain-HTTP registry: the digest it reports
/// (for an index: the index digest). Async, so in-test servers (the token server)
/// keep answering while skopeo talks to them.
pub async fn skopeo_digest(image: &str, creds: Option<(&str, &str)>) -> String {
    let mut cmd = tokio::process::Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if let Some((u, p)) = creds {
        cmd.arg(format!("--creds={u}:{p}"));
    }
    // An index makes skopeo pick a platform for the config; ask for amd64.
    cmd.args(["--override-os", "linux", "--override-arch", "amd64"]);
    cmd.arg(format!("docker://{image}"));
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("skopeo ({SETUP_SCRIPT}): {e}"));
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo json");
    v["Digest"].as_str().expect("skopeo Digest").to_string()
}

/// `skopeo inspect --raw`: the manifest bytes as the registry serves them.
pub async fn skopeo_raw(image: &str) -> Vec<u8> {
    let out = tokio::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{image}"))
        .output()
        .await
        .unwrap_or_else(|e| panic!("skopeo ({SETUP_SCRIPT}): {e}"));
    assert!(out.status.success(), "skopeo inspect --raw {image}");
    out.stdout
}

// ---------------------------------------------------------------------------
// Token server (docker distribution `auth: token`).

/// Issues ES256 JWTs with an `x5c` header the registry verifies against its
/// `rootcertbundle`, to clients presenting the right basic credentials.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    cert_file: PathBuf,
    _dir: tempfile::TempDir,
    /// Every token handed out, so tests can look for them in logs.
    pub issued: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    pub const SERVICE: &'static str = "vulngate-test-registry";
    pub const ISSUER: &'static str = "vulngate-test-issuer";

    pub async fn start(username: &str, password: &str) -> Arc<TokenServer> {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let params =
            rcgen::CertificateParams::new(vec!["token-issuer".to_string()]).expect("cert params");
        let cert = params.self_signed(&key).expect("self-signed cert");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_file = dir.path().join("token-cert.pem");
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .expect("signing key");
        let state = Arc::new(TokenState {
            signer,
            x5c: base64::engine::general_purpose::STANDARD.encode(cert.der()),
            username: username.to_string(),
            password: password.to_string(),
            issued: Arc::new(Mutex::new(Vec::new())),
        });
        let issued = state.issued.clone();
        let app = axum::Router::new()
            .route("/token", axum::routing::get(issue_token))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token server");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Arc::new(TokenServer {
            addr,
            username: username.to_string(),
            password: password.to_string(),
            cert_file,
            _dir: dir,
            issued,
        })
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

struct TokenState {
    signer: ring::signature::EcdsaKeyPair,
    x5c: String,
    username: String,
    password: String,
    issued: Arc<Mutex<Vec<String>>>,
}

async fn issue_token(
    axum::extract::State(state): axum::extract::State<Arc<TokenState>>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", state.username, state.password))
    );
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(expected.as_str()) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"details": "incorrect username or password"})),
        )
            .into_response();
    }
    // scope=repository:NAME:pull,push
    let access: Vec<serde_json::Value> = q
        .get("scope")
        .and_then(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({
                "type": kind, "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .into_iter()
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).unwrap_or_default())
    };
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [state.x5c]});
    let claims = serde_json::json!({
        "iss": TokenServer::ISSUER,
        "sub": state.username,
        "aud": TokenServer::SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let rng = ring::rand::SystemRandom::new();
    let Ok(sig) = state.signer.sign(&rng, signing_input.as_bytes()) else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let token = format!(
        "{signing_input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
    );
    if let Ok(mut issued) = state.issued.lock() {
        issued.push(token.clone());
    }
    axum::Json(serde_json::json!({
        "token": token, "access_token": token, "expires_in": 300,
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Proxy in front of a registry: counts requests, can delay answers.

/// Forwards every request to `upstream`, recording `METHOD path`, after `delay`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub async fn start(upstream: String, delay: Duration) -> Proxy {
        Self::start_with(upstream, delay, false).await
    }

    /// A proxy that drops `Docker-Content-Digest` from every answer, as some
    /// registries do not send it.
    pub async fn without_digest_header(upstream: String) -> Proxy {
        Self::start_with(upstream, Duration::ZERO, true).await
    }

    async fn start_with(upstream: String, delay: Duration, strip_digest: bool) -> Proxy {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(ProxyState {
            upstream,
            delay,
            strip_digest,
            requests: requests.clone(),
            http: vulngate::crypto::http_client()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy client"),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { addr, requests }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Requests seen so far, as `METHOD /path`.
    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

struct ProxyState {
    upstream: String,
    delay: Duration,
    strip_digest: bool,
    requests: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

async fn forward(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if let Ok(mut r) = state.requests.lock() {
        r.push(format!("{method} {}", req.uri().path()));
    }
    tokio::time::sleep(state.delay).await;
    let mut out = state
        .http
        .request(method.clone(), format!("http://{}{path_q}", state.upstream));
    for (name, value) in req.headers() {
        if name != axum::http::header::HOST {
            out = out.header(name, value);
        }
    }
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(_) => return axum::http::StatusCode::BAD_REQUEST.into_response(),
    };
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(_) => return axum::http::StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut builder = axum::http::Response::builder().status(status);
    for (name, value) in &headers {
        let hop_by_hop =
            name == axum::http::header::TRANSFER_ENCODING || name == axum::http::header::CONNECTION;
        let stripped = state.strip_digest && name.as_str() == "docker-content-digest";
        if !hop_by_hop && !stripped {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(axum::body::Body::from(bytes))
        .unwrap_or_else(|_| axum::http::StatusCode::BAD_GATEWAY.into_response())
}
