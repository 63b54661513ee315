//! The real binary over TLS, HTTP/1.1 and HTTP/2, with a client that trusts only
//! the generated CA: every kind, operation and rule of the admission core.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::webhook::{
    Webhook, basic_config, config_with_routes, digest, object_with_pod_spec, pod_spec, review,
};

const CLEAN: &str = "registry.example.com/app/clean:1";
const HIGH3: &str = "registry.example.com/app/high3:1";
const HIGH5: &str = "registry.example.com/app/high5:1";
const HIGH6: &str = "registry.example.com/app/high6:1";
const CRIT1: &str = "registry.example.com/app/crit1:1";
const SCANNING: &str = "registry.example.com/app/scanning:1";
const UNKNOWN_TAG: &str = "registry.example.com/app/clean:never-scanned";

fn files() -> Vec<(&'static str, String)> {
    let entry = |label: &str, image: &str, fields: &str| {
        format!(
            "  - {{digest: \"{}\", image: \"{image}\", {fields}}}\n",
            digest(label)
        )
    };
    let mut summaries = String::from("summaries:\n");
    summaries += &entry("clean", CLEAN, "status: complete");
    summaries += &entry("high3", HIGH3, "high: 3, medium: 7");
    summaries += &entry("high5", HIGH5, "high: 5");
    summaries += &entry("high6", HIGH6, "high: 6");
    summaries += &entry("crit1", CRIT1, "critical: 1");
    summaries += &entry("scanning", SCANNING, "status: scanning");
    let ns = |name: &str, annotations: &str| {
        format!(
            "---\nkind: Namespace\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n"
        )
    };
    let namespaces = [
        ns("strict", ""),
        ns("relaxed", "vulngate.io/max-high: \"5\""),
        ns("warnmode", "vulngate.io/mode: warn"),
        ns("offmode", "vulngate.io/mode: \"off\""),
        ns("lenient", "vulngate.io/unscanned: allow"),
        ns("typo", "vulngate.io/max-high: lots"),
        ns(
            "exempting",
            "vulngate.io/exempt-images: \"registry.example.com/app/high3\"",
        ),
        ns(
            "totals",
            "vulngate.io/max-high: \"10\", vulngate.io/max-total: \"8\"",
        ),
    ]
    .concat();
    vec![
        ("scans/summaries.yaml", summaries),
        ("namespaces.yaml", namespaces),
    ]
}

fn start() -> Webhook {
    Webhook::start(
        &basic_config("policy:\n  exemptImages: [\"registry.k8s.io/*\"]\n"),
        &files(),
    )
}

fn pod(namespace: &str, containers: &[(&str, &str)]) -> Value {
    review(
        "uid-pod",
        "Pod",
        "CREATE",
        namespace,
        object_with_pod_spec("Pod", pod_spec(containers)),
        None,
    )
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn warnings(response: &Value) -> String {
    response["warnings"].to_string()
}

#[tokio::test]
async fn every_kind_is_judged_over_http1_and_http2() {
    let webhook = start();
    for http2 in [false, true] {
        let client = webhook.client(http2);
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "ReplicationController",
        ] {
            let bad = review(
                &format!("{kind}-bad"),
                kind,
                "CREATE",
                "strict",
                object_with_pod_spec(kind, pod_spec(&[("web", HIGH3), ("side", CLEAN)])),
                None,
            );
            let (status, version, body) = webhook.post(&client, bad.to_string()).await;
            assert_eq!(status, 200);
            let expected = if http2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            };
            assert_eq!(version, expected);
            let response: Value =
                serde_json::from_str::<Value>(&body).expect("JSON")["response"].clone();
            assert_eq!(response["uid"], format!("{kind}-bad"));
            assert_eq!(response["allowed"], false, "{kind}: {response}");
            let text = message(&response);
            assert!(text.contains(&format!("{kind} strict/test")), "{text}");
            assert!(text.contains("container \"web\""), "{text}");
            assert!(
                !text.contains("\"side\""),
                "the clean container is not named: {text}"
            );

            let good = review(
                &format!("{kind}-good"),
                kind,
                "CREATE",
                "strict",
                object_with_pod_spec(kind, pod_spec(&[("web", CLEAN)])),
                None,
            );
            let response = webhook.review(&client, &good).await;
            assert_eq!(response["allowed"], true, "{kind}: {response}");
        }
    }
}

