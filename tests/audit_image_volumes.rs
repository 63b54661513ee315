//! Image volumes of running Pods are judged by `vulngate audit` and counted by
//! `vulngate precheck` like containers (a fake apiserver, the real binary).

mod support;

use serde_json::{Value, json};
use support::apiserver::{FakeApiServer, namespace};
use support::cli::Cli;
use support::webhook::digest;

const CLEAN: &str = "registry.example.com/app/clean:1";
const CRIT1: &str = "registry.example.com/app/crit1:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_precheck_judge_image_volumes_like_containers() {
    let apiserver = FakeApiServer::start().await;
    apiserver.upsert(namespace("shop", &[]));
    let unscanned = format!(
        "registry.example.com/models/new@{}",
        digest("never-scanned")
    );
    apiserver.upsert(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "containers": [{"name": "app", "image": CLEAN}],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "tools", "image": {"reference": CRIT1}},
                {"name": "models", "image": {"reference": unscanned}},
            ],
        },
        "status": {"phase": "Running"},
    }));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = apiserver.write_kubeconfig(dir.path());
    std::fs::create_dir_all(dir.path().join("scans")).expect("mkdir scans");
    std::fs::write(
        dir.path().join("scans/summaries.yaml"),
        format!(
            "summaries:\n  - {{digest: \"{}\", image: \"{CLEAN}\"}}\n  - {{digest: \"{}\", image: \"{CRIT1}\", critical: 1}}\n",
            digest("clean"),
            digest("crit1"),
        ),
    )
    .expect("write summaries");
    std::fs::write(
        dir.path().join("config.yaml"),
        "deadline: 5s\nregistries:\n  - match: \"*\"\n    scanner: {file: {path: scans}}\n    registry: {resolve: false}\nlog: {format: json, level: warn}\n",
    )
    .expect("write config");
    let cli = Cli {
        dir: dir.path().to_path_buf(),
        kubeconfig,
    };

    let out = cli.run(&["audit", "--output", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "an image volume is over its limit: {out:?}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
    let rows = report["containers"].as_array().expect("containers");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["container"] == name)
            .unwrap_or_else(|| panic!("no row {name} in {report:#}"))
    };
    assert_eq!(row("tools")["containerType"], "imageVolume", "{report:#}");
    assert_eq!(row("tools")["verdict"], "denied", "{report:#}");
    assert_eq!(row("tools")["digest"], digest("crit1"), "{report:#}");
    assert_eq!(row("app")["verdict"], "allowed", "{report:#}");
    assert_eq!(row("models")["status"], "unscanned", "{report:#}");
    assert!(
        rows.iter().all(|r| r["container"] != "scratch"),
        "a volume without an image is no image: {report:#}"
    );

    let out = cli.run(&["precheck"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text.contains(&format!(
            "  {unscanned} {} (1 pod(s))",
            digest("never-scanned")
        )),
        "{text}"
    );
}
