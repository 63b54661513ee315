//! The `hss` scanner against an in-test HSS + IAM server that verifies every
//! request's signature independently (tests/support/hss_server.rs).

#[path = "support/hss_server.rs"]
mod hss_server;

use std::time::Duration;

use hss_server::{
    AK, Fault, HssServer, IAM_DOMAIN, IAM_PASSWORD, IAM_USER, PROJECT, REGION, SECURITY_TOKEN, SK,
    record,
};
use serde_json::json;
use vulngate::config::huawei::HssConfig;
use vulngate::config::{Config, ScannerConfig};
use vulngate::domain::scan_error::ScanError;
use vulngate::domain::summary::{ExtraCount, ScanStatus, ScanSummary, SeverityCounts};
use vulngate::image::ImageRef;
use vulngate::scan::hss::HssScanner;
use vulngate::scan::{ScanTarget, Scanner};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

struct Creds {
    _dir: tempfile::TempDir,
    yaml_auth: String,
}

/// AK/SK in files, as a mounted Secret would provide them.
fn aksk_files(sk: &str) -> Creds {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ak"), format!("{AK}\n")).unwrap();
    std::fs::write(dir.path().join("sk"), format!("{sk}\n")).unwrap();
    let yaml_auth = format!(
        "{{akSk: {{accessKey: {{file: {}}}, secretKey: {{file: {}}}}}}}",
        dir.path().join("ak").display(),
        dir.path().join("sk").display()
    );
    Creds {
        _dir: dir,
        yaml_auth,
    }
}

fn password_file(server: &HssServer, password: &str) -> Creds {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), password).unwrap();
    let yaml_auth = format!(
        "{{password: {{iamEndpoint: \"{}\", domain: {IAM_DOMAIN}, user: {IAM_USER}, password: {{file: {}}}}}}}",
        server.url(),
        dir.path().join("password").display()
    );
    Creds {
        _dir: dir,
        yaml_auth,
    }
}

fn scanner(server: &HssServer, creds: &Creds, extra: &str) -> HssScanner {
    let yaml = format!(
        "region: {REGION}\nprojectId: \"{PROJECT}\"\nendpoint: \"{}\"\nauth: {}\nretry: {{maxRetries: 2, initialBackoff: 10ms, maxBackoff: 50ms}}\n{extra}",
        server.url(),
        creds.yaml_auth
    );
    let config: HssConfig = serde_saphyr::from_str(&yaml).unwrap();
    HssScanner::new(&config).unwrap()
}

async fn summary(s: &HssScanner, image: &str, digest: &str) -> Result<ScanSummary, ScanError> {
    let image = ImageRef::parse(image).unwrap();
    s.summary(&ScanTarget {
        image: &image,
        digest,
    })
    .await
}

fn assert_no_secret(text: &str) {
    for secret in [SK, IAM_PASSWORD, "MIItoken"] {
        assert!(!text.contains(secret), "secret leaked into {text:?}");
    }
}

#[tokio::test]
async fn finished_scan_gives_counts_by_repair_necessity() {
    let server = HssServer::start().await;
    server.add_image(
        record("demo-org", "nginx", "1.25", D1, "success"),
        (3, 5, 7, 2),
    );
    server.add_image(
        record("demo-org", "nginx", "1.24", D2, "success"),
        (9, 9, 9, 9),
    );
    let creds = aksk_files(SK);
    let s = scanner(&server, &creds, "");

    let got = summary(
        &s,
        "swr.cn-north-4.myhuaweicloud.com/demo-org/nginx:1.25",
        D1,
    )
    .await
    .unwrap();
    assert_eq!(got.scanner, "hss");
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(
        got.counts,
        SeverityCounts {
            critical: None,
            high: Some(3),
            medium: Some(5),
            low: Some(7),
            unknown: Some(2)
        }
    );
    assert_eq!(got.counts.total(), 17);
    assert_eq!(got.extra.get(&ExtraCount::BaselineRisks), Some(&4));
    assert_eq!(got.extra.get(&ExtraCount::MaliciousFiles), Some(&1));
    assert_eq!(
        got.finished_at.map(|t| t.unix_timestamp()),
        Some(1_700_000_100)
    );
    // One listing (the tag matched) and four counts, every one correctly signed.
    assert_eq!(server.calls("ListRegistryImages"), 1);
    assert_eq!(server.calls("ListImageVulnerabilities"), 4);
    assert_eq!(server.auth_failures(), 0);
    let q = server.state.list_queries.lock().unwrap()[0].clone();
    assert!(
        q.contains("namespace=demo-org")
            && q.contains("image_name=nginx")
            && q.contains("image_version=1.25"),
        "{q}"
    );
}