#[tokio::test]
async fn denial_names_container_image_digest_counts_limits_and_their_source() {
    let webhook = start();
    let client = webhook.client(false);

    let response = webhook
        .review(&client, &pod("strict", &[("api", HIGH3), ("db", CRIT1)]))
        .await;
    let text = message(&response);
    assert_eq!(response["status"]["code"], 403);
    assert!(
        text.contains(&format!(
            "container \"api\" (image \"{HIGH3}\", {})",
            digest("high3")
        )),
        "{text}"
    );
    assert!(
        text.contains("3 high vulnerabilities, over the limit of 0 set by the cluster default"),
        "{text}"
    );
    assert!(
        text.contains("1 critical vulnerabilities, over the limit of 0 set by the cluster default"),
        "{text}"
    );
    assert_eq!(response["auditAnnotations"]["decision"], "denied");

    // A count equal to the namespace's limit passes; one above is denied.
    let response = webhook
        .review(&client, &pod("relaxed", &[("api", HIGH5)]))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let response = webhook
        .review(&client, &pod("relaxed", &[("api", HIGH6)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("6 high vulnerabilities, over the limit of 5 set by annotation vulngate.io/max-high on namespace relaxed"),
        "{}",
        message(&response)
    );

    // Totals: 3 high + 7 medium = 10 > 8.
    let response = webhook
        .review(&client, &pod("totals", &[("api", HIGH3)]))
        .await;
    assert!(
        message(&response).contains("10 total vulnerabilities, over the limit of 8"),
        "{response}"
    );
}

#[tokio::test]
async fn warn_and_off_modes_allow() {
    let webhook = start();
    let client = webhook.client(true);
    let response = webhook
        .review(&client, &pod("warnmode", &[("api", HIGH3)]))
        .await;
    assert_eq!(response["allowed"], true);
    assert!(
        warnings(&response).contains("3 high vulnerabilities"),
        "{response}"
    );
    assert_eq!(response["auditAnnotations"]["decision"], "warned");

    let response = webhook
        .review(&client, &pod("offmode", &[("api", CRIT1)]))
        .await;
    assert_eq!(response["allowed"], true);
    assert!(response["warnings"].is_null(), "{response}");
}

#[tokio::test]
async fn unscanned_images_follow_the_unscanned_rule() {
    let webhook = start();
    let client = webhook.client(false);
    let response = webhook
        .review(&client, &pod("strict", &[("api", UNKNOWN_TAG)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("not mapped to a digest"),
        "{response}"
    );

    let response = webhook
        .review(&client, &pod("strict", &[("api", SCANNING)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("scan of this image is not finished"),
        "{response}"
    );

    let by_digest = format!(
        "registry.example.com/app/other@{}",
        digest("nobody scanned this")
    );
    let response = webhook
        .review(&client, &pod("strict", &[("api", &by_digest)]))
        .await;
    assert!(
        message(&response).contains("file has no scan of this image"),
        "{response}"
    );

    let response = webhook
        .review(
            &client,
            &pod("lenient", &[("api", SCANNING), ("b", UNKNOWN_TAG)]),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response}");
}

#[tokio::test]
async fn exempt_namespaces_and_images() {
    let webhook = start();
    let client = webhook.client(false);
    let response = webhook
        .review(&client, &pod("kube-system", &[("api", CRIT1)]))
        .await;
    assert_eq!(response["allowed"], true);
    let response = webhook
        .review(&client, &pod("exempting", &[("api", HIGH3)]))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let response = webhook
        .review(
            &client,
            &pod("strict", &[("pause", "registry.k8s.io/pause:3.9")]),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response}");
}

#[tokio::test]
async fn operations_and_subresources() {
    let webhook = start();
    let client = webhook.client(false);
    let bad = object_with_pod_spec("Pod", pod_spec(&[("api", HIGH3)]));
    let clean = object_with_pod_spec("Pod", pod_spec(&[("api", CLEAN)]));

    // An UPDATE that leaves a bad image as it was (a finalizer removed) is allowed.
    let r = review(
        "u1",
        "Pod",
        "UPDATE",
        "strict",
        bad.clone(),
        Some(bad.clone()),
    );
    assert_eq!(webhook.review(&client, &r).await["allowed"], true);
    // An UPDATE that brings the bad image in is denied.
    let r = review(
        "u2",
        "Deployment",
        "UPDATE",
        "strict",
        object_with_pod_spec("Deployment", pod_spec(&[("api", HIGH3)])),
        Some(object_with_pod_spec(
            "Deployment",
            pod_spec(&[("api", CLEAN)]),
        )),
    );
    assert_eq!(webhook.review(&client, &r).await["allowed"], false);

    // kubectl debug: the ephemeralcontainers subresource carries the whole Pod.
    let mut debugged = clean.clone();
    debugged["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": CRIT1}]);
    let mut r = review(
        "u3",
        "Pod",
        "UPDATE",
        "strict",
        debugged,
        Some(clean.clone()),
    );
    r["request"]["subResource"] = json!("ephemeralcontainers");
    let response = webhook.review(&client, &r).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("ephemeral container \"debugger\""),
        "{response}"
    );

    // Other subresources, DELETE and CONNECT are not judged.
    let mut r = review(
        "u4",
        "Pod",
        "UPDATE",
        "strict",
        bad.clone(),
        Some(clean.clone()),
    );
    r["request"]["subResource"] = json!("status");
    assert_eq!(webhook.review(&client, &r).await["allowed"], true);
    let r = review(
        "u5",
        "Pod",
        "DELETE",
        "strict",
        Value::Null,
        Some(bad.clone()),
    );
    assert_eq!(webhook.review(&client, &r).await["allowed"], true);
    let mut r = review(
        "u6",
        "Pod",
        "CONNECT",
        "strict",
        json!({"kind": "PodExecOptions"}),
        None,
    );
    r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "PodExecOptions"});
    assert_eq!(webhook.review(&client, &r).await["allowed"], true);
    // Init containers are judged too, and v1beta1 is answered in v1beta1.
    let mut spec = pod_spec(&[("api", CLEAN)]);
    spec["initContainers"] = json!([{"name": "migrate", "image": HIGH3}]);
    let mut r = review(
        "u7",
        "Pod",
        "CREATE",
        "strict",
        object_with_pod_spec("Pod", spec),
        None,
    );
    r["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (_, _, body) = webhook.post(&client, r.to_string()).await;
    let out: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1beta1");
    assert!(
        message(&out["response"]).contains("init container \"migrate\""),
        "{out}"
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let webhook = start();
    let client = webhook.client(false);

    let (status, _, body) = webhook.post(&client, "{\"apiVersion\": ").await;
    assert_eq!(status, 400);
    assert!(body.contains("cannot decode AdmissionReview"), "{body}");
    let (status, _, body) = webhook
        .post(&client, json!({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {"uid": "x"}}).to_string())
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("unsupported apiVersion"), "{body}");
    let (status, _, body) = webhook
        .post(
            &client,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("no request"), "{body}");

    // Over HTTP/2 the client reads the early 413 (an HTTP/1.1 client still writing
    // its body sees the connection closed after it).
    let oversized = vec![b' '; 8 * 1024 * 1024];
    let (status, _, _) = webhook.post(&webhook.client(true), oversized).await;
    assert_eq!(status, 413);

    let response = client
        .post(format!("{}/validate", webhook.base))
        .header("Content-Type", "text/plain")
        .body(pod("strict", &[("a", CLEAN)]).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 415);

    // An invalid image reference is denied by name.
    let response = webhook
        .review(&client, &pod("strict", &[("api", "Not A Valid//Ref")]))
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("invalid image reference \"Not A Valid//Ref\""),
        "{response}"
    );

    // A bad annotation value is reported and the cluster default applies.
    let response = webhook
        .review(&client, &pod("typo", &[("api", HIGH3)]))
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("set by the cluster default"),
        "{response}"
    );
    assert!(
        warnings(&response).contains("vulngate.io/max-high=\\\"lots\\\""),
        "{response}"
    );

    // A containers field of the wrong type: answered with the uid, denied.
    let mut broken = pod("strict", &[]);
    broken["request"]["object"]["spec"]["containers"] = json!("nginx");
    let response = webhook.review(&client, &broken).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("could not read this Pod"),
        "{response}"
    );

    let response = webhook
        .review(&client, &pod("strict", &[("api", CLEAN)]))
        .await;
    assert_eq!(response["allowed"], true);
}

