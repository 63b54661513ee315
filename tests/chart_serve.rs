//! The real binary run the way the chart runs it: the ConfigMap's config file, the
//! Helm-generated serving certificate and the credentials Secret laid out as the Pod's
//! volumes would mount them (under a temp dir instead of /), and a client that does what
//! the API server does: connect to `<service>.<namespace>.svc` trusting only the
//! webhook's caBundle.
//!
//! Needs `helm` (tests/setup.d/helm.sh installs it); fails naming that script without it.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::webhook::{Webhook, digest, object_with_pod_spec, pod_spec, review};

fn b64(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

const PURGE_TOKEN: &str = "chart-purge-token";

/// Where a Pod path lands in the test's directory (the config's base).
fn local(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

/// Renders the chart with `args`, lays out the Pod's volumes in a temp dir (Secrets the chart
/// does not render come from `external`), starts the binary on that config, and returns it
/// with a client that reaches it as the API server does, plus the test namespace's name.
async fn serve(
    args: &[&str],
    external: &dyn Fn(&str) -> Vec<(String, String)>,
) -> (Webhook, reqwest::Client, String, String) {
    let docs = support::pod::template(args);
    let find = |kind: &str, pred: &dyn Fn(&Value) -> bool| -> Option<Value> {
        docs.iter().find(|d| d["kind"] == kind && pred(d)).cloned()
    };
    let deploy = find("Deployment", &|_| true).expect("Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let vwc = find("ValidatingWebhookConfiguration", &|_| true).expect("webhook configuration");
    let svc = &vwc["webhooks"][0]["clientConfig"]["service"];
    let host = format!(
        "{}.{}.svc",
        svc["name"].as_str().unwrap(),
        svc["namespace"].as_str().unwrap()
    );

    // The Pod's filesystem: every volume the container mounts, with what the chart puts in it.
    let mut files: Vec<(String, String)> = vec![];
    let mut config_text = None;
    let mut scans_dir = None;
    for m in container["volumeMounts"].as_array().unwrap() {
        let mount = m["mountPath"].as_str().unwrap();
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        if let Some(cm) = vol["configMap"]["name"].as_str() {
            if let Some(sub) = m["subPath"].as_str() {
                assert_eq!(mount, "/etc/vulngate/config.yaml");
                let data = find("ConfigMap", &|d| d["metadata"]["name"] == cm)
                    .expect("config ConfigMap")["data"]
                    .clone();
                config_text = Some(data[sub].as_str().unwrap().to_string());
            } else if let Some(made) = find("ConfigMap", &|d| d["metadata"]["name"] == cm) {
                for (k, v) in made["data"].as_object().unwrap() {
                    files.push((
                        format!("{}/{}", local(mount), k.as_str()),
                        v.as_str().unwrap().to_string(),
                    ));
                }
            }
        } else if let Some(secret) = vol["secret"]["secretName"].as_str() {
            match find("Secret", &|d| d["metadata"]["name"] == secret) {
                Some(s) => {
                    for (k, v) in s["data"].as_object().unwrap() {
                        files.push((format!("{}/{}", local(mount), k.as_str()), b64(v)));
                    }
                }
                None => {
                    for (k, v) in external(secret) {
                        files.push((format!("{}/{k}", local(mount)), v));
                    }
                }
            }
        } else if vol["persistentVolumeClaim"].is_object()
            || vol["emptyDir"].is_object() && mount != "/tmp"
        {
            scans_dir = Some(local(mount));
        }
    }
    let config_text = config_text.expect("config.yaml mounted from the ConfigMap");
    let scans_dir = scans_dir.expect("scans volume");

    // The namespaces file the values point at: the helm test's own namespace.
    let test_ns = find("Namespace", &|d| {
        d["metadata"]["annotations"]["helm.sh/hook"] == "test"
    })
    .expect("test namespace");
    let test_ns_name = test_ns["metadata"]["name"].as_str().unwrap().to_string();
    files.push((
        "etc/vulngate/namespaces/namespaces.yaml".into(),
        serde_json::to_string_pretty(&test_ns).unwrap(),
    ));

    // Scan results in each directory the routes read.
    let summaries = format!(
        "summaries:\n  - {{digest: \"{}\", status: complete, critical: 0, high: 0}}\n  - {{digest: \"{}\", status: complete, critical: 2, high: 9}}\n",
        digest("clean"),
        digest("bad")
    );
    for sub in ["", "/local", "/example"] {
        files.push((
            format!("{scans_dir}{sub}/summaries.yaml"),
            summaries.clone(),
        ));
    }

    // The chart's config, with only the Pod's root moved to the test's directory and the
    // ports made free ones.
    let config = config_text
        .replace("0.0.0.0:8443", "127.0.0.1:0")
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("/etc/vulngate/", "etc/vulngate/")
        .replace("/var/lib/vulngate/", "var/lib/vulngate/");
    let file_refs: Vec<(&str, String)> =
        files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let webhook = Webhook::start(&config, &file_refs);

    // The API server's view: the Service's DNS name, trusting only the caBundle (the
    // rendered one, or the ca.crt cert-manager's cainjector would copy from the Secret).
    let ca_pem = match vwc["webhooks"][0]["clientConfig"]["caBundle"].as_str() {
        Some(_) => b64(&vwc["webhooks"][0]["clientConfig"]["caBundle"]),
        None => files
            .iter()
            .find(|(p, _)| p.ends_with("tls/ca.crt"))
            .expect("ca.crt")
            .1
            .clone(),
    };
    let port: u16 = webhook.base.rsplit_once(':').unwrap().1.parse().unwrap();
    let ca =
        reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("caBundle is a PEM certificate");
    let client = vulngate::crypto::http_client()
        .tls_certs_only([ca])
        .resolve(&host, ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    (
        webhook,
        client,
        format!("https://{host}:{port}/validate?timeout=5s"),
        test_ns_name,
    )
}

async fn decide(
    client: &reqwest::Client,
    url: &str,
    namespace: &str,
    label: &str,
) -> serde_json::Value {
    let image = format!("registry.example.com/app/web@{}", digest(label));
    let body = review(
        "uid-1",
        "Pod",
        "CREATE",
        namespace,
        object_with_pod_spec("Pod", pod_spec(&[("app", &image)])),
        None,
    );
    let r = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("TLS to the Service name with the caBundle works");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["response"].clone()
}

async fn expect_decisions(client: &reqwest::Client, url: &str, ns: &str) {
    let bad = decide(client, url, ns, "bad").await;
    assert_eq!(bad["allowed"], false, "{bad}");
    let message = bad["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("critical"), "{message}");
    let clean = decide(client, url, ns, "clean").await;
    assert_eq!(clean["allowed"], true, "{clean}");
    // The helm test's namespace denies what has no scan.
    let unscanned = decide(client, url, ns, "never-scanned").await;
    assert_eq!(unscanned["allowed"], false, "{unscanned}");
}

#[tokio::test]
async fn the_binary_serves_the_charts_config_certificate_and_secrets() {
    let values =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/vulngate/ci/full-values.yaml");
    // imagePullSecrets are read through the Kubernetes API, which this test has none of;
    // the client CA is an external ConfigMap, and this client presents no certificate
    // (tests/tls_client_auth.rs checks client certificates).
    let (webhook, client, url, ns) = serve(
        &[
            "-f",
            values.to_str().unwrap(),
            "--set",
            "config.resolution.useImagePullSecrets=false",
            "--set",
            "tls.clientCA.configMap=",
        ],
        &|s| match s {
            // The purge token Secret the full values name (cachePurge.existingSecret).
            "vulngate-purge" => vec![("token".to_string(), format!("{PURGE_TOKEN}\n"))],
            _ => panic!("Secret {s} not rendered"),
        },
    )
    .await;
    expect_decisions(&client, &url, &ns).await;
    // The purge endpoint the values turn on answers only the Secret's token.
    assert_eq!(webhook.ops_post("/cache/purge").0, 401);
    assert_eq!(webhook.ops_post_bearer("/cache/purge", "guess").0, 403);
    let (status, body) = webhook.ops_post_bearer("/cache/purge", PURGE_TOKEN);
    assert_eq!((status, body.trim()), (200, "purged 3 entries"));
    let (status, _) = webhook.ops_get("/readyz");
    assert_eq!(status, 200);
    let (status, metrics) = webhook.ops_get("/metrics");
    assert_eq!(status, 200);
    assert!(!metrics.is_empty());
    // The full values turn the background audit on; with no cluster to list pods in,
    // each run fails, is counted, and the webhook goes on deciding.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, metrics) = webhook.ops_get("/metrics");
        if metrics.contains("vulngate_audit_runs_total{result=\"error\"} ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed audit run counted: {metrics}\n{}",
            webhook.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(webhook.stderr().contains("background audit failed"));
    expect_decisions(&client, &url, &ns).await;
    assert_eq!(webhook.ops_get("/readyz").0, 200);
}

/// cert-manager mode: a Secret shaped as cert-manager writes it for the chart's Certificate
/// (ECDSA P-256, key in SEC1 "EC PRIVATE KEY" PEM, ca.crt of the CA Issuer), made by openssl.
#[tokio::test]
async fn the_binary_serves_a_cert_manager_shaped_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (tests/setup.d/helm.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &d("ca.key"),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &d("ca.key"),
        "-subj",
        "/CN=vulngate-ca",
        "-days",
        "2",
        "-out",
        &d("ca.crt"),
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &d("tls.key"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &d("tls.key"),
        "-subj",
        "/CN=vulngate.vulngate.svc",
        "-out",
        &d("tls.csr"),
    ]);
    std::fs::write(d("ext"), "subjectAltName=DNS:vulngate,DNS:vulngate.vulngate,DNS:vulngate.vulngate.svc,DNS:vulngate.vulngate.svc.cluster.local\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &d("tls.csr"),
        "-CA",
        &d("ca.crt"),
        "-CAkey",
        &d("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &d("ext"),
        "-out",
        &d("tls.crt"),
    ]);
    let read = |f: &str| std::fs::read_to_string(d(f)).unwrap();
    assert!(
        read("tls.key").contains("BEGIN EC PRIVATE KEY"),
        "SEC1 key, as cert-manager writes by default"
    );
    let secret = vec![
        ("tls.crt".to_string(), read("tls.crt")),
        ("tls.key".to_string(), read("tls.key")),
        ("ca.crt".to_string(), read("ca.crt")),
    ];

    // Default values; only the namespaces come from a file, as there is no cluster here.
    let (_webhook, client, url, ns) = serve(
        &[
            "--set",
            "config.namespacesFile=/etc/vulngate/namespaces/namespaces.yaml",
        ],
        &|name| {
            assert_eq!(
                name, "vulngate-tls",
                "the Secret the chart's Certificate writes"
            );
            secret.clone()
        },
    )
    .await;
    expect_decisions(&client, &url, &ns).await;
}
