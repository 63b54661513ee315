//! The chart's RBAC grants exactly what the enabled options need.

use super::*;

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
