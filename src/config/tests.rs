//! The config file's reading and checks: every error names its key.

use super::*;

fn parse(extra: &str) -> Result<Config, String> {
    let text =
        format!("registries:\n  - match: \"*\"\n    scanner: {{file: {{path: scans}}}}\n{extra}");
    Config::from_yaml(&text, Path::new("/etc/vulngate")).map_err(|e| e.to_string())
}

#[test]
fn a_route_names_its_registry_as_images_do() {
    for (written, canonical) in [
        ("Registry-1.Docker.io", "docker.io"),
        ("index.docker.io:443", "docker.io"),
        ("REG.example.com:443", "reg.example.com"),
        ("reg.example.com:8443", "reg.example.com:8443"),
        ("*.Example.com", "*.example.com"),
    ] {
        let pattern: HostPattern = serde_saphyr::from_str(&format!("{written:?}")).unwrap();
        assert_eq!(pattern.0, canonical, "{written}");
    }
}

#[test]
fn the_background_audit_is_off_unless_configured() {
    let config = parse("").expect("config");
    assert_eq!(AuditConfig::period(&config), None);
    let config = parse("audit: {interval: 90s}\n").expect("config");
    assert_eq!(AuditConfig::period(&config), Some(Duration::from_secs(90)));
    let config = parse("audit: {}\n").expect("config");
    assert_eq!(AuditConfig::period(&config), Some(Duration::from_secs(600)));
    let config = parse("audit: {enabled: false, interval: 5m}\n").expect("config");
    assert_eq!(AuditConfig::period(&config), None);
}

#[test]
fn review_bounds_and_purge_have_safe_defaults_and_named_errors() {
    let config = parse("").expect("config");
    assert_eq!(config.review.max_images, 100);
    assert_eq!(config.cache.failure_ttl, Duration::from_secs(5));
    assert!(!config.ops.purge.enabled);
    let err = parse("review: {maxImages: 0}\n").expect_err("zero cap");
    assert!(err.contains("review.maxImages"), "{err}");
    let err = parse("ops: {purge: {enabled: true}}\n").expect_err("no token file");
    assert!(
        err.contains("ops.purge") && err.contains("tokenFile"),
        "{err}"
    );
    let config = parse("ops: {purge: {enabled: true, tokenFile: purge/token}}\n").expect("config");
    assert_eq!(
        config.ops.purge.token_file.as_deref(),
        Some(Path::new("/etc/vulngate/purge/token"))
    );
}

#[test]
fn pinning_is_off_unless_enabled_and_its_typos_are_named() {
    assert!(!parse("").expect("config").pin_digests.enabled);
    let config = parse("pinDigests: {enabled: true}\n").expect("config");
    assert!(config.pin_digests.enabled);
    let err = parse("pinDigests: {enable: true}\n").expect_err("typo");
    assert!(err.contains("enable"), "{err}");
}

#[test]
fn connection_limits_have_defaults_and_named_errors() {
    let config = parse("").expect("config");
    assert_eq!(
        config.connections.first_request_timeout,
        Duration::from_secs(10)
    );
    assert_eq!(config.connections.max_connections, None);
    let config =
        parse("connections: {idleTimeout: 5s, maxConnectionsPerPeer: 8}\n").expect("config");
    assert_eq!(config.connections.idle_timeout, Duration::from_secs(5));
    assert_eq!(config.connections.max_connections_per_peer, 8);
    for (yaml, key) in [
        (
            "connections: {idleTimeout: 0s}\n",
            "connections.idleTimeout",
        ),
        (
            "connections: {maxHeaderBytes: 100}\n",
            "connections.maxHeaderBytes",
        ),
        (
            "connections: {maxConnectionsPerPeer: 0}\n",
            "connections.maxConnectionsPerPeer",
        ),
        (
            "connections: {firstRequestTimeout: soon}\n",
            "connections.firstRequestTimeout",
        ),
        ("connections: {maxConections: 5}\n", "maxConections"),
    ] {
        let err = parse(yaml).expect_err(yaml);
        assert!(err.contains(key), "{yaml}: {err}");
    }
}

