//! The `sas` scanner against an in-test Security Center OpenAPI server that verifies
//! every signature on its own and answers with the documented shapes.

#[path = "support/alibaba_server.rs"]
mod alibaba_server;
mod support;

use std::time::Duration;

use alibaba_server::{Server, fixture};
use serde_json::json;
use vulngate::config::alibaba::SasConfig;
use vulngate::domain::scan_error::ScanError;
use vulngate::domain::summary::{ExtraCount, ScanStatus, ScanSummary};
use vulngate::image::ImageRef;
use vulngate::scan::sas::SasScanner;
use vulngate::scan::{ScanTarget, Scanner};

const HOST: &str = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
const HEX: &str = "a7978d51f5eddf7612ab15ae46bd4b4257bf59da77c2aafc9d9d8ab41bb30000";
const CLEAN_HEX: &str = "c958b80f00000000000000000000000000000000000000000000000000000000";
const SECRET: &str = "sas-secret-value-1234";

async fn setup() -> (Server, tempfile::TempDir) {
    let server = Server::start().await;
    server.with(|d| {
        d.keys.insert("LTAI-sas".into(), (SECRET.into(), None));
        d.sas_tasks.insert(
            HEX.into(),
            json!({"Status": "SUCCESS", "Target": HEX, "TaskType": "IMAGE_SCAN",
                   "FinishTime": 1669693430977u64, "TaskId": "0a960b9a48b788a8689154b032bf0000"}),
        );
        d.sas_vuls.insert((HEX.into(), "asap".into()), 7);
        d.sas_vuls.insert((HEX.into(), "later".into()), 12);
        d.sas_vuls.insert((HEX.into(), "nntf".into()), 30);
        let mut counts = fixture("describe_image_security_scan_count.json");
        counts["Data"]["ImageCveVulCount"] = json!(49);
        counts["Data"]["ImageScaVulCount"] = json!(5);
        counts["Data"]["ImageMaliciousFileCount"] = json!(1);
        counts["Data"]["ImageBaselineCount"] = json!(3);
        d.sas_counts.insert(HEX.into(), counts);
        // The vendor's example answer (all zero), verbatim.
        d.sas_tasks.insert(
            CLEAN_HEX.into(),
            json!({"Status": "SUCCESS", "Target": CLEAN_HEX, "FinishTime": 1669693430977u64}),
        );
        d.sas_counts.insert(
            CLEAN_HEX.into(),
            fixture("describe_image_security_scan_count.json"),
        );
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id"), "LTAI-sas").unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    (server, dir)
}

fn scanner(server: &Server, dir: &tempfile::TempDir, extra: &str) -> SasScanner {
    let yaml = format!(
        "region: cn-hangzhou\nendpoint: {}\ncredentials:\n  accessKeyIdFile: {}\n  accessKeySecretFile: {}\n{extra}",
        server.url,
        dir.path().join("id").display(),
        dir.path().join("secret").display(),
    );
    let config: SasConfig = serde_saphyr::from_str(&yaml).unwrap();
    SasScanner::with_env(&config, &|_| None).unwrap()
}

async fn summary(scanner: &SasScanner, hex: &str) -> Result<ScanSummary, ScanError> {
    let image = ImageRef::parse(&format!("{HOST}/team/app:1.24")).unwrap();
    let digest = format!("sha256:{hex}");
    scanner
        .summary(&ScanTarget {
            image: &image,
            digest: &digest,
        })
        .await
}

#[tokio::test]
async fn necessity_levels_map_to_high_medium_low_with_extras() {
    let (server, dir) = setup().await;
    let scanner = scanner(&server, &dir, "instanceId: cri-demo\n");
    let got = summary(&scanner, HEX).await.unwrap();
    assert_eq!(got.scanner, "sas");
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(got.counts.high, Some(7), "asap");
    assert_eq!(got.counts.medium, Some(12), "later");
    assert_eq!(got.counts.low, Some(30), "nntf");
    assert_eq!(got.counts.critical, None);
    assert_eq!(got.counts.unknown, None);
    assert_eq!(
        got.extra.get(&ExtraCount::ApplicationVulnerabilities),
        Some(&5)
    );
    assert_eq!(got.extra.get(&ExtraCount::MaliciousFiles), Some(&1));
    assert_eq!(got.extra.get(&ExtraCount::BaselineRisks), Some(&3));
    assert_eq!(
        got.finished_at.map(|t| t.unix_timestamp()),
        Some(1669693430)
    );

    assert_eq!(server.count("DescribeImageVulList"), 3);
    assert_eq!(server.count("DescribeImageSecurityScanCount"), 1);
    let seen = server.with(|d| d.seen.clone());
    assert!(
        seen.iter()
            .all(|r| r.signature == "acs3" && r.access_key_id == "LTAI-sas")
    );
    let vul = seen
        .iter()
        .find(|r| r.action == "DescribeImageVulList")
        .unwrap();
    assert_eq!(vul.params["Digest"], HEX, "bare hex digest");
    assert_eq!(vul.params["RepoNamespace"], "team");
    assert_eq!(vul.params["RepoName"], "app");
    assert_eq!(
        vul.params["RepoRegionId"], "cn-hangzhou",
        "taken from the host"
    );
    assert_eq!(vul.params["RepoInstanceId"], "cri-demo");
    let count = seen
        .iter()
        .find(|r| r.action == "DescribeImageSecurityScanCount")
        .unwrap();
    assert_eq!(count.params["ImageDigest"], HEX);
    assert!(server.with(|d| d.rejected.is_empty()));
}

#[tokio::test]
async fn vendor_example_answer_gives_zero_extras() {
    let (server, dir) = setup().await;
    let scanner = scanner(&server, &dir, "signatureVersion: v1\n");
    let got = summary(&scanner, CLEAN_HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(
        (got.counts.high, got.counts.medium, got.counts.low),
        (Some(0), Some(0), Some(0))
    );
    for extra in ExtraCount::ALL {
        assert_eq!(got.extra.get(&extra), Some(&0), "{extra:?}");
    }
    assert!(server.with(|d| d.seen.iter().all(|r| r.signature == "v1")));
}

#[tokio::test]
async fn scan_states() {
    let (server, dir) = setup().await;
    let scanner = scanner(&server, &dir, "");
    for (status, expected) in [
        ("PROCESSING", ScanStatus::Scanning),
        ("PRE_ANALYZER", ScanStatus::Scanning),
        ("FAIL", ScanStatus::Failed),
        ("TIMOUT", ScanStatus::Failed),
    ] {
        server.with(|d| d.sas_tasks.get_mut(HEX).unwrap()["Status"] = json!(status));
        assert_eq!(
            summary(&scanner, HEX).await.unwrap().status,
            expected,
            "{status}"
        );
    }
    assert_eq!(server.count("DescribeImageVulList"), 0);

    let unknown = "f".repeat(64);
    assert_eq!(
        summary(&scanner, &unknown).await.unwrap().status,
        ScanStatus::NotScanned
    );
    assert_eq!(server.count("PublicCreateImageScanTask"), 0);

    let scanner = self::scanner(&server, &dir, "scanOnMissing: true\n");
    assert_eq!(
        summary(&scanner, &unknown).await.unwrap().status,
        ScanStatus::Scanning
    );
    let create = server.with(|d| {
        d.seen
            .iter()
            .find(|r| r.action == "PublicCreateImageScanTask")
            .cloned()
            .unwrap()
    });
    assert_eq!(create.params["Digests"], unknown);
    assert_eq!(create.params["RegistryTypes"], "acr");
    assert_eq!(create.params["RepoNamespaces"], "team");
    assert_eq!(create.params["Tags"], "1.24");
    // The task now exists: no second request.
    assert_eq!(
        summary(&scanner, &unknown).await.unwrap().status,
        ScanStatus::Scanning
    );
    assert_eq!(server.count("PublicCreateImageScanTask"), 1);
}

#[tokio::test]
async fn throttled_and_unavailable_calls_are_retried() {
    let (server, dir) = setup().await;
    server.with(|d| {
        d.throttle
            .insert("DescribeImageSecurityScanCount".into(), 2);
        d.unavailable
            .insert("DescribeImageLatestScanTask".into(), 1);
    });
    let scanner = scanner(&server, &dir, "retryBudget: 5s\n");
    let got = summary(&scanner, HEX).await.unwrap();
    assert_eq!(got.counts.high, Some(7));
    assert_eq!(server.count("DescribeImageLatestScanTask"), 2);
    assert_eq!(server.count("DescribeImageSecurityScanCount"), 3);
}

#[tokio::test]
async fn permission_and_server_errors() {
    let (server, dir) = setup().await;
    server.with(|d| {
        d.errors.insert(
            "DescribeImageVulList".into(),
            (403, json!({"RequestId": "RID-SAS-403", "Code": "NoPermission", "Message": "caller has no permission"})),
        );
    });
    let scanner = scanner(&server, &dir, "timeout: 300ms\n");
    match summary(&scanner, HEX).await.unwrap_err() {
        ScanError::Config { message, .. } => {
            assert!(
                message.contains("yundun-sas:DescribeImageVulList"),
                "{message}"
            );
            assert!(message.contains("RID-SAS-403"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    server.with(|d| {
        d.errors.clear();
        d.errors.insert(
            "DescribeImageLatestScanTask".into(),
            (500, json!({"RequestId": "RID-SAS-500", "Code": "ServerError", "Message": "ServerError"})),
        );
    });
    match summary(&scanner, HEX).await.unwrap_err() {
        ScanError::Unavailable { message, .. } => {
            assert!(message.contains("RID-SAS-500"), "{message}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    server.with(|d| {
        d.errors.clear();
        d.delay
            .insert("DescribeImageVulList".into(), Duration::from_secs(2));
    });
    match summary(&scanner, HEX).await.unwrap_err() {
        ScanError::Unavailable { message, .. } => {
            assert!(message.contains("timed out"), "{message}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_task_of_another_image_never_marks_this_one_scanned() {
    let (server, dir) = setup().await;
    // The answer lists finished tasks, but none for the digest asked about: one of
    // another image, and one that names no image at all.
    server.with(|d| {
        d.sas_listed_tasks = vec![
            json!({"Status": "SUCCESS", "Target": CLEAN_HEX, "FinishTime": 1669693430977u64}),
            json!({"Status": "SUCCESS", "FinishTime": 1669693430977u64}),
        ];
    });
    let scanner = scanner(&server, &dir, "");
    let never_scanned = "e".repeat(64);
    let got = summary(&scanner, &never_scanned).await.unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned);
    assert_eq!(got.counts.total(), 0);
    assert_eq!(
        server.count("DescribeImageVulList"),
        0,
        "no counts are read for an image that was never scanned"
    );
    // The digest's own task still decides when it is listed after the others.
    let got = summary(&scanner, HEX).await.unwrap();
    assert_eq!(got.status, ScanStatus::Complete);
    assert_eq!(got.counts.high, Some(7));
}

/// A never-scanned image on a `scanOnMissing` scanner, with Security Center answering
/// PublicCreateImageScanTask with `data`.
async fn refused_by(data: serde_json::Value, reason: &str) {
    let (server, dir) = setup().await;
    server.with(|d| d.sas_create_data = Some(data));
    let scanner = scanner(&server, &dir, "scanOnMissing: true\n");
    let unscanned = "d".repeat(64);
    let got = summary(&scanner, &unscanned).await.unwrap();
    assert_eq!(got.status, ScanStatus::NotScanned, "no task: not scanning");
    let note = got.note.expect("the summary says why");
    assert!(note.contains(reason), "{note}");
    // Held back: the next lookups do not ask again.
    for _ in 0..3 {
        let again = summary(&scanner, &unscanned).await.unwrap();
        assert_eq!(again.status, ScanStatus::NotScanned);
        assert!(
            again.note.as_deref().is_some_and(|n| n.contains(reason)),
            "{:?}",
            again.note
        );
    }
    let other = summary(&scanner, &"b".repeat(64)).await.unwrap();
    assert_eq!(other.status, ScanStatus::NotScanned);
    assert_eq!(server.count("PublicCreateImageScanTask"), 1, "asked once");
}

#[tokio::test]
async fn a_scan_task_security_center_did_not_create_is_not_scanning() {
    refused_by(
        json!({"CanCreate": false, "Result": "SUCCESS", "Status": "INIT"}),
        "CanCreate=false",
    )
    .await;
    refused_by(
        json!({"CanCreate": true, "Result": "TASK_NOT_SUPPORT_REGION"}),
        "TASK_NOT_SUPPORT_REGION",
    )
    .await;
}

#[tokio::test]
async fn scans_requested_on_a_miss_are_rate_limited() {
    let (server, dir) = setup().await;
    let scanner = scanner(
        &server,
        &dir,
        "scanOnMissing: true\nscanRequests: {max: 3, per: 1h}\n",
    );
    let mut scanning = 0;
    for n in 0..40u32 {
        let got = summary(&scanner, &format!("{:064x}", 0xd000 + n))
            .await
            .unwrap();
        match got.status {
            ScanStatus::Scanning => scanning += 1,
            ScanStatus::NotScanned => {
                let note = got.note.unwrap_or_default();
                assert!(note.contains("limit of 3 scan request(s) per 1h"), "{note}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(scanning, 3);
    assert_eq!(
        server.count("PublicCreateImageScanTask"),
        3,
        "3 paid scans, not 40"
    );
}

#[tokio::test]
async fn the_response_says_why_no_scan_was_requested() {
    let (server, dir) = setup().await;
    server.with(|d| d.sas_create_data = Some(json!({"CanCreate": false})));
    std::fs::write(
        dir.path().join("namespaces.yaml"),
        "kind: List\nitems:\n- kind: Namespace\n  metadata: {name: default}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "namespacesFile: namespaces.yaml\nregistries:\n  - match: \"*.cr.aliyuncs.com\"\n    \
             scanner: {{sas: {{region: cn-hangzhou, endpoint: \"{}\", scanOnMissing: true, \
             credentials: {{accessKeyIdFile: id, accessKeySecretFile: secret}}}}}}\n    registry: {{resolve: false}}\n",
            server.url
        ),
    )
    .unwrap();
    let image = format!("{HOST}/team/app:1.24@sha256:{}", "d".repeat(64));
    let mut command = std::process::Command::new(support::webhook::BIN);
    command
        .args(["check", "--namespace", "default", &image, "--config"])
        .arg(dir.path().join("config.yaml"));
    // Off the test's runtime, which serves the in-test Security Center.
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "denied: {stdout}");
    assert!(
        stdout.contains("sas has no scan of this image") && stdout.contains("CanCreate=false"),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET));
}

#[tokio::test]
async fn the_vul_list_needs_only_type_as_the_sdk_model_says_and_the_scanner_names_the_digest() {
    use vulngate::cloud::alibaba::client::{Api, Method, RpcClient};
    use vulngate::config::alibaba::{ClientSettings, CredentialsConfig, SignatureVersion};
    static VUL_LIST: Api = Api {
        action: "DescribeImageVulList",
        method: Method::Post,
        ram_action: "yundun-sas:DescribeImageVulList",
    };
    let (server, dir) = setup().await;
    // Another image's findings: counted only if a request leaves the digest out.
    server.with(|d| {
        d.sas_vuls.insert((CLEAN_HEX.into(), "asap".into()), 100);
    });
    let settings = ClientSettings {
        endpoint: server.url.clone(),
        credentials: CredentialsConfig::default(),
        signature_version: SignatureVersion::Acs3,
        timeout: Duration::from_secs(2),
        retry_budget: Duration::from_secs(2),
    };
    let env = |k: &str| match k {
        "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAI-sas".to_string()),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some(SECRET.to_string()),
        _ => None,
    };
    let client = RpcClient::new("Sas", "2018-12-03", &settings, &env).unwrap();
    let answer = client
        .call(&VUL_LIST, &[("Type", "cve".to_string())], client.deadline())
        .await
        .expect("Type is the only required parameter");
    assert_eq!(
        answer["TotalCount"],
        7 + 12 + 30 + 100,
        "every image's findings"
    );

    let scanner = scanner(&server, &dir, "");
    let got = summary(&scanner, HEX).await.unwrap();
    assert_eq!(
        (got.counts.high, got.counts.medium, got.counts.low),
        (Some(7), Some(12), Some(30)),
        "only this digest's findings"
    );
}

#[tokio::test]
async fn handled_findings_count_only_when_asked() {
    let (server, dir) = setup().await;
    server.with(|d| {
        d.sas_handled_vuls.insert((HEX.into(), "asap".into()), 4);
        d.sas_handled_vuls.insert((HEX.into(), "nntf".into()), 2);
    });
    let unhandled = summary(&scanner(&server, &dir, ""), HEX).await.unwrap();
    assert_eq!(
        (
            unhandled.counts.high,
            unhandled.counts.medium,
            unhandled.counts.low
        ),
        (Some(7), Some(12), Some(30)),
        "by default only what no operator marked as handled"
    );
    let all = summary(&scanner(&server, &dir, "countHandled: true\n"), HEX)
        .await
        .unwrap();
    assert_eq!(
        (all.counts.high, all.counts.medium, all.counts.low),
        (Some(7 + 4), Some(12), Some(30 + 2)),
        "handled and unhandled, as hss counts"
    );
}
