//! The ValidatingWebhookConfiguration: timeouts, workload kinds, and the chart's helm test.

use super::*;

#[test]
fn deadline_stays_below_timeout_seconds() {
    for timeout in [2u64, 3, 5, 10, 30] {
        let t = timeout.to_string();
        let docs = render(&["--set", &format!("webhook.timeoutSeconds={t}")]);
        let (_, config) = config_of(&docs);
        assert!(
            config.deadline <= Duration::from_secs(timeout - 1),
            "timeout {timeout}: deadline {:?}",
            config.deadline
        );
        assert!(
            config.deadline >= Duration::from_secs(1),
            "timeout {timeout}: deadline {:?}",
            config.deadline
        );
        if timeout >= 3 {
            assert_eq!(
                config.deadline,
                Duration::from_secs(timeout - 2),
                "timeoutSeconds - 2 by default"
            );
        }
        for h in webhooks(&docs) {
            assert_eq!(h["timeoutSeconds"].as_u64(), Some(timeout));
        }
    }
    let (_, config) = config_of(&render(&[
        "--set",
        "webhook.timeoutSeconds=10",
        "--set",
        "webhook.deadlineSeconds=9",
    ]));
    assert_eq!(config.deadline, Duration::from_secs(9));
    for bad in [
        vec![
            "--set",
            "webhook.timeoutSeconds=10",
            "--set",
            "webhook.deadlineSeconds=10",
        ],
        vec![
            "--set",
            "webhook.timeoutSeconds=5",
            "--set",
            "webhook.deadlineSeconds=7",
        ],
        vec!["--set", "webhook.timeoutSeconds=31"],
        vec!["--set", "webhook.timeoutSeconds=1"],
    ] {
        let out = helm_template(&bad);
        assert!(!out.ok, "{bad:?} must fail");
    }
}

#[test]
fn workloads_are_switchable_and_cover_every_pod_template_kind() {
    let docs = render(&[]);
    let hooks = webhooks(&docs);
    let w = hooks
        .iter()
        .find(|h| h["name"] == "workloads.vulngate.io")
        .expect("workloads webhook by default");
    let mut got = BTreeSet::new();
    for r in w["rules"].as_array().unwrap() {
        for g in str_list(&r["apiGroups"]) {
            for res in str_list(&r["resources"]) {
                got.insert(format!("{g}/{res}"));
            }
        }
    }
    let want: BTreeSet<String> = [
        "apps/deployments",
        "apps/replicasets",
        "apps/statefulsets",
        "apps/daemonsets",
        "batch/jobs",
        "batch/cronjobs",
        "/replicationcontrollers",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
    let docs = render(&["--set", "webhook.workloads.enabled=false"]);
    let names: Vec<&str> = webhooks(&docs)
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["pods.vulngate.io"]);
}

#[test]
fn the_helm_test_expects_a_denial_in_an_annotated_namespace() {
    let docs = render(&[]);
    let hooks: Vec<&Value> = docs
        .iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .collect();
    let ns = hooks
        .iter()
        .find(|d| kind_of(d) == "Namespace")
        .expect("test namespace");
    let ns_name = ns["metadata"]["name"].as_str().unwrap();
    let pod = hooks
        .iter()
        .find(|d| kind_of(d) == "Pod")
        .expect("test pod");
    assert_eq!(
        pod["metadata"]["namespace"], NAMESPACE,
        "the test Pod itself is never checked"
    );

    // vulngate reads the test namespace's annotations as an enforced zero-tolerance policy.
    let (_, config) = config_of(&docs);
    let ann: BTreeMap<String, String> = labels(&ns["metadata"]["annotations"])
        .into_iter()
        .filter(|(k, _)| k.starts_with("vulngate.io/"))
        .collect();
    let policy = NamespacePolicy::resolve(
        &config.policy,
        &[],
        ns_name,
        Some(&ann),
        time::OffsetDateTime::now_utc(),
    );
    assert!(policy.problems.is_empty(), "{:?}", policy.problems);
    assert_eq!(policy.mode, Mode::Enforce);
    assert!(
        policy
            .limits
            .iter()
            .any(|l| l.key.as_str() == "critical" && l.max == 0)
    );

    // ... and the webhook is called for it.
    let ns_l = labels(&ns["metadata"]["labels"]);
    let mut full = ns_l.clone();
    full.insert("kubernetes.io/metadata.name".into(), ns_name.into());
    for h in webhooks(&docs) {
        assert!(
            selector_matches(&h["namespaceSelector"], &full),
            "webhook {:?} must see {ns_name}",
            h["name"]
        );
    }

    // The test may only create (dry-run) Pods there.
    let role = hooks.iter().find(|d| kind_of(d) == "Role").unwrap();
    assert_eq!(role["metadata"]["namespace"], ns_name);
    let grants = rbac_grants(role);
    assert_eq!(
        grants,
        [("".to_string(), "pods".to_string(), "create".to_string())]
            .into_iter()
            .collect()
    );
    let c = &pod["spec"]["containers"][0];
    let script = str_list(&c["command"]).join("\n");
    assert!(script.contains("dryRun=All"), "server-side dry run");
    // The API server's JSON Status escapes the quotes of the message.
    assert!(script.contains(r#"admission webhook \"pods.vulngate.io\" denied the request"#));
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    // In every value set, the probe Pod (no labels) in the test namespace reaches vulngate.
    for (case, args) in cases() {
        let docs = render_case(&args);
        let ns = docs
            .iter()
            .find(|d| {
                kind_of(d) == "Namespace" && d["metadata"]["annotations"]["helm.sh/hook"] == "test"
            })
            .unwrap();
        let mut l = labels(&ns["metadata"]["labels"]);
        l.insert(
            "kubernetes.io/metadata.name".into(),
            ns["metadata"]["name"].as_str().unwrap().into(),
        );
        for h in webhooks(&docs)
            .into_iter()
            .filter(|h| h["name"] == "pods.vulngate.io")
        {
            assert!(
                selector_matches(&h["namespaceSelector"], &l),
                "{case}: test namespace not sent to vulngate"
            );
            if h["objectSelector"].is_object() {
                assert!(
                    selector_matches(&h["objectSelector"], &BTreeMap::new()),
                    "{case}: objectSelector skips the probe"
                );
            }
        }
    }
    // It is no part of the installed manifests.
    let manifests = std::fs::read_to_string(root().join("manifests/vulngate.yaml")).unwrap();
    assert!(!manifests.contains("helm.sh/hook"));
}
