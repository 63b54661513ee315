//! Every value set and manifests/ render what a user relies on; helm lint --strict.

use super::*;

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
    assert!(
        stop < kill_after,
        "{case}: drainDelay + grace = {stop:?} must be below terminationGracePeriodSeconds {kill_after:?}"
    );
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
    let svc_ports = svc["spec"]["ports"].as_array().unwrap();
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
            .as_array()
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
        for rule in h["rules"].as_array().unwrap() {
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
        for rule in h["rules"].as_array().unwrap() {
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
