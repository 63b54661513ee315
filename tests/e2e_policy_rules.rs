//! The policy-depth rules through the real binary: fixable-only counts, accepted
//! vulnerabilities with expiry, grace periods, scan age, break-glass, and pods
//! created by built-in controllers.

mod support;

use serde_json::{Value, json};
use support::webhook::{Webhook, basic_config, digest, object_with_pod_spec, pod_spec, review};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const APP: &str = "registry.example.com/shop/app:1";
const OLD_SCAN: &str = "registry.example.com/shop/old:1";
const NO_LIST: &str = "registry.example.com/shop/nolist:1";

fn ago(d: Duration) -> String {
    (OffsetDateTime::now_utc() - d)
        .format(&Rfc3339)
        .expect("format")
}

fn trivy(tag: &str, label: &str, created: &str, vulns: Value) -> String {
    json!({
        "SchemaVersion": 2, "CreatedAt": created, "ArtifactName": tag,
        "Metadata": {"RepoTags": [tag], "RepoDigests": [format!("{}@{}", tag.split(':').next().unwrap_or(tag), digest(label))]},
        "Results": [{"Target": "os", "Vulnerabilities": vulns}]
    })
    .to_string()
}

fn vuln(id: &str, severity: &str, fixed: Option<&str>, published: &str) -> Value {
    let mut v = json!({"VulnerabilityID": id, "PkgName": format!("pkg-{id}"), "Severity": severity, "PublishedDate": published});
    if let Some(f) = fixed {
        v["FixedVersion"] = json!(f);
    }
    v
}

fn files(namespaces: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let long_ago = ago(Duration::days(400));
    // APP: CVE-FIX (high, fixable, old), CVE-NOFIX (high, no fix, old),
    // CVE-NEW (critical, fixable, published 13 days 23 hours ago),
    // CVE-EDGE (high, fixable, published 14 days 1 hour ago).
    let app = trivy(
        APP,
        "app",
        &ago(Duration::days(1)),
        json!([
            vuln("CVE-2024-0001", "HIGH", Some("1.1"), &long_ago),
            vuln("CVE-2024-0002", "HIGH", None, &long_ago),
            vuln(
                "CVE-2026-0003",
                "CRITICAL",
                Some("2.0"),
                &ago(Duration::days(14) - Duration::hours(1))
            ),
            vuln(
                "CVE-2026-0004",
                "HIGH",
                Some("3.0"),
                &ago(Duration::days(14) + Duration::hours(1))
            ),
        ]),
    );
    let old = trivy(OLD_SCAN, "old", &ago(Duration::days(10)), json!([]));
    let summaries = format!(
        "summaries:\n  - {{digest: \"{}\", image: \"{NO_LIST}\", high: 2, finishedAt: \"{}\"}}\n",
        digest("nolist"),
        ago(Duration::days(1))
    );
    let ns: String = namespaces
        .iter()
        .map(|(name, annotations)| format!("---\nkind: Namespace\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n"))
        .collect();
    vec![
        ("scans/app.json", app),
        ("scans/old.json", old),
        ("scans/summaries.yaml", summaries),
        ("namespaces.yaml", ns),
        (
            "accepted-cves.txt",
            "# platform-accepted\nCVE-2024-0002 until 2099-01-01\n".to_string(),
        ),
    ]
}

fn pod(namespace: &str, image: &str) -> Value {
    review(
        "uid",
        "Pod",
        "CREATE",
        namespace,
        object_with_pod_spec("Pod", pod_spec(&[("app", image)])),
        None,
    )
}

fn text(response: &Value) -> String {
    format!("{} {}", response["status"]["message"], response["warnings"])
}

