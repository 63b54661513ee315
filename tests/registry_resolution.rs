//! Tag -> digest resolution against a real docker-registry (see tests/support/registry.rs).

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use support::registry::{Proxy, Registry, RegistryAuth, TokenServer, skopeo_digest, skopeo_raw};
use vulngate::config::Config;
use vulngate::image::ImageRef;
use vulngate::registry::RegistryResolver;
use vulngate::resolve::{DigestResolver, PullContext, ResolveError, Resolved};

/// A config routing every loopback registry to plain HTTP, plus `extra` YAML.
fn config(dir: &Path, registry_extra: &str, resolution: &str) -> Config {
    let text = format!(
        r#"
deadline: 8s
registries:
  - match: "127.0.0.1:*"
    scanner: {{file: {{path: /dev/null}}}}
    registry: {{plainHttp: true, timeout: 3s{registry_extra}}}
resolution: {{platforms: [linux/amd64, linux/arm64]{resolution}}}
"#
    );
    Config::from_yaml(&text, dir).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

fn resolver(cfg: &Config) -> RegistryResolver {
    logs();
    RegistryResolver::from_config(cfg, None).expect("resolver")
}

/// Every log line of this test binary, at TRACE. A process-wide subscriber, set up
/// before any resolver exists: a per-thread one misses events of callsites that
/// other test threads registered first.
fn logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        logs
    })
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).expect("image ref")
}

async fn resolve(r: &RegistryResolver, img: &str) -> Result<Resolved, ResolveError> {
    r.resolve(&image(img), &PullContext::default())
        .await
        .map(|o| o.expect("the loopback route resolves"))
}

fn docker_config_file(dir: &Path, host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths": {{"http://{host}/v2/": {{"auth": "{auth}"}}}}}}"#),
    )
    .expect("write docker config");
    format!(", dockerConfigFile: {}", path.display())
}

#[tokio::test]
async fn tag_resolves_to_the_digest_skopeo_reports() {
    let registry = Registry::start(RegistryAuth::None).await;
    let digest = registry.push_image("team/app", "1.2", "amd64").await;
    let latest = registry.push_image("team/app", "latest", "amd64").await;
    let dir = tempfile::tempdir().expect("tmp");
    let r = resolver(&config(dir.path(), "", ""));

    let host = registry.host();
    let got = resolve(&r, &format!("{host}/team/app:1.2"))
        .await
        .expect("resolves");
    assert_eq!(
        got,
        Resolved::Manifest {
            digest: digest.clone()
        }
    );
    assert_eq!(
        got.digest(),
        skopeo_digest(&format!("{host}/team/app:1.2"), None).await
    );

    // A bare name means latest.
    let got = resolve(&r, &format!("{host}/team/app"))
        .await
        .expect("resolves");
    assert_eq!(got.digest(), latest);
    assert_eq!(
        latest,
        skopeo_digest(&format!("{host}/team/app:latest"), None).await
    );
    assert_ne!(latest, digest);

    // A registry no route matches is not ours to resolve.
    let other = r
        .resolve(&image("quay.io/x/y:1"), &PullContext::default())
        .await;
    assert!(matches!(other, Ok(None)), "{other:?}");
}

