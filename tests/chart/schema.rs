//! values.schema.json rejects typos; every rendered object validates against the Kubernetes schemas.

use super::*;

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