#[tokio::test]
async fn fixable_only_accepted_cves_and_grace_period() {
    let webhook = Webhook::start(
        &basic_config("policy:\n  defaults:\n    limits: {critical: 0, high: 0}\n"),
        &files(&[
            ("all", ""),
            (
                "fixable",
                "vulngate.io/count: fixable, vulngate.io/max-high: \"1\"",
            ),
            (
                "accepting",
                "vulngate.io/allow-cves: \"CVE-2024-0001, CVE-2024-0002, CVE-2026-0004 until 2099-12-31, CVE-2026-0003\"",
            ),
            (
                "expired",
                "vulngate.io/allow-cves: \"CVE-2024-0001 until 2020-01-01, CVE-2024-0002, CVE-2026-0004, CVE-2026-0003\"",
            ),
            (
                "grace",
                "vulngate.io/grace-days: \"14\", vulngate.io/allow-cves: \"CVE-2024-0001, CVE-2024-0002\"",
            ),
            (
                "nolist",
                "vulngate.io/count: fixable, vulngate.io/grace-days: \"3\"",
            ),
        ]),
    );
    let client = webhook.client(false);

    let r = webhook.review(&client, &pod("all", APP)).await;
    assert_eq!(r["allowed"], false);
    assert!(text(&r).contains("3 high vulnerabilities"), "{r}");
    assert!(text(&r).contains("1 critical vulnerabilities"), "{r}");

    // Fixable only: CVE-2024-0001 and CVE-2026-0004 are high and fixable (2 > 1); the
    // unfixable CVE-2024-0002 does not count.
    let r = webhook.review(&client, &pod("fixable", APP)).await;
    assert!(
        text(&r).contains("2 high vulnerabilities, over the limit of 1"),
        "{r}"
    );

    // All four accepted: allowed, and the response says what was not counted.
    let r = webhook.review(&client, &pod("accepting", APP)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        text(&r).contains(
            "CVE-2024-0001 (accepted by annotation vulngate.io/allow-cves on namespace accepting)"
        ),
        "{r}"
    );

    // An acceptance whose date has passed counts again.
    let r = webhook.review(&client, &pod("expired", APP)).await;
    assert_eq!(r["allowed"], false);
    assert!(text(&r).contains("1 high vulnerabilities"), "{r}");
    assert!(
        text(&r).contains("CVE-2024-0001 counts again: its acceptance expired on 2020-01-01"),
        "{r}"
    );

    // Grace period boundary: 13 days 23 hours old is not counted yet (a warning),
    // 14 days 1 hour old counts.
    let r = webhook.review(&client, &pod("grace", APP)).await;
    assert_eq!(r["allowed"], false);
    let t = text(&r);
    assert!(
        t.contains("within the 14-day grace period: CVE-2026-0003"),
        "{t}"
    );
    assert!(t.contains("1 high vulnerabilities"), "{t}");
    assert!(!t.contains("critical vulnerabilities"), "{t}");

    // A scanner without the data: the rules are reported as not applied, all counts.
    let r = webhook.review(&client, &pod("nolist", NO_LIST)).await;
    assert_eq!(r["allowed"], false);
    let t = text(&r);
    assert!(t.contains("2 high vulnerabilities"), "{t}");
    assert!(t.contains("count: fixable could not be applied"), "{t}");
    assert!(t.contains("grace period could not be applied"), "{t}");
}

