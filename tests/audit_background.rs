//! The background audit of the real `vulngate serve` (`audit: {interval: 1s}`) against a
//! fake apiserver holding namespaces with different policies and running pods: the
//! per-namespace gauge on /metrics, one Warning Event per offending pod and run, gauges
//! following annotation changes and pods going away, and a clean stop on SIGTERM.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::apiserver::{FakeApiServer, namespace, running_pod};
use support::webhook::{Webhook, basic_config, digest};

const HIGH3: &str = "registry.example.com/app/high3:1";
const CLEAN: &str = "registry.example.com/app/clean:1";

/// `metric{labels} value` lines of one metric, by their label text.
fn series(metrics: &str, name: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once("} ")?;
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn over_limit(metrics: &str) -> BTreeMap<String, f64> {
    series(metrics, "vulngate_running_pods_over_limit")
}

fn key(ns: &str, verdict: &str) -> String {
    format!("namespace=\"{ns}\",verdict=\"{verdict}\"")
}

fn ok_runs(metrics: &str) -> f64 {
    series(metrics, "vulngate_audit_runs_total")
        .get("result=\"ok\"")
        .copied()
        .unwrap_or(0.0)
}

/// Polls /metrics until `done` holds (generous timeout: the audit runs every second).
async fn metrics_until(webhook: &Webhook, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = webhook.ops_get("/metrics");
        assert_eq!(status, 200);
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened; metrics:\n{text}\nlogs:\n{}",
            webhook.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn audit_events(apiserver: &FakeApiServer) -> Vec<Value> {
    apiserver
        .list("events.k8s.io/v1", "events")
        .into_iter()
        .filter(|e| e["reason"] == "OverVulnerabilityLimits")
        .collect()
}

/// How many times an Event was published: a repeat is a PATCH raising `series.count`.
fn publications(event: &Value) -> u64 {
    event["series"]["count"].as_u64().unwrap_or(1)
}

// One test in this binary: it sets KUBECONFIG for the child process it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_audit_exports_gauges_and_events_and_follows_the_cluster() {
    let apiserver = FakeApiServer::start().await;
    apiserver.upsert(namespace("strict", &[]));
    apiserver.upsert(namespace("soft", &[("vulngate.io/mode", "warn")]));
    apiserver.upsert(namespace("relaxed", &[("vulngate.io/max-high", "5")]));
    apiserver.upsert(namespace("default", &[]));
    let mut uids = BTreeMap::new();
    for (ns, name, containers) in [
        ("strict", "web-1", vec![("app", HIGH3), ("sidecar", CLEAN)]),
        ("strict", "web-2", vec![("app", HIGH3)]),
        ("strict", "calm", vec![("app", CLEAN)]),
        ("soft", "batch", vec![("worker", HIGH3)]),
        ("relaxed", "api", vec![("app", HIGH3)]),
    ] {
        let stored = apiserver.upsert(running_pod(ns, name, &containers));
        let uid = stored["metadata"]["uid"].as_str().expect("uid").to_string();
        uids.insert(format!("{ns}/{name}"), uid);
    }

    let dir = tempfile::tempdir().expect("temp dir");
    apiserver.write_kubeconfig(dir.path());
    let summaries = format!(
        "summaries:\n  - {{digest: \"{}\", image: \"{HIGH3}\", high: 3}}\n  - {{digest: \"{}\", image: \"{CLEAN}\"}}\n",
        digest("high3"),
        digest("clean"),
    );
    let config =
        basic_config("audit: {interval: 1s}\n").replace("namespacesFile: namespaces.yaml\n", "");
    assert!(!config.contains("namespacesFile"));
    let mut webhook = tokio::task::spawn_blocking(move || {
        Webhook::start_in(dir, &config, &[("scans/summaries.yaml", summaries)])
    })
    .await
    .expect("start vulngate");

    // Every namespace with running pods has both series, zeros included.
    let text = metrics_until(&webhook, "a first audit", |m| ok_runs(m) >= 1.0).await;
    let gauges = over_limit(&text);
    let expected: BTreeMap<String, f64> = [
        (key("relaxed", "denied"), 0.0),
        (key("relaxed", "warned"), 0.0),
        (key("soft", "denied"), 0.0),
        (key("soft", "warned"), 1.0),
        (key("strict", "denied"), 2.0),
        (key("strict", "warned"), 0.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(gauges, expected, "{text}");
    // No image names as label values.
    assert!(!text.contains("high3"), "{text}");

    // One Event per offending pod, on the pod itself, repeated (as a series) per run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = audit_events(&apiserver);
        if events.len() >= 3 && events.iter().all(|e| publications(e) >= 2) {
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Events never repeated: {events:#?}\nlogs:\n{}",
            webhook.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let runs = ok_runs(&webhook.ops_get("/metrics").1);
    let mut regarding: Vec<String> = Vec::new();
    for event in &events {
        let ns = event["regarding"]["namespace"].as_str().unwrap_or_default();
        let name = event["regarding"]["name"].as_str().unwrap_or_default();
        let pod = format!("{ns}/{name}");
        assert_eq!(event["type"], "Warning", "{event}");
        assert_eq!(event["regarding"]["kind"], "Pod", "{event}");
        assert_eq!(event["metadata"]["namespace"], ns, "{event}");
        assert_eq!(
            event["regarding"]["uid"].as_str(),
            uids.get(&pod).map(String::as_str),
            "{event}"
        );
        // At most one per pod and run: never more publications than finished runs.
        assert!(
            publications(event) as f64 <= runs,
            "{event} after {runs} runs"
        );
        let note = event["note"].as_str().unwrap_or_default();
        assert!(note.contains(HIGH3), "{note}");
        assert!(note.contains(&digest("high3")), "{note}");
        assert!(note.contains("3 high over the limit 0"), "{note}");
        assert!(
            !note.contains("sidecar"),
            "only the offending containers: {note}"
        );
        regarding.push(pod);
    }
    regarding.sort();
    assert_eq!(regarding, ["soft/batch", "strict/web-1", "strict/web-2"]);
    let web1 = events
        .iter()
        .find(|e| e["regarding"]["name"] == "web-1")
        .expect("web-1 event");
    let note = web1["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("admission would deny this pod now: container \"app\""),
        "{note}"
    );
    let batch = events
        .iter()
        .find(|e| e["regarding"]["name"] == "batch")
        .expect("batch event");
    assert!(
        batch["note"]
            .as_str()
            .unwrap_or_default()
            .starts_with("admission would allow this pod now only with a warning"),
        "{batch}"
    );

    // The watch brings new annotations: strict relaxes, relaxed tightens.
    apiserver.annotate(
        "v1",
        "namespaces",
        None,
        "strict",
        "vulngate.io/max-high",
        Some("5"),
    );
    apiserver.annotate(
        "v1",
        "namespaces",
        None,
        "relaxed",
        "vulngate.io/max-high",
        Some("0"),
    );
    // A namespace whose last pod is gone loses its series.
    apiserver.delete("v1", "pods", Some("soft"), "batch");
    let text = metrics_until(&webhook, "the gauges following the cluster", |m| {
        let g = over_limit(m);
        g.get(&key("strict", "denied")) == Some(&0.0)
            && g.get(&key("relaxed", "denied")) == Some(&1.0)
            && !g.keys().any(|k| k.contains("\"soft\""))
    })
    .await;
    assert_eq!(
        over_limit(&text).get(&key("strict", "warned")),
        Some(&0.0),
        "{text}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !audit_events(&apiserver)
        .iter()
        .any(|e| e["regarding"]["name"] == "api")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Event on relaxed/api"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One info line per run, and a clean stop on SIGTERM.
    let logs = webhook.stderr();
    assert!(logs.contains("\"message\":\"background audit\""), "{logs}");
    assert!(logs.contains("\"denied_pods\":2"), "{logs}");
    webhook.terminate();
    let status = tokio::task::spawn_blocking(move || {
        let status = webhook.wait_exit(Duration::from_secs(30));
        (status, webhook)
    })
    .await
    .expect("join");
    let (status, webhook) = status;
    assert!(
        status.is_some_and(|s| s.success()),
        "{:?}: {}",
        status,
        webhook.stderr()
    );
    assert!(
        webhook.stderr().contains("background audit stopped"),
        "{}",
        webhook.stderr()
    );
}
