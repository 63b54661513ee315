//! Safe defaults and the restricted Pod Security Standard for every pod.

use super::*;

#[test]
fn defaults_are_safe_to_install() {
    let docs = installed(&render(&[]));
    let (_, config) = config_of(&docs);
    let deploy = one(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 2, "two replicas");
    let spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread");
    assert!(
        spread
            .iter()
            .any(|c| c["topologyKey"] == "kubernetes.io/hostname"),
        "spread across nodes"
    );
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
        "rollouts keep every replica serving"
    );
    for h in webhooks(&docs) {
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["timeoutSeconds"], 10);
    }
    // Installing never denies before the scanners are set up: warn by default.
    assert_eq!(config.policy.defaults.mode, Mode::Warn);
    assert_eq!(config.deadline, Duration::from_secs(8));
    assert!(
        all(&docs, "Secret").is_empty(),
        "no Secret without credentials in cert-manager mode"
    );
    // A NetworkPolicy by default (tests/chart_security.rs checks its rules); no
    // ServiceMonitor without the Prometheus Operator's CRD.
    assert_eq!(all(&docs, "NetworkPolicy").len(), 1);
    assert!(all(&docs, "ServiceMonitor").is_empty());
    assert!(
        config.ops.purge.token_file.is_none(),
        "purge off by default"
    );
}

/// The checks of the restricted Pod Security Standard that a pod spec can fail.
fn assert_restricted(what: &str, spec: &Value) {
    let psc = &spec["securityContext"];
    for c in spec["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        let non_root = sc["runAsNonRoot"] == true
            || (sc["runAsNonRoot"].is_null() && psc["runAsNonRoot"] == true);
        assert!(non_root, "{what}: runAsNonRoot");
        assert!(
            sc["runAsUser"] != 0 && psc["runAsUser"] != 0,
            "{what}: runAsUser 0"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{what}: allowPrivilegeEscalation"
        );
        assert!(
            str_list(&sc["capabilities"]["drop"]).contains(&"ALL".to_string()),
            "{what}: drop ALL"
        );
        let add = str_list(&sc["capabilities"]["add"]);
        assert!(
            add.iter().all(|a| a == "NET_BIND_SERVICE"),
            "{what}: capabilities add {add:?}"
        );
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(psc["seccompProfile"]["type"].as_str());
        assert!(
            matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
            "{what}: seccomp"
        );
        assert!(sc["privileged"] != true, "{what}: privileged");
    }
    assert!(
        spec["hostNetwork"] != true && spec["hostPID"] != true && spec["hostIPC"] != true,
        "{what}: host namespaces"
    );
    for v in spec["volumes"].as_array().into_iter().flatten() {
        assert!(v["hostPath"].is_null(), "{what}: hostPath volume");
    }
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    // The release namespace may enforce `restricted`; manifests/ labels it so.
    for (case, args) in cases() {
        let docs = render_case(&args);
        assert_restricted(
            &format!("{case}: Deployment"),
            &one(&docs, "Deployment")["spec"]["template"]["spec"],
        );
        assert_restricted(
            &format!("{case}: helm test Pod"),
            &one(&docs, "Pod")["spec"],
        );
    }
    let docs =
        parse_docs(&std::fs::read_to_string(root().join("manifests/vulngate.yaml")).unwrap());
    let ns = one(&docs, "Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}
