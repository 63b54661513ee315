//! End to end: the `vulngate` binary with routes to the `acr`, `hss` and `harbor`
//! scanners, each pointed at its in-test vendor server (which verifies every
//! signature or credential on its own) by an endpoint override in the config.
//! Pods are denied and allowed as the scanners' counts say (and, for `count: fixable`
//! and `allow-cves`, as their vulnerability lists say), and `onError` decides when a
//! scanner is down.

mod support;

#[path = "support/alibaba_server.rs"]
mod alibaba_server;
#[path = "support/harbor_server.rs"]
mod harbor_server;
#[path = "support/hss_server.rs"]
mod hss_server;

use serde_json::{Value, json};
use support::webhook::{Webhook, object_with_pod_spec, pod_spec, review};

const ACR_HOST: &str = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
const SWR_HOST: &str = "swr.cn-north-4.myhuaweicloud.com";
const HARBOR_HOST: &str = "harbor.example.test";

const ACR_KEY_ID: &str = "LTAI-e2e-key-id";
const ACR_SECRET: &str = "acr-e2e-secret-value-5d4c";

/// Digests of the test images: `bad` is over the `limits` namespace's max-high of 5,
/// `good` is under it.
const BAD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GOOD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
/// A Harbor image with one critical vulnerability and nothing else.
const CRIT: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
/// Harbor images with 2 high and 1 low: `NOFIX`'s high ones have no fix, `FIXED` has
/// a fix for one of them.
const NOFIX: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
const FIXED: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
/// An ACR image whose only high vulnerability is CVE-2024-7777 (and 1 medium).
const ACCEPTED: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const ACCEPTED_CVE: &str = "CVE-2024-7777";

const NAMESPACES: &str = r#"---
kind: Namespace
metadata:
  name: limits
  annotations: {vulngate.io/max-high: "5"}
---
kind: Namespace
metadata:
  name: critical
  annotations: {vulngate.io/max-critical: "0", vulngate.io/max-high: "50"}
---
kind: Namespace
metadata:
  name: fixable
  annotations: {vulngate.io/count: fixable}
---
kind: Namespace
metadata:
  name: accepting
  annotations: {vulngate.io/allow-cves: "CVE-2024-7777 until 2099-12-31"}
---
kind: Namespace
metadata:
  name: strict
"#;

struct Servers {
    acr: alibaba_server::Server,
    hss: hss_server::HssServer,
    harbor: harbor_server::HarborServer,
}

fn acr_summary(high: u64) -> Value {
    let mut s = alibaba_server::fixture("get_repo_tag_scan_summary.json");
    s["HighSeverity"] = json!(high);
    s["MediumSeverity"] = json!(1);
    s["LowSeverity"] = json!(0);
    s["UnknownSeverity"] = json!(0);
    s["TotalSeverity"] = json!(high + 1);
    s
}

/// The three vendor servers, each knowing a `bad` image (12 high) and a `good`
/// one (3 high).
async fn servers() -> Servers {
    let acr = alibaba_server::Server::start().await;
    acr.with(|d| {
        d.keys.insert(ACR_KEY_ID.into(), (ACR_SECRET.into(), None));
        d.instances = vec![("cri-demo".into(), vec![ACR_HOST.into()])];
        d.repos.insert(
            ("cri-demo".into(), "team".into(), "app".into()),
            "crr-app".into(),
        );
        d.tags.insert(
            "crr-app".into(),
            vec![
                ("bad".into(), BAD.into()),
                ("good".into(), GOOD.into()),
                ("accepted".into(), ACCEPTED.into()),
            ],
        );
        d.scan_results.insert(
            ("crr-app".into(), "accepted".into()),
            vec![
                alibaba_server::scan_result(ACCEPTED_CVE, "High", "1.1.1w"),
                alibaba_server::scan_result("CVE-2024-8888", "Medium", ""),
            ],
        );
        for (tag, high) in [("bad", 12), ("good", 3), ("accepted", 1)] {
            d.scan_status
                .insert(("crr-app".into(), tag.into()), "COMPLETE".into());
            d.summaries
                .insert(("crr-app".into(), tag.into()), acr_summary(high));
        }
    });

    let hss = hss_server::HssServer::start().await;
    hss.add_image(
        hss_server::record("org", "app", "bad", &format!("sha256:{BAD}"), "success"),
        (12, 2, 1, 0),
    );
    hss.add_image(
        hss_server::record("org", "app", "good", &format!("sha256:{GOOD}"), "success"),
        (3, 2, 1, 0),
    );

    let harbor = harbor_server::HarborServer::start().await;
    for (hex, summary) in [
        (
            BAD,
            json!({"total": 14, "summary": {"High": 12, "Medium": 2}}),
        ),
        (GOOD, json!({"total": 4, "summary": {"High": 3, "Low": 1}})),
        (CRIT, json!({"total": 1, "summary": {"Critical": 1}})),
        (
            NOFIX,
            json!({"total": 3, "fixable": 1, "summary": {"High": 2, "Low": 1}}),
        ),
        (
            FIXED,
            json!({"total": 3, "fixable": 2, "summary": {"High": 2, "Low": 1}}),
        ),
    ] {
        let digest = format!("sha256:{hex}");
        harbor.add(
            "library",
            "app",
            &digest,
            harbor_server::scanned(&digest, "Success", Some(summary)),
        );
    }
    for (hex, fix) in [(NOFIX, ""), (FIXED, "2.0.1")] {
        harbor.add_report(
            "library",
            "app",
            &format!("sha256:{hex}"),
            json!([
                harbor_server::finding("CVE-2024-0101", "High", ""),
                harbor_server::finding("CVE-2024-0102", "High", fix),
                harbor_server::finding("CVE-2024-0103", "Low", "1.0.1"),
            ]),
        );
    }
    Servers { acr, hss, harbor }
}

