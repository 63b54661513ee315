//! The `harbor` scanner against an in-test Harbor v2.0 API (tests/support/harbor_server.rs).

#[path = "support/harbor_server.rs"]
mod harbor_server;

use std::time::Duration;

use harbor_server::{Fault, HarborServer, ROBOT, ROBOT_SECRET, finding, scanned};
use serde_json::json;
use vulngate::config::harbor::HarborConfig;
use vulngate::domain::scan_error::ScanError;
use vulngate::domain::summary::{ScanStatus, ScanSummary, Severity, SeverityCounts};
use vulngate::image::ImageRef;
use vulngate::scan::harbor::HarborScanner;
use vulngate::scan::{ScanTarget, Scanner};

const D1: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const D2: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

struct Robot {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn robot_file(secret: &str) -> Robot {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("robot-secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    Robot { _dir: dir, path }
}

fn scanner(server: &HarborServer, robot: &Robot, extra: &str) -> HarborScanner {
    let yaml = format!(
        "url: \"{}/\"\nusername: \"{ROBOT}\"\npassword: {{file: {}}}\nretry: {{maxRetries: 2, initialBackoff: 10ms}}\n{extra}",
        server.url(),
        robot.path.display()
    );
    let config: HarborConfig = serde_saphyr::from_str(&yaml).unwrap();
    HarborScanner::new(&config).unwrap()
}

async fn summary(s: &HarborScanner, image: &str, digest: &str) -> Result<ScanSummary, ScanError> {
    let image = ImageRef::parse(image).unwrap();
    s.summary(&ScanTarget {
        image: &image,
        digest,
    })
    .await
}

#[tokio::test]
async fn finished_scan_gives_the_severity_summary() {
    let server = HarborServer::start().await;
    server.add(
        "library",
        "nginx",
        D1,
        scanned(
            D1,
            "Success",
            Some(json!({"total": 19, "fixable": 6, "summary": {"Critical": 2, "High": 4, "Medium": 8, "Low": 3, "Negligible": 1, "Unknown": 1}})),
        ),
    );
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    let got = summary(&s, "harbor.example.com/library/nginx:1.0", D1)
        .await
        .unwrap();
    assert_eq!(got.scanner, "harbor");
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(
        got.counts,
        SeverityCounts {
            critical: Some(2),
            high: Some(4),
            medium: Some(8),
            low: Some(4),
            unknown: Some(1)
        }
    );
    // A fixable total alone cannot serve per-severity limits.
    assert_eq!(got.fixable, None);
    assert_eq!(
        got.finished_at.map(|t| t.unix_timestamp()),
        Some(time::macros::datetime!(2026-11-20 10:00:42 UTC).unix_timestamp())
    );
    assert!(
        server.state.bad_requests.lock().unwrap().is_empty(),
        "{:?}",
        server.state.bad_requests.lock().unwrap()
    );
}

#[tokio::test]
async fn severities_harbor_omits_are_zero() {
    let server = HarborServer::start().await;
    server.add(
        "p",
        "clean",
        D1,
        scanned(
            D1,
            "Success",
            Some(json!({"total": 0, "fixable": 0, "summary": {}})),
        ),
    );
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    let got = summary(&s, "harbor.example.com/p/clean:1", D1)
        .await
        .unwrap();
    assert_eq!(got.counts, SeverityCounts::zero());
}

#[tokio::test]
async fn nested_repository_names_are_double_encoded() {
    let server = HarborServer::start().await;
    server.add(
        "dockerhub-proxy",
        "library/redis",
        D2,
        scanned(
            D2,
            "Success",
            Some(json!({"total": 1, "fixable": 0, "summary": {"High": 1}})),
        ),
    );
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    let got = summary(
        &s,
        &format!("harbor.example.com/dockerhub-proxy/library/redis@{D2}"),
        D2,
    )
    .await
    .unwrap();
    assert_eq!(got.counts.high, Some(1));
    let paths = server.state.raw_paths.lock().unwrap().clone();
    let artifact =
        format!("/api/v2.0/projects/dockerhub-proxy/repositories/library%252Fredis/artifacts/{D2}");
    // The artifact, then its vulnerability report (which this server does not have).
    assert_eq!(
        paths,
        vec![
            artifact.clone(),
            format!("{artifact}/additions/vulnerabilities")
        ]
    );
}

#[tokio::test]
async fn scan_states_map_to_statuses() {
    let server = HarborServer::start().await;
    for (repo, status) in [
        ("pending", "Pending"),
        ("running", "Running"),
        ("error", "Error"),
        ("stopped", "Stopped"),
    ] {
        server.add("p", repo, D1, scanned(D1, status, None));
    }
    server.add("p", "never", D1, json!({"id": 1, "digest": D1, "tags": []}));
    server.add(
        "p",
        "empty",
        D1,
        json!({"id": 1, "digest": D1, "scan_overview": {}}),
    );
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    for (repo, want) in [
        ("pending", ScanStatus::Scanning),
        ("running", ScanStatus::Scanning),
        ("error", ScanStatus::Failed),
        ("stopped", ScanStatus::NotScanned),
        ("never", ScanStatus::NotScanned),
        ("empty", ScanStatus::NotScanned),
    ] {
        let got = summary(&s, &format!("harbor.example.com/p/{repo}:1"), D1)
            .await
            .unwrap();
        assert_eq!(got.status, want, "{repo}");
        assert_eq!(got.counts, SeverityCounts::default(), "{repo}");
    }
    // 404 "artifact ... not found": the repository has no such digest, so no scan.
    let got = summary(&s, "harbor.example.com/p/pending:2", D2)
        .await
        .unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);
}

#[tokio::test]
async fn a_404_for_a_wrong_project_repository_or_url_is_a_config_error() {
    let server = HarborServer::start().await;
    server.add("library", "nginx", D1, scanned(D1, "Success", None));
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    for (image, names) in [
        (
            "harbor.example.com/libary/nginx:1",
            "project libary not found",
        ),
        (
            "harbor.example.com/library/ngnix:1",
            "repository library/ngnix not found",
        ),
    ] {
        match summary(&s, image, D1).await {
            Err(ScanError::Config { message, .. }) => {
                assert!(
                    message.contains(names) && message.contains("404"),
                    "{message}"
                )
            }
            other => panic!("{image}: a wrong name is not \"not scanned\": {other:?}"),
        }
    }
    // A url that is not Harbor's API root answers 404 too.
    let yaml = format!(
        "url: \"{}/harbor\"\nusername: \"{ROBOT}\"\npassword: {{file: {}}}\n",
        server.url(),
        robot.path.display()
    );
    let wrong_url = HarborScanner::new(&serde_saphyr::from_str(&yaml).unwrap()).unwrap();
    match summary(&wrong_url, "harbor.example.com/library/nginx:1", D1).await {
        Err(ScanError::Config { message, .. }) => assert!(message.contains("url"), "{message}"),
        other => panic!("a wrong url is not \"not scanned\": {other:?}"),
    }
}

#[tokio::test]
async fn findings_of_severity_none_count_nowhere() {
    // Harbor's scale starts at None ("no severity"): its summary has a None key and its
    // total includes them; the report lists them. They are not vulnerabilities to count.
    let server = HarborServer::start().await;
    server.add(
        "library",
        "app",
        D1,
        scanned(
            D1,
            "Success",
            Some(json!({"total": 3, "fixable": 1, "summary": {"High": 1, "None": 2}})),
        ),
    );
    server.add_report(
        "library",
        "app",
        D1,
        json!([
            finding("CVE-2024-1000", "High", "1.2.3"),
            finding("CVE-2024-2000", "None", ""),
            finding("CVE-2024-3000", "None", "")
        ]),
    );
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    let got = summary(&s, &format!("harbor.example.com/library/app@{D1}"), D1)
        .await
        .unwrap();
    assert_eq!(got.counts.unknown, Some(0), "{got:?}");
    assert_eq!(got.counts.total(), 1, "{got:?}");
    // The list counts what the summary counts, so it is used (allow-cves, fixable).
    assert_eq!(got.vulnerabilities.len(), 1, "{got:?}");
    assert_eq!(got.fixable.and_then(|f| f.high), Some(1));
}

#[tokio::test]
async fn bad_robot_credentials_are_a_config_error_without_the_secret() {
    let server = HarborServer::start().await;
    let robot = robot_file("wrong-robot-secret-555");
    let s = scanner(&server, &robot, "");
    let err = summary(&s, "harbor.example.com/library/nginx:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Config { .. }), "{msg}");
    assert!(
        msg.contains("robot account credentials") && msg.contains("robot$vulngate"),
        "{msg}"
    );
    assert!(
        msg.contains("HTTP 401") && msg.contains("request id harbor-req-0"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong-robot-secret-555") && !msg.contains(ROBOT_SECRET),
        "{msg}"
    );
}

#[tokio::test]
async fn forbidden_names_the_permission() {
    let server = HarborServer::start().await;
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    server.set_fault(Some(Fault::Status {
        status: 403,
        body: json!({"errors": [{"code": "FORBIDDEN", "message": "forbidden"}]}),
    }));
    let err = summary(&s, "harbor.example.com/team/app:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Config { .. }), "{msg}");
    assert!(
        msg.contains("\"team\"") && msg.contains("read artifacts") && msg.contains("FORBIDDEN"),
        "{msg}"
    );
}

#[tokio::test]
async fn throttling_is_retried_then_given_up() {
    let server = HarborServer::start().await;
    server.add(
        "p",
        "a",
        D1,
        scanned(D1, "Success", Some(json!({"total": 0, "summary": {}}))),
    );
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    server.set_fault(Some(Fault::Throttle { times: 2 }));
    let got = summary(&s, "harbor.example.com/p/a:1", D1).await.unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(
        got.fixable,
        Some(SeverityCounts::zero()),
        "no findings: none fixable, and no report to fetch"
    );
    assert_eq!(server.requests(), 3);

    server.set_fault(Some(Fault::Throttle { times: 100 }));
    let err = summary(&s, "harbor.example.com/p/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains("HTTP 429") && msg.contains("still throttled after 2 retries"),
        "{msg}"
    );
    assert_eq!(server.requests(), 3 + 3);
}

#[tokio::test]
async fn server_errors_and_slow_replies_are_unavailable() {
    let server = HarborServer::start().await;
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "timeout: 300ms\n");
    server.set_fault(Some(Fault::Status {
        status: 503,
        body: json!({"errors": [{"code": "UNKNOWN", "message": "db down"}]}),
    }));
    let err = summary(&s, "harbor.example.com/p/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains("HTTP 503")
            && msg.contains("db down")
            && msg.contains("request id harbor-req-"),
        "{msg}"
    );
    assert_eq!(server.requests(), 1);

    server.set_fault(Some(Fault::Slow(Duration::from_secs(3))));
    let err = summary(&s, "harbor.example.com/p/a:1", D1)
        .await
        .unwrap_err();
    assert!(matches!(err, ScanError::Unavailable { .. }));
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
}

#[tokio::test]
async fn config_errors_are_clear() {
    let server = HarborServer::start().await;
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    // An image without a project cannot be in Harbor.
    let err = summary(&s, "harbor.example.com/nginx:1", D1)
        .await
        .unwrap_err();
    assert!(matches!(err, ScanError::Config { .. }));
    assert!(err.to_string().contains("<project>/<repository>"), "{err}");

    let yaml = "url: \"ftp://harbor\"\nusername: r\npassword: {env: VULNGATE_TEST_UNSET}\n";
    let config: HarborConfig = serde_saphyr::from_str(yaml).unwrap();
    assert!(
        HarborScanner::new(&config)
            .err()
            .unwrap()
            .to_string()
            .contains("expected http(s)")
    );
    let yaml = format!(
        "url: \"{}\"\nusername: r\npassword: {{env: VULNGATE_TEST_UNSET}}\n",
        server.url()
    );
    let config: HarborConfig = serde_saphyr::from_str(&yaml).unwrap();
    let err = HarborScanner::new(&config).err().unwrap().to_string();
    assert!(
        err.contains("password") && err.contains("VULNGATE_TEST_UNSET"),
        "{err}"
    );
    let yaml = format!(
        "url: \"{}\"\nusername: r\npassword: {{file: {}}}\ncaFile: /nonexistent/ca.pem\n",
        server.url(),
        robot.path.display()
    );
    let config: HarborConfig = serde_saphyr::from_str(&yaml).unwrap();
    let err = HarborScanner::new(&config).err().unwrap().to_string();
    assert!(err.contains("caFile /nonexistent/ca.pem"), "{err}");
    std::fs::write(robot.path.with_file_name("ca.pem"), "not a certificate").unwrap();
    let yaml = yaml.replace(
        "/nonexistent/ca.pem",
        &robot.path.with_file_name("ca.pem").display().to_string(),
    );
    let config: HarborConfig = serde_saphyr::from_str(&yaml).unwrap();
    assert!(
        HarborScanner::new(&config)
            .err()
            .unwrap()
            .to_string()
            .contains("caFile")
    );
    let yaml = "url: x\nusername: r\npassword: hunter2\n";
    assert!(
        serde_saphyr::from_str::<HarborConfig>(yaml).is_err(),
        "an inline password is refused"
    );
}

/// An artifact of `proxy/library/app` with 1 critical, 3 high and 1 negligible finding.
fn five_findings(server: &HarborServer) {
    server.add(
        "proxy",
        "library/app",
        D1,
        scanned(
            D1,
            "Success",
            Some(json!({"total": 5, "fixable": 3, "summary": {"Critical": 1, "High": 3, "Negligible": 1}})),
        ),
    );
}

fn five_findings_report() -> serde_json::Value {
    json!([
        finding("CVE-2024-1000", "Critical", "1.2.3"),
        finding("CVE-2024-2000", "High", ""),
        finding("CVE-2024-3000", "High", "2.0"),
        finding("CVE-2024-4000", "High", ""),
        finding("CVE-2024-5000", "Negligible", "0.9"),
    ])
}

#[tokio::test]
async fn the_vulnerability_report_gives_per_severity_fixable_counts_and_the_list() {
    let server = HarborServer::start().await;
    five_findings(&server);
    server.add_report("proxy", "library/app", D1, five_findings_report());
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    let got = summary(
        &s,
        &format!("harbor.example.com/proxy/library/app@{D1}"),
        D1,
    )
    .await
    .unwrap();
    assert_eq!(
        got.counts,
        SeverityCounts {
            critical: Some(1),
            high: Some(3),
            medium: Some(0),
            low: Some(1),
            unknown: Some(0)
        }
    );
    assert_eq!(
        got.fixable,
        Some(SeverityCounts {
            critical: Some(1),
            high: Some(1),
            medium: Some(0),
            low: Some(1),
            unknown: Some(0)
        }),
        "a finding is fixable when it has a fix_version"
    );
    let list: Vec<(&str, Severity, Option<bool>)> = got
        .vulnerabilities
        .iter()
        .map(|v| (v.id.as_str(), v.severity, v.fixable))
        .collect();
    assert_eq!(
        list,
        vec![
            ("CVE-2024-1000", Severity::Critical, Some(true)),
            ("CVE-2024-2000", Severity::High, Some(false)),
            ("CVE-2024-3000", Severity::High, Some(true)),
            ("CVE-2024-4000", Severity::High, Some(false)),
            ("CVE-2024-5000", Severity::Low, Some(true)),
        ]
    );
    assert!(
        got.vulnerabilities.iter().all(|v| v.published.is_none()),
        "Harbor's report has no publication dates"
    );
    let paths = server.state.raw_paths.lock().unwrap().clone();
    assert_eq!(
        paths.last().map(String::as_str),
        Some(
            format!("/api/v2.0/projects/proxy/repositories/library%252Fapp/artifacts/{D1}/additions/vulnerabilities")
                .as_str()
        )
    );
    assert!(
        server.state.bad_requests.lock().unwrap().is_empty(),
        "{:?}",
        server.state.bad_requests.lock().unwrap()
    );
}

#[tokio::test]
async fn a_failing_or_disagreeing_report_keeps_the_counts() {
    let server = HarborServer::start().await;
    five_findings(&server);
    let robot = robot_file(ROBOT_SECRET);
    let s = scanner(&server, &robot, "");
    let image = format!("harbor.example.com/proxy/library/app@{D1}");
    let check = |got: ScanSummary, why: &str| {
        assert_eq!(got.status, ScanStatus::Complete, "{why}");
        assert_eq!(got.counts.high, Some(3), "{why}");
        assert_eq!(got.counts.total(), 5, "{why}");
        assert_eq!(got.fixable, None, "{why}");
        assert!(got.vulnerabilities.is_empty(), "{why}");
    };

    // Harbor has no report (404).
    check(summary(&s, &image, D1).await.unwrap(), "no report");
    // The report call fails.
    server.add_report("proxy", "library/app", D1, five_findings_report());
    server.set_report_fault(Some(500));
    check(summary(&s, &image, D1).await.unwrap(), "HTTP 500");
    // A report that lists fewer findings than the summary counts is not trusted.
    server.set_report_fault(None);
    server.add_report(
        "proxy",
        "library/app",
        D1,
        json!([finding("CVE-2024-1000", "Critical", "1.2.3")]),
    );
    check(summary(&s, &image, D1).await.unwrap(), "short list");
    // Garbage.
    server.add_report("proxy", "library/app", D1, json!("garbage"));
    check(summary(&s, &image, D1).await.unwrap(), "not a list");
    assert_eq!(server.report_requests(), 4);
}

#[tokio::test]
async fn no_report_call_when_switched_off_or_without_findings() {
    let server = HarborServer::start().await;
    five_findings(&server);
    server.add_report("proxy", "library/app", D1, five_findings_report());
    server.add(
        "p",
        "clean",
        D2,
        scanned(D2, "Success", Some(json!({"total": 0, "summary": {}}))),
    );
    let robot = robot_file(ROBOT_SECRET);

    let off = scanner(&server, &robot, "vulnerabilityDetails: false\n");
    let got = summary(
        &off,
        &format!("harbor.example.com/proxy/library/app@{D1}"),
        D1,
    )
    .await
    .unwrap();
    assert_eq!(got.counts.total(), 5);
    assert_eq!(got.fixable, None);
    assert!(got.vulnerabilities.is_empty());

    let on = scanner(&server, &robot, "");
    let got = summary(&on, "harbor.example.com/p/clean:1", D2)
        .await
        .unwrap();
    assert_eq!(got.fixable, Some(SeverityCounts::zero()));
    assert_eq!(server.report_requests(), 0);
}
