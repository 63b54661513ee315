//! What the chart does against the threats of docs/security.md (issue 28): the
//! NetworkPolicy it ships by default, the ops port on no Service, the purge endpoint
//! off unless given a token Secret, and the lockdown ValidatingAdmissionPolicy, whose
//! CEL expressions (taken from `helm template` output) are evaluated against the cases
//! a namespace editor and a platform team meet.
//!
//! `helm` comes from tests/setup.d/helm.sh (into .tools/bin); a missing tool fails the
//! test with a message naming that script.

#[path = "support/chart.rs"]
mod chart_support;

use std::collections::HashMap;

use cel_interpreter::{Context, Program, Value as Cel};
use chart_support::*;
use serde_json::Value;
use serde_json::json;

/// What `.Capabilities.APIVersions.Has` looks for; `helm template` without a cluster
/// lacks it unless told with `--api-versions`.
const VAP_API: &str = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy";

fn full_values() -> String {
    chart_dir()
        .join("ci/full-values.yaml")
        .to_string_lossy()
        .into_owned()
}

/// The ingress rules of the one NetworkPolicy: (port, `from` peers) per rule.
fn ingress(docs: &[Value]) -> Vec<(String, Vec<Value>)> {
    let np = one(docs, "NetworkPolicy");
    assert_eq!(str_list(&np["spec"]["policyTypes"]), vec!["Ingress"]);
    np["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .map(|rule| {
            let ports = rule["ports"].as_array().expect("ports");
            assert_eq!(ports.len(), 1, "one port per rule: {rule:?}");
            assert_eq!(ports[0]["protocol"], "TCP");
            let port = ports[0]["port"].as_str().expect("a named port").to_string();
            let from = rule["from"].as_array().cloned().unwrap_or_default();
            (port, from)
        })
        .collect()
}

#[test]
fn a_network_policy_is_rendered_by_default_with_the_right_ports() {
    let docs = installed(&render(&[]));
    let deploy = one(&docs, "Deployment");
    let pod_labels = labels(&deploy["spec"]["template"]["metadata"]["labels"]);
    let np = one(&docs, "NetworkPolicy");
    assert!(
        selector_matches(&np["spec"]["podSelector"], &pod_labels),
        "the NetworkPolicy selects vulngate's Pods"
    );
    let c = container(deploy);
    // Named ports resolve against the container's ports.
    container_port(c, "https");
    container_port(c, "ops");
    let rules = ingress(&docs);
    assert_eq!(rules.len(), 2, "{rules:?}");
    // The API server's address is no pod's: every source, on the webhook port only.
    assert_eq!(rules[0], ("https".to_string(), vec![]));
    // The monitoring namespace, on the ops port only.
    let (port, from) = &rules[1];
    assert_eq!(port, "ops");
    assert_eq!(from.len(), 1, "{from:?}");
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert!(from[0]["podSelector"].is_null() && from[0]["ipBlock"].is_null());

    let docs = installed(&render(&["--set", "networkPolicy.enabled=false"]));
    assert!(all(&docs, "NetworkPolicy").is_empty());
}