/// The config: three routes, each scanner at its `endpoint`/`url`, credentials in
/// files of the test directory (paths relative to the config file).
fn config(acr_url: &str, hss_url: &str, harbor_url: &str, on_error: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls: {{generateDir: tls}}
deadline: 5s
namespacesFile: namespaces.yaml
policy:
  defaults:
    limits: {{high: 0}}
    onError: {on_error}
registries:
  - match: "*.cr.aliyuncs.com"
    scanner:
      acr:
        region: cn-hangzhou
        endpoint: "{acr_url}"
        retryBudget: 200ms
        credentials:
          accessKeyIdFile: secrets/acr-id
          accessKeySecretFile: secrets/acr-secret
    registry: {{resolve: false}}
  - match: "swr.*.myhuaweicloud.com"
    scanner:
      hss:
        region: {region}
        projectId: "{project}"
        endpoint: "{hss_url}"
        auth: {{akSk: {{accessKey: {{file: secrets/hss-ak}}, secretKey: {{file: secrets/hss-sk}}}}}}
        retry: {{maxRetries: 1, initialBackoff: 10ms, maxBackoff: 50ms}}
    registry: {{resolve: false}}
  - match: "{HARBOR_HOST}"
    scanner:
      harbor:
        url: "{harbor_url}"
        username: "{robot}"
        password: {{file: secrets/harbor-robot}}
        retry: {{maxRetries: 1, initialBackoff: 10ms, maxBackoff: 50ms}}
    registry: {{resolve: false}}
log: {{format: json, level: debug}}
"#,
        region = hss_server::REGION,
        project = hss_server::PROJECT,
        robot = harbor_server::ROBOT,
    )
}

/// The credential files (as a mounted Secret would hold them) and the namespaces.
fn files() -> Vec<(&'static str, String)> {
    vec![
        ("secrets/acr-id", format!("{ACR_KEY_ID}\n")),
        ("secrets/acr-secret", format!("{ACR_SECRET}\n")),
        ("secrets/hss-ak", format!("{}\n", hss_server::AK)),
        ("secrets/hss-sk", format!("{}\n", hss_server::SK)),
        (
            "secrets/harbor-robot",
            format!("{}\n", harbor_server::ROBOT_SECRET),
        ),
        ("namespaces.yaml", NAMESPACES.to_string()),
    ]
}

/// Every secret a credential file holds.
const SECRETS: [&str; 3] = [ACR_SECRET, hss_server::SK, harbor_server::ROBOT_SECRET];

fn acr_image(hex: &str) -> String {
    format!("{ACR_HOST}/team/app@sha256:{hex}")
}

fn hss_image(hex: &str) -> String {
    format!("{SWR_HOST}/org/app@sha256:{hex}")
}

fn harbor_image(hex: &str) -> String {
    format!("{HARBOR_HOST}/library/app@sha256:{hex}")
}

fn pod(uid: &str, namespace: &str, image: &str) -> Value {
    review(
        uid,
        "Pod",
        "CREATE",
        namespace,
        object_with_pod_spec("Pod", pod_spec(&[("app", image)])),
        None,
    )
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one sample line of the metrics text, e.g.
/// `vulngate_scanner_calls_total{scanner="acr",outcome="ok"}`.
fn metric(metrics: &str, sample: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(sample)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

fn assert_no_secrets(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "a credential file's content appears in {what}: {text}"
        );
    }
}

