//! `vulngate precheck` on Alibaba Cloud routes: running pods in a fake apiserver, images
//! on an `acr` and a `sas` route of an in-test OpenAPI server that checks every
//! signature itself. The estimate comes from Security Center's
//! PublicPreCheckImageScanTask with the pending images as filters; `--scan` is refused
//! without a terminal or `--yes`, and with `--yes` asks ACR (CreateRepoTagScanTask) and
//! Security Center (PublicCreateImageScanTask) for exactly the pending digests.

#[path = "support/alibaba_server.rs"]
mod alibaba_server;
mod support;

use std::collections::BTreeSet;
use std::process::Output;

use alibaba_server::{SasImage, Seen, Server};
use serde_json::{Value, json};
use support::apiserver::{FakeApiServer, namespace, running_pod};
use support::cli::Cli;

const SHOP: &str = "shop-registry.cn-hangzhou.cr.aliyuncs.com";
const LAB: &str = "lab-registry.cn-shanghai.cr.aliyuncs.com";
const ACR_SECRET: &str = "acr-secret-value-5678";
const SAS_SECRET: &str = "sas-secret-value-1234";

fn hex(n: u32) -> String {
    format!("{n:064x}")
}

/// `host/namespace/name:tag@sha256:hex`: the digest is in the reference, no registry call.
fn image(host: &str, repo: &str, tag: &str, n: u32) -> String {
    format!("{host}/{repo}:{tag}@sha256:{}", hex(n))
}

fn pod(ns: &str, name: &str, images: &[String]) -> Value {
    let names: Vec<String> = (0..images.len()).map(|i| format!("c{i}")).collect();
    let containers: Vec<(&str, &str)> = names
        .iter()
        .zip(images)
        .map(|(n, i)| (n.as_str(), i.as_str()))
        .collect();
    running_pod(ns, name, &containers)
}

fn sas_image(host_region: &str, instance: &str, repo: &str, tag: &str, n: u32) -> SasImage {
    let (namespace, name) = repo.split_once('/').expect("namespace/name");
    SasImage {
        registry_type: "acr".into(),
        region: host_region.into(),
        instance: instance.into(),
        namespace: namespace.into(),
        name: name.into(),
        tag: tag.into(),
        digest: hex(n),
    }
}

struct Cluster {
    _apiserver: FakeApiServer,
    server: Server,
    /// Holds the config and credentials until the test ends.
    _dir: tempfile::TempDir,
    cli: Cli,
}

/// Two images on the acr route (shop), two on the sas route (lab), one of them with a
/// scan still running, and Security Center knowing a few more images than run here.
async fn cluster(with_sas_route: bool) -> Cluster {
    let apiserver = FakeApiServer::start().await;
    apiserver.upsert(namespace("shop", &[]));
    apiserver.upsert(namespace("lab", &[]));
    let shop_web = image(SHOP, "shop/web", "1", 1);
    let shop_api = image(SHOP, "shop/api", "2", 2);
    let lab_job = image(LAB, "lab/job", "7", 3);
    let lab_etl = image(LAB, "lab/etl", "8", 4);
    apiserver.upsert(pod("shop", "web-1", &[shop_web.clone(), shop_api.clone()]));
    apiserver.upsert(pod("shop", "web-2", &[shop_web]));
    apiserver.upsert(pod("lab", "batch", &[lab_job, lab_etl]));

    let server = Server::start().await;
    server.with(|d| {
        d.keys.insert("LTAI-acr".into(), (ACR_SECRET.into(), None));
        d.keys.insert("LTAI-sas".into(), (SAS_SECRET.into(), None));
        d.instances = vec![("cri-shop".into(), vec![SHOP.into()])];
        for (name, repo_id, tag, n) in [("web", "crr-web", "1", 1), ("api", "crr-api", "2", 2)] {
            d.repos.insert(
                ("cri-shop".into(), "shop".into(), name.into()),
                repo_id.into(),
            );
            // Never scanned: GetRepoTagScanStatus answers without a status.
            d.tags.insert(
                repo_id.into(),
                vec![(tag.into(), hex(n)), ("old".into(), hex(90 + n))],
            );
        }
        // lab/etl is being scanned: no finished scan, but no more quota to spend on it.
        d.sas_tasks.insert(
            hex(4),
            json!({"Status": "PROCESSING", "Target": hex(4), "TaskType": "IMAGE_SCAN"}),
        );
        d.sas_images = vec![
            sas_image("cn-hangzhou", "cri-shop", "shop/web", "1", 1),
            sas_image("cn-hangzhou", "cri-shop", "shop/api", "2", 2),
            // Same repositories, other digests: not running, not to be counted.
            sas_image("cn-hangzhou", "cri-shop", "shop/web", "old", 91),
            sas_image("cn-hangzhou", "cri-shop", "shop/api", "old", 92),
            sas_image("cn-shanghai", "cri-lab", "lab/job", "7", 3),
            sas_image("cn-shanghai", "cri-lab", "lab/etl", "8", 4),
            sas_image("cn-shanghai", "cri-lab", "lab/job", "6", 93),
        ];
    });

    let dir = tempfile::tempdir().expect("temp dir");
    for (file, content) in [
        ("acr-id", "LTAI-acr"),
        ("acr-secret", ACR_SECRET),
        ("sas-id", "LTAI-sas"),
        ("sas-secret", SAS_SECRET),
    ] {
        std::fs::write(dir.path().join(file), content).expect("write credentials");
    }
    let kubeconfig = apiserver.write_kubeconfig(dir.path());
    let sas_route = if with_sas_route {
        format!(
            "  - match: \"{LAB}\"\n    scanner: {{sas: {{region: cn-shanghai, instanceId: cri-lab, endpoint: \"{}\", credentials: {{accessKeyIdFile: sas-id, accessKeySecretFile: sas-secret}}}}}}\n    registry: {{resolve: false}}\n",
            server.url
        )
    } else {
        String::new()
    };
    std::fs::create_dir_all(dir.path().join("scans")).expect("mkdir scans");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "deadline: 10s\nregistries:\n  - match: \"{SHOP}\"\n    scanner: {{acr: {{region: cn-hangzhou, instanceId: cri-shop, endpoint: \"{}\", credentials: {{accessKeyIdFile: acr-id, accessKeySecretFile: acr-secret}}}}}}\n    registry: {{resolve: false}}\n{sas_route}  - match: \"*\"\n    scanner: {{file: {{path: scans}}}}\n    registry: {{resolve: false}}\nlog: {{format: json, level: warn}}\n",
            server.url
        ),
    )
    .expect("write config");
    Cluster {
        _apiserver: apiserver,
        server,
        cli: Cli {
            dir: dir.path().to_path_buf(),
            kubeconfig,
        },
        _dir: dir,
    }
}

