//! The `acr` scanner against an in-test ACR EE OpenAPI server that verifies every
//! signature on its own and answers with the documented shapes.

#[path = "support/alibaba_server.rs"]
mod alibaba_server;

use std::time::{Duration, Instant};

use alibaba_server::{Server, fixture, scan_result};
use serde_json::json;
use vulngate::config::alibaba::AcrConfig;
use vulngate::domain::scan_error::ScanError;
use vulngate::domain::summary::{ScanStatus, Severity, SeverityCounts};
use vulngate::image::ImageRef;
use vulngate::scan::acr::AcrScanner;
use vulngate::scan::{ScanTarget, Scanner};

const HOST: &str = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
const HEX: &str = "815386ebbe9a3490f38785ab11bda34ec8dacf4634af77b8912832d4f85dca04";
const SECRET: &str = "test-secret-value-9f8e";

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
}

fn digest(hex: &str) -> String {
    format!("sha256:{hex}")
}

fn other_hex(n: u32) -> String {
    format!("{n:064x}")
}

async fn setup() -> Setup {
    let server = Server::start().await;
    server.with(|d| {
        d.keys.insert("LTAI-test".into(), (SECRET.into(), None));
        d.instances = vec![
            (
                "cri-other".into(),
                vec!["other-registry.cn-hangzhou.cr.aliyuncs.com".into()],
            ),
            (
                "cri-demo".into(),
                vec![
                    HOST.into(),
                    "demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com".into(),
                ],
            ),
        ];
        d.repos.insert(
            ("cri-demo".into(), "team".into(), "app".into()),
            "crr-app".into(),
        );
        // 150 tags: the digest-only lookup has to page ListRepoTag.
        let mut tags: Vec<(String, String)> = (0..149)
            .map(|i| (format!("v{i}"), other_hex(i + 1)))
            .collect();
        tags.push(("1.24".into(), HEX.into()));
        d.tags.insert("crr-app".into(), tags);
        d.scan_status
            .insert(("crr-app".into(), "1.24".into()), "COMPLETE".into());
        d.summaries.insert(
            ("crr-app".into(), "1.24".into()),
            fixture("get_repo_tag_scan_summary.json"),
        );
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id"), "LTAI-test\n").unwrap();
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
    Setup { server, dir }
}

impl Setup {
    fn config(&self, extra: &str) -> AcrConfig {
        let yaml = format!(
            "region: cn-hangzhou\nendpoint: {}\ncredentials:\n  accessKeyIdFile: {}\n  accessKeySecretFile: {}\n{extra}",
            self.server.url,
            self.dir.path().join("id").display(),
            self.dir.path().join("secret").display(),
        );
        serde_saphyr::from_str(&yaml).unwrap()
    }

    fn scanner(&self, extra: &str) -> AcrScanner {
        AcrScanner::with_env(&self.config(extra), &|_| None).unwrap()
    }
}

async fn summary(
    scanner: &AcrScanner,
    image: &str,
    hex: &str,
) -> Result<vulngate::domain::summary::ScanSummary, ScanError> {
    let image = ImageRef::parse(image).unwrap();
    let digest = digest(hex);
    scanner
        .summary(&ScanTarget {
            image: &image,
            digest: &digest,
        })
        .await
}

fn tagged() -> String {
    format!("{HOST}/team/app:1.24")
}

#[tokio::test]
async fn complete_scan_is_normalized_without_critical() {
    let s = setup().await;
    let scanner = s.scanner("");
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.scanner, "acr");
    assert_eq!(got.status, ScanStatus::Complete);
    // The example answer of the vendor's page: High 22, Medium 81, Low 89, Unknown 4.
    assert_eq!(got.counts.critical, None, "ACR has no critical level");
    assert_eq!(got.counts.high, Some(22));
    assert_eq!(got.counts.medium, Some(81));
    assert_eq!(got.counts.low, Some(89));
    assert_eq!(got.counts.unknown, Some(4));
    assert_eq!(got.counts.total(), 196);

    // The host was found among the second instance's domains.
    assert_eq!(s.server.count("ListInstance"), 1);
    assert_eq!(s.server.count("ListInstanceEndpoint"), 2);
    assert_eq!(s.server.count("GetRepository"), 1);
    assert_eq!(s.server.count("GetRepoTag"), 1);
    let seen = s.server.with(|d| d.seen.clone());
    assert!(
        seen.iter()
            .all(|r| r.signature == "acs3" && r.access_key_id == "LTAI-test")
    );
    let summary_call = seen
        .iter()
        .find(|r| r.action == "GetRepoTagScanSummary")
        .unwrap();
    assert_eq!(summary_call.params["InstanceId"], "cri-demo");
    assert_eq!(summary_call.params["RepoId"], "crr-app");
    assert_eq!(summary_call.params["Tag"], "1.24");
    assert_eq!(summary_call.params["Digest"], HEX);

    // Ids are cached: a second lookup only asks for the tag, status and summary.
    summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(s.server.count("ListInstance"), 1);
    assert_eq!(s.server.count("GetRepository"), 1);
    assert_eq!(s.server.count("GetRepoTagScanSummary"), 2);
    assert!(s.server.with(|d| d.rejected.is_empty()));
}

#[tokio::test]
async fn v1_signature_with_an_sts_security_token() {
    let s = setup().await;
    s.server.with(|d| {
        d.keys.insert(
            "STS.test".into(),
            (SECRET.into(), Some("CAIS-test-token/+==".into())),
        );
    });
    std::fs::write(s.dir.path().join("id"), "STS.test").unwrap();
    std::fs::write(s.dir.path().join("token"), "CAIS-test-token/+==").unwrap();
    let extra = "signatureVersion: v1\ninstanceId: cri-demo\n";
    let mut config = s.config(extra);
    config.credentials.security_token_file = Some(s.dir.path().join("token"));
    let scanner = AcrScanner::with_env(&config, &|_| None).unwrap();
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(got.counts.high, Some(22));
    let seen = s.server.with(|d| d.seen.clone());
    assert!(
        seen.iter()
            .all(|r| r.signature == "v1" && r.access_key_id == "STS.test")
    );
    // instanceId in the config: no discovery.
    assert_eq!(s.server.count("ListInstance"), 0);

    // The same token file read by the ACS3 signer goes into signed headers.
    let mut config = s.config("instanceId: cri-demo\n");
    config.credentials.security_token_file = Some(s.dir.path().join("token"));
    let scanner = AcrScanner::with_env(&config, &|_| None).unwrap();
    assert_eq!(
        summary(&scanner, &tagged(), HEX).await.unwrap().status,
        ScanStatus::Complete
    );
    assert!(s.server.with(|d| d.rejected.is_empty()));
}

#[tokio::test]
async fn digest_only_reference_finds_its_tag_across_pages() {
    let s = setup().await;
    let scanner = s.scanner("");
    let got = summary(&scanner, &format!("{HOST}/team/app@sha256:{HEX}"), HEX)
        .await
        .unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(got.counts.low, Some(89));
    assert_eq!(s.server.count("GetRepoTag"), 0);
    assert_eq!(
        s.server.count("ListRepoTag"),
        2,
        "the tag is on the second page"
    );
}

#[tokio::test]
async fn moved_tag_is_not_judged_by_the_new_image() {
    let s = setup().await;
    let scanner = s.scanner("");
    // The pod names 1.24, but at a digest that no tag points at any more.
    let got = summary(&scanner, &tagged(), &"e".repeat(64)).await.unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);
    assert_eq!(s.server.count("GetRepoTagScanSummary"), 0);
}