#[tokio::test]
async fn scanner_counts_deny_and_allow_pods() {
    let s = servers().await;
    let webhook = Webhook::start(
        &config(&s.acr.url, &s.hss.url(), &s.harbor.url(), "deny"),
        &files(),
    );
    let client = webhook.client(false);
    let mut responses = Vec::new();

    let scanners = [
        ("acr", acr_image as fn(&str) -> String),
        ("hss", hss_image),
        ("harbor", harbor_image),
    ];
    for (kind, image) in scanners {
        // 12 high, over the namespace's max-high of 5: denied, naming count and limit.
        let r = webhook
            .review(&client, &pod(&format!("{kind}-bad"), "limits", &image(BAD)))
            .await;
        assert_eq!(r["allowed"], false, "{kind}: {r}");
        let text = message(&r);
        assert!(
            text.contains(
                "12 high vulnerabilities, over the limit of 5 set by annotation vulngate.io/max-high on namespace limits"
            ),
            "{kind}: {text}"
        );
        assert!(text.contains(BAD), "names the digest: {kind}: {text}");
        responses.push(r);

        // 3 high, under the limit: allowed, with nothing to warn about.
        let r = webhook
            .review(
                &client,
                &pod(&format!("{kind}-good"), "limits", &image(GOOD)),
            )
            .await;
        assert_eq!(r["allowed"], true, "{kind}: {r}");
        assert!(warnings(&r).is_empty(), "{kind}: {r}");
        responses.push(r);
    }

    // ACR has no critical level: a max-critical limit cannot be enforced on its
    // images, and says so instead of reading a zero.
    let r = webhook
        .review(&client, &pod("acr-critical", "critical", &acr_image(GOOD)))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let w = warnings(&r);
    assert!(
        w.iter().any(|w| w.contains(
            "limit max-critical (set by annotation vulngate.io/max-critical on namespace critical) cannot be enforced: the acr scanner does not report critical counts"
        )),
        "{r}"
    );
    responses.push(r);

    // Harbor does report critical counts: the same limit is enforced.
    let r = webhook
        .review(
            &client,
            &pod("harbor-critical", "critical", &harbor_image(CRIT)),
        )
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let text = message(&r);
    assert!(
        text.contains("1 critical vulnerabilities, over the limit of 0"),
        "{text}"
    );
    assert!(!text.contains("cannot be enforced"), "{text}");
    responses.push(r);

    // Each vendor server answered the binary's (signed or authenticated) calls.
    assert!(s.acr.count("GetRepoTagScanSummary") >= 2);
    assert!(
        s.acr.with(|d| d.rejected.is_empty()),
        "ACR rejected a signature"
    );
    assert!(s.hss.calls("ListImageVulnerabilities") > 0);
    assert_eq!(s.hss.auth_failures(), 0, "HSS rejected a signature");
    assert!(s.harbor.requests() >= 3);

    let (status, metrics) = webhook.ops_get("/metrics");
    assert_eq!(status, 200);
    for kind in ["acr", "hss", "harbor"] {
        let sample = format!("vulngate_scanner_calls_total{{scanner=\"{kind}\",outcome=\"ok\"}}");
        let calls = metric(&metrics, &sample).unwrap_or_else(|| panic!("no {sample}: {metrics}"));
        assert!(calls >= 2.0, "{sample} = {calls}");
        let failed =
            format!("vulngate_scanner_calls_total{{scanner=\"{kind}\",outcome=\"unavailable\"}}");
        assert_eq!(metric(&metrics, &failed).unwrap_or(0.0), 0.0, "{metrics}");
    }

    for r in &responses {
        assert_no_secrets("a response", &r.to_string());
    }
    assert_no_secrets("the server's logs", &webhook.stderr());
    assert_no_secrets("the metrics", &metrics);
}