#[tokio::test]
async fn health_readiness_and_metrics_on_the_ops_port() {
    let webhook = start();
    let client = webhook.client(false);
    webhook
        .review(&client, &pod("strict", &[("api", HIGH3)]))
        .await;
    webhook
        .review(&client, &pod("strict", &[("api", HIGH3)]))
        .await;
    let (status, _, _) = webhook.post(&client, "{\"kind\": \"not a review\"").await;
    assert_eq!(status, 400);
    assert_eq!(webhook.ops_get("/healthz").0, 200);
    assert_eq!(webhook.ops_get("/readyz").0, 200);
    let (status, metrics) = webhook.ops_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("vulngate_reviews_total{kind=\"Pod\",result=\"denied\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vulngate_reviews_total{kind=\"other\",result=\"invalid\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vulngate_reviews_in_flight 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vulngate_summary_cache_hits_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vulngate_summary_cache_misses_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vulngate_scanner_calls_total{scanner=\"file\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vulngate_decision_duration_seconds_count 3"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("registry.example.com"),
        "no image names in metrics"
    );
    assert!(!metrics.contains("sha256"), "no digests in metrics");
    // One log line per decision, each a JSON object whose keys are unique and whose
    // reason is the one the apiserver was told.
    let logs = webhook.stderr();
    let review_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"message\":\"review\""))
        .collect();
    assert_eq!(review_lines.len(), 2, "{logs}");
    for line in review_lines {
        assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        let fields: Value = serde_json::from_str(line).expect("a JSON log line");
        let reason = fields["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("high vulnerabilities"), "{line}");
        assert_eq!(fields["result"], "denied", "{line}");
    }

    // The webhook port serves nothing but /validate.
    let response = client
        .get(format!("{}/metrics", webhook.base))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn embedded_default_answers_its_printed_example() {
    let webhook = Webhook::start_embedded();
    let lines = webhook.stdout_until("try: curl").join("\n");
    let state = webhook.dir.path().join("state");
    assert!(lines.contains("try: curl --cacert"), "{lines}");
    let example =
        std::fs::read_to_string(state.join("example-review.json")).expect("example written");
    let example: Value = serde_json::from_str(&example).expect("JSON");
    for http2 in [false, true] {
        let response = webhook.review(&webhook.client(http2), &example).await;
        assert_eq!(response["allowed"], false);
        let text = message(&response);
        assert!(
            text.contains("container \"web\" (image \"nginx:1.25\""),
            "{text}"
        );
        assert!(
            text.contains(
                "critical vulnerabilities, over the limit of 0 set by the cluster default"
            ),
            "{text}"
        );
    }
    for name in [
        "config.yaml",
        "namespaces.yaml",
        "scans/nginx-1.25.json",
        "tls/ca.crt",
        "tls/tls.key",
    ] {
        assert!(
            state.join(name).is_file(),
            "{name} written to the state dir"
        );
    }
}

#[tokio::test]
async fn sigterm_drains_then_exits() {
    let mut webhook = Webhook::start(
        &basic_config("shutdown: {drainDelay: 2s, grace: 10s}\n"),
        &files(),
    );
    let client = webhook.client(false);
    assert_eq!(
        webhook
            .review(&client, &pod("strict", &[("a", CLEAN)]))
            .await["allowed"],
        true
    );
    webhook.terminate();
    // Readiness turns false while the server still answers reviews.
    let mut saw_not_ready = false;
    for _ in 0..100 {
        if webhook.ops_get("/readyz").0 == 503 {
            saw_not_ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(saw_not_ready, "readiness turns false on SIGTERM");
    assert_eq!(
        webhook
            .review(&client, &pod("strict", &[("a", CLEAN)]))
            .await["allowed"],
        true
    );
    let status = webhook
        .wait_exit(Duration::from_secs(20))
        .expect("exits within the grace period");
    assert!(status.success(), "{status:?}");
}

#[test]
fn review_and_check_commands_decide_like_the_server() {
    let webhook = start();
    let dir = webhook.dir.path();
    let config = dir.join("config.yaml");
    let file = dir.join("review.json");
    std::fs::write(&file, pod("relaxed", &[("api", HIGH6)]).to_string()).expect("write");
    let out = std::process::Command::new(support::webhook::BIN)
        .args(["review", "--config"])
        .arg(&config)
        .arg(&file)
        .output()
        .expect("run review");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response: Value = serde_json::from_slice(&out.stdout).expect("review prints JSON");
    assert_eq!(response["response"]["allowed"], false);
    assert!(message(&response["response"]).contains("over the limit of 5"));

    let check = |ns: &str, image: &str| {
        std::process::Command::new(support::webhook::BIN)
            .args(["check", "--config"])
            .arg(&config)
            .args(["--namespace", ns, image])
            .output()
            .expect("run check")
    };
    let out = check("relaxed", HIGH5);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = check("relaxed", HIGH6);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 high vulnerabilities"));
    let out = check("strict", "INVALID REF");
    assert_eq!(out.status.code(), Some(1));
}

/// Lays out a certificate the way a Kubernetes Secret volume does:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>/`.
fn secret_volume_version(
    dir: &std::path::Path,
    version: &str,
    source: &vulngate::tls::GeneratedTls,
) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).expect("mkdir");
    std::fs::copy(&source.cert_file, versioned.join("tls.crt")).expect("copy cert");
    std::fs::copy(&source.key_file, versioned.join("tls.key")).expect("copy key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    // The atomic swap kubelet does: rename over the old `..data`.
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("symlink");
        }
    }
}

