//! The real binary with no namespaces file takes namespace policy from the cluster: a
//! fake apiserver named by KUBECONFIG, annotations changed there and obeyed.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::apiserver::{FakeApiServer, namespace};
use support::webhook::{Webhook, basic_config, digest, object_with_pod_spec, pod_spec, review};

const HIGH3: &str = "registry.example.com/app/high3:1";

fn pod(namespace: &str) -> Value {
    review(
        "uid-pod",
        "Pod",
        "CREATE",
        namespace,
        object_with_pod_spec("Pod", pod_spec(&[("web", HIGH3)])),
        None,
    )
}

fn allowed(response: &Value) -> bool {
    response["allowed"] == Value::Bool(true)
}

// One test in this binary: it sets KUBECONFIG for the child process it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_policy_comes_from_the_cluster_and_follows_its_changes() {
    let apiserver = FakeApiServer::start().await;
    apiserver.upsert(namespace("relaxed", &[("vulngate.io/max-high", "5")]));
    apiserver.upsert(namespace("strict", &[]));
    // Events about cluster-scoped objects (a Namespace) are kept in `default`.
    apiserver.upsert(namespace("default", &[]));

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: test, namespace: default}}\ncurrent-context: fake\n",
        apiserver.url()
    );
    let kubeconfig_path = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig_path, kubeconfig).expect("write kubeconfig");

    let summaries = format!(
        "summaries:\n  - {{digest: \"{}\", image: \"{HIGH3}\", high: 3}}\n",
        digest("high3")
    );
    let config = basic_config("").replace("namespacesFile: namespaces.yaml\n", "");
    assert!(!config.contains("namespacesFile"));
    // Blocks until /readyz answers 200, which needs the namespace cache synced.
    let webhook = tokio::task::spawn_blocking(move || {
        Webhook::start_in(dir, &config, &[("scans/summaries.yaml", summaries)])
    })
    .await
    .expect("start vulngate");
    assert!(
        apiserver.request_count("/api/v1/namespaces") >= 2,
        "listed and watched namespaces"
    );

    let client = webhook.client(false);
    let relaxed = webhook.review(&client, &pod("relaxed")).await;
    assert!(allowed(&relaxed), "{relaxed}");
    let strict = webhook.review(&client, &pod("strict")).await;
    assert!(!allowed(&strict), "{strict}");

    apiserver.annotate(
        "v1",
        "namespaces",
        None,
        "strict",
        "vulngate.io/max-high",
        Some("3"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = webhook.review(&client, &pod("strict")).await;
        if allowed(&now) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new limit was never applied: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A break-glass lets the violation through and leaves an Event on the Namespace.
    let until = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let until = until
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    apiserver.annotate(
        "v1",
        "namespaces",
        None,
        "relaxed",
        "vulngate.io/max-high",
        Some("0"),
    );
    apiserver.annotate(
        "v1",
        "namespaces",
        None,
        "relaxed",
        "vulngate.io/break-glass-until",
        Some(&until),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = webhook.review(&client, &pod("relaxed")).await;
        if now["auditAnnotations"]["break-glass-until"].is_string() {
            assert!(allowed(&now), "{now}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "break-glass never applied: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events = apiserver.list("events.k8s.io/v1", "events");
        let found = events.iter().find(|e| e["reason"] == "BreakGlass");
        if let Some(event) = found {
            assert_eq!(event["regarding"]["kind"], "Namespace");
            assert_eq!(event["regarding"]["name"], "relaxed");
            assert_eq!(event["type"], "Warning");
            assert!(
                event["note"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("high vulnerabilities"),
                "{event}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no BreakGlass Event: {events:?}; requests: {:?}; logs: {}",
            apiserver
                .requests()
                .iter()
                .filter(|r| r.path.contains("events"))
                .count(),
            webhook
                .stderr()
                .lines()
                .filter(|l| l.contains("Event"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