#[tokio::test]
async fn vulnerability_lists_serve_fixable_only_and_accepted_cves() {
    let s = servers().await;
    let webhook = Webhook::start(
        &config(&s.acr.url, &s.hss.url(), &s.harbor.url(), "deny"),
        &files(),
    );
    let client = webhook.client(false);

    // Harbor, `count: fixable` under the default max-high of 0: the two high
    // vulnerabilities of NOFIX have no fix, so none counts.
    let r = webhook
        .review(&client, &pod("nofix", "fixable", &harbor_image(NOFIX)))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        !r.to_string().contains("could not be applied"),
        "Harbor's list serves the rule: {r}"
    );
    // FIXED has a fix for one of them: that one counts.
    let r = webhook
        .review(&client, &pod("fixed", "fixable", &harbor_image(FIXED)))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let text = message(&r);
    assert!(
        text.contains("1 high vulnerabilities, over the limit of 0"),
        "{text}"
    );
    // Without the rule both count.
    let r = webhook
        .review(&client, &pod("nofix-all", "strict", &harbor_image(NOFIX)))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("2 high vulnerabilities"), "{r}");

    // ACR, `allow-cves`: the image's only high vulnerability is accepted.
    let r = webhook
        .review(
            &client,
            &pod("acr-accepted", "accepting", &acr_image(ACCEPTED)),
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r.to_string().contains(&format!(
            "{ACCEPTED_CVE} (accepted by annotation vulngate.io/allow-cves on namespace accepting)"
        )),
        "{r}"
    );
    let r = webhook
        .review(&client, &pod("acr-strict", "strict", &acr_image(ACCEPTED)))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("1 high vulnerabilities"), "{r}");
    // An ACR image without a list: the acceptance cannot be applied, all counts.
    let r = webhook
        .review(&client, &pod("acr-nolist", "accepting", &acr_image(GOOD)))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r.to_string()
            .contains("accepted vulnerabilities could not be applied"),
        "{r}"
    );

    assert!(s.acr.count("ListRepoTagScanResult") >= 1);
    assert!(
        s.acr.with(|d| d.rejected.is_empty()),
        "ACR rejected a signature"
    );
    assert!(s.harbor.report_requests() >= 2);
    assert_no_secrets("the server's logs", &webhook.stderr());
}

/// A URL on which nothing listens (a stopped scanner).
fn stopped_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn on_error_decides_when_scanners_are_down() {
    let s = servers().await;
    // Faulty servers: every call answers a server error.
    s.acr.with(|d| {
        for action in [
            "ListInstance",
            "ListInstanceEndpoint",
            "GetRepository",
            "ListRepoTag",
            "GetRepoTagScanStatus",
            "GetRepoTagScanSummary",
        ] {
            d.errors.insert(
                action.into(),
                (
                    500,
                    json!({"Code": "InternalError", "Message": "The request processing has failed due to some unknown error.", "RequestId": "E2E-500"}),
                ),
            );
        }
    });
    let server_error = |code: &str| json!({"error_code": code, "error_msg": "internal error", "errors": [{"code": code, "message": "internal error"}]});
    s.hss.set_fault(Some(hss_server::Fault::Status {
        status: 503,
        body: server_error("HSS.0500"),
    }));
    s.harbor.set_fault(Some(harbor_server::Fault::Status {
        status: 503,
        body: server_error("SERVICE_UNAVAILABLE"),
    }));
    let stopped = stopped_url();

    let cases = [
        ("faulty", s.acr.url.clone(), s.hss.url(), s.harbor.url()),
        ("stopped", stopped.clone(), stopped.clone(), stopped.clone()),
    ];
    for (down, acr_url, hss_url, harbor_url) in &cases {
        for on_error in ["deny", "allow"] {
            let webhook = Webhook::start(&config(acr_url, hss_url, harbor_url, on_error), &files());
            let client = webhook.client(true);
            let scanners = [
                ("acr", acr_image as fn(&str) -> String),
                ("hss", hss_image),
                ("harbor", harbor_image),
            ];
            for (kind, image) in scanners {
                // The good image: its counts would pass, but nobody can say so.
                let r = webhook
                    .review(
                        &client,
                        &pod(&format!("{kind}-{down}"), "limits", &image(GOOD)),
                    )
                    .await;
                let context = format!("{kind} {down}, onError {on_error}: {r}");
                let unavailable = format!("{kind} unavailable");
                if on_error == "deny" {
                    assert_eq!(r["allowed"], false, "{context}");
                    let text = message(&r);
                    assert!(text.contains(&unavailable), "{context}");
                    assert!(text.contains("(onError: deny)"), "{context}");
                } else {
                    assert_eq!(r["allowed"], true, "{context}");
                    let w = warnings(&r);
                    assert!(
                        w.iter()
                            .any(|w| w.contains(&unavailable) && w.contains("(onError: allow)")),
                        "{context}"
                    );
                }
                assert_no_secrets("a response", &r.to_string());
            }

            let (status, metrics) = webhook.ops_get("/metrics");
            assert_eq!(status, 200);
            for kind in ["acr", "hss", "harbor"] {
                let sample = format!(
                    "vulngate_scanner_calls_total{{scanner=\"{kind}\",outcome=\"unavailable\"}}"
                );
                let calls =
                    metric(&metrics, &sample).unwrap_or_else(|| panic!("no {sample}: {metrics}"));
                assert!(calls >= 1.0, "{sample} = {calls}");
                let ok =
                    format!("vulngate_scanner_calls_total{{scanner=\"{kind}\",outcome=\"ok\"}}");
                assert_eq!(metric(&metrics, &ok).unwrap_or(0.0), 0.0, "{metrics}");
            }
            assert_no_secrets("the server's logs", &webhook.stderr());
        }
    }
}
