//! `vulngate audit` against a fake apiserver holding namespaces with different policies
//! and running pods: verdicts equal `vulngate review` of the same pods, each digest is
//! looked up once, JSON and CSV hold the documented columns, filters and exit statuses.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::apiserver::{FakeApiServer, namespace};
use support::cli::Cli;
use support::webhook::{BIN, digest, review};

const HIGH3: &str = "registry.example.com/app/high3:1";
const CLEAN: &str = "registry.example.com/app/clean:1";
const CRIT1: &str = "registry.example.com/app/crit1:1";

fn unscanned_image() -> String {
    format!("registry.example.com/app/new@{}", digest("never-scanned"))
}

const CSV_COLUMNS: [&str; 16] = [
    "namespace",
    "pod",
    "workload",
    "container",
    "container_type",
    "image",
    "digest",
    "critical",
    "high",
    "medium",
    "low",
    "unknown",
    "status",
    "verdict",
    "failed_limits",
    "message",
];

fn pod(ns: &str, name: &str, owner: Option<(&str, &str)>, spec: Value, phase: &str) -> Value {
    let owners: Vec<Value> = owner
        .into_iter()
        .map(|(kind, name)| {
            json!({"apiVersion": "apps/v1", "kind": kind, "name": name,
                   "uid": format!("uid-{name}"), "controller": true})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": owners},
        "spec": spec,
        "status": {"phase": phase},
    })
}

fn containers(list: &[(&str, &str)]) -> Vec<Value> {
    list.iter()
        .map(|(n, i)| json!({"name": n, "image": i}))
        .collect()
}

struct Cluster {
    _apiserver: FakeApiServer,
    dir: tempfile::TempDir,
    cli: Cli,
    pods: Vec<Value>,
}