#[tokio::test]
async fn digest_is_found_when_the_tag_has_moved_or_is_absent() {
    let server = HssServer::start().await;
    server.add_image(
        record("demo-org", "app/api", "v2", D2, "success"),
        (0, 0, 0, 0),
    );
    server.add_image(
        record("demo-org", "app/api", "v1", D1, "success"),
        (1, 0, 0, 0),
    );
    let creds = aksk_files(SK);
    let s = scanner(&server, &creds, "");

    // The tag v2 now points elsewhere: the digest is found among all versions.
    let got = summary(
        &s,
        "swr.cn-north-4.myhuaweicloud.com/demo-org/app/api:v2",
        D1,
    )
    .await
    .unwrap();
    assert_eq!(got.counts.high, Some(1));
    assert_eq!(server.calls("ListRegistryImages"), 2);

    // A reference by digest only (a nested name with "/" is signed and sent escaped).
    let got = summary(
        &s,
        &format!("swr.cn-north-4.myhuaweicloud.com/demo-org/app/api@{D1}"),
        D1,
    )
    .await
    .unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(server.auth_failures(), 0);
}

#[tokio::test]
async fn unfinished_scans_map_to_statuses_without_counting() {
    let server = HssServer::start().await;
    server.add_image(record("org", "a", "1", D1, "scanning"), (1, 1, 1, 1));
    server.add_image(
        record("org", "b", "1", D1, "waiting_for_scan"),
        (1, 1, 1, 1),
    );
    server.add_image(record("org", "c", "1", D1, "unscan"), (1, 1, 1, 1));
    server.add_image(record("org", "d", "1", D1, "failed"), (1, 1, 1, 1));
    server.add_image(record("org", "e", "1", D1, "image_oversized"), (1, 1, 1, 1));
    let creds = aksk_files(SK);
    let s = scanner(&server, &creds, "");
    for (repo, status) in [
        ("a", ScanStatus::Scanning),
        ("b", ScanStatus::Scanning),
        ("c", ScanStatus::NotScanned),
        ("d", ScanStatus::Failed),
        ("e", ScanStatus::Failed),
    ] {
        let got = summary(
            &s,
            &format!("swr.cn-north-4.myhuaweicloud.com/org/{repo}:1"),
            D1,
        )
        .await
        .unwrap();
        assert_eq!(got.status, status, "{repo}");
        assert_eq!(
            got.counts,
            SeverityCounts::default(),
            "{repo}: no counts without a finished scan"
        );
    }
    // An image HSS has not synchronized is not scanned, not an error.
    let got = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/unknown:1", D3)
        .await
        .unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);
    assert_eq!(server.calls("ListImageVulnerabilities"), 0);
}

#[tokio::test]
async fn throttling_is_retried_within_the_budget() {
    let server = HssServer::start().await;
    server.add_image(record("org", "a", "1", D1, "unscan"), (0, 0, 0, 0));
    let creds = aksk_files(SK);
    let s = scanner(&server, &creds, "");

    server.set_fault(Some(Fault::Throttle {
        times: 2,
        status: 429,
        code: "APIGW.0308",
    }));
    let got = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);
    assert_eq!(
        server.calls("ListRegistryImages"),
        3,
        "two throttled tries, then the answer"
    );

    // The gateway's code is throttling whatever the status; past the budget it is Unavailable.
    server.set_fault(Some(Fault::Throttle {
        times: 10,
        status: 400,
        code: "APIGW.0308",
    }));
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    assert_eq!(
        server.calls("ListRegistryImages"),
        3 + 3,
        "one try and maxRetries=2 retries"
    );
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains("APIGW.0308") && msg.contains("still throttled after 2 retries"),
        "{msg}"
    );
    assert!(msg.contains("request id hss-req-"), "{msg}");
}

#[tokio::test]
async fn forbidden_names_the_missing_permission() {
    let server = HssServer::start().await;
    let creds = aksk_files(SK);
    let s = scanner(&server, &creds, "");
    // HSS answers a missing permission with HTTP 400 and its documented code.
    server.set_fault(Some(Fault::Status {
        status: 400,
        body: json!({"error_code": "HSS.0013", "error_msg": "Insufficient permissions."}),
    }));
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Config { .. }), "{msg}");
    assert!(
        msg.contains("hss:image:list")
            && msg.contains("HSS.0013")
            && msg.contains("request id hss-req-"),
        "{msg}"
    );
    assert_eq!(
        server.calls("ListRegistryImages"),
        1,
        "a permission error is not retried"
    );
}