impl Cluster {
    async fn vulngate(&self, args: &[&str]) -> Output {
        self.cli.run(args).await
    }

    async fn vulngate_on_terminal(&self, args: &[&str], input: &'static str) -> Output {
        self.cli.run_on_terminal(args, input).await
    }

    fn seen(&self, action: &str) -> Vec<Seen> {
        self.server.with(|d| {
            assert!(d.rejected.is_empty(), "rejected requests: {:?}", d.rejected);
            d.seen
                .iter()
                .filter(|s| s.action == action)
                .cloned()
                .collect()
        })
    }
}

fn list(seen: &Seen, key: &str) -> BTreeSet<String> {
    seen.params
        .get(key)
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precheck_estimates_the_scan_quota_of_the_pending_images() {
    let cluster = cluster(true).await;
    let out = cluster.vulngate(&["precheck"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out);
    assert!(
        stdout.contains(&format!(
            "{SHOP} (scanner acr): 2 image(s) without a finished scan"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{LAB} (scanner sas): 2 image(s) without a finished scan"
        )),
        "{stdout}"
    );
    // Per group, right under its images, and the sum before the closing count.
    let shop_group = stdout
        .split(&format!("{SHOP} (scanner acr)"))
        .nth(1)
        .expect("shop group");
    assert!(
        shop_group.contains(
            "  scan quota estimate (Security Center): 2 image(s) to scan, 2 scan quota to consume"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  scan quota estimate (Security Center): 2 image(s) to scan, 1 scan quota to consume"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("scan quota estimate: 4 image(s) to scan, 3 scan quota to consume"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("4 image(s) without a finished scan"),
        "{stdout}"
    );

    let prechecks = cluster.seen("PublicPreCheckImageScanTask");
    assert_eq!(
        prechecks.len(),
        4,
        "one request per repository: {prechecks:?}"
    );
    // Both signed with the sas route's key: Security Center answers for the acr route too.
    assert!(
        prechecks.iter().all(|s| s.access_key_id == "LTAI-sas"),
        "{prechecks:?}"
    );
    let named = |namespace: &str, name: &str| {
        prechecks
            .iter()
            .find(|s| {
                list(s, "RepoNamespaces") == set(&[namespace])
                    && list(s, "RepoNames") == set(&[name])
            })
            .unwrap_or_else(|| panic!("estimate for {namespace}/{name}: {prechecks:?}"))
    };
    for (name, n) in [("web", 1), ("api", 2)] {
        let shop = named("shop", name);
        assert_eq!(list(shop, "RegistryTypes"), set(&["acr"]));
        assert_eq!(list(shop, "RegionIds"), set(&["cn-hangzhou"]));
        assert_eq!(list(shop, "InstanceIds"), set(&["cri-shop"]));
        assert_eq!(list(shop, "Digests"), set(&[&hex(n)]));
        assert!(!shop.params.contains_key("Tags"), "{shop:?}");
    }
    for (name, n) in [("job", 3), ("etl", 4)] {
        let lab = named("lab", name);
        assert_eq!(list(lab, "RegionIds"), set(&["cn-shanghai"]));
        assert_eq!(list(lab, "InstanceIds"), set(&["cri-lab"]));
        assert_eq!(list(lab, "Digests"), set(&[&hex(n)]));
    }
    // An estimate is only an estimate.
    assert_eq!(cluster.seen("CreateRepoTagScanTask").len(), 0);
    assert_eq!(cluster.seen("PublicCreateImageScanTask").len(), 0);
    // No secret on any output.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains(SAS_SECRET) && !stderr.contains(SAS_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sas_route_the_estimate_is_unavailable_and_says_why() {
    let cluster = cluster(false).await;
    let out = cluster.vulngate(&["precheck"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out);
    assert!(
        stdout.contains("  scan quota estimate unavailable: no sas route is configured"),
        "{stdout}"
    );
    assert!(!stdout.contains("scan quota estimate:"), "{stdout}");
    assert_eq!(cluster.seen("PublicPreCheckImageScanTask").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_is_refused_without_a_terminal_or_yes() {
    let cluster = cluster(true).await;
    let out = cluster.vulngate(&["precheck", "--scan"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(stderr.contains("4 image(s)"), "{stderr}");
    // The estimate is still printed first.
    assert!(
        text(&out).contains("scan quota estimate: 4 image(s)"),
        "{out:?}"
    );
    assert_eq!(cluster.seen("CreateRepoTagScanTask").len(), 0);
    assert_eq!(cluster.seen("PublicCreateImageScanTask").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_with_yes_asks_each_scanner_for_the_pending_digests() {
    let cluster = cluster(true).await;
    let out = cluster.vulngate(&["precheck", "--scan", "--yes"]).await;
    // Still pending until the scans finish.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out);
    assert!(
        stdout.contains(&format!(
            "  asked ACR to scan {} sha256:{}",
            image(SHOP, "shop/web", "1", 1),
            hex(1)
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("  asked Security Center to scan 1 image(s): task task-1, status INIT"),
        "{stdout}"
    );
    assert!(
        stdout.contains("scan requested for 4 image(s), 0 failed"),
        "{stdout}"
    );

    let acr: BTreeSet<(String, String, String, String)> = cluster
        .seen("CreateRepoTagScanTask")
        .iter()
        .map(|s| {
            let p = |k: &str| s.params.get(k).cloned().unwrap_or_default();
            (p("InstanceId"), p("RepoId"), p("Tag"), p("Digest"))
        })
        .collect();
    let expected: BTreeSet<(String, String, String, String)> = [
        ("cri-shop", "crr-web", "1", hex(1)),
        ("cri-shop", "crr-api", "2", hex(2)),
    ]
    .into_iter()
    .map(|(i, r, t, d)| (i.to_string(), r.to_string(), t.to_string(), d))
    .collect();
    assert_eq!(acr, expected);
    assert!(
        cluster
            .seen("CreateRepoTagScanTask")
            .iter()
            .all(|s| s.access_key_id == "LTAI-acr")
    );

    let sas = cluster.seen("PublicCreateImageScanTask");
    assert_eq!(sas.len(), 2, "one request per repository: {sas:?}");
    assert!(sas.iter().all(|s| s.access_key_id == "LTAI-sas"));
    let asked: BTreeSet<(String, String)> = sas
        .iter()
        .map(|s| (s.params["RepoNames"].clone(), s.params["Digests"].clone()))
        .collect();
    assert_eq!(
        asked,
        [("job".to_string(), hex(3)), ("etl".to_string(), hex(4))]
            .into_iter()
            .collect()
    );
    // The servers now have the scans under way.
    cluster.server.with(|d| {
        assert_eq!(
            d.scan_status
                .get(&("crr-web".to_string(), "1".to_string()))
                .map(String::as_str),
            Some("SCANNING")
        );
        assert!(d.sas_tasks.contains_key(&hex(3)));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_on_a_terminal_asks_first_and_takes_no_for_an_answer() {
    let cluster = cluster(true).await;
    let out = cluster
        .vulngate_on_terminal(&["precheck", "--scan"], "n\n")
        .await;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{transcript}");
    assert!(
        transcript.contains("Ask the scanners to scan 4 image(s) (estimated scan quota: 3)? [y/N]"),
        "{transcript}"
    );
    assert!(transcript.contains("no scan requested"), "{transcript}");
    assert_eq!(cluster.seen("CreateRepoTagScanTask").len(), 0);
    assert_eq!(cluster.seen("PublicCreateImageScanTask").len(), 0);

    let out = cluster
        .vulngate_on_terminal(&["precheck", "--scan"], "y\n")
        .await;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{transcript}");
    assert!(
        transcript.contains("scan requested for 4 image(s), 0 failed"),
        "{transcript}"
    );
    assert_eq!(cluster.seen("CreateRepoTagScanTask").len(), 2);
    assert_eq!(
        cluster.seen("PublicCreateImageScanTask").len(),
        2,
        "one per repository"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_that_cannot_be_looked_up_are_named_not_dropped() {
    let cluster = cluster(true).await;
    cluster.server.with(|d| {
        d.errors.insert(
            "GetRepository".into(),
            (
                403,
                json!({"Code": "NoPrivilege", "Message": "Access denied for this user.", "RequestId": "REQ-1"}),
            ),
        );
    });
    let out = cluster.vulngate(&["precheck"]).await;
    // lab's images are still pending.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out);
    assert!(
        stdout.contains(
            "2 image(s) could not be looked up, so whether they have a finished scan is not known:"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  {}: ", image(SHOP, "shop/web", "1", 1)))
            && stdout.contains("NoPrivilege"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("{SHOP} (scanner acr)")),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("2 image(s) without a finished scan"),
        "{stdout}"
    );

    // With nothing known to be pending, an incomplete check is an error.
    let out = cluster.vulngate(&["precheck", "--namespace", "shop"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_tasks_security_center_did_not_create_are_failures_that_say_why() {
    for (data, why) in [
        (json!({"CanCreate": false}), "CanCreate=false"),
        (
            json!({"CanCreate": true, "Result": "TASK_NOT_SUPPORT_REGION"}),
            "result TASK_NOT_SUPPORT_REGION",
        ),
    ] {
        let cluster = cluster(true).await;
        cluster.server.with(|d| d.sas_create_data = Some(data));
        let out = cluster.vulngate(&["precheck", "--scan", "--yes"]).await;
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stdout = text(&out);
        assert!(
            stdout.contains("Security Center created no scan task") && stdout.contains(why),
            "{stdout}"
        );
        assert!(
            stdout.contains("scan requested for 2 image(s), 2 failed"),
            "the ACR scans still count, the refused ones do not: {stdout}"
        );
        cluster
            .server
            .with(|d| assert!(!d.sas_tasks.contains_key(&hex(3)), "no task was created"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_without_a_digest_does_not_widen_the_estimate() {
    let cluster = cluster(true).await;
    // lab/job:6 runs by tag alone: its digest is not known.
    cluster
        ._apiserver
        .upsert(pod("lab", "tagged", &[format!("{LAB}/lab/job:6")]));
    cluster.server.with(|d| {
        // Security Center knows these too; none of them runs here.
        d.sas_images
            .push(sas_image("cn-shanghai", "cri-lab", "lab/etl", "7", 94));
        d.sas_images
            .push(sas_image("cn-shanghai", "cri-lab", "lab/job", "8", 95));
    });
    let out = cluster.vulngate(&["precheck"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out);
    let lab_group = stdout
        .split(&format!("{LAB} (scanner sas)"))
        .nth(1)
        .expect("lab group");
    // lab/job:7 and lab/job:6 need quota, lab/etl:8 is being scanned already.
    assert!(
        lab_group.contains(
            "  scan quota estimate (Security Center): 3 image(s) to scan, 2 scan quota to consume"
        ),
        "{stdout}"
    );
    // Every request names what it means: one repository, and its digests or its tags.
    for request in cluster.seen("PublicPreCheckImageScanTask") {
        assert_eq!(list(&request, "RepoNames").len(), 1, "{request:?}");
        assert_eq!(list(&request, "RepoNamespaces").len(), 1, "{request:?}");
        let by_digest = request.params.contains_key("Digests");
        let by_tag = request.params.contains_key("Tags");
        assert!(by_digest != by_tag, "digests or tags: {request:?}");
    }
    let tag_only: Vec<Seen> = cluster
        .seen("PublicPreCheckImageScanTask")
        .into_iter()
        .filter(|s| s.params.contains_key("Tags"))
        .collect();
    assert_eq!(tag_only.len(), 1, "{tag_only:?}");
    assert_eq!(list(&tag_only[0], "RepoNames"), set(&["job"]));
    assert_eq!(list(&tag_only[0], "Tags"), set(&["6"]));
}
