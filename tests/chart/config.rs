//! The config file the chart renders: every key reachable from values, secrets mounted, changes roll the pods.

use super::*;

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

/// Key paths of a config document, not descending into data maps and lists.
fn config_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(m) = v.as_object() {
        for (k, child) in m {
            let p = if prefix.is_empty() {
                k.as_str().to_string()
            } else {
                format!("{prefix}.{}", k.as_str())
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
    config_keys(&serde_json::to_value(&config).unwrap(), "", &mut known);
    // ... is set by the chart in some value set (not counting configOverrides, which reaches
    // anything), except the generated-certificate keys: the chart always supplies a certificate.
    // (`connections.maxConnections` has no default: ci/full-values.yaml sets it.)
    let mut rendered = BTreeSet::new();
    // (ci/full-values.yaml's configOverrides sets only tls.generateNames, excluded below.)
    for (_, args) in cases() {
        let (text, _) = config_of(&render_case(&args));
        config_keys(&serde_saphyr::from_str(&text).unwrap(), "", &mut rendered);
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