#[tokio::test]
async fn a_wrong_secret_key_fails_verification_and_is_a_config_error() {
    let server = HssServer::start().await;
    let creds = aksk_files("not-the-right-secret-key");
    let s = scanner(&server, &creds, "");
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Config { .. }), "{msg}");
    assert!(
        msg.contains("AK/SK authentication failed") && msg.contains("APIG.0301"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-right-secret-key"), "{msg}");
    assert_no_secret(&msg);
    assert_eq!(server.auth_failures(), 1);
}

#[tokio::test]
async fn server_errors_and_slow_replies_are_unavailable() {
    let server = HssServer::start().await;
    let creds = aksk_files(SK);
    let s = scanner(&server, &creds, "timeout: 300ms\n");
    server.set_fault(Some(Fault::Status {
        status: 500,
        body: json!({"error_msg": "Internal Server Error"}),
    }));
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains("HTTP 500")
            && msg.contains("Internal Server Error")
            && msg.contains("request id hss-req-"),
        "{msg}"
    );
    assert_eq!(
        server.calls("ListRegistryImages"),
        1,
        "a 5xx is not retried"
    );

    server.set_fault(Some(Fault::Slow(Duration::from_secs(3))));
    let started = std::time::Instant::now();
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{msg}");
    assert!(msg.contains("timed out after 300ms"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_no_secret(&msg);
}

#[tokio::test]
async fn iam_token_is_cached_refreshed_and_replaced_when_revoked() {
    let server = HssServer::start().await;
    server.add_image(record("org", "a", "1", D1, "success"), (1, 2, 3, 0));
    let creds = password_file(&server, IAM_PASSWORD);
    let s = scanner(&server, &creds, "");

    // Concurrent reviews wait for one token.
    let image = ImageRef::parse("swr.cn-north-4.myhuaweicloud.com/org/a:1").unwrap();
    let target = ScanTarget {
        image: &image,
        digest: D1,
    };
    let (a, b, c) = tokio::join!(s.summary(&target), s.summary(&target), s.summary(&target));
    for got in [a, b, c] {
        assert_eq!(got.unwrap().counts.medium, Some(2));
    }
    let _ = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap();
    assert_eq!(server.calls("IAM"), 1, "one token for twenty requests");
    assert_eq!(server.auth_failures(), 0);

    // Revoked early: the 401 makes the client fetch a new token and try again.
    server.revoke_tokens();
    let got = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(server.calls("IAM"), 2);
}

#[tokio::test]
async fn iam_token_is_fetched_again_before_it_expires() {
    let server = HssServer::start().await;
    *server.state.token_lifetime.lock().unwrap() = Duration::from_secs(2);
    server.add_image(record("org", "a", "1", D1, "unscan"), (0, 0, 0, 0));
    let creds = password_file(&server, IAM_PASSWORD);
    let s = scanner(&server, &creds, "");
    summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap();
    summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap();
    assert_eq!(server.calls("IAM"), 1);
    // Refreshed half-way through a short life, before the server would refuse it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap();
    assert_eq!(server.calls("IAM"), 2);
    assert_eq!(server.auth_failures(), 0);
}

#[tokio::test]
async fn a_wrong_iam_password_is_a_config_error_without_the_password() {
    let server = HssServer::start().await;
    let creds = password_file(&server, "wrong-password-123456");
    let s = scanner(&server, &creds, "");
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Config { .. }), "{msg}");
    assert!(
        msg.contains("IAM token") && msg.contains(IAM_USER) && msg.contains("HTTP 401"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-password-123456"), "{msg}");
    assert_no_secret(&msg);
    assert_eq!(server.calls("ListRegistryImages"), 0);
}

#[tokio::test]
async fn a_route_in_the_config_file_builds_the_scanner() {
    let server = HssServer::start().await;
    server.add_image(record("org", "a", "1", D1, "success"), (0, 1, 0, 0));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/ak"), AK).unwrap();
    std::fs::write(dir.path().join("secrets/sk"), SK).unwrap();
    let yaml = format!(
        r#"
registries:
  - match: "swr.*.myhuaweicloud.com"
    scanner:
      hss:
        region: {REGION}
        projectId: "{PROJECT}"
        endpoint: "{}"
        auth: {{akSk: {{accessKey: {{file: secrets/ak}}, secretKey: {{file: secrets/sk}}}}}}
"#,
        server.url()
    );
    // Relative credential paths are taken relative to the config file.
    let config = Config::from_yaml(&yaml, dir.path()).unwrap();
    let ScannerConfig::Hss(hss) = &config.registries[0].scanner else {
        panic!("not hss")
    };
    let debug = format!("{hss:?}");
    assert!(
        debug.contains(&dir.path().join("secrets/sk").display().to_string()),
        "{debug}"
    );
    let s = vulngate::app::scanners::build_scanner(&config.registries[0].scanner).unwrap();
    assert_eq!(s.kind(), "hss");
    let image = ImageRef::parse("swr.cn-north-4.myhuaweicloud.com/org/a:1").unwrap();
    let got = s
        .summary(&ScanTarget {
            image: &image,
            digest: D1,
        })
        .await
        .unwrap();
    assert_eq!(got.counts.medium, Some(1));

    // A typo in a key is refused with its path.
    let bad = yaml.replace("projectId", "projectID");
    let err = Config::from_yaml(&bad, dir.path()).unwrap_err().to_string();
    assert!(err.contains("projectID"), "{err}");
    // A missing credential file stops start-up with a message naming it.
    std::fs::remove_file(dir.path().join("secrets/sk")).unwrap();
    let err = vulngate::app::scanners::build_scanner(&config.registries[0].scanner)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("hss: auth: secretKey") && err.contains("secrets/sk"),
        "{err}"
    );
}

#[tokio::test]
async fn access_check_posts_a_signed_json_body() {
    let server = HssServer::start().await;
    let creds = aksk_files(SK);
    let s = scanner(&server, &creds, "");
    // The example request of the API page, answered with its example response.
    assert_eq!(s.check_access().await.unwrap(), 1);
    assert_eq!(server.calls("ShowImageSecurityReportStatistic"), 1);
    assert_eq!(
        server.auth_failures(),
        0,
        "the body hash is part of the signature"
    );

    let creds = aksk_files("some-other-secret");
    let s = scanner(&server, &creds, "");
    let err = s.check_access().await.unwrap_err();
    assert!(matches!(err, ScanError::Config { .. }), "{err}");
    assert_eq!(server.auth_failures(), 1);
}

#[tokio::test]
async fn temporary_keys_send_and_sign_the_security_token() {
    let server = HssServer::start().await;
    server.add_image(record("org", "a", "1", D1, "unscan"), (0, 0, 0, 0));
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [("ak", AK), ("sk", SK), ("token", SECURITY_TOKEN)] {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    let p = |n: &str| dir.path().join(n).display().to_string();
    let creds = Creds {
        yaml_auth: format!(
            "{{akSk: {{accessKey: {{file: {}}}, secretKey: {{file: {}}}, securityToken: {{file: {}}}}}}}",
            p("ak"),
            p("sk"),
            p("token")
        ),
        _dir: dir,
    };
    let s = scanner(&server, &creds, "");
    let got = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);
    assert_eq!(server.auth_failures(), 0);

    // A wrong token is refused by the server and reported as a credentials problem.
    std::fs::write(creds._dir.path().join("token"), "stale-token-0000").unwrap();
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    assert!(matches!(err, ScanError::Config { .. }), "{err}");
    assert!(!err.to_string().contains("stale-token-0000"), "{err}");
}

#[tokio::test]
async fn an_unreachable_iam_endpoint_is_unavailable() {
    // A port nothing listens on: bind one, then free it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let server = HssServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), IAM_PASSWORD).unwrap();
    let creds = Creds {
        yaml_auth: format!(
            "{{password: {{iamEndpoint: \"http://{closed}\", domain: {IAM_DOMAIN}, user: {IAM_USER}, password: {{file: {}}}}}}}",
            dir.path().join("password").display()
        ),
        _dir: dir,
    };
    let s = scanner(&server, &creds, "");
    let err = summary(&s, "swr.cn-north-4.myhuaweicloud.com/org/a:1", D1)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{msg}");
    assert!(
        msg.contains("IAM token request") && msg.contains("connection failed"),
        "{msg}"
    );
    assert_no_secret(&msg);
}

#[tokio::test]
async fn counting_can_leave_out_handled_vulnerabilities() {
    // HSS counts handled and unhandled vulnerabilities alike unless asked by handle_status.
    let server = HssServer::start().await;
    server.add_image_with_handled(
        record("org", "a", "1", D1, "success"),
        (1, 0, 2, 0),
        (2, 1, 0, 0),
    );
    let creds = aksk_files(SK);
    let image = "swr.cn-north-4.myhuaweicloud.com/org/a:1";
    let all = summary(&scanner(&server, &creds, ""), image, D1)
        .await
        .unwrap();
    assert_eq!(
        (all.counts.high, all.counts.medium, all.counts.low),
        (Some(3), Some(1), Some(2))
    );
    let unhandled = summary(
        &scanner(&server, &creds, "handleStatus: unhandled\n"),
        image,
        D1,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            unhandled.counts.high,
            unhandled.counts.medium,
            unhandled.counts.low
        ),
        (Some(1), Some(0), Some(2))
    );
    assert!(scanner_config("handleStatus: fixed\n").is_err());
}