#[tokio::test]
async fn scanning_failed_and_never_scanned() {
    let s = setup().await;
    let scanner = s.scanner("instanceId: cri-demo\n");
    for (status, expected) in [
        ("SCANNING", ScanStatus::Scanning),
        ("RETRYING", ScanStatus::Scanning),
        ("FAILED", ScanStatus::Failed),
    ] {
        s.server.with(|d| {
            d.scan_status
                .insert(("crr-app".into(), "1.24".into()), status.into())
        });
        let got = summary(&scanner, &tagged(), HEX).await.unwrap();
        assert_eq!(got.status, expected, "{status}");
        assert_eq!(got.counts.total(), 0);
    }
    assert_eq!(s.server.count("GetRepoTagScanSummary"), 0);

    s.server.with(|d| d.scan_status.clear());
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);
    assert_eq!(s.server.count("CreateRepoTagScanTask"), 0);

    // With scanOnMissing the scan is asked for, and the image is being scanned.
    let scanner = s.scanner("instanceId: cri-demo\nscanOnMissing: true\n");
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::Scanning);
    assert_eq!(s.server.count("CreateRepoTagScanTask"), 1);
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::Scanning);
    assert_eq!(s.server.count("CreateRepoTagScanTask"), 1, "asked once");
}

#[tokio::test]
async fn unknown_repository_is_not_scanned_and_unknown_host_is_a_config_error() {
    let s = setup().await;
    let scanner = s.scanner("");
    let got = summary(&scanner, &format!("{HOST}/team/nope:1"), HEX)
        .await
        .unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);

    let err = summary(
        &scanner,
        "ghost-registry.cn-hangzhou.cr.aliyuncs.com/team/app:1.24",
        HEX,
    )
    .await
    .unwrap_err();
    match err {
        ScanError::Config { message, .. } => {
            assert!(
                message.contains("ghost-registry.cn-hangzhou.cr.aliyuncs.com"),
                "{message}"
            );
            assert!(message.contains("instanceId"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_is_retried_within_the_budget() {
    let s = setup().await;
    s.server.with(|d| {
        d.throttle.insert("GetRepoTagScanSummary".into(), 2);
        d.unavailable.insert("GetRepoTagScanStatus".into(), 1);
    });
    let scanner = s.scanner("instanceId: cri-demo\nretryBudget: 5s\n");
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(
        s.server.count("GetRepoTagScanSummary"),
        3,
        "two throttled, one answered"
    );
    assert_eq!(
        s.server.count("GetRepoTagScanStatus"),
        2,
        "503 retried once"
    );
}

#[tokio::test]
async fn throttling_beyond_the_budget_is_unavailable_with_the_request_id() {
    let s = setup().await;
    s.server.with(|d| {
        d.throttle.insert("GetRepoTagScanSummary".into(), 1000);
    });
    let scanner = s.scanner("instanceId: cri-demo\nretryBudget: 700ms\n");
    let started = Instant::now();
    let err = summary(&scanner, &tagged(), HEX).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "stopped at the budget: {elapsed:?}"
    );
    let attempts = s.server.count("GetRepoTagScanSummary");
    assert!(attempts >= 2, "retried at least once: {attempts}");
    match err {
        ScanError::Unavailable { message, .. } => {
            assert!(message.contains("Throttling.User"), "{message}");
            assert!(message.contains("TEST-REQ-"), "RequestId kept: {message}");
            assert!(
                message.contains(&format!("{attempts} attempts")),
                "{message}"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_permission_names_the_ram_action() {
    let s = setup().await;
    s.server.with(|d| {
        d.errors.insert(
            "GetRepoTagScanSummary".into(),
            (
                403,
                json!({"RequestId": "RID-403", "Code": "Forbidden.RAM",
                         "Message": "User not authorized to operate on the specified resource."}),
            ),
        );
    });
    let scanner = s.scanner("instanceId: cri-demo\n");
    match summary(&scanner, &tagged(), HEX).await.unwrap_err() {
        ScanError::Config { message, .. } => {
            assert!(message.contains("cr:GetScanCount"), "{message}");
            assert!(message.contains("GetRepoTagScanSummary"), "{message}");
            assert!(message.contains("RID-403"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert_eq!(s.server.count("GetRepoTagScanSummary"), 1, "not retried");

    // A denial that names its action is reported with that name.
    s.server.with(|d| {
        d.errors.insert(
            "GetRepoTagScanStatus".into(),
            (403, json!({"RequestId": "RID-2", "Code": "NoPermission", "Message": "denied",
                         "AccessDeniedDetail": {"AuthAction": "cr:GetScan", "PolicyType": "AccountLevelIdentityBasedPolicy"}})),
        );
    });
    match summary(&scanner, &tagged(), HEX).await.unwrap_err() {
        ScanError::Config { message, .. } => assert!(message.contains("cr:GetScan "), "{message}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_secret_is_a_config_error_that_never_shows_the_secret() {
    let s = setup().await;
    std::fs::write(s.dir.path().join("secret"), "not-the-right-secret").unwrap();
    let scanner = s.scanner("instanceId: cri-demo\n");
    let err = summary(&scanner, &tagged(), HEX).await.unwrap_err();
    let text = format!("{err} {err:?} {scanner:?}");
    match &err {
        ScanError::Config { message, .. } => {
            assert!(message.contains("SignatureDoesNotMatch"), "{message}")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(!text.contains("not-the-right-secret"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(s.server.with(|d| d.rejected.len()) == 1);
}

#[tokio::test]
async fn server_errors_and_slow_replies_are_unavailable() {
    let s = setup().await;
    s.server.with(|d| {
        d.errors.insert(
            "GetRepoTagScanSummary".into(),
            (
                500,
                json!({"RequestId": "RID-500", "Code": "SystemError", "Message": "Unknown error."}),
            ),
        );
    });
    let scanner = s.scanner("instanceId: cri-demo\ntimeout: 300ms\n");
    match summary(&scanner, &tagged(), HEX).await.unwrap_err() {
        ScanError::Unavailable { message, .. } => {
            assert!(
                message.contains("SystemError") && message.contains("RID-500"),
                "{message}"
            )
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(
        s.server.count("GetRepoTagScanSummary"),
        1,
        "a 500 is not retried"
    );

    s.server.with(|d| {
        d.errors.clear();
        d.delay
            .insert("GetRepoTagScanStatus".into(), Duration::from_secs(2));
    });
    let started = Instant::now();
    match summary(&scanner, &tagged(), HEX).await.unwrap_err() {
        ScanError::Unavailable { message, .. } => {
            assert!(
                message.contains("GetRepoTagScanStatus") && message.contains("timed out"),
                "{message}"
            )
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn rrsa_exchanges_the_token_file_and_refreshes_before_expiry() {
    let s = setup().await;
    let token_file = s.dir.path().join("rrsa-token");
    std::fs::write(&token_file, "oidc-token-A").unwrap();
    let yaml = format!(
        "region: cn-hangzhou\nendpoint: {url}\ninstanceId: cri-demo\ncredentials:\n  rrsa:\n    roleArn: acs:ram::1:role/vulngate\n    oidcProviderArn: acs:ram::1:oidc-provider/ack-rrsa-c1\n    tokenFile: {}\n    stsEndpoint: {url}\n",
        token_file.display(),
        url = s.server.url
    );
    let config: AcrConfig = serde_saphyr::from_str(&yaml).unwrap();
    // Inherited access key variables do not override an explicit RRSA choice.
    let env = |k: &str| match k {
        "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAI-test".to_string()),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some(SECRET.to_string()),
        _ => None,
    };
    let scanner = AcrScanner::with_env(&config, &env).unwrap();
    assert_eq!(scanner.credential_source(), "rrsa");

    assert_eq!(
        summary(&scanner, &tagged(), HEX).await.unwrap().status,
        ScanStatus::Complete
    );
    assert_eq!(
        s.server.with(|d| d.sts_tokens.clone()),
        vec!["oidc-token-A"]
    );
    let sts_call = s.server.with(|d| {
        d.seen
            .iter()
            .find(|r| r.action == "AssumeRoleWithOIDC")
            .cloned()
            .unwrap()
    });
    assert_eq!(sts_call.params["RoleArn"], "acs:ram::1:role/vulngate");
    assert_eq!(
        sts_call.params["OIDCProviderArn"],
        "acs:ram::1:oidc-provider/ack-rrsa-c1"
    );
    let api_calls = s.server.with(|d| {
        d.seen
            .iter()
            .filter(|r| r.signature != "sts")
            .cloned()
            .collect::<Vec<_>>()
    });
    assert!(
        api_calls.iter().all(|r| r.access_key_id == "STS.rrsa-1"),
        "signed with the STS key and token"
    );

    // Valid for an hour: no new exchange.
    summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(s.server.count("AssumeRoleWithOIDC"), 1);

    // The kubelet rotates the token file; STS now hands out short-lived credentials.
    s.server.with(|d| d.sts_expires_in = 120);
    std::fs::write(&token_file, "oidc-token-B").unwrap();
    // Still cached (an hour left) ...
    summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(s.server.count("AssumeRoleWithOIDC"), 1);
    // A fresh scanner gets credentials that are already inside the refresh margin,
    // so every call exchanges the token again, reading the file each time.
    let scanner = AcrScanner::with_env(&config, &env).unwrap();
    summary(&scanner, &tagged(), HEX).await.unwrap();
    let after_b = s.server.count("AssumeRoleWithOIDC");
    assert!(after_b >= 2, "refreshed: {after_b}");
    std::fs::write(&token_file, "oidc-token-C").unwrap();
    summary(&scanner, &tagged(), HEX).await.unwrap();
    let tokens = s.server.with(|d| d.sts_tokens.clone());
    assert!(tokens.len() > after_b, "refreshed again");
    assert_eq!(tokens[0], "oidc-token-A");
    assert!(
        tokens[1..after_b].iter().all(|t| t == "oidc-token-B"),
        "{tokens:?}"
    );
    assert!(
        tokens[after_b..].iter().all(|t| t == "oidc-token-C"),
        "re-read: {tokens:?}"
    );
    assert!(
        s.server.with(|d| d.rejected.is_empty()),
        "{:?}",
        s.server.with(|d| d.rejected.clone())
    );

    // A failed early refresh keeps the current, still valid credentials in use.
    std::fs::write(&token_file, "expired-token").unwrap();
    let before = s.server.count("AssumeRoleWithOIDC");
    assert_eq!(
        summary(&scanner, &tagged(), HEX).await.unwrap().status,
        ScanStatus::Complete
    );
    assert_eq!(
        s.server.count("AssumeRoleWithOIDC"),
        before,
        "no new credentials"
    );
    assert!(
        !s.server.with(|d| d.rejected.is_empty()),
        "the refresh was tried"
    );

    // A refused token with no credentials to fall back on is an operator problem.
    let scanner = AcrScanner::with_env(&config, &env).unwrap();
    match summary(&scanner, &tagged(), HEX).await.unwrap_err() {
        ScanError::Config { message, .. } => {
            assert!(
                message.contains("AuthenticationFail.OIDCToken.Expired"),
                "{message}"
            );
            assert!(
                !message.contains("expired-token"),
                "token never shown: {message}"
            );
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// The fixture's 196 findings as ListRepoTagScanResult lists them: high 22 (10 with a
/// fix), medium 81 (none), low 89 (5), unknown 4 (none).
fn fixture_results() -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (severity, n, fixed) in [
        ("High", 22, 10),
        ("Medium", 81, 0),
        ("Low", 89, 5),
        ("Unknown", 4, 0),
    ] {
        for i in 0..n {
            let fix = if i < fixed { "1.1.1w-0+deb11u1" } else { "" };
            out.push(scan_result(
                &format!("CVE-2024-{severity}-{i}"),
                severity,
                fix,
            ));
        }
    }
    out
}

fn with_results(s: &Setup, results: Vec<serde_json::Value>) {
    s.server.with(|d| {
        d.scan_results
            .insert(("crr-app".into(), "1.24".into()), results);
    });
}

#[tokio::test]
async fn the_vulnerability_list_is_paged_and_gives_fixable_counts() {
    let s = setup().await;
    with_results(&s, fixture_results());
    let scanner = s.scanner("instanceId: cri-demo\n");
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.counts.total(), 196);
    assert_eq!(
        got.fixable,
        Some(SeverityCounts {
            critical: None,
            high: Some(10),
            medium: Some(0),
            low: Some(5),
            unknown: Some(0)
        }),
        "fixable counts have the summary's shape: still no critical"
    );
    assert_eq!(got.vulnerabilities.len(), 196);
    let first = &got.vulnerabilities[0];
    assert_eq!(
        (first.id.as_str(), first.severity, first.fixable),
        ("CVE-2024-High-0", Severity::High, Some(true))
    );
    let last = &got.vulnerabilities[195];
    assert_eq!(
        (last.id.as_str(), last.severity, last.fixable),
        ("CVE-2024-Unknown-3", Severity::Unknown, Some(false))
    );
    assert!(got.vulnerabilities.iter().all(|v| v.published.is_none()));

    let pages: Vec<_> = s.server.with(|d| {
        d.seen
            .iter()
            .filter(|r| r.action == "ListRepoTagScanResult")
            .map(|r| r.params.clone())
            .collect()
    });
    assert_eq!(pages.len(), 2, "196 entries in pages of 100");
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p["PageNo"], (i + 1).to_string());
        assert_eq!(p["PageSize"], "100");
        assert_eq!(p["InstanceId"], "cri-demo");
        assert_eq!(p["RepoId"], "crr-app");
        assert_eq!(p["Tag"], "1.24");
        assert_eq!(p["Digest"], HEX);
    }
    assert!(s.server.with(|d| d.rejected.is_empty()));
}

#[tokio::test]
async fn a_failing_or_incomplete_list_keeps_the_counts() {
    let s = setup().await;
    let scanner = s.scanner("instanceId: cri-demo\n");
    let check = |got: vulngate::domain::summary::ScanSummary, why: &str| {
        assert_eq!(got.status, ScanStatus::Complete, "{why}");
        assert_eq!(got.counts.high, Some(22), "{why}");
        assert_eq!(got.counts.total(), 196, "{why}");
        assert_eq!(got.fixable, None, "{why}");
        assert!(got.vulnerabilities.is_empty(), "{why}");
    };
    // No scan result for the tag.
    check(
        summary(&scanner, &tagged(), HEX).await.unwrap(),
        "not found",
    );

    with_results(&s, fixture_results());
    s.server.with(|d| {
        d.errors.insert(
            "ListRepoTagScanResult".into(),
            (
                500,
                json!({"RequestId": "RID-500", "Code": "SystemError", "Message": "Unknown error."}),
            ),
        );
    });
    check(summary(&scanner, &tagged(), HEX).await.unwrap(), "HTTP 500");

    // A list shorter than the summary's counts is not trusted.
    s.server.with(|d| d.errors.clear());
    with_results(&s, fixture_results().into_iter().take(150).collect());
    check(
        summary(&scanner, &tagged(), HEX).await.unwrap(),
        "150 of 196",
    );

    // A slow page: the whole list gets one request's time limit.
    with_results(&s, fixture_results());
    s.server.with(|d| {
        d.delay
            .insert("ListRepoTagScanResult".into(), Duration::from_secs(2));
    });
    let quick = s.scanner("instanceId: cri-demo\ntimeout: 300ms\n");
    let started = Instant::now();
    check(summary(&quick, &tagged(), HEX).await.unwrap(), "slow");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(s.server.with(|d| d.rejected.is_empty()));
}

#[tokio::test]
async fn no_list_call_when_switched_off_clean_or_over_the_cap() {
    let s = setup().await;
    with_results(&s, fixture_results());
    let off = s.scanner("instanceId: cri-demo\nvulnerabilityDetails: false\n");
    let got = summary(&off, &tagged(), HEX).await.unwrap();
    assert_eq!(got.counts.total(), 196);
    assert_eq!(got.fixable, None);
    assert!(got.vulnerabilities.is_empty());

    let on = s.scanner("instanceId: cri-demo\n");
    let mut clean = fixture("get_repo_tag_scan_summary.json");
    for k in [
        "HighSeverity",
        "MediumSeverity",
        "LowSeverity",
        "UnknownSeverity",
        "TotalSeverity",
    ] {
        clean[k] = json!(0);
    }
    s.server.with(|d| {
        d.summaries
            .insert(("crr-app".into(), "1.24".into()), clean.clone());
    });
    let got = summary(&on, &tagged(), HEX).await.unwrap();
    assert_eq!(got.fixable.and_then(|f| f.high), Some(0));
    assert_eq!(got.fixable.and_then(|f| f.critical), None);

    // More findings than a summary keeps: judged on counts, the list is not read.
    let mut huge = clean;
    huge["HighSeverity"] = json!(2500);
    huge["TotalSeverity"] = json!(2500);
    s.server.with(|d| {
        d.summaries.insert(("crr-app".into(), "1.24".into()), huge);
    });
    let got = summary(&on, &tagged(), HEX).await.unwrap();
    assert_eq!(got.counts.high, Some(2500));
    assert!(got.vulnerabilities.is_empty());
    assert_eq!(s.server.count("ListRepoTagScanResult"), 0);
}

#[tokio::test]
async fn a_server_paging_lower_than_asked_still_gives_the_whole_list() {
    let s = setup().await;
    with_results(&s, fixture_results());
    // Pages of 30 (the page size of the API page's example), whatever is asked.
    s.server.with(|d| d.page_size_cap = Some(30));
    let scanner = s.scanner("instanceId: cri-demo\n");
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.vulnerabilities.len(), 196, "every page was read");
    assert_eq!(
        got.fixable.map(|f| (f.high, f.low)),
        Some((Some(10), Some(5))),
        "count: fixable stays enforceable"
    );
    let pages: Vec<String> = s.server.with(|d| {
        d.seen
            .iter()
            .filter(|r| r.action == "ListRepoTagScanResult")
            .map(|r| r.params["PageNo"].clone())
            .collect()
    });
    assert_eq!(
        pages,
        ["1", "2", "3", "4", "5", "6", "7"],
        "196 in pages of 30"
    );
    assert!(s.server.with(|d| d.rejected.is_empty()));
}

#[tokio::test]
async fn a_digest_only_lookup_follows_a_server_paging_lower_than_asked() {
    let s = setup().await;
    s.server.with(|d| d.page_size_cap = Some(30));
    let scanner = s.scanner("instanceId: cri-demo\n");
    // The tag of the digest is the 150th of the repository: page 5 of 30.
    let digest_only = format!("{HOST}/team/app@sha256:{HEX}");
    let got = summary(&scanner, &digest_only, HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(got.counts.high, Some(22));
    assert!(s.server.with(|d| d.rejected.is_empty()));
}

#[tokio::test]
async fn scans_requested_on_a_miss_are_rate_limited() {
    let s = setup().await;
    let scanner =
        s.scanner("instanceId: cri-demo\nscanOnMissing: true\nscanRequests: {max: 2, per: 10m}\n");
    // Ten tags that were never scanned.
    let mut statuses = Vec::new();
    for i in 0..10u32 {
        let got = summary(
            &scanner,
            &format!("{HOST}/team/app:v{i}"),
            &other_hex(i + 1),
        )
        .await
        .unwrap();
        if got.status == ScanStatus::NotScanned {
            let note = got.note.clone().unwrap_or_default();
            assert!(
                note.contains("limit of 2 scan request(s) per 10m"),
                "{note}"
            );
        }
        statuses.push(got.status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == ScanStatus::Scanning)
            .count(),
        2
    );
    assert_eq!(
        s.server.count("CreateRepoTagScanTask"),
        2,
        "2 scans, not 10"
    );
}

#[tokio::test]
async fn alibaba_error_classes_follow_the_vendor_codes() {
    let s = setup().await;
    let scanner = s.scanner("instanceId: cri-demo\nvulnerabilityDetails: false\n");
    // A server fault in an HTTP 200 body: unavailable (onError decides), not a config error.
    for code in ["SystemError", "ServerError"] {
        s.server.with(|d| {
            d.errors.insert(
                "GetRepoTagScanSummary".into(),
                (200, json!({"RequestId": "RID-200", "Code": code, "IsSuccess": false, "Message": "Unknown error."})),
            );
        });
        match summary(&scanner, &tagged(), HEX).await.unwrap_err() {
            ScanError::Unavailable { message, .. } => {
                assert!(
                    message.contains(code) && message.contains("RID-200"),
                    "{message}"
                )
            }
            other => panic!("{code}: expected unavailable, got {other:?}"),
        }
    }
    // Risk control is not a missing RAM permission.
    s.server.with(|d| {
        d.errors.insert(
            "GetRepoTagScanSummary".into(),
            (
                403,
                json!({"RequestId": "RID-RC", "Code": "Forbidden.RiskControl",
                         "Message": "This operation is forbidden by Aliyun RiskControl system."}),
            ),
        );
    });
    match summary(&scanner, &tagged(), HEX).await.unwrap_err() {
        ScanError::Config { message, .. } => {
            assert!(message.contains("risk control"), "{message}");
            assert!(!message.contains("grant the RAM permission"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    // A nonce the service saw before: asked again with a new one.
    s.server.with(|d| {
        d.errors.clear();
        d.nonce_used.insert("GetRepoTagScanSummary".into(), 2);
    });
    let got = summary(&scanner, &tagged(), HEX).await.unwrap();
    assert_eq!(got.counts.high, Some(22));
    assert_eq!(s.server.count("GetRepoTagScanSummary"), 3 + 3);
    assert!(
        s.server.with(|d| d.rejected.is_empty()),
        "every retry had a fresh nonce"
    );
}

/// The in-test server checks signatures with its own code: these are the vendor's
/// published vectors (docs and SDK unit tests, ../shared/apis/scan-apis.md A.3 and A.4),
/// so the server cannot drift from the vendor along with the client.
#[test]
fn the_servers_signature_check_reproduces_the_vendors_published_vectors() {
    use alibaba_server::{acs3_signature, v1_signature};
    use std::collections::BTreeMap;
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let headers = |pairs: &[(&str, &str)]| -> (Vec<(String, String)>, Vec<String>) {
        let list: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut names: Vec<String> = list.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names.dedup();
        (list, names)
    };

    // V1: the RPC signature page's example.
    let ecs = map(&[
        ("AccessKeyId", "testid"),
        ("Action", "DescribeDedicatedHosts"),
        ("Format", "JSON"),
        ("RegionId", "cn-beijing"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2023-03-13T08:34:30Z"),
        ("Version", "2014-05-26"),
    ]);
    assert_eq!(
        v1_signature("GET", &ecs, "testsecret"),
        "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
    );
    // V1: darabonba-openapi-util's unit tests.
    assert_eq!(
        v1_signature("", &map(&[("test", "ok")]), "accessKeySecret"),
        "jHx/oHoHNrbVfhncHEvPdHXZwHU="
    );
    assert_eq!(
        v1_signature(
            "GET",
            &map(&[("query", "test"), ("body", "test")]),
            "secret"
        ),
        "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
    );
    // V1 for cr GetRepoTagScanSummary (derived), with and without an STS token.
    let mut cr = map(&[
        ("AccessKeyId", "testid"),
        ("Action", "GetRepoTagScanSummary"),
        ("Digest", &digest(HEX)),
        ("Format", "JSON"),
        ("InstanceId", "cri-xkx6vujuhay0abcd"),
        ("RepoId", "crr-xwvi3osiy4ffabcd"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
        ("SignatureVersion", "1.0"),
        ("Tag", "1.24"),
        ("Timestamp", "2023-03-13T08:34:30Z"),
        ("Version", "2018-12-01"),
    ]);
    assert_eq!(
        v1_signature("POST", &cr, "testsecret"),
        "mxtsnBXz4BrNOq2evAv/lni7DLg="
    );
    cr.insert("SecurityToken".into(), "CAIS-test-token/+==".into());
    assert_eq!(
        v1_signature("POST", &cr, "testsecret"),
        "p/tWPIoZaok/M4bpAA1hT/imvY0="
    );

    // ACS3: the V3 signature page's example.
    let empty_body = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let (list, names) = headers(&[
        ("host", "ecs.cn-shanghai.aliyuncs.com"),
        ("x-acs-action", "RunInstances"),
        ("x-acs-content-sha256", empty_body),
        ("x-acs-date", "2023-10-26T10:22:32Z"),
        ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
        ("x-acs-version", "2014-05-26"),
    ]);
    let query = map(&[
        (
            "ImageId",
            "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
        ),
        ("RegionId", "cn-shanghai"),
    ]);
    assert_eq!(
        acs3_signature(
            "POST",
            &query,
            &list,
            &names,
            empty_body,
            "YourAccessKeySecret"
        ),
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    );
    // ACS3: darabonba-openapi-util's Go unit test (a header given twice, an empty value).
    let (list, names) = headers(&[("x-acs-test", "http"), ("x-acs-test", "https")]);
    assert_eq!(
        acs3_signature(
            "",
            &map(&[("test", "ok"), ("empty", "")]),
            &list,
            &names,
            "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
            "secret"
        ),
        "4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"
    );
    // ACS3 for cr GetRepoTagScanSummary (derived).
    let (list, names) = headers(&[
        ("host", "cr.cn-hangzhou.aliyuncs.com"),
        ("x-acs-action", "GetRepoTagScanSummary"),
        ("x-acs-content-sha256", empty_body),
        ("x-acs-date", "2023-10-26T10:22:32Z"),
        ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
        ("x-acs-version", "2018-12-01"),
    ]);
    let query = map(&[
        ("Digest", &digest(HEX)),
        ("InstanceId", "cri-xkx6vujuhay0abcd"),
        ("RepoId", "crr-xwvi3osiy4ffabcd"),
        ("Tag", "1.24"),
    ]);
    assert_eq!(
        acs3_signature(
            "POST",
            &query,
            &list,
            &names,
            empty_body,
            "YourAccessKeySecret"
        ),
        "5dd62a2fd56dfdc3d6287fc56e8fe329021673e6bbb8e40112d4b5ddb3a67427"
    );
}