#[test]
fn every_yaml_error_names_its_key_and_line() {
    let route = "registries:\n  - match: \"*\"\n    scanner: {file: {path: s}}\n";
    for (yaml, named) in [
        (
            format!("{route}cache: {{ttll: 5m}}\n"),
            "cache.ttll: unknown field `ttll`",
        ),
        (
            format!("{route}cache: {{maxEntries: many}}\n"),
            "cache.maxEntries: ",
        ),
        (format!("{route}deadline: soon\n"), "deadline: "),
        (
            format!("{route}  - match: x\n    scanner: {{file: {{pth: s}}}}\n"),
            "registries[1].scanner.file.pth: unknown field `pth`",
        ),
        (
            "registries:\n  - match: \"*\"\n    scanner: {filez: {path: s}}\n".into(),
            "registries[0].scanner: unknown variant `filez`",
        ),
        (
            "registries:\n  - scanner: {file: {path: s}}\n".into(),
            "registries[0]: missing field `match`",
        ),
        (
            format!("{route}policy: {{defaults: {{mode: enfroce}}}}\n"),
            "policy.defaults.mode: unknown variant `enfroce`",
        ),
        (
            format!("{route}cache: {{shared: {{redis: {{url: x, password: {{vault: x}}}}}}}}\n"),
            "cache.shared.redis.password.vault: unknown field `vault`",
        ),
        // YAML 1.2 booleans only, as the chart's Helm writes them.
        (
            format!("{route}ops: {{purge: {{enabled: yes}}}}\n"),
            "ops.purge.enabled: ",
        ),
        (
            format!("{route}deadline: 1s\ndeadline: 2s\n"),
            "duplicate mapping key: deadline",
        ),
    ] {
        let err = Config::from_yaml(&yaml, Path::new("/"))
            .expect_err(&yaml)
            .to_string();
        assert!(err.starts_with(named), "{yaml}: {err}");
        assert!(err.contains(" at line "), "{yaml}: {err}");
    }
}

#[test]
fn bad_audit_settings_are_named() {
    let err = parse("audit: {interval: 0s}\n").expect_err("zero interval");
    assert!(err.contains("audit.interval"), "{err}");
    let err = parse("audit: {interval: soon}\n").expect_err("bad duration");
    assert!(err.contains("audit.interval"), "{err}");
    let err = parse("audit: {every: 5m}\n").expect_err("unknown key");
    assert!(err.contains("every"), "{err}");
}

#[test]
fn alibaba_scanners_share_their_settings_and_refuse_unknown_keys_by_name() {
    let route = |scanner: &str| {
        format!(
            "registries:\n  - match: \"*\"\n    scanner:\n      {scanner}:\n        region: cn-hangzhou\n        timeout: 2s\n"
        )
    };
    let acr = format!("{}        vulnerabilityDetails: false\n", route("acr"));
    let config = Config::from_yaml(&acr, Path::new("/")).expect("acr");
    let ScannerConfig::Acr(acr) = &config.registries[0].scanner else {
        panic!("acr route expected");
    };
    assert_eq!(acr.timeout, Duration::from_secs(2));
    assert!(!acr.product.vulnerability_details);
    let sas = format!(
        "{}        repoRegion: cn-beijing\n        countHandled: true\n",
        route("sas")
    );
    let config = Config::from_yaml(&sas, Path::new("/")).expect("sas");
    let ScannerConfig::Sas(sas) = &config.registries[0].scanner else {
        panic!("sas route expected");
    };
    assert_eq!(sas.client_settings().timeout, Duration::from_secs(2));
    assert_eq!(sas.product.repo_region.as_deref(), Some("cn-beijing"));
    assert!(sas.product.count_handled);

    for (scanner, key) in [
        ("acr", "retryBudgett"),
        ("sas", "retryBudgett"),
        // Each product's own keys belong to it alone.
        ("acr", "countHandled"),
        ("sas", "vulnerabilityDetails"),
    ] {
        let yaml = format!("{}        {key}: x\n", route(scanner));
        let err = Config::from_yaml(&yaml, Path::new("/"))
            .expect_err(&yaml)
            .to_string();
        assert!(
            err.starts_with(&format!(
                "registries[0].scanner.{scanner}: unknown field `{key}`"
            )),
            "{yaml}: {err}"
        );
        assert!(err.contains(" at line "), "{yaml}: {err}");
    }
    // Keys of the shared settings keep their path in errors.
    let yaml = format!("{}        signatureVersion: v3\n", route("sas"));
    let err = Config::from_yaml(&yaml, Path::new("/"))
        .expect_err(&yaml)
        .to_string();
    assert!(
        err.starts_with("registries[0].scanner.sas.signatureVersion: unknown variant `v3`"),
        "{err}"
    );
}
