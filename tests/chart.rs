//! The Helm chart (charts/vulngate) and the plain manifests rendered from it (manifests/).
//!
//! Shells out to `helm` and `kubernetes-validate`, which tests/setup.d/helm.sh installs into
//! .tools/bin (tests/run.sh runs it and puts .tools/bin on PATH). A missing tool fails the
//! test with a message naming that script; nothing here is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_yaml::Value;
use vulngate::config::{Config, ScannerConfig};
use vulngate::domain::limits::LimitKey;
use vulngate::domain::rules::{ControllerPods, Mode};
use vulngate::policy::NamespacePolicy;

#[path = "support/chart.rs"]
mod chart_support;

use chart_support::*;

/// What a user of any value set relies on; checked on every render and on manifests/.
fn check_render(case: &str, docs: &[Value]) {
    let docs = installed(docs);
    let deploy = one(&docs, "Deployment");
    let c = container(deploy);
    let pod_spec = &deploy["spec"]["template"]["spec"];
    let pod_labels = labels(&deploy["spec"]["template"]["metadata"]["labels"]);
    let (text, config) = config_of(&docs);

    // Namespaced objects land in the release namespace.
    for d in &docs {
        let k = kind_of(d);
        let cluster_scoped = matches!(
            k,
            "ClusterRole"
                | "ClusterRoleBinding"
                | "ValidatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "Namespace"
        );
        if !cluster_scoped {
            assert_eq!(
                d["metadata"]["namespace"], NAMESPACE,
                "{case}: {k} namespace"
            );
        }
    }

    // Restricted security context.
    let psc = &pod_spec["securityContext"];
    let sc = &c["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{case}: pod runAsNonRoot");
    assert_eq!(sc["runAsNonRoot"], true, "{case}: container runAsNonRoot");
    assert_eq!(
        sc["readOnlyRootFilesystem"], true,
        "{case}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{case}: allowPrivilegeEscalation"
    );
    assert_eq!(
        str_list(&sc["capabilities"]["drop"]),
        vec!["ALL"],
        "{case}: capabilities drop ALL"
    );
    assert_eq!(
        psc["seccompProfile"]["type"], "RuntimeDefault",
        "{case}: pod seccomp"
    );
    assert_eq!(
        sc["seccompProfile"]["type"], "RuntimeDefault",
        "{case}: container seccomp"
    );
    assert!(sc["privileged"] != true, "{case}: privileged");

    // Probes on the ops port, the one the config's opsListen serves.
    let ops = container_port(c, "ops");
    let https = container_port(c, "https");
    assert_eq!(
        config.ops_listen.port(),
        ops,
        "{case}: opsListen vs container port ops"
    );
    assert_eq!(
        config.listen.port(),
        https,
        "{case}: listen vs container port https"
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{case}: readiness path"
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["port"], "ops",
        "{case}: readiness port"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{case}: liveness path"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["port"], "ops",
        "{case}: liveness port"
    );
    assert_eq!(
        str_list(&c["args"]),
        vec!["serve", "--config", "/etc/vulngate/config.yaml"],
        "{case}: args"
    );
    let cfg_mount =
        mount_for(deploy, Path::new("/etc/vulngate/config.yaml")).expect("config mounted");
    assert!(
        cfg_mount.1["configMap"]["name"] == config_map(&docs)["metadata"]["name"],
        "{case}: config volume"
    );

    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                !c["resources"][kind][r].is_null(),
                "{case}: resources.{kind}.{r}"
            );
        }
    }
    // SIGTERM: drain, then finish in-flight reviews, all before the kubelet kills the Pod.
    let kill_after = Duration::from_secs(
        pod_spec["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30),
    );
    let stop = config.shutdown.drain_delay + config.shutdown.grace;
    assert!(stop < kill_after, "{case}: drainDelay + grace = {stop:?} must be below terminationGracePeriodSeconds {kill_after:?}");
    assert!(
        !config.shutdown.drain_delay.is_zero(),
        "{case}: a drain delay lets the Service stop sending reviews first"
    );
    let checksum =
        deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"].as_str();
    assert!(
        checksum.is_some_and(|s| s.len() == 64),
        "{case}: checksum/config annotation"
    );

    // Service and PodDisruptionBudget select the Pods.
    let svc = one(&docs, "Service");
    let svc_selector = labels(&svc["spec"]["selector"]);
    assert!(!svc_selector.is_empty(), "{case}: Service selector");
    for (k, v) in &svc_selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "{case}: Service selects the Pods"
        );
    }
    for pdb in all(&docs, "PodDisruptionBudget") {
        assert!(
            selector_matches(&pdb["spec"]["selector"], &pod_labels),
            "{case}: PDB selects the Pods"
        );
    }
    let svc_ports = svc["spec"]["ports"].as_sequence().unwrap();
    // The webhook port only: the ops port (and a purge endpoint on it) is on no Service.
    let targets: Vec<&Value> = svc_ports.iter().map(|p| &p["targetPort"]).collect();
    assert_eq!(targets, vec!["https"], "{case}: Service ports");
    let https_svc = &svc_ports[0];

    // The webhook configuration.
    let vwc = one(&docs, "ValidatingWebhookConfiguration");
    let hooks = webhooks(&docs);
    let deadline = config.deadline;
    let mut saw_pods = false;
    for h in &hooks {
        let name = h["name"].as_str().unwrap();
        assert_eq!(
            str_list(&h["admissionReviewVersions"]),
            vec!["v1"],
            "{case}/{name}"
        );
        assert_eq!(h["sideEffects"], "None", "{case}/{name}");
        assert_eq!(h["matchPolicy"], "Equivalent", "{case}/{name}");
        assert!(
            matches!(h["failurePolicy"].as_str(), Some("Fail" | "Ignore")),
            "{case}/{name}: failurePolicy"
        );
        let timeout = h["timeoutSeconds"].as_u64().expect("timeoutSeconds");
        assert!(
            (1..=30).contains(&timeout),
            "{case}/{name}: timeoutSeconds {timeout}"
        );
        assert!(
            deadline < Duration::from_secs(timeout) && deadline <= Duration::from_secs(timeout - 1),
            "{case}/{name}: deadline {deadline:?} must stay at least 1s below timeoutSeconds {timeout}"
        );
        let svc_ref = &h["clientConfig"]["service"];
        assert_eq!(
            svc_ref["name"], svc["metadata"]["name"],
            "{case}/{name}: service name"
        );
        assert_eq!(
            svc_ref["namespace"], NAMESPACE,
            "{case}/{name}: service namespace"
        );
        assert_eq!(svc_ref["path"], "/validate", "{case}/{name}: path");
        assert_eq!(
            svc_ref["port"], https_svc["port"],
            "{case}/{name}: service port"
        );

        let sel = &h["namespaceSelector"];
        let name_expr = sel["matchExpressions"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
            .unwrap_or_else(|| panic!("{case}/{name}: kubernetes.io/metadata.name NotIn"));
        let excluded = str_list(&name_expr["values"]);
        assert!(
            excluded.contains(&NAMESPACE.to_string()),
            "{case}/{name}: release namespace excluded"
        );
        assert!(
            excluded.contains(&"kube-system".to_string()),
            "{case}/{name}: kube-system excluded"
        );
        // Whatever other labels they carry, these namespaces are never sent to vulngate.
        let any = [("environment", "production"), ("team", "a")];
        for never in [ns_labels(NAMESPACE, &any), ns_labels("kube-system", &any)] {
            assert!(
                !selector_matches(sel, &never),
                "{case}/{name}: {never:?} must not match"
            );
        }
        let opted_out = ns_labels(
            "team-a",
            &[
                ("environment", "production"),
                ("vulngate.io/ignore", "true"),
            ],
        );
        assert!(
            !selector_matches(sel, &opted_out),
            "{case}/{name}: opt-out label"
        );

        if name == "pods.vulngate.io" {
            saw_pods = true;
            let rule = &h["rules"][0];
            assert_eq!(str_list(&rule["apiGroups"]), vec![""]);
            let res = str_list(&rule["resources"]);
            assert!(
                res.contains(&"pods".into()) && res.contains(&"pods/ephemeralcontainers".into()),
                "{case}: pod resources {res:?}"
            );
            assert_eq!(
                str_list(&rule["operations"]),
                vec!["CREATE", "UPDATE"],
                "{case}: pod operations"
            );
        }
        for rule in h["rules"].as_sequence().unwrap() {
            for op in str_list(&rule["operations"]) {
                assert!(
                    op == "CREATE" || op == "UPDATE",
                    "{case}/{name}: operation {op}"
                );
            }
        }
    }
    assert!(saw_pods, "{case}: a webhook for pods");

    // Pods of built-in controllers are let through with a warning only when their
    // templates are judged: every pod-creating kind goes through the workloads webhook.
    let mut judged = BTreeSet::new();
    for h in &hooks {
        for rule in h["rules"].as_sequence().unwrap() {
            judged.extend(str_list(&rule["resources"]));
        }
    }
    let all_templates = [
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "replicationcontrollers",
    ]
    .iter()
    .all(|k| judged.contains(*k));
    if !all_templates {
        assert_eq!(
            config.policy.defaults.controller_pods,
            ControllerPods::Enforce,
            "{case}: controller Pods must be enforced when their templates are not all judged ({judged:?})"
        );
    }

    // The config never judges the control plane or vulngate itself either.
    for ns in [NAMESPACE, "kube-system"] {
        assert!(
            config.policy.exempt_namespaces.iter().any(|n| n == ns),
            "{case}: config exempts {ns}"
        );
    }

    // Every file the config names is mounted.
    let mut paths: Vec<(String, PathBuf)> = vec![];
    paths.extend(
        config
            .tls
            .cert_file
            .clone()
            .map(|p| ("tls.certFile".into(), p)),
    );
    paths.extend(
        config
            .tls
            .key_file
            .clone()
            .map(|p| ("tls.keyFile".into(), p)),
    );
    paths.extend(
        config
            .resolution
            .docker_config_file
            .clone()
            .map(|p| ("resolution.dockerConfigFile".into(), p)),
    );
    paths.extend(
        config
            .namespaces_file
            .clone()
            .map(|p| ("namespacesFile".into(), p)),
    );
    paths.extend(
        config
            .policy
            .accepted_cves_file
            .clone()
            .map(|p| ("policy.acceptedCvesFile".into(), p)),
    );
    paths.extend(
        config
            .ops
            .purge
            .token_file
            .clone()
            .map(|p| ("ops.purge.tokenFile".into(), p)),
    );
    for r in &config.registries {
        match &r.scanner {
            ScannerConfig::File(f) => {
                paths.push(("registries[].scanner.file.path".into(), f.path.clone()))
            }
            ScannerConfig::Harbor(h) => {
                if let vulngate::secret::SecretSource::File(p) = &h.password {
                    paths.push((
                        "registries[].scanner.harbor.password.file".into(),
                        p.clone(),
                    ));
                }
                paths.extend(
                    h.ca_file
                        .clone()
                        .map(|p| ("registries[].scanner.harbor.caFile".into(), p)),
                );
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
        if let Some(ca) = r.registry.as_ref().and_then(|a| a.ca_file.clone()) {
            paths.push(("registries[].registry.caFile".into(), ca));
        }
    }
    for (key, path) in &paths {
        let (m, v) = mount_for(deploy, path).unwrap_or_else(|| {
            panic!(
                "{case}: config {key} = {} is not under any volumeMount\n{text}",
                path.display()
            )
        });
        // A file inside a Secret the chart renders must be one of its keys.
        if let Some(secret) = v["secret"]["secretName"].as_str() {
            let rel = path
                .strip_prefix(m["mountPath"].as_str().unwrap())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if let Some(s) = all(&docs, "Secret")
                .into_iter()
                .find(|s| s["metadata"]["name"] == secret)
            {
                let has =
                    !s["data"][rel.as_str()].is_null() || !s["stringData"][rel.as_str()].is_null();
                assert!(
                    has,
                    "{case}: config {key} names {rel} but Secret {secret} has no such key"
                );
            }
        }
    }

    // TLS: the served certificate's CA reaches the API server in exactly one way.
    let cert_file = config.tls.cert_file.clone().expect("tls.certFile");
    let (_, tls_vol) = mount_for(deploy, &cert_file).unwrap();
    let tls_secret = tls_vol["secret"]["secretName"]
        .as_str()
        .expect("TLS volume is a Secret");
    let inject = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str();
    let certificate = all(&docs, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == tls_secret);
    let secret = all(&docs, "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == tls_secret);
    let host = format!(
        "{}.{NAMESPACE}.svc",
        svc["metadata"]["name"].as_str().unwrap()
    );
    match (certificate, secret) {
        (Some(cert), None) => {
            let cert_name = cert["metadata"]["name"].as_str().unwrap();
            assert_eq!(
                inject,
                Some(format!("{NAMESPACE}/{cert_name}").as_str()),
                "{case}: inject-ca-from"
            );
            assert!(
                str_list(&cert["spec"]["dnsNames"]).contains(&host),
                "{case}: Certificate names {host}"
            );
            assert!(
                !cert["spec"]["renewBefore"].is_null(),
                "{case}: renewBefore"
            );
            for h in &hooks {
                assert!(
                    h["clientConfig"]["caBundle"].is_null(),
                    "{case}: caBundle left to cainjector"
                );
            }
        }
        (None, Some(s)) => {
            assert_eq!(inject, None, "{case}");
            let ca = s["data"]["ca.crt"].as_str().expect("ca.crt");
            for h in &hooks {
                assert_eq!(
                    h["clientConfig"]["caBundle"].as_str(),
                    Some(ca),
                    "{case}: caBundle is the Secret's ca.crt"
                );
            }
        }
        (None, None) => {
            assert_eq!(inject, None, "{case}");
            for h in &hooks {
                assert!(
                    h["clientConfig"]["caBundle"]
                        .as_str()
                        .is_some_and(|b| !b.is_empty()),
                    "{case}: caBundle of the existing Secret"
                );
            }
        }
        (Some(_), Some(_)) => panic!("{case}: TLS Secret both rendered and issued by cert-manager"),
    }

    // RBAC never grants more than vulngate uses.
    let allowed: BTreeSet<(String, String, String)> = [
        ("", "namespaces", "get"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("", "secrets", "get"),
        ("", "serviceaccounts", "get"),
        ("", "events", "create"),
        ("", "events", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
        ("", "pods", "list"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    for role in all(&docs, "ClusterRole")
        .into_iter()
        .chain(all(&docs, "Role"))
    {
        let got = rbac_grants(role);
        assert!(
            got.is_subset(&allowed),
            "{case}: RBAC grants more than needed: {:?}",
            got.difference(&allowed).collect::<Vec<_>>()
        );
    }
}

fn rbac_grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().into_iter().flatten() {
        for g in str_list(&rule["apiGroups"]) {
            for r in str_list(&rule["resources"]) {
                for v in str_list(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

#[test]
fn helm_lint_strict_passes_for_every_value_set() {
    let helm = tool("helm");
    let chart = chart_dir();
    for (case, args) in cases() {
        let mut a = vec!["lint", "--strict", chart.to_str().unwrap()];
        a.extend(args.iter().map(String::as_str));
        let out = run(&helm, &a);
        assert!(
            out.ok,
            "helm lint --strict ({case}) failed:\n{}{}",
            out.stdout, out.stderr
        );
        assert!(
            out.stdout.contains("0 chart(s) failed"),
            "{case}: {}",
            out.stdout
        );
    }
}

#[test]
fn every_value_set_renders_what_a_user_relies_on() {
    for (case, args) in cases() {
        check_render(&case, &render_case(&args));
    }
}

/// kubernetes-validate, strict, against 1.30 and the newest version it ships.
/// Returns (version, file) -> number of objects that passed.
fn kubernetes_validate(
    files: &[PathBuf],
    version: Option<&str>,
) -> (String, BTreeMap<String, usize>) {
    let kv = tool("kubernetes-validate");
    let mut args: Vec<String> = vec!["--strict".into()];
    if let Some(v) = version {
        args.extend(["-k".into(), v.into()]);
    }
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&kv, &args);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.ok && !text.contains("ERROR"),
        "kubernetes-validate {version:?} failed:\n{text}"
    );
    let mut passed = BTreeMap::new();
    let mut seen_version = String::new();
    for line in text.lines() {
        if line.starts_with("WARN") {
            // Only the CRD kinds of cert-manager and the Prometheus Operator have no schema here.
            assert!(
                line.contains("api version cert-manager.io/v1")
                    || line.contains("api version monitoring.coreos.com/v1"),
                "unexpected kubernetes-validate warning: {line}"
            );
        }
        if let Some(rest) = line.strip_prefix("INFO ") {
            if let Some((file, tail)) = rest.split_once(" passed for resource ") {
                *passed.entry(file.to_string()).or_insert(0) += 1;
                seen_version = tail.rsplit(' ').next().unwrap().to_string();
            }
        }
    }
    (seen_version, passed)
}

#[test]
fn every_rendered_object_validates_against_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![];
    let mut expected = BTreeMap::new();
    for (case, args) in cases() {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        // As a 1.30+ cluster would: the lockdown ValidatingAdmissionPolicy is rendered too.
        a.extend([
            "--api-versions",
            "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
        ]);
        let out = helm_template(&a);
        assert!(out.ok, "{case}: {}", out.stderr);
        let docs = parse_docs(&out.stdout);
        let builtin = docs
            .iter()
            .filter(|d| {
                let api = d["apiVersion"].as_str().unwrap();
                !api.starts_with("cert-manager.io/") && !api.starts_with("monitoring.coreos.com/")
            })
            .count();
        let f = dir.path().join(format!("{case}.rendered.yaml"));
        std::fs::write(&f, &out.stdout).unwrap();
        expected.insert(f.to_string_lossy().into_owned(), builtin);
        files.push(f);
    }
    for f in [
        "manifests/vulngate.yaml",
        "manifests/example-namespace.yaml",
    ] {
        let p = root().join(f);
        let docs = parse_docs(&std::fs::read_to_string(&p).unwrap());
        let builtin = docs
            .iter()
            .filter(|d| {
                !d["apiVersion"]
                    .as_str()
                    .unwrap()
                    .starts_with("cert-manager.io/")
            })
            .count();
        expected.insert(p.to_string_lossy().into_owned(), builtin);
        files.push(p);
    }
    let (v130, passed) = kubernetes_validate(&files, Some("1.30.0"));
    assert_eq!(v130, "1.30");
    assert_eq!(passed, expected, "objects validated against 1.30, by file");
    let (newest, passed) = kubernetes_validate(&files, None);
    let minor: u32 = newest
        .strip_prefix("1.")
        .and_then(|m| m.parse().ok())
        .expect("version 1.x");
    assert!(minor > 30, "newest schema version {newest}");
    assert_eq!(
        passed, expected,
        "objects validated against {newest}, by file"
    );
    eprintln!(
        "kubernetes-validate: {} objects in {} files passed against 1.30 and {newest}",
        expected.values().sum::<usize>(),
        files.len()
    );
}

#[test]
fn rbac_grants_exactly_what_the_options_need() {
    let set = |s: &[(&str, &str, &str)]| -> BTreeSet<(String, String, String)> {
        s.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    };
    let namespaces = [
        ("", "namespaces", "get"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    ];
    let pull = [("", "secrets", "get"), ("", "serviceaccounts", "get")];
    let events = [
        ("", "events", "create"),
        ("", "events", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ];
    let pods = [("", "pods", "list")];
    // (helm --set flags, the rules (group, resource, verb) they must grant). Events go
    // wherever policies come from the cluster: admission leaves them too (break-glass,
    // controller pods); pods are listed only by the background audit.
    type Combo<'a> = (&'a [&'a str], Vec<(&'a str, &'a str, &'a str)>);
    let combos: [Combo; 5] = [
        (&[], [&namespaces[..], &events[..]].concat()),
        (
            &[
                "--set",
                "config.namespacesFile=/etc/vulngate/ns/namespaces.yaml",
            ],
            namespaces.to_vec(),
        ),
        (
            &["--set", "config.resolution.useImagePullSecrets=true"],
            [&namespaces[..], &pull[..], &events[..]].concat(),
        ),
        (
            &["--set", "audit.enabled=true"],
            [&namespaces[..], &events[..], &pods[..]].concat(),
        ),
        (
            &[
                "--set",
                "audit.enabled=true",
                "--set",
                "config.resolution.useImagePullSecrets=true",
            ],
            [&namespaces[..], &pull[..], &events[..], &pods[..]].concat(),
        ),
    ];
    for (args, want) in combos {
        let docs = installed(&render(args));
        let role = one(&docs, "ClusterRole");
        assert_eq!(
            rbac_grants(role),
            set(&want),
            "ClusterRole rules with {args:?}"
        );
        assert!(
            all(&docs, "Role").is_empty(),
            "no namespaced Role besides the test's"
        );
        let binding = one(&docs, "ClusterRoleBinding");
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        let sa = one(&docs, "ServiceAccount");
        assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
        assert_eq!(
            one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
            sa["metadata"]["name"]
        );
        // The option reaches the binary's config as well.
        let (_, config) = config_of(&docs);
        assert_eq!(
            config.resolution.use_image_pull_secrets,
            args.contains(&"config.resolution.useImagePullSecrets=true")
        );
        assert_eq!(
            vulngate::config::AuditConfig::period(&config),
            args.contains(&"audit.enabled=true")
                .then(|| Duration::from_secs(600)),
            "audit.enabled renders the audit key with the default interval"
        );
    }
    let docs = render(&["--set", "audit.enabled=true", "--set", "audit.interval=90s"]);
    let (_, config) = config_of(&docs);
    assert_eq!(
        vulngate::config::AuditConfig::period(&config),
        Some(Duration::from_secs(90))
    );
    let docs = render(&["--set", "audit.interval=90s"]);
    let (text, config) = config_of(&docs);
    assert!(
        !text.contains("audit"),
        "no audit key while disabled: {text}"
    );
    assert_eq!(vulngate::config::AuditConfig::period(&config), None);
    let docs = render(&["--set", "rbac.create=false"]);
    assert!(
        all(&installed(&docs), "ClusterRole").is_empty()
            && all(&docs, "ClusterRoleBinding").is_empty()
    );
}

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
fn a_typo_in_values_fails_instead_of_being_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let typo_file = dir.path().join("typo.yaml");
    std::fs::write(&typo_file, "webhook:\n  failurPolicy: Ignore\n").unwrap();
    let typo_file = typo_file.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-f", &typo_file], "failurPolicy"),
        (vec!["--set", "replicas=3"], "replicas"),
        (
            vec!["--set", "config.policy.defaults.limits.critcal=0"],
            "critcal",
        ),
        (vec!["--set", "config.policy.defaults.mode=enfroce"], "mode"),
        (vec!["--set", "tls.mode=certmanager"], "mode"),
        (vec!["--set", "webhook.failurePolicy=fail"], "failurePolicy"),
        (vec!["--set", "config.cache.ttl=10 minutes later"], "ttl"),
        (
            vec!["--set", "securityContext=null", "--set", "image.tagg=1"],
            "tagg",
        ),
        (
            vec![
                "--set",
                "webhook.workloads.enabled=false",
                "--set",
                "config.policy.defaults.controllerPods=warn",
            ],
            "controllerPods",
        ),
        (
            vec![
                "--set-json",
                r#"webhook.workloads.resources=["deployments"]"#,
                "--set",
                "config.policy.defaults.controllerPods=warn",
            ],
            "controllerPods",
        ),
        (vec!["--set", "config.policy.defaults.count=fixed"], "count"),
        (
            vec!["--set", "config.policy.defaults.maxScanAge=seven days"],
            "maxScanAge",
        ),
    ];
    for (args, key) in cases {
        let out = helm_template(&args);
        assert!(!out.ok, "helm template {args:?} must fail");
        assert!(
            out.stderr.contains(key),
            "the error for {args:?} names {key}:\n{}",
            out.stderr
        );
    }
    // And the schema's limit keys are exactly the ones vulngate knows.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    let limits = &schema["properties"]["config"]["properties"]["policy"]["properties"]["defaults"]
        ["properties"]["limits"];
    assert_eq!(limits["additionalProperties"], false);
    let keys: BTreeSet<String> = limits["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let known: BTreeSet<String> = LimitKey::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    assert_eq!(
        keys, known,
        "values.schema.json limit keys vs vulngate::domain::limits::LimitKey"
    );
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
    for r in w["rules"].as_sequence().unwrap() {
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
fn config_changes_roll_the_pods() {
    let checksum = |args: &[&str]| {
        let docs = render(args);
        one(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let base = checksum(&[]);
    assert_ne!(
        base,
        checksum(&["--set", "config.log.level=debug"]),
        "a config change changes the Pod template"
    );
    assert_ne!(
        base,
        checksum(&["--set", "webhook.timeoutSeconds=20"]),
        "the derived deadline is config too"
    );
    assert_eq!(
        base,
        checksum(&["--set", "replicaCount=4"]),
        "an unrelated change keeps it"
    );
    let creds = |args: &[&str]| {
        let docs = render(args);
        one(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/credentials"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(
        creds(&["--set", "credentials.files.token=a"]),
        creds(&["--set", "credentials.files.token=b"]),
        "a credentials change rolls the Pods"
    );
}

#[test]
fn defaults_are_safe_to_install() {
    let docs = installed(&render(&[]));
    let (_, config) = config_of(&docs);
    let deploy = one(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 2, "two replicas");
    let spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_sequence()
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

#[test]
fn helm_tls_mode_makes_a_certificate_for_the_service() {
    let docs = render(&[
        "-f",
        chart_dir()
            .join("ci/helm-tls-values.yaml")
            .to_str()
            .unwrap(),
    ]);
    let docs = installed(&docs);
    let secret = one(&docs, "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let dir = tempfile::tempdir().unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str().unwrap())
            .unwrap();
        std::fs::write(dir.path().join(key), pem).unwrap();
    }
    let openssl = Path::new("openssl");
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let verify = run(openssl, &["verify", "-CAfile", &d("ca.crt"), &d("tls.crt")]);
    assert!(
        verify.ok && verify.stdout.contains("OK"),
        "certificate chains to ca.crt: {}{}",
        verify.stdout,
        verify.stderr
    );
    let host = run(
        openssl,
        &[
            "x509",
            "-in",
            &d("tls.crt"),
            "-noout",
            "-checkhost",
            "vulngate.vulngate.svc",
        ],
    );
    assert!(
        host.stdout.contains("does match"),
        "certificate names the Service: {}",
        host.stdout
    );
    let key_pub = run(openssl, &["pkey", "-in", &d("tls.key"), "-pubout"]);
    let crt_pub = run(
        openssl,
        &["x509", "-in", &d("tls.crt"), "-noout", "-pubkey"],
    );
    assert!(
        key_pub.ok && key_pub.stdout == crt_pub.stdout,
        "tls.key belongs to tls.crt"
    );
}

#[test]
fn a_client_ca_configmap_is_mounted_and_named_in_the_config() {
    let docs = render(&[]);
    assert_eq!(
        config_of(&docs).1.tls.client_ca_file,
        None,
        "off by default"
    );
    let docs = render(&[
        "--set",
        "tls.clientCA.configMap=apiserver-client-ca",
        "--set",
        "tls.clientCA.key=bundle.pem",
    ]);
    let (text, config) = config_of(&docs);
    let file = config.tls.client_ca_file.expect("tls.clientCAFile set");
    assert_eq!(
        file,
        Path::new("/etc/vulngate/client-ca/bundle.pem"),
        "{text}"
    );
    let deploy = one(&docs, "Deployment");
    let (mount, volume) = mount_for(deploy, &file).expect("the client CA is mounted");
    assert_eq!(volume["configMap"]["name"], "apiserver-client-ca");
    // A subPath mount would never see the ConfigMap change.
    assert!(mount["subPath"].is_null(), "{mount:?}");
}

#[test]
fn existing_secret_mode_needs_its_name_and_ca() {
    let out = helm_template(&["--set", "tls.mode=existingSecret"]);
    assert!(
        !out.ok && out.stderr.contains("tls.existingSecret.name"),
        "{}",
        out.stderr
    );
    let out = helm_template(&[
        "--set",
        "tls.mode=existingSecret",
        "--set",
        "tls.existingSecret.name=x",
    ]);
    assert!(
        !out.ok && out.stderr.contains("tls.existingSecret.caBundle"),
        "{}",
        out.stderr
    );
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
    assert!(policy
        .limits
        .iter()
        .any(|l| l.key.as_str() == "critical" && l.max == 0));

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
            if h["objectSelector"].is_mapping() {
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

#[test]
fn manifests_are_the_chart_rendered_with_default_values() {
    let dir = tempfile::tempdir().unwrap();
    let helm = tool("helm");
    let path = format!(
        "{}:{}",
        helm.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(root().join("manifests/render.sh"))
        .arg(dir.path())
        .env("PATH", path)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = std::fs::read_to_string(dir.path().join("vulngate.yaml")).unwrap();
    let committed = std::fs::read_to_string(root().join("manifests/vulngate.yaml")).unwrap();
    assert!(
        fresh == committed,
        "manifests/vulngate.yaml is out of date with charts/vulngate: run manifests/render.sh"
    );

    let docs = parse_docs(&committed);
    check_render("manifests/vulngate.yaml", &docs);
    let ns = one(&docs, "Namespace");
    assert_eq!(ns["metadata"]["name"], NAMESPACE);
    // cert-manager mode, as documented at the top of the file.
    assert!(!all(&docs, "Certificate").is_empty());

    // The example namespace is a valid, enforced policy that the webhook sees.
    let (_, config) = config_of(&docs);
    let example = parse_docs(
        &std::fs::read_to_string(root().join("manifests/example-namespace.yaml")).unwrap(),
    );
    let ex = one(&example, "Namespace");
    let name = ex["metadata"]["name"].as_str().unwrap();
    let ann = labels(&ex["metadata"]["annotations"]);
    for k in ann.keys() {
        use vulngate::domain::annotations::*;
        let named = [
            MODE_ANNOTATION,
            UNSCANNED_ANNOTATION,
            EXEMPT_IMAGES_ANNOTATION,
            COUNT_ANNOTATION,
            ALLOW_CVES_ANNOTATION,
            GRACE_DAYS_ANNOTATION,
            MAX_SCAN_AGE_ANNOTATION,
            BREAK_GLASS_ANNOTATION,
            CONTROLLER_PODS_ANNOTATION,
        ];
        let known =
            named.contains(&k.as_str()) || LimitKey::ALL.iter().any(|l| &l.annotation() == k);
        assert!(known, "example annotation {k} is not one vulngate reads");
    }
    let policy = NamespacePolicy::resolve(
        &config.policy,
        &[],
        name,
        Some(&ann),
        time::OffsetDateTime::now_utc(),
    );
    assert!(policy.problems.is_empty(), "{:?}", policy.problems);
    assert_eq!(policy.mode, Mode::Enforce);
    for h in webhooks(&docs) {
        assert!(selector_matches(
            &h["namespaceSelector"],
            &ns_labels(name, &[])
        ));
    }
}

/// The Values table of charts/vulngate/README.md, made from the `# --` comments of values.yaml.
fn values_table() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let values: Value = serde_yaml::from_str(&text).unwrap();
    let mut stack: Vec<(usize, String)> = vec![];
    let mut doc: Option<String> = None;
    let mut skip_below: Option<usize> = None;
    let mut rows = vec![];
    let mut documented = vec![];
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            doc = None;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("# --") {
            doc = Some(rest.trim().to_string());
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('#') {
            if let Some(d) = doc.as_mut() {
                d.push(' ');
                d.push_str(rest.trim());
            }
            continue;
        }
        if let Some(s) = skip_below {
            if indent > s {
                continue;
            }
            skip_below = None;
        }
        if trimmed.starts_with("- ") {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut path: Vec<String> = stack.iter().map(|(_, k)| k.clone()).collect();
        path.push(key.to_string());
        if let Some(d) = doc.take() {
            let mut v = &values;
            for p in &path {
                v = &v[p.as_str()];
            }
            let default = serde_json::to_string(v).unwrap().replace('|', "\\|");
            let dotted = path.join(".");
            rows.push(format!(
                "| `{dotted}` | `{default}` | {} |",
                d.replace('|', "\\|")
            ));
            documented.push(dotted);
            skip_below = Some(indent);
        } else {
            stack.push((indent, key.to_string()));
        }
    }
    let mut table = String::from("| Key | Default | Description |\n|---|---|---|\n");
    for r in rows {
        table.push_str(&r);
        table.push('\n');
    }
    (table, documented)
}

fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v.as_mapping() {
        Some(m) if !m.is_empty() => {
            for (k, child) in m {
                let k = k.as_str().unwrap();
                let p = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(child, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn readme_documents_every_value() {
    let readme_path = chart_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (table, documented) = values_table();
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let mut leaves = vec![];
    leaf_paths(&values, "", &mut leaves);
    for leaf in &leaves {
        let covered = documented
            .iter()
            .any(|d| leaf == d || leaf.starts_with(&format!("{d}.")));
        assert!(covered, "values.yaml key {leaf} has no `# --` comment");
    }
    // Every documented value is in the schema, so the schema and values.yaml agree.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    for d in &documented {
        let mut s = &schema;
        for p in d.split('.') {
            s = &s["properties"][p];
        }
        assert!(!s.is_null(), "values.schema.json has no {d}");
    }

    let (start, end) = ("<!-- values:start -->\n", "<!-- values:end -->");
    let (head, rest) = readme
        .split_once(start)
        .expect("README has <!-- values:start -->");
    let (_, tail) = rest
        .split_once(end)
        .expect("README has <!-- values:end -->");
    let fresh = format!("{head}{start}{table}{end}{tail}");
    if std::env::var_os("VULNGATE_UPDATE_README").is_some() {
        std::fs::write(&readme_path, &fresh).unwrap();
    }
    assert!(
        fresh == readme,
        "charts/vulngate/README.md is out of date with values.yaml: run charts/readme.sh"
    );
    for d in &documented {
        assert!(readme.contains(&format!("`{d}`")), "README lacks {d}");
    }
}

#[test]
fn notes_tell_how_to_set_limits_and_see_a_denial() {
    let chart = chart_dir();
    let out = run(
        &tool("helm"),
        &[
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
        ],
    );
    assert!(out.ok, "helm install --dry-run=client: {}", out.stderr);
    let notes = out.stdout.split_once("NOTES:").expect("NOTES rendered").1;
    let docs = render(&[]);
    let deploy = one(&docs, "Deployment")["metadata"]["name"]
        .as_str()
        .unwrap();
    let vwc = one(&docs, "ValidatingWebhookConfiguration")["metadata"]["name"]
        .as_str()
        .unwrap();
    for needle in [
        format!("kubectl -n {NAMESPACE} rollout status deployment/{deploy}"),
        "kubectl annotate namespace".to_string(),
        "vulngate.io/mode=enforce".to_string(),
        "vulngate.io/max-critical=0".to_string(),
        "--dry-run=server".to_string(),
        "denied the request".to_string(),
        format!("helm test {RELEASE} -n {NAMESPACE}"),
        "vulngate.io/ignore=true".to_string(),
        format!("kubectl delete validatingwebhookconfiguration {vwc}"),
    ] {
        assert!(
            notes.contains(&needle),
            "NOTES.txt lacks {needle:?}:\n{notes}"
        );
    }
}

/// The checks of the restricted Pod Security Standard that a pod spec can fail.
fn assert_restricted(what: &str, spec: &Value) {
    let psc = &spec["securityContext"];
    for c in spec["containers"].as_sequence().unwrap() {
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
    for v in spec["volumes"].as_sequence().into_iter().flatten() {
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

#[test]
fn cert_manager_mode_signs_the_serving_certificate_with_a_stable_ca() {
    let docs = installed(&render(&[]));
    let certs = all(&docs, "Certificate");
    let issuers = all(&docs, "Issuer");
    let by_name = |list: &[&Value], name: &Value| -> Value {
        list.iter()
            .find(|x| &x["metadata"]["name"] == name)
            .map(|x| (*x).clone())
            .unwrap_or(Value::Null)
    };
    let vwc = one(&docs, "ValidatingWebhookConfiguration");
    let inject = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .unwrap();
    let serving = by_name(&certs, &Value::from(inject.split_once('/').unwrap().1));
    assert!(
        !serving.is_null(),
        "inject-ca-from names a rendered Certificate"
    );
    assert!(serving["spec"]["isCA"].is_null() || serving["spec"]["isCA"] == false);
    assert!(str_list(&serving["spec"]["usages"]).contains(&"server auth".to_string()));
    // serving <- CA Issuer (kind Issuer, same namespace) <- CA Certificate (isCA) <- self-signed Issuer.
    assert_eq!(serving["spec"]["issuerRef"]["kind"], "Issuer");
    let ca_issuer = by_name(&issuers, &serving["spec"]["issuerRef"]["name"]);
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"].clone();
    assert!(
        !ca_secret.is_null(),
        "the serving certificate's Issuer is a CA Issuer"
    );
    let ca_cert = certs
        .iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("a Certificate makes the CA");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let root_issuer = by_name(&issuers, &ca_cert["spec"]["issuerRef"]["name"]);
    assert!(
        root_issuer["spec"]["selfSigned"].is_mapping(),
        "the CA is self-signed"
    );
    // The CA outlives many renewals of the serving certificate.
    let hours = |v: &Value| {
        v.as_str()
            .unwrap()
            .trim_end_matches('h')
            .parse::<u64>()
            .unwrap()
    };
    assert!(hours(&ca_cert["spec"]["duration"]) >= 4 * hours(&serving["spec"]["duration"]));
    assert!(hours(&serving["spec"]["renewBefore"]) < hours(&serving["spec"]["duration"]));

    // With an issuerRef of your own, the chart makes no Issuer of its own.
    let docs = installed(&render(&[
        "-f",
        chart_dir()
            .join("ci/certmanager-issuer-values.yaml")
            .to_str()
            .unwrap(),
    ]));
    assert!(all(&docs, "Issuer").is_empty());
    let cert = one(&docs, "Certificate");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "cluster-ca");
}

/// Key paths of a config document, not descending into data maps and lists.
fn config_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(m) = v.as_mapping() {
        for (k, child) in m {
            let p = if prefix.is_empty() {
                k.as_str().unwrap().to_string()
            } else {
                format!("{prefix}.{}", k.as_str().unwrap())
            };
            out.insert(p.clone());
            // Secret sources (`{file: ...}` or `{env: ...}`) are values, not keys.
            let secret_source = ["cache.shared.redis.username", "cache.shared.redis.password"];
            if p != "policy.defaults.limits"
                && p != "registries"
                && !secret_source.contains(&p.as_str())
            {
                config_keys(child, &p, out);
            }
        }
    }
}

#[test]
fn every_config_key_is_reachable_from_values() {
    // Every key vulngate's config has (its defaults, serialized) ...
    // (The shared cache is optional: it is named so that its keys are known too.)
    let minimal = "registries: [{match: \"*\", scanner: {file: {path: /scans}}}]\n\
        cache: {shared: {redis: {url: \"rediss://r:6380\", username: {file: /u}, password: {file: /p}}, hmacKeys: [{id: k1, secret: {file: /k}}]}}\n";
    let config = Config::from_yaml(minimal, Path::new("/")).unwrap();
    let mut known = BTreeSet::new();
    config_keys(&serde_yaml::to_value(&config).unwrap(), "", &mut known);
    // ... is set by the chart in some value set (not counting configOverrides, which reaches
    // anything), except the generated-certificate keys: the chart always supplies a certificate.
    // (`connections.maxConnections` has no default: ci/full-values.yaml sets it.)
    let mut rendered = BTreeSet::new();
    // (ci/full-values.yaml's configOverrides sets only tls.generateNames, excluded below.)
    for (_, args) in cases() {
        let (text, _) = config_of(&render_case(&args));
        config_keys(&serde_yaml::from_str(&text).unwrap(), "", &mut rendered);
    }
    let chart_supplies_the_certificate = [
        "tls.generateDir",
        "tls.generateNames",
        "tls.regenerateBefore",
    ];
    let missing: Vec<&String> = known
        .iter()
        .filter(|k| !rendered.contains(*k) && !chart_supplies_the_certificate.contains(&k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys no value reaches: {missing:?} (add them to values.yaml and a ci/ value set)"
    );
    let unknown: Vec<&String> = rendered.iter().filter(|k| !known.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "the chart renders keys vulngate does not have: {unknown:?}"
    );
}

#[test]
fn the_shared_cache_values_render_a_config_whose_secret_files_are_mounted() {
    let values = chart_dir().join("ci/shared-cache-values.yaml");
    let docs = render(&["-f", values.to_str().unwrap()]);
    let (text, config) = config_of(&docs);
    let shared = config.cache.shared.as_ref().expect("cache.shared rendered");
    assert_eq!(
        shared.redis.url, "rediss://redis.redis.svc:6380/0",
        "{text}"
    );
    let deploy = one(&docs, "Deployment");
    let mut files: Vec<PathBuf> = vec![shared.redis.ca_file.clone().expect("caFile")];
    for source in [&shared.redis.username, &shared.redis.password]
        .into_iter()
        .flatten()
        .chain(shared.hmac_keys.iter().map(|k| &k.secret))
    {
        match source {
            vulngate::secret::SecretSource::File(path) => files.push(path.clone()),
            other => panic!("expected files from the Secret, got {other:?}"),
        }
    }
    assert_eq!(files.len(), 4, "{text}");
    for file in files {
        let (_, volume) =
            mount_for(deploy, &file).unwrap_or_else(|| panic!("{file:?} not mounted"));
        assert_eq!(
            volume["secret"]["secretName"], "vulngate-shared-cache",
            "{volume:?}"
        );
    }
    // Off by default: no shared tier, no mount.
    let (_, default) = config_of(&render(&[]));
    assert!(default.cache.shared.is_none());
}