#[tokio::test]
async fn index_lists_the_configured_platform_digests() {
    let registry = Registry::start(RegistryAuth::None).await;
    let pushed = registry
        .push_index("multi", "1.0", &["amd64", "arm64"])
        .await;
    let dir = tempfile::tempdir().expect("tmp");
    let r = resolver(&config(dir.path(), "", ""));
    let name = format!("{}/multi:1.0", registry.host());

    let got = resolve(&r, &name).await.expect("resolves");
    let Resolved::Index { digest, platforms } = &got else {
        panic!("expected an index, got {got:?}");
    };
    assert_eq!(digest, &skopeo_digest(&name, None).await);
    assert_eq!(digest, &pushed.digest);
    // The platform digests are those listed in the index the registry serves.
    let raw: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&name).await).expect("index json");
    let listed: BTreeMap<String, String> = raw["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            (
                format!(
                    "linux/{}",
                    m["platform"]["architecture"].as_str().unwrap_or("")
                ),
                m["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(platforms.len(), 2);
    for (platform, d) in platforms {
        assert_eq!(listed.get(platform), Some(d), "{platform}");
    }
    assert_eq!(platforms, &pushed.platforms);
}

#[tokio::test]
async fn basic_auth_from_a_docker_config_file() {
    let registry = Registry::start(RegistryAuth::Basic {
        username: "alice".into(),
        password: "s3cret-basic".into(),
    })
    .await;
    let digest = registry.push_image("private/app", "2.0", "amd64").await;
    let name = format!("{}/private/app:2.0", registry.host());
    let dir = tempfile::tempdir().expect("tmp");

    let creds = docker_config_file(dir.path(), &registry.host(), "alice", "s3cret-basic");
    let r = resolver(&config(dir.path(), "", &creds));
    let got = resolve(&r, &name).await.expect("resolves with credentials");
    assert_eq!(got.digest(), digest);
    assert_eq!(
        digest,
        skopeo_digest(&name, Some(("alice", "s3cret-basic"))).await
    );

    // Without credentials the registry says no: a backend error saying so.
    let anonymous = resolver(&config(dir.path(), "", ""));
    match resolve(&anonymous, &name).await {
        Err(ResolveError::Backend(msg)) => {
            assert!(msg.contains("requires credentials"), "{msg}")
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_backend_error_without_the_password() {
    let registry = Registry::start(RegistryAuth::Basic {
        username: "alice".into(),
        password: "right-password".into(),
    })
    .await;
    registry.push_image("private/app", "2.0", "amd64").await;
    let dir = tempfile::tempdir().expect("tmp");
    let creds = docker_config_file(dir.path(), &registry.host(), "alice", "WRONG-pw-123");
    let r = resolver(&config(dir.path(), "", &creds));
    match resolve(&r, &format!("{}/private/app:2.0", registry.host())).await {
        Err(ResolveError::Backend(msg)) => {
            assert!(msg.contains("refused the credentials"), "{msg}");
            assert!(msg.contains("config.json"), "names the source: {msg}");
            assert!(!msg.contains("WRONG-pw-123"), "{msg}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_tag_or_repository_is_not_found() {
    let registry = Registry::start(RegistryAuth::None).await;
    registry.push_image("app", "1.0", "amd64").await;
    let dir = tempfile::tempdir().expect("tmp");
    let r = resolver(&config(dir.path(), "", ""));
    let host = registry.host();
    match resolve(&r, &format!("{host}/app:1.2")).await {
        Err(ResolveError::NotFound(msg)) => assert_eq!(
            msg,
            format!("tag 1.2 of {host}/app does not exist on the registry")
        ),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        resolve(&r, &format!("{host}/no/such/repo:1")).await,
        Err(ResolveError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_registry_stopped_mid_run_is_a_backend_error() {
    let mut registry = Registry::start(RegistryAuth::None).await;
    registry.push_image("app", "1.0", "amd64").await;
    registry.push_image("app", "2.0", "amd64").await;
    let dir = tempfile::tempdir().expect("tmp");
    let r = resolver(&config(dir.path(), "", ""));
    let host = registry.host();
    resolve(&r, &format!("{host}/app:1.0")).await.expect("up");
    registry.stop();
    match resolve(&r, &format!("{host}/app:2.0")).await {
        Err(ResolveError::Backend(msg)) => {
            assert!(
                msg.contains(&host) && msg.contains("cannot be reached"),
                "{msg}"
            )
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_registry_hits_the_timeout() {
    let registry = Registry::start(RegistryAuth::None).await;
    registry.push_image("app", "1.0", "amd64").await;
    let slow = Proxy::start(registry.host(), Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(dir.path(), "", "");
    let mut cfg = cfg;
    if let Some(access) = cfg.registries[0].registry.as_mut() {
        access.timeout = Some(Duration::from_millis(300));
    }
    let r = resolver(&cfg);
    match resolve(&r, &format!("{}/app:1.0", slow.host())).await {
        Err(ResolveError::Backend(msg)) => assert!(msg.contains("timed out"), "{msg}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(
        !slow.seen().is_empty(),
        "the request went through the slow proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolutions_of_one_tag_make_one_registry_request() {
    let registry = Registry::start(RegistryAuth::None).await;
    let digest = registry.push_image("app", "1.0", "amd64").await;
    // A little delay so the 200 callers really overlap the first request.
    let proxy = Proxy::start(registry.host(), Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let r = Arc::new(resolver(&config(dir.path(), "", "")));
    let name = format!("{}/app:1.0", proxy.host());
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let r = r.clone();
            let name = name.clone();
            tokio::spawn(async move { resolve(&r, &name).await })
        })
        .collect();
    for t in futures::future::join_all(tasks).await {
        let got = t.expect("task").expect("resolves");
        assert_eq!(got.digest(), digest);
    }
    let seen = proxy.seen();
    let tag_requests = seen
        .iter()
        .filter(|s| s.ends_with("/v2/app/manifests/1.0"))
        .count();
    let digest_requests = seen
        .iter()
        .filter(|s| s.ends_with(&format!("/v2/app/manifests/{digest}")))
        .count();
    assert_eq!(tag_requests, 1, "{seen:?}");
    assert!(digest_requests <= 1, "{seen:?}");
}

/// Tracing output captured into a buffer for the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn token_flow_works_and_no_secret_reaches_the_logs() {
    let tokens = TokenServer::start("bob", "t0ken-user-pw").await;
    let registry = Registry::start(RegistryAuth::Token(tokens.clone())).await;
    let digest = registry.push_image("secure/app", "3.1", "amd64").await;
    let name = format!("{}/secure/app:3.1", registry.host());
    let dir = tempfile::tempdir().expect("tmp");
    let pushed_tokens = tokens.issued.lock().map(|t| t.len()).unwrap_or(0);

    let logs = logs();

    let creds = docker_config_file(dir.path(), &registry.host(), "bob", "t0ken-user-pw");
    let r = resolver(&config(dir.path(), "", &creds));
    let got = resolve(&r, &name)
        .await
        .expect("resolves through the token flow");
    // Wrong password on the token server: refused, and that password is not logged either.
    let wrong = docker_config_file(dir.path(), &registry.host(), "bob", "n0t-the-pw");
    let bad = resolver(&config(dir.path(), "", &wrong));
    let refused = resolve(&bad, &name).await;

    assert_eq!(got.digest(), digest);
    assert_eq!(
        digest,
        skopeo_digest(&name, Some(("bob", "t0ken-user-pw"))).await
    );
    assert!(
        matches!(&refused, Err(ResolveError::Backend(m)) if m.contains("refused")),
        "{refused:?}"
    );
    let issued = tokens.issued.lock().map(|t| t.clone()).unwrap_or_default();
    assert!(
        issued.len() > pushed_tokens,
        "the resolver got a token from the token server"
    );

    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("resolved tag") && l.contains(&name) && l.contains(&digest)),
        "logs were captured"
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [
        "t0ken-user-pw".to_string(),
        "n0t-the-pw".to_string(),
        b64("bob:t0ken-user-pw"),
        b64("bob:n0t-the-pw"),
    ]
    .into_iter()
    .chain(issued)
    {
        assert!(!text.contains(&secret), "a secret reached the logs");
        if let Err(e) = &refused {
            assert!(
                !e.to_string().contains(&secret),
                "a secret reached an error"
            );
        }
    }
}

type ApiState = (
    Arc<BTreeMap<String, serde_json::Value>>,
    Arc<Mutex<Vec<String>>>,
);

/// A tiny stand-in for the Kubernetes API: Secrets and ServiceAccounts by name.
async fn fake_api(
    objects: BTreeMap<String, serde_json::Value>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = (Arc::new(objects), seen.clone());
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State((objects, seen)): axum::extract::State<ApiState>,
             uri: axum::http::Uri| async move {
                use axum::response::IntoResponse;
                if let Ok(mut s) = seen.lock() {
                    s.push(uri.path().to_string());
                }
                match objects.get(uri.path()) {
                    Some(obj) => axum::Json(obj.clone()).into_response(),
                    None => (
                        axum::http::StatusCode::NOT_FOUND,
                        axum::Json(serde_json::json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": "not found",
                            "reason": "NotFound", "code": 404
                        })),
                    )
                        .into_response(),
                }
            },
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

fn pull_secret(
    ns: &str,
    name: &str,
    kind: &str,
    host: &str,
    user: &str,
    pw: &str,
) -> serde_json::Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let entry = serde_json::json!({ host: {"auth": b64(&format!("{user}:{pw}"))} });
    let (ty, key, content) = if kind == "dockercfg" {
        ("kubernetes.io/dockercfg", ".dockercfg", entry)
    } else {
        (
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            serde_json::json!({ "auths": entry }),
        )
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": ty,
        "data": { key: b64(&content.to_string()) },
    })
}

#[tokio::test]
async fn image_pull_secrets_are_read_through_the_kubernetes_api() {
    let registry = Registry::start(RegistryAuth::Basic {
        username: "carol".into(),
        password: "pull-secret-pw".into(),
    })
    .await;
    let host = registry.host();
    let digest = registry.push_image("team/app", "1.0", "amd64").await;
    let mut objects = BTreeMap::new();
    objects.insert(
        "/api/v1/namespaces/team-a/secrets/pod-pull".to_string(),
        pull_secret(
            "team-a",
            "pod-pull",
            "dockerconfigjson",
            &host,
            "carol",
            "pull-secret-pw",
        ),
    );
    objects.insert(
        "/api/v1/namespaces/team-b/secrets/sa-pull".to_string(),
        pull_secret(
            "team-b",
            "sa-pull",
            "dockercfg",
            &host,
            "carol",
            "pull-secret-pw",
        ),
    );
    objects.insert(
        "/api/v1/namespaces/team-b/serviceaccounts/builder".to_string(),
        serde_json::json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "builder", "namespace": "team-b"},
            "imagePullSecrets": [{"name": "sa-pull"}],
        }),
    );
    // A secret for another registry only: never sent to this one.
    objects.insert(
        "/api/v1/namespaces/team-c/secrets/elsewhere".to_string(),
        pull_secret(
            "team-c",
            "elsewhere",
            "dockerconfigjson",
            "quay.io",
            "carol",
            "pull-secret-pw",
        ),
    );
    let (api, seen) = fake_api(objects).await;
    // Both rustls providers are in the tree (reqwest's, ours): kube needs one chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kube_config = kube::Config::new(format!("http://{api}").parse().expect("uri"));
    let kube = kube::Client::try_from(kube_config).expect("kube client");

    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(dir.path(), "", ", useImagePullSecrets: true");
    assert!(
        RegistryResolver::from_config(&cfg, None).is_err(),
        "imagePullSecrets without an API client is a start-up error"
    );
    let r = RegistryResolver::from_config(&cfg, Some(kube)).expect("resolver");
    let img = image(&format!("{host}/team/app:1.0"));

    // The pod's own imagePullSecret (dockerconfigjson).
    let pod = PullContext {
        namespace: "team-a".into(),
        service_account: None,
        image_pull_secrets: vec!["pod-pull".into()],
    };
    let got = r
        .resolve(&img, &pod)
        .await
        .expect("resolves")
        .expect("ours");
    assert_eq!(got.digest(), digest);

    // Its ServiceAccount's (legacy dockercfg).
    let via_sa = PullContext {
        namespace: "team-b".into(),
        service_account: Some("builder".into()),
        image_pull_secrets: vec![],
    };
    let got = r
        .resolve(&img, &via_sa)
        .await
        .expect("resolves")
        .expect("ours");
    assert_eq!(got.digest(), digest);

    // Only a secret for another host: anonymous, refused.
    let other = PullContext {
        namespace: "team-c".into(),
        service_account: None,
        image_pull_secrets: vec!["elsewhere".into(), "missing".into()],
    };
    match r.resolve(&img, &other).await {
        Err(ResolveError::Backend(msg)) => assert!(msg.contains("requires credentials"), "{msg}"),
        other => panic!("expected a backend error, got {other:?}"),
    }

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    for path in [
        "/api/v1/namespaces/team-a/secrets/pod-pull",
        "/api/v1/namespaces/team-a/serviceaccounts/default",
        "/api/v1/namespaces/team-b/serviceaccounts/builder",
        "/api/v1/namespaces/team-b/secrets/sa-pull",
        "/api/v1/namespaces/team-c/secrets/missing",
    ] {
        assert!(seen.iter().any(|s| s == path), "{path} not read: {seen:?}");
    }
}

fn config_from(dir: &Path, text: &str) -> Config {
    Config::from_yaml(text, dir).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

#[tokio::test]
async fn without_a_digest_header_the_digest_is_the_hash_of_the_manifest() {
    let registry = Registry::start(RegistryAuth::None).await;
    let digest = registry.push_image("app", "1.0", "amd64").await;
    let bare = Proxy::without_digest_header(registry.host()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let r = resolver(&config(dir.path(), "", ""));
    let got = resolve(&r, &format!("{}/app:1.0", bare.host()))
        .await
        .expect("resolves");
    assert_eq!(got.digest(), digest);
    // HEAD had no header, so the manifest was fetched by tag.
    assert!(
        bare.seen().iter().any(|s| s == "GET /v2/app/manifests/1.0"),
        "{:?}",
        bare.seen()
    );
}

#[tokio::test]
async fn a_mirror_is_asked_with_the_same_repository_path() {
    let registry = Registry::start(RegistryAuth::None).await;
    let digest = registry.push_image("team/app", "1.0", "amd64").await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config_from(
        dir.path(),
        &format!(
            r#"
registries:
  - match: "upstream.example.com"
    scanner: {{file: {{path: /dev/null}}}}
    registry: {{plainHttp: true, mirror: "{}"}}
"#,
            registry.host()
        ),
    );
    let r = resolver(&cfg);
    let got = resolve(&r, "upstream.example.com/team/app:1.0")
        .await
        .expect("resolves on the mirror");
    assert_eq!(got.digest(), digest);
}

#[tokio::test]
async fn an_https_registry_is_trusted_through_its_ca_file() {
    let registry = Registry::start_with(RegistryAuth::None, true).await;
    let digest = registry.push_image("app", "1.0", "amd64").await;
    let ca = registry.ca_file().expect("ca file");
    let dir = tempfile::tempdir().expect("tmp");
    let with_ca = config_from(
        dir.path(),
        &format!(
            r#"
registries:
  - match: "127.0.0.1:*"
    scanner: {{file: {{path: /dev/null}}}}
    registry: {{caFile: {}}}
"#,
            ca.display()
        ),
    );
    let name = format!("{}/app:1.0", registry.host());
    let got = resolve(&resolver(&with_ca), &name).await.expect("resolves");
    assert_eq!(got.digest(), digest);

    let without_ca = config_from(
        dir.path(),
        "registries:\n  - match: \"127.0.0.1:*\"\n    scanner: {file: {path: /dev/null}}\n",
    );
    match resolve(&resolver(&without_ca), &name).await {
        Err(ResolveError::Backend(msg)) => assert!(msg.contains(&registry.host()), "{msg}"),
        other => panic!("an unknown CA must be a backend error, got {other:?}"),
    }
}

#[test]
fn bad_registry_settings_are_start_up_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = "registries:\n  - match: \"*\"\n    scanner: {file: {path: /dev/null}}\n";
    for (extra, expect) in [
        ("    registry: {caFile: /no/such/ca.pem}\n", "caFile"),
        ("    registry: {mirror: \"http://m/x\"}\n", "mirror"),
        ("resolution: {platforms: [linux]}\n", "platforms"),
        (
            "resolution: {dockerConfigFile: /no/such/config.json}\n",
            "dockerConfigFile",
        ),
    ] {
        let cfg = config_from(dir.path(), &format!("{base}{extra}"));
        match RegistryResolver::from_config(&cfg, None) {
            Err(e) => assert!(e.to_string().contains(expect), "{e}"),
            Ok(_) => panic!("{extra} should be refused"),
        }
    }
}

#[tokio::test]
async fn a_resolver_is_wanted_only_when_a_route_asks_for_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let off = config_from(
        dir.path(),
        "registries:\n  - match: \"*\"\n    scanner: {file: {path: /dev/null}}\n    registry: {resolve: false}\n",
    );
    assert!(!RegistryResolver::wanted(&off));
    let on = config_from(
        dir.path(),
        "registries:\n  - match: \"*\"\n    scanner: {file: {path: /dev/null}}\n",
    );
    assert!(RegistryResolver::wanted(&on));
    assert!(RegistryResolver::from_config(&on, None).is_ok());
}

#[tokio::test]
async fn a_changed_docker_config_file_is_read_again() {
    let registry = Registry::start(RegistryAuth::Basic {
        username: "dave".into(),
        password: "rotated-pw".into(),
    })
    .await;
    let digest = registry.push_image("app", "1.0", "amd64").await;
    let dir = tempfile::tempdir().expect("tmp");
    let name = format!("{}/app:1.0", registry.host());
    let old = docker_config_file(dir.path(), &registry.host(), "dave", "old-pw");
    let r = resolver(&config(dir.path(), "", &old));
    assert!(matches!(
        resolve(&r, &name).await,
        Err(ResolveError::Backend(_))
    ));
    // The mounted Secret is updated with the new password.
    docker_config_file(dir.path(), &registry.host(), "dave", "rotated-pw");
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("config.json"))
        .and_then(|f| f.set_modified(later))
        .expect("touch config.json");
    let got = resolve(&r, &name)
        .await
        .expect("resolves with the new password");
    assert_eq!(got.digest(), digest);
}