#[tokio::test]
async fn certificate_rotated_on_disk_is_served_without_restart() {
    let generated = tempfile::tempdir().expect("temp dir");
    let first =
        vulngate::tls::generate(&generated.path().join("a"), &[]).expect("first certificate");
    let second =
        vulngate::tls::generate(&generated.path().join("b"), &[]).expect("second certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    secret_volume_version(&certs, "2026_11_23_first", &first);

    let config = basic_config("").replace(
        "tls: {generateDir: tls}",
        "tls: {certFile: certs/tls.crt, keyFile: certs/tls.key}",
    );
    let mut files = files();
    files.push((
        "ca.crt",
        std::fs::read_to_string(&first.ca_file).expect("CA"),
    ));
    let mut webhook = Webhook::start_in(dir, &config, &files);
    let old_client = webhook.client(false);
    let request = pod("strict", &[("a", CLEAN)]);
    assert_eq!(webhook.review(&old_client, &request).await["allowed"], true);

    secret_volume_version(&certs, "2026_11_23_second", &second);
    webhook.ca_pem = std::fs::read(&second.ca_file).expect("second CA");
    // New connections get the new certificate once the reload has seen it.
    let mut rotated = false;
    for _ in 0..100 {
        let fresh = webhook.client(false);
        let sent = fresh
            .post(format!("{}/validate", webhook.base))
            .header("Content-Type", "application/json")
            .body(request.to_string())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rotated,
        "a client trusting only the new CA is served: {}",
        webhook.stderr()
    );
    // The connection opened before the rotation is still served.
    assert_eq!(webhook.review(&old_client, &request).await["allowed"], true);
    assert!(
        webhook
            .ops_get("/metrics")
            .1
            .contains("vulngate_tls_certificate_reloads_total 1")
    );
}

const PURGE_TOKEN: &str = "purge-token-4f1c9e";

/// The test files plus a purge token file, served with `ops.purge` enabled.
fn start_with_purge() -> Webhook {
    let mut files = files();
    files.push(("secrets/purge-token", format!("{PURGE_TOKEN}\n")));
    Webhook::start(
        &basic_config("ops: {purge: {enabled: true, tokenFile: secrets/purge-token}}\n"),
        &files,
    )
}

#[tokio::test]
async fn operators_purge_cached_summaries_with_the_purge_token() {
    let webhook = start_with_purge();
    let client = webhook.client(false);
    let request = pod("strict", &[("api", HIGH3), ("db", CLEAN)]);
    webhook.review(&client, &request).await;
    let path = format!("/cache/purge?digest={}", digest("high3"));
    let (status, body) = webhook.ops_post_bearer(&path, PURGE_TOKEN);
    assert_eq!((status, body.trim()), (200, "purged 1 entries"));
    webhook.review(&client, &request).await;
    let metrics = webhook.ops_get("/metrics").1;
    // high3 fetched again after its purge; clean came from the cache.
    assert!(
        metrics.contains("vulngate_summary_cache_misses_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vulngate_summary_cache_hits_total 1"),
        "{metrics}"
    );
    let (status, body) = webhook.ops_post_bearer("/cache/purge", PURGE_TOKEN);
    assert_eq!((status, body.trim()), (200, "purged 2 entries"));
}

#[tokio::test]
async fn a_purge_without_the_token_is_refused_and_purges_nothing() {
    let webhook = start_with_purge();
    let client = webhook.client(false);
    webhook
        .review(&client, &pod("strict", &[("api", HIGH3), ("db", CLEAN)]))
        .await;
    let (status, body) = webhook.ops_post("/cache/purge");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    for wrong in ["purge-token-4f1c9", "purge-token-4f1c9e0", "x"] {
        let (status, body) = webhook.ops_post_bearer("/cache/purge", wrong);
        assert_eq!(status, 403, "{wrong}: {body}");
    }
    // Nothing was purged: the right token finds both entries still there.
    let (status, body) = webhook.ops_post_bearer("/cache/purge", PURGE_TOKEN);
    assert_eq!((status, body.trim()), (200, "purged 2 entries"));
    let logs = webhook.stderr();
    assert!(logs.contains("cache purge refused"), "{logs}");
    assert!(!logs.contains(PURGE_TOKEN), "the token is never logged");
}

#[tokio::test]
async fn purge_is_off_by_default() {
    let webhook = start();
    let client = webhook.client(false);
    webhook
        .review(&client, &pod("strict", &[("db", CLEAN)]))
        .await;
    let (status, _) = webhook.ops_post("/cache/purge");
    assert_eq!(status, 404);
    let (status, _) = webhook.ops_post_bearer("/cache/purge", PURGE_TOKEN);
    assert_eq!(status, 404);
    // Health and metrics are still served.
    assert_eq!(webhook.ops_get("/healthz").0, 200);
    assert!(
        webhook
            .ops_get("/metrics")
            .1
            .contains("vulngate_summary_cache_misses_total 1")
    );
}

#[tokio::test]
async fn an_allow_because_a_scanner_was_down_logs_the_image_and_why() {
    // A loopback port nothing listens on: the harbor route's scanner is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let harbor = format!(
        "  - match: harbor.down.test\n    scanner: {{harbor: {{url: \"{down}\", username: robot, password: {{file: robot}}}}}}\n    registry: {{resolve: false}}\n"
    );
    let config = config_with_routes(&harbor, "policy:\n  defaults: {onError: allow}\n");
    let mut files = files();
    files.push(("robot", "secret\n".to_string()));
    let webhook = Webhook::start(&config, &files);
    let client = webhook.client(false);
    let image = format!("harbor.down.test/app/api@{}", digest("api"));
    let response = webhook
        .review(&client, &pod("strict", &[("api", &image)]))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let logs = webhook.stderr();
    let line = logs
        .lines()
        .find(|l| l.contains("\"message\":\"review\""))
        .unwrap_or_else(|| panic!("no review line: {logs}"));
    let fields: Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(fields["result"], "warned", "{line}");
    let reason = fields["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&image), "names the image: {line}");
    assert!(reason.contains("harbor"), "names the scanner: {line}");
    assert!(reason.contains("onError: allow"), "says why: {line}");
}