async fn cluster() -> Cluster {
    let apiserver = FakeApiServer::start().await;
    apiserver.upsert(namespace("strict", &[]));
    apiserver.upsert(namespace(
        "relaxed",
        &[
            ("vulngate.io/max-high", "5"),
            ("vulngate.io/unscanned", "warn"),
        ],
    ));
    apiserver.upsert(namespace("soft", &[("vulngate.io/mode", "warn")]));
    apiserver.upsert(namespace("kube-system", &[]));
    let unscanned = unscanned_image();
    let pods = vec![
        pod(
            "strict",
            "web-1",
            Some(("ReplicaSet", "web-7d9f")),
            json!({"containers": containers(&[("app", HIGH3), ("sidecar", CLEAN)])}),
            "Running",
        ),
        pod(
            "strict",
            "web-2",
            Some(("ReplicaSet", "web-7d9f")),
            json!({"containers": containers(&[("app", HIGH3), ("sidecar", CLEAN)])}),
            "Running",
        ),
        pod(
            "strict",
            "fresh",
            None,
            json!({"containers": containers(&[("app", &unscanned)])}),
            "Pending",
        ),
        pod(
            "relaxed",
            "api",
            Some(("StatefulSet", "api")),
            json!({"initContainers": containers(&[("migrate", &unscanned)]),
                   "containers": containers(&[("app", HIGH3)])}),
            "Running",
        ),
        pod(
            "soft",
            "batch",
            None,
            json!({"containers": containers(&[("worker", CRIT1)])}),
            "Running",
        ),
        pod(
            "kube-system",
            "dns",
            Some(("ReplicaSet", "coredns-1")),
            json!({"containers": containers(&[("coredns", CRIT1)])}),
            "Running",
        ),
    ];
    for p in &pods {
        apiserver.upsert(p.clone());
    }
    // Finished pods are not audited, whatever their images.
    apiserver.upsert(pod(
        "strict",
        "done",
        None,
        json!({"containers": containers(&[("job", CRIT1)])}),
        "Succeeded",
    ));
    apiserver.upsert(pod(
        "strict",
        "crashed",
        None,
        json!({"containers": containers(&[("job", CRIT1)])}),
        "Failed",
    ));

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = apiserver.write_kubeconfig(dir.path());
    std::fs::create_dir_all(dir.path().join("scans")).expect("mkdir scans");
    std::fs::write(
        dir.path().join("scans/summaries.yaml"),
        format!(
            "summaries:\n  - {{digest: \"{}\", image: \"{HIGH3}\", high: 3, medium: 2}}\n  - {{digest: \"{}\", image: \"{CLEAN}\"}}\n  - {{digest: \"{}\", image: \"{CRIT1}\", critical: 1, low: 4}}\n",
            digest("high3"),
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
    Cluster {
        _apiserver: apiserver,
        cli: Cli {
            dir: dir.path().to_path_buf(),
            kubeconfig,
        },
        dir,
        pods,
    }
}

impl Cluster {
    async fn vulngate(&self, args: &[&str]) -> Output {
        self.cli.run(args).await
    }

    async fn vulngate_on_terminal(&self, args: &[&str]) -> Output {
        self.cli.run_on_terminal(args, "").await
    }

    async fn audit_json(&self, extra: &[&str]) -> (Option<i32>, Value) {
        let mut args = vec!["audit", "--output", "json"];
        args.extend_from_slice(extra);
        let out = self.vulngate(&args).await;
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "audit JSON: {e}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), json)
    }

    /// `vulngate review` of a pod wrapped in an AdmissionReview: (allowed, warned).
    async fn admission(&self, pod: &Value) -> (bool, bool) {
        let ns = pod["metadata"]["namespace"].as_str().expect("namespace");
        let body = review("uid-audit", "Pod", "CREATE", ns, pod.clone(), None);
        let file = self.dir.path().join(format!(
            "review-{}-{}.json",
            ns,
            pod["metadata"]["name"].as_str().expect("name")
        ));
        std::fs::write(&file, body.to_string()).expect("write review");
        let out = self
            .vulngate(&["review", file.to_str().expect("utf-8 path")])
            .await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let response: Value = serde_json::from_slice(&out.stdout).expect("review JSON");
        let allowed = response["response"]["allowed"] == Value::Bool(true);
        let warned = response["response"]["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty());
        (allowed, warned)
    }
}

fn rows(report: &Value) -> &Vec<Value> {
    report["containers"].as_array().expect("containers array")
}

fn row<'a>(report: &'a Value, ns: &str, pod: &str, container: &str) -> &'a Value {
    rows(report)
        .iter()
        .find(|r| r["namespace"] == ns && r["pod"] == pod && r["container"] == container)
        .unwrap_or_else(|| panic!("no row {ns}/{pod}/{container} in {report:#}"))
}

fn pods_of(report: &Value) -> BTreeSet<String> {
    rows(report)
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["namespace"].as_str().unwrap_or(""),
                r["pod"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_judges_running_pods_as_admission_does() {
    let cluster = cluster().await;
    let (code, report) = cluster.audit_json(&[]).await;
    assert_eq!(code, Some(1), "an image is over its limit: {report:#}");

    // Finished pods are skipped; every running one is listed.
    assert_eq!(
        pods_of(&report),
        [
            "kube-system/dns",
            "relaxed/api",
            "soft/batch",
            "strict/fresh",
            "strict/web-1",
            "strict/web-2"
        ]
        .map(String::from)
        .into_iter()
        .collect::<BTreeSet<_>>()
    );

    let app = row(&report, "strict", "web-1", "app");
    assert_eq!(app["workload"], "ReplicaSet/web-7d9f");
    assert_eq!(app["image"], HIGH3);
    assert_eq!(app["digest"], digest("high3"));
    assert_eq!(app["high"], 3);
    assert_eq!(app["medium"], 2);
    assert_eq!(app["status"], "over-limit");
    assert_eq!(app["verdict"], "denied");
    assert_eq!(app["failedLimits"][0]["limit"], "high");
    assert_eq!(app["failedLimits"][0]["count"], 3);
    assert_eq!(app["failedLimits"][0]["max"], 0);
    let sidecar = row(&report, "strict", "web-1", "sidecar");
    assert_eq!(
        (&sidecar["status"], &sidecar["verdict"]),
        (&json!("passed"), &json!("allowed"))
    );
    // The same image passes where max-high is 5.
    let api = row(&report, "relaxed", "api", "app");
    assert_eq!(
        (&api["status"], &api["verdict"]),
        (&json!("passed"), &json!("allowed"))
    );
    let migrate = row(&report, "relaxed", "api", "migrate");
    assert_eq!(migrate["containerType"], "initContainer");
    assert_eq!(
        (&migrate["status"], &migrate["verdict"]),
        (&json!("unscanned"), &json!("warn"))
    );
    let fresh = row(&report, "strict", "fresh", "app");
    assert_eq!(
        (&fresh["status"], &fresh["verdict"]),
        (&json!("unscanned"), &json!("denied"))
    );
    let batch = row(&report, "soft", "batch", "worker");
    assert_eq!(
        (&batch["status"], &batch["verdict"]),
        (&json!("over-limit"), &json!("warn"))
    );
    let dns = row(&report, "kube-system", "dns", "coredns");
    assert_eq!(
        (&dns["status"], &dns["verdict"]),
        (&json!("not-judged"), &json!("allowed"))
    );

    // Pod by pod, the audit's verdict is admission's.
    for pod in &cluster.pods {
        let ns = pod["metadata"]["namespace"].as_str().expect("namespace");
        let name = pod["metadata"]["name"].as_str().expect("name");
        let verdicts: Vec<&str> = rows(&report)
            .iter()
            .filter(|r| r["namespace"] == ns && r["pod"] == name)
            .filter_map(|r| r["verdict"].as_str())
            .collect();
        let audit_denied = verdicts.contains(&"denied");
        let audit_warned = !audit_denied && verdicts.contains(&"warn");
        let (allowed, warned) = cluster.admission(pod).await;
        assert_eq!(
            (!allowed, allowed && warned),
            (audit_denied, audit_warned),
            "pod {ns}/{name}: admission allowed={allowed} warned={warned}, audit {verdicts:?}"
        );
    }

    // Four distinct digests among judged pods (kube-system is exempt): four lookups, for
    // nine containers.
    let summary = &report["summary"];
    assert_eq!(summary["pods"], 6);
    assert_eq!(summary["containers"], 9);
    assert_eq!(summary["distinctImages"], 5, "{summary:#}");
    assert_eq!(summary["scannerLookups"], 4, "{summary:#}");
    assert_eq!(summary["overLimit"], 2, "{summary:#}");
    assert_eq!(summary["unscanned"], 1, "{summary:#}");
    assert_eq!(summary["deniedContainers"], 3, "{summary:#}");
    assert_eq!(summary["vulnerabilities"]["high"], 3);
    assert_eq!(summary["vulnerabilities"]["critical"], 1);
    assert_eq!(summary["vulnerabilities"]["low"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_filters_and_exit_statuses() {
    let cluster = cluster().await;

    // One namespace where nothing is over its limit: exit 0.
    let (code, report) = cluster.audit_json(&["--namespace", "relaxed"]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        pods_of(&report),
        BTreeSet::from(["relaxed/api".to_string()])
    );

    let (code, report) = cluster.audit_json(&["--verdict", "denied"]).await;
    assert_eq!(code, Some(1));
    let shown: BTreeSet<(String, String)> = rows(&report)
        .iter()
        .map(|r| {
            (
                r["pod"].as_str().unwrap_or("").into(),
                r["container"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        BTreeSet::from([
            ("fresh".into(), "app".into()),
            ("web-1".into(), "app".into()),
            ("web-2".into(), "app".into())
        ])
    );

    let (code, report) = cluster.audit_json(&["--unscanned"]).await;
    assert_eq!(code, Some(0), "unscanned is not over a limit: {report:#}");
    assert!(rows(&report).iter().all(|r| r["status"] == "unscanned"));
    assert_eq!(rows(&report).len(), 2);

    // Critical or worse: only crit1's containers (soft/batch and the exempt kube-system
    // pod has no counts, as it was not judged).
    let (_, report) = cluster.audit_json(&["--severity", "critical"]).await;
    assert_eq!(pods_of(&report), BTreeSet::from(["soft/batch".to_string()]));
    // High or worse also takes high3.
    let (_, report) = cluster.audit_json(&["--severity", "high"]).await;
    assert_eq!(rows(&report).len(), 4, "{report:#}");

    let (_, report) = cluster.audit_json(&["--image", "*/app/high3*"]).await;
    assert!(rows(&report).iter().all(|r| r["image"] == HIGH3));
    assert_eq!(rows(&report).len(), 3);

    let (code, report) = cluster
        .audit_json(&["--verdict", "allowed", "--namespace", "strict"])
        .await;
    assert_eq!(code, Some(0));
    assert!(rows(&report).iter().all(|r| r["container"] == "sidecar"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_csv_and_table_hold_the_documented_columns() {
    let cluster = cluster().await;
    let out = cluster.vulngate(&["audit", "--output", "csv"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header, CSV_COLUMNS);
    let records: Vec<Vec<String>> = lines.map(parse_csv_line).collect();
    assert_eq!(records.len(), 9);
    let by_key: BTreeMap<(String, String), &Vec<String>> = records
        .iter()
        .map(|r| ((r[1].clone(), r[3].clone()), r))
        .collect();
    for r in &records {
        assert_eq!(r.len(), CSV_COLUMNS.len(), "{r:?}");
    }
    let app = by_key[&("web-1".to_string(), "app".to_string())];
    assert_eq!(app[0], "strict");
    assert_eq!(app[2], "ReplicaSet/web-7d9f");
    assert_eq!(app[6], digest("high3"));
    assert_eq!(app[8], "3");
    assert_eq!(app[12], "over-limit");
    assert_eq!(app[13], "denied");
    assert_eq!(app[14], "high 3>0");
    assert!(app[15].contains("over the limit of 0"), "{}", app[15]);
    // The summary goes to stderr, keeping stdout plain CSV.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("6 pod(s), 9 container(s), 5 distinct image(s)"),
        "{stderr}"
    );

    let out = cluster.vulngate(&["audit", "--namespace", "strict"]).await;
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    let first = table.lines().next().expect("header");
    for column in [
        "NAMESPACE",
        "WORKLOAD",
        "CONTAINER",
        "IMAGE",
        "DIGEST",
        "VERDICT",
        "FAILED LIMITS",
    ] {
        assert!(first.contains(column), "{first}");
    }
    assert!(table.contains("high 3>0"), "{table}");
    let last = table.lines().last().expect("summary");
    assert!(
        last.starts_with(
            "3 pod(s), 5 container(s), 3 distinct image(s): 1 over limit, 1 unscanned"
        ),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_bar_is_drawn_only_on_a_terminal() {
    let cluster = cluster().await;
    // Piped: stderr holds the summary and nothing drawn.
    let out = cluster.vulngate(&["audit", "--output", "csv"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("judging running pods"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal escapes: {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // On a terminal: the bar is drawn on stderr, then cleared before the table.
    let out = cluster.vulngate_on_terminal(&["audit"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        transcript.contains("judging running pods"),
        "{transcript:?}"
    );
    assert!(
        transcript.contains("/6 "),
        "counted over the 6 pods: {transcript:?}"
    );
    let (before, table) = transcript
        .split_once("NAMESPACE")
        .expect("the table is printed");
    assert!(before.contains("judging running pods"), "{transcript:?}");
    assert!(
        !table.contains("judging running pods"),
        "the bar is gone once the table is printed: {transcript:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_without_a_cluster_fails_with_exit_status_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    // Nothing listens on port 9 of localhost.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: {server: \"http://127.0.0.1:9\"}\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: none\n  context: {cluster: none, user: u}\ncurrent-context: none\n",
    )
    .expect("write kubeconfig");
    std::fs::create_dir_all(dir.path().join("scans")).expect("mkdir");
    std::fs::write(dir.path().join("scans/summaries.yaml"), "summaries: []\n").expect("write");
    std::fs::write(
        dir.path().join("namespaces.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("config.yaml"),
        "namespacesFile: namespaces.yaml\nregistries:\n  - match: \"*\"\n    scanner: {file: {path: scans}}\n    registry: {resolve: false}\n",
    )
    .expect("write config");
    let path: &Path = dir.path();
    let mut command = Command::new(BIN);
    command
        .args(["audit", "--config"])
        .arg(path.join("config.yaml"))
        .current_dir(path)
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let out = tokio::task::spawn_blocking(move || command.output().expect("run"))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot list pods"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precheck_lists_images_without_a_finished_scan_by_registry_and_scanner() {
    let cluster = cluster().await;
    let out = cluster.vulngate(&["precheck"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let unscanned = unscanned_image();
    assert!(
        text.contains("registry.example.com (scanner file): 1 image(s) without a finished scan"),
        "{text}"
    );
    // One distinct image, run by two pods in two namespaces.
    assert!(
        text.contains(&format!(
            "  {unscanned} {} (2 pod(s))",
            digest("never-scanned")
        )),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with("1 image(s) without a finished scan"),
        "{text}"
    );

    let out = cluster.vulngate(&["precheck", "--namespace", "soft"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// One CSV record (quoted fields with doubled quotes; no embedded newlines here).
fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}
