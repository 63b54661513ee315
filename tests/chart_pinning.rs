//! The chart's pinning webhook (`pinDigests`): a MutatingWebhookConfiguration rendered
//! only when enabled, sent where the validating webhook is sent, and a config that
//! serves `POST /mutate`. Real `helm template` and `kubernetes-validate` (from
//! tests/setup.d/helm.sh; a missing tool fails naming it).

use serde_json::Value;

#[path = "support/chart.rs"]
mod chart_support;

use chart_support::*;

fn mutating(docs: &[Value]) -> Vec<&Value> {
    all(docs, "MutatingWebhookConfiguration")
}

fn named<'a>(config: &'a Value, name: &str) -> Option<&'a Value> {
    config["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .find(|w| w["name"] == name)
}

fn resources(webhook: &Value) -> Vec<String> {
    webhook["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| str_list(&r["resources"]))
        .collect()
}

#[test]
fn pinning_is_off_by_default_and_so_is_the_mutate_endpoint() {
    let docs = render(&[]);
    assert!(
        mutating(&docs).is_empty(),
        "no MutatingWebhookConfiguration by default"
    );
    let (_, config) = config_of(&docs);
    assert!(!config.pin_digests.enabled);
}

#[test]
fn the_pinning_webhook_is_sent_what_the_validating_one_is_sent() {
    for (tls, extra) in [
        ("certManager", vec![]),
        ("helm", vec!["--set", "tls.mode=helm"]),
    ] {
        let mut args = vec![
            "--set",
            "pinDigests.enabled=true",
            "--set",
            "webhook.timeoutSeconds=7",
            "--set",
            "webhook.excludeNamespaces={batch-system}",
            "--set",
            "webhook.objectSelector.matchLabels.team=shop",
        ];
        args.extend(extra);
        let docs = render(&args);
        let (_, config) = config_of(&docs);
        assert!(
            config.pin_digests.enabled,
            "{tls}: the config serves /mutate"
        );
        let found = mutating(&docs);
        assert_eq!(found.len(), 1, "{tls}");
        let pin = found[0];
        let validating = one(&docs, "ValidatingWebhookConfiguration");
        let pods = named(validating, "pods.vulngate.io").expect("validating pods webhook");
        let pinning = named(pin, "pods.pin.vulngate.io").expect("pinning pods webhook");
        assert_eq!(
            resources(pinning),
            ["pods", "pods/ephemeralcontainers"],
            "{tls}"
        );
        assert!(
            named(pin, "workloads.pin.vulngate.io").is_none(),
            "{tls}: templates off"
        );
        for key in [
            "namespaceSelector",
            "objectSelector",
            "timeoutSeconds",
            "matchPolicy",
            "rules",
        ] {
            assert_eq!(pinning[key], pods[key], "{tls}: {key}");
        }
        assert_eq!(pinning["timeoutSeconds"], 7, "{tls}");
        assert_eq!(pinning["sideEffects"], "None", "{tls}");
        assert_eq!(pinning["reinvocationPolicy"], "IfNeeded", "{tls}");
        assert_eq!(
            str_list(&pinning["admissionReviewVersions"]),
            ["v1", "v1beta1"]
        );
        assert_eq!(
            pinning["failurePolicy"], "Ignore",
            "{tls}: the safe default"
        );
        assert_eq!(
            pods["failurePolicy"], "Fail",
            "{tls}: the validating one decides"
        );
        let client = &pinning["clientConfig"];
        assert_eq!(client["service"]["path"], "/mutate", "{tls}");
        assert_eq!(
            client["service"]["name"],
            pods["clientConfig"]["service"]["name"]
        );
        assert_eq!(
            client["service"]["port"],
            pods["clientConfig"]["service"]["port"]
        );
        // The same certificate: the caBundle, or cert-manager's injection.
        assert_eq!(
            client["caBundle"], pods["clientConfig"]["caBundle"],
            "{tls}"
        );
        let inject =
            |c: &Value| c["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].clone();
        assert_eq!(inject(pin), inject(validating), "{tls}");
        if tls == "helm" {
            assert!(client["caBundle"].as_str().is_some_and(|c| !c.is_empty()));
        } else {
            assert!(inject(pin).as_str().is_some(), "{tls}");
        }
    }
}

#[test]
fn templates_are_pinned_only_when_asked_and_never_replicasets() {
    let docs = render(&[
        "--set",
        "pinDigests.enabled=true",
        "--set",
        "pinDigests.workloads=true",
        "--set",
        "pinDigests.failurePolicy=Fail",
    ]);
    let pin = mutating(&docs)[0];
    let workloads = named(pin, "workloads.pin.vulngate.io").expect("workload pinning");
    let mut pinned = resources(workloads);
    pinned.sort();
    assert_eq!(
        pinned,
        [
            "cronjobs",
            "daemonsets",
            "deployments",
            "jobs",
            "statefulsets"
        ]
    );
    assert_eq!(workloads["failurePolicy"], "Fail");
    assert_eq!(workloads["reinvocationPolicy"], "IfNeeded");
    // Only what the validating webhook also judges is pinned.
    let docs = render(&[
        "--set",
        "pinDigests.enabled=true",
        "--set",
        "pinDigests.workloads=true",
        "--set",
        "webhook.workloads.resources={deployments,replicasets}",
    ]);
    let workloads = named(mutating(&docs)[0], "workloads.pin.vulngate.io").expect("workloads");
    assert_eq!(resources(workloads), ["deployments"]);
    let out = helm_template(&["--set", "pinDigests.workloadResources={replicasets}"]);
    assert!(!out.ok, "replicasets cannot be pinned");
}

#[test]
fn the_rendered_pinning_webhook_validates_against_kubernetes_schemas() {
    let out = helm_template(&[
        "--set",
        "pinDigests.enabled=true",
        "--set",
        "pinDigests.workloads=true",
        "--set",
        "tls.mode=helm",
    ]);
    assert!(out.ok, "{}", out.stderr);
    let docs = parse_docs(&out.stdout);
    let only: Vec<&Value> = mutating(&docs);
    assert_eq!(only.len(), 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pinning.yaml");
    std::fs::write(&file, serde_json::to_string_pretty(only[0]).expect("yaml")).expect("write");
    let kv = tool("kubernetes-validate");
    let result = run(&kv, &["--strict", file.to_str().expect("utf-8 path")]);
    let text = format!("{}{}", result.stdout, result.stderr);
    assert!(
        result.ok && text.contains("passed") && !text.contains("ERROR"),
        "kubernetes-validate: {text}"
    );
}
