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
use serde::Deserialize as _;
use serde_yaml::Value;
use support::webhook::{digest, object_with_pod_spec, pod_spec, review, Webhook};

const SETUP: &str = "tests/setup.d/helm.sh";

fn helm() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("helm"))
        .chain([root.join(".tools/bin/helm")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`helm` is not installed: run `bash {SETUP}` (tests/run.sh runs it)"))
}

fn b64(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("base64 string")).expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

/// Where a Pod path lands in the test's directory (the config's base).
fn local(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

#[tokio::test]
async fn the_binary_serves_the_charts_config_certificate_and_secrets() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let values = root.join("charts/vulngate/ci/full-values.yaml");
    let out = Command::new(helm())
        .args(["template", "vulngate"])
        .arg(root.join("charts/vulngate"))
        .args(["--namespace", "vulngate", "-f"])
        .arg(&values)
        .output()
        .expect("run helm");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect();
    let find = |kind: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        docs.iter()
            .find(|d| d["kind"] == kind && pred(d))
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    };
    let deploy = find("Deployment", &|_| true);
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let vwc = find("ValidatingWebhookConfiguration", &|_| true);
    let ca_bundle = vwc["webhooks"][0]["clientConfig"]["caBundle"].clone();
    let svc = &vwc["webhooks"][0]["clientConfig"]["service"];
    let host = format!("{}.{}.svc", svc["name"].as_str().unwrap(), svc["namespace"].as_str().unwrap());

    // The Pod's filesystem: every volume the container mounts, with what the chart puts in it.
    let mut files: Vec<(String, String)> = vec![];
    let mut config_text = None;
    let mut scans_dir = None;
    for m in container["volumeMounts"].as_sequence().unwrap() {
        let mount = m["mountPath"].as_str().unwrap();
        let vol = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == m["name"]).unwrap();
        if let Some(cm) = vol["configMap"]["name"].as_str() {
            match m["subPath"].as_str() {
                Some(sub) => {
                    assert_eq!(mount, "/etc/vulngate/config.yaml");
                    let data = find("ConfigMap", &|d| d["metadata"]["name"] == cm)["data"].clone();
                    config_text = Some(data[sub].as_str().unwrap().to_string());
                }
                // A ConfigMap the user makes (here: the namespaces file).
                None => assert!(!docs.iter().any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm)),
            }
        } else if let Some(secret) = vol["secret"]["secretName"].as_str() {
            let s = find("Secret", &|d| d["metadata"]["name"] == secret);
            for (k, v) in s["data"].as_mapping().unwrap() {
                files.push((format!("{}/{}", local(mount), k.as_str().unwrap()), b64(v)));
            }
        } else if vol["persistentVolumeClaim"].is_mapping() {
            scans_dir = Some(local(mount));
        }
    }
    let config_text = config_text.expect("config.yaml mounted from the ConfigMap");
    let scans_dir = scans_dir.expect("scans volume");

    // The namespaces file the values point at: the helm test's own namespace.
    let test_ns = find("Namespace", &|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test");
    let test_ns_name = test_ns["metadata"]["name"].as_str().unwrap().to_string();
    files.push(("etc/vulngate/namespaces/namespaces.yaml".into(), serde_yaml::to_string(&test_ns).unwrap()));

    // Scan results in each directory the routes read.
    let summaries = format!(
        "summaries:\n  - {{digest: \"{}\", status: complete, critical: 0, high: 0}}\n  - {{digest: \"{}\", status: complete, critical: 2, high: 9}}\n",
        digest("clean"),
        digest("bad")
    );
    for sub in ["", "/local", "/example"] {
        files.push((format!("{scans_dir}{sub}/summaries.yaml"), summaries.clone()));
    }

    // The chart's config, with only the Pod's root moved to the test's directory and the
    // ports made free ones.
    let config = config_text
        .replace("0.0.0.0:8443", "127.0.0.1:0")
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("/etc/vulngate/", "etc/vulngate/")
        .replace("/var/lib/vulngate/", "var/lib/vulngate/");
    let file_refs: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let webhook = Webhook::start(&config, &file_refs);

    // The API server's view: the Service's DNS name, trusting only the caBundle.
    let port: u16 = webhook.base.rsplit_once(':').unwrap().1.parse().unwrap();
    let ca = reqwest::Certificate::from_pem(b64(&ca_bundle).as_bytes()).expect("caBundle is a PEM certificate");
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(&host, ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let decide = |image: String| {
        let client = client.clone();
        let url = format!("https://{host}:{port}/validate?timeout=5s");
        let body = review("uid-1", "Pod", "CREATE", &test_ns_name, object_with_pod_spec("Pod", pod_spec(&[("app", &image)])), None);
        async move {
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
    };
    let image = |label: &str| format!("registry.example.com/app/web@{}", digest(label));

    let bad = decide(image("bad")).await;
    assert_eq!(bad["allowed"], false, "{bad}");
    let message = bad["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("critical"), "{message}");
    let clean = decide(image("clean")).await;
    assert_eq!(clean["allowed"], true, "{clean}");
    // The helm test's namespace denies what has no scan.
    let unscanned = decide(image("never-scanned")).await;
    assert_eq!(unscanned["allowed"], false, "{unscanned}");

    let (status, _) = webhook.ops_get("/readyz");
    assert_eq!(status, 200);
    let (status, metrics) = webhook.ops_get("/metrics");
    assert_eq!(status, 200);
    assert!(!metrics.is_empty());
}