#[test]
fn network_policy_sources_are_configurable_and_probes_get_their_own_rule() {
    let docs = installed(&render(&["-f", &full_values()]));
    let rules = ingress(&docs);
    let ports: Vec<&str> = rules.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(ports, vec!["https", "ops", "ops"]);
    assert_eq!(rules[0].1[0]["ipBlock"]["cidr"], "10.0.0.0/24");
    let metrics = &rules[1].1[0];
    assert_eq!(
        metrics["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "observability"
    );
    assert_eq!(
        metrics["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus"
    );
    assert_eq!(rules[2].1[0]["ipBlock"]["cidr"], "192.168.0.0/16");
}

#[test]
fn the_ops_port_is_on_no_service_and_the_service_monitor_scrapes_the_pods() {
    let docs = installed(&render(&["-f", &full_values()]));
    let svc = one(&docs, "Service");
    let targets: Vec<&Value> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["targetPort"])
        .collect();
    assert_eq!(targets, vec!["https"]);
    let sm = one(&docs, "ServiceMonitor");
    let endpoints = sm["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    // A Service port would be needed for `port:`; `targetPort` names the Pods' port.
    assert!(endpoints[0]["port"].is_null(), "{:?}", endpoints[0]);
    assert_eq!(endpoints[0]["targetPort"], "ops");
    assert_eq!(endpoints[0]["path"], "/metrics");
    container_port(container(one(&docs, "Deployment")), "ops");
    assert!(
        selector_matches(&sm["spec"]["selector"], &labels(&svc["metadata"]["labels"])),
        "the ServiceMonitor selects the Service"
    );
}

#[test]
fn cache_purge_is_off_by_default_and_reads_its_token_from_a_secret() {
    let (_, config) = config_of(&installed(&render(&[])));
    assert!(!config.ops.purge.enabled && config.ops.purge.token_file.is_none());

    let out = helm_template(&["--set", "cachePurge.enabled=true"]);
    assert!(!out.ok, "purge without a token Secret renders");
    assert!(
        out.stderr.contains("cachePurge.existingSecret"),
        "{}",
        out.stderr
    );

    let docs = installed(&render(&["-f", &full_values()]));
    let (_, config) = config_of(&docs);
    assert!(config.ops.purge.enabled);
    let token = config.ops.purge.token_file.expect("tokenFile");
    let deploy = one(&docs, "Deployment");
    let (mount, volume) = mount_for(deploy, &token).expect("the token file is mounted");
    assert_eq!(mount["readOnly"], true);
    assert_eq!(volume["secret"]["secretName"], "vulngate-purge");
    let key = token.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(volume["secret"]["items"][0]["key"], key.as_str());
}

#[test]
fn the_lockdown_policy_renders_only_where_the_cluster_serves_its_api() {
    let without = installed(&render(&[]));
    assert!(all(&without, "ValidatingAdmissionPolicy").is_empty());
    let docs = installed(&render(&["--api-versions", VAP_API]));
    let policy = one(&docs, "ValidatingAdmissionPolicy");
    let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(
        str_list(&binding["spec"]["validationActions"]),
        vec!["Deny"]
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(str_list(&rule["resources"]), vec!["namespaces"]);
    assert_eq!(str_list(&rule["operations"]), vec!["CREATE", "UPDATE"]);
    let off = installed(&render(&[
        "--api-versions",
        VAP_API,
        "--set",
        "lockdownPolicy.enabled=false",
    ]));
    assert!(all(&off, "ValidatingAdmissionPolicy").is_empty());
    assert!(all(&off, "ValidatingAdmissionPolicyBinding").is_empty());
}

/// The rendered policy's CEL: variables in order, then each validation with its message.
struct LockdownPolicy {
    variables: Vec<(String, Program)>,
    validations: Vec<(Program, Program)>,
}

fn compile(expression: &Value) -> Program {
    let text = expression.as_str().expect("an expression");
    Program::compile(text).unwrap_or_else(|e| panic!("CEL does not parse: {e}\n{text}"))
}

impl LockdownPolicy {
    fn rendered(extra: &[&str]) -> LockdownPolicy {
        let mut args = vec!["--api-versions", VAP_API];
        args.extend_from_slice(extra);
        let docs = installed(&render(&args));
        let spec = &one(&docs, "ValidatingAdmissionPolicy")["spec"];
        let variables = spec["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    compile(&v["expression"]),
                )
            })
            .collect();
        let validations = spec["validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (compile(&v["expression"]), compile(&v["messageExpression"])))
            .collect();
        LockdownPolicy {
            variables,
            validations,
        }
    }

    /// The API server's answer to `user` (in `groups`) writing `object` over `old`:
    /// `Ok` or the denial message.
    fn admit(
        &self,
        (user, groups): (&str, &[&str]),
        old: Option<serde_json::Value>,
        object: serde_json::Value,
    ) -> Result<(), String> {
        let mut context = Context::default();
        let value = |v: serde_json::Value| cel_interpreter::to_value(v).expect("a CEL value");
        context.add_variable_from_value("object", value(object));
        context.add_variable_from_value("oldObject", old.map_or(Cel::Null, value));
        context.add_variable_from_value(
            "request",
            value(json!({"userInfo": {"username": user, "groups": groups}})),
        );
        let mut variables: HashMap<String, Cel> = HashMap::new();
        for (name, program) in &self.variables {
            context.add_variable_from_value("variables", variables.clone());
            let v = program
                .execute(&context)
                .unwrap_or_else(|e| panic!("variable {name} fails: {e}"));
            variables.insert(name.clone(), v);
        }
        context.add_variable_from_value("variables", variables);
        for (check, message) in &self.validations {
            match check.execute(&context) {
                Ok(Cel::Bool(true)) => {}
                Ok(Cel::Bool(false)) => {
                    return Err(match message.execute(&context) {
                        Ok(Cel::String(s)) => s.to_string(),
                        other => panic!("messageExpression gave {other:?}"),
                    });
                }
                other => panic!("validation gave {other:?}"),
            }
        }
        Ok(())
    }
}

/// A Namespace as the API server sends it: a `null` map is left out, not written.
fn namespace(labels: serde_json::Value, annotations: serde_json::Value) -> serde_json::Value {
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    for (key, map) in [("labels", labels), ("annotations", annotations)] {
        if !map.is_null() {
            ns["metadata"][key] = map;
        }
    }
    ns
}

/// A namespace with only the labels and annotations Kubernetes and a team would set.
fn plain() -> serde_json::Value {
    namespace(
        json!({"kubernetes.io/metadata.name": "shop", "team": "shop"}),
        json!({"owner": "shop-team"}),
    )
}

fn with(mut ns: serde_json::Value, place: &str, key: &str, value: &str) -> serde_json::Value {
    ns["metadata"][place][key] = json!(value);
    ns
}

const EDITOR: (&str, &[&str]) = ("alice", &["shop-editors", "system:authenticated"]);
const MASTER: (&str, &[&str]) = ("root", &["system:masters", "system:authenticated"]);

#[test]
fn the_lockdown_policy_stops_editors_changing_the_opt_out_label_or_annotations() {
    let policy = LockdownPolicy::rendered(&[]);
    let ignored = with(plain(), "labels", "vulngate.io/ignore", "true");
    let relaxed = with(plain(), "annotations", "vulngate.io/max-high", "5");

    // A namespace editor may not switch vulngate off, or back on, or loosen limits.
    let cases = [
        ("adds the opt-out label", Some(plain()), ignored.clone()),
        ("removes the opt-out label", Some(ignored.clone()), plain()),
        (
            "changes the opt-out label",
            Some(ignored.clone()),
            with(plain(), "labels", "vulngate.io/ignore", "false"),
        ),
        ("creates a namespace with it", None, ignored.clone()),
        ("adds an annotation", Some(plain()), relaxed.clone()),
        (
            "changes an annotation",
            Some(relaxed.clone()),
            with(plain(), "annotations", "vulngate.io/max-high", "50"),
        ),
        ("removes an annotation", Some(relaxed.clone()), plain()),
    ];
    for (what, old, new) in &cases {
        let denied = policy.admit(EDITOR, old.clone(), new.clone());
        let message = denied.expect_err(&format!("an editor who {what} is denied"));
        assert_eq!(
            message,
            "only system:masters may add, change or remove vulngate.io/* annotations, or the vulngate.io/ignore label, of namespace shop",
            "{what}"
        );
        // The platform team may.
        assert_eq!(
            policy.admit(MASTER, old.clone(), new.clone()),
            Ok(()),
            "{what}"
        );
    }

    // Unrelated edits pass, also on a namespace that has vulngate's keys.
    let unrelated = [
        (Some(plain()), with(plain(), "labels", "team", "payments")),
        (Some(plain()), with(plain(), "annotations", "owner", "bob")),
        (
            Some(ignored.clone()),
            with(ignored.clone(), "labels", "team", "payments"),
        ),
        (
            Some(relaxed.clone()),
            with(relaxed.clone(), "annotations", "owner", "bob"),
        ),
        // Other vulngate.io labels (the helm test namespace's) switch nothing off.
        (
            Some(plain()),
            with(plain(), "labels", "vulngate.io/test", "true"),
        ),
        (None, plain()),
        (Some(plain()), namespace(json!(null), json!(null))),
        (None, namespace(json!(null), json!(null))),
    ];
    for (old, new) in unrelated {
        assert_eq!(
            policy.admit(EDITOR, old.clone(), new.clone()),
            Ok(()),
            "{old:?} -> {new}"
        );
    }
}

#[test]
fn the_lockdown_policy_allows_the_configured_groups_and_users_and_a_custom_label() {
    let policy = LockdownPolicy::rendered(&[
        "--set",
        "lockdownPolicy.allowedGroups={platform-admins}",
        "--set",
        "lockdownPolicy.allowedUsers={system:serviceaccount:argocd:argocd-application-controller}",
        "--set",
        "webhook.ignoreLabel=example.com/no-scan",
    ]);
    let opted_out = with(plain(), "labels", "example.com/no-scan", "true");
    let platform = ("carol", &["platform-admins"][..]);
    let gitops = (
        "system:serviceaccount:argocd:argocd-application-controller",
        &[][..],
    );
    for who in [platform, gitops] {
        assert_eq!(
            policy.admit(who, Some(plain()), opted_out.clone()),
            Ok(()),
            "{who:?}"
        );
    }
    // system:masters is no longer named; an editor is still refused.
    for who in [EDITOR, MASTER] {
        let message = policy
            .admit(who, Some(plain()), opted_out.clone())
            .expect_err("refused");
        assert!(message.starts_with("only platform-admins, system:serviceaccount:argocd:argocd-application-controller may"), "{message}");
        assert!(
            message.contains("the example.com/no-scan label"),
            "{message}"
        );
    }
}