#[tokio::test]
async fn cluster_wide_accepted_cves_from_a_file() {
    let webhook = Webhook::start(
        &basic_config(
            "policy:\n  acceptedCvesFile: accepted-cves.txt\n  defaults:\n    allowCves: [\"CVE-2024-0001\"]\n    limits: {high: 1}\n",
        ),
        &files(&[("plain", "")]),
    );
    let client = webhook.client(true);
    // CVE-2024-0001 (config) and CVE-2024-0002 (file) accepted: 1 high left = limit.
    let r = webhook.review(&client, &pod("plain", APP)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(text(&r).contains("the cluster-wide list"), "{r}");
}

#[tokio::test]
async fn scans_older_than_max_scan_age_count_as_unscanned() {
    let webhook = Webhook::start(
        &basic_config(""),
        &files(&[
            ("week", "vulngate.io/max-scan-age: 7d"),
            ("month", "vulngate.io/max-scan-age: 30d"),
        ]),
    );
    let client = webhook.client(false);
    let r = webhook.review(&client, &pod("week", OLD_SCAN)).await;
    assert_eq!(r["allowed"], false);
    assert!(
        text(&r).contains("longer ago than max-scan-age 7days"),
        "{r}"
    );
    let r = webhook.review(&client, &pod("month", OLD_SCAN)).await;
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test]
async fn break_glass_before_and_after_its_time() {
    let future = (OffsetDateTime::now_utc() + Duration::hours(2))
        .format(&Rfc3339)
        .expect("format");
    let past = ago(Duration::hours(2));
    let webhook = Webhook::start(
        &basic_config(""),
        &files(&[
            (
                "open",
                &format!("vulngate.io/break-glass-until: \"{future}\""),
            ),
            (
                "closed",
                &format!("vulngate.io/break-glass-until: \"{past}\""),
            ),
            ("garbled", "vulngate.io/break-glass-until: tomorrow"),
        ]),
    );
    let client = webhook.client(false);
    let r = webhook.review(&client, &pod("open", APP)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(text(&r).contains("allowed by break-glass until"), "{r}");
    assert!(
        r["auditAnnotations"]["break-glass-until"].is_string(),
        "{r}"
    );

    let r = webhook.review(&client, &pod("closed", APP)).await;
    assert_eq!(r["allowed"], false);
    assert!(text(&r).contains("has expired and is ignored"), "{r}");
    let r = webhook.review(&client, &pod("garbled", APP)).await;
    assert_eq!(r["allowed"], false);
    assert!(text(&r).contains("is not an RFC 3339 time"), "{r}");
}

fn controller_pod(namespace: &str, username: &str) -> Value {
    let mut object = object_with_pod_spec("Pod", pod_spec(&[("app", APP)]));
    object["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-5d9c", "uid": "1", "controller": true
    }]);
    let mut r = review("uid", "Pod", "CREATE", namespace, object, None);
    r["request"]["userInfo"]["username"] = json!(username);
    r
}

#[tokio::test]
async fn pods_recreated_by_controllers_warn_but_forged_owners_do_not() {
    let webhook = Webhook::start(
        &basic_config(""),
        &files(&[
            ("prod", ""),
            ("strictpods", "vulngate.io/controller-pods: enforce"),
        ]),
    );
    let client = webhook.client(false);
    let rs = "system:serviceaccount:kube-system:replicaset-controller";

    let r = webhook.review(&client, &controller_pod("prod", rs)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        text(&r).contains("the replicaset-controller created this pod"),
        "{r}"
    );
    assert_eq!(
        r["auditAnnotations"]["controller-pod"],
        "replicaset-controller"
    );

    // The same ownerReference written by an ordinary user proves nothing.
    let r = webhook
        .review(&client, &controller_pod("prod", "mallory"))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    // The controller's account without a matching owner is judged as any pod.
    let mut orphan = controller_pod("prod", rs);
    orphan["request"]["object"]["metadata"]["ownerReferences"][0]["kind"] = json!("Job");
    assert_eq!(webhook.review(&client, &orphan).await["allowed"], false);
    // A namespace may enforce on controller pods too.
    let r = webhook
        .review(&client, &controller_pod("strictpods", rs))
        .await;
    assert_eq!(r["allowed"], false, "{r}");

    let metrics = webhook.ops_get("/metrics").1;
    assert!(
        metrics.contains("vulngate_controller_pods_warned_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_controller_pod_seen_by_the_pinning_and_the_validating_webhook_counts_once() {
    let webhook = Webhook::start(
        &basic_config("pinDigests: {enabled: true}\n"),
        &files(&[("prod", "")]),
    );
    let client = webhook.client(false);
    let pod = controller_pod(
        "prod",
        "system:serviceaccount:kube-system:replicaset-controller",
    );

    // The API server calls the mutating webhook first, then the validating one.
    let pinned = webhook.answer(&client, "/mutate", &pod).await;
    assert_eq!(pinned["response"]["allowed"], true, "{pinned}");
    let validated = webhook.review(&client, &pod).await;
    assert_eq!(validated["allowed"], true, "{validated}");
    assert!(text(&validated).contains("the replicaset-controller created this pod"));

    let metrics = webhook.ops_get("/metrics").1;
    assert!(
        metrics.contains("vulngate_controller_pods_warned_total 1\n"),
        "one pod, one count: {metrics}"
    );
}