fn scanner_config(extra: &str) -> Result<HssScanner, String> {
    let config: HssConfig =
        serde_saphyr::from_str(&format!("region: {REGION}\nprojectId: {PROJECT}\n{extra}"))
            .map_err(|e| e.to_string())?;
    HssScanner::new(&config).map_err(|e| e.to_string())
}

/// A published signing vector: method, path, query, signed headers, body, signature.
type Vector<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [u8],
    &'a str,
);

#[test]
fn the_doubles_signature_check_reproduces_the_vendors_published_vectors() {
    // ../shared/apis/scan-apis.md, D.3: the SDKs' own signer tests and the derived HSS vector.
    let cases: &[Vector] = &[
        (
            "GET",
            "/path",
            "limit=1",
            &[("x-sdk-date", "20060102T150405Z")],
            b"",
            "5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624",
        ),
        (
            "POST",
            "/path",
            "key=value",
            &[("x-sdk-date", "20060102T150405Z")],
            b"{\"Name\":\"test\",\"Id\":1}\n",
            "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59",
        ),
        (
            "GET",
            "/resources",
            "size=1",
            &[
                ("host", "service.endpoint.myhuaweicloud.com"),
                ("x-sdk-date", "20200608T023900Z"),
            ],
            b"",
            "cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842",
        ),
        (
            "POST",
            "/resources",
            "size=1",
            &[
                ("host", "service.endpoint.myhuaweicloud.com"),
                ("x-sdk-date", "20200608T023900Z"),
            ],
            b"{\"name\":\"test\",\"id\":1}",
            "436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f",
        ),
        (
            "GET",
            "/v5/0123456789abcdef0123456789abcdef/image/img-0001/vulnerabilities",
            "image_name=nginx&image_type=private_image&limit=10&namespace=demo-org&offset=0&repair_necessity=immediate_repair&tag_name=1.25",
            &[
                ("host", "hss.cn-north-4.myhuaweicloud.com"),
                ("x-project-id", "0123456789abcdef0123456789abcdef"),
                ("x-sdk-date", "20200608T023900Z"),
            ],
            b"",
            "51aa1961b9c582be7c8d5da8194dfc2fa00798694dff3754c3a3bce5d74bfad5",
        ),
    ];
    for (method, path, query, headers, body, want) in cases {
        let got = hss_server::sdk_signature("SecretKey", method, path, query, headers, body);
        assert_eq!(&got, want, "{method} {path}?{query}");
    }
    // The canonical query of the SDKs' shared vector (escaping, sorting, repeated keys).
    assert_eq!(
        hss_server::canonical_query(
            "limit=1&enable=true&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29&path=%2Ftmp%2F123&multi=3&multi=1&multi=2"
        ),
        "enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29"
    );
}

#[test]
fn the_doubles_records_have_the_sdk_models_types() {
    // RegistryImagesInfo (services/hss/v5): id int64, counts int32, times int64 ms.
    let r = record("org", "a", "1", D1, "success");
    assert!(r["id"].is_i64(), "id is an int64: {}", r["id"]);
    for key in [
        "vul_num",
        "unsafe_setting_num",
        "malicious_file_num",
        "image_size",
    ] {
        assert!(r[key].is_i64(), "{key}: {}", r[key]);
    }
    for key in ["latest_update_time", "latest_scan_time", "latest_sync_time"] {
        assert!(r[key].is_i64(), "{key}: {}", r[key]);
    }
}
