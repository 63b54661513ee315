//! Helpers of the chart tests (tests/chart.rs, tests/chart_security.rs): `helm template`
//! of charts/vulngate and readers of what it renders. `helm` and `kubernetes-validate`
//! come from tests/setup.d/helm.sh (into .tools/bin); a missing tool fails with a message
//! naming that script.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vulngate::config::Config;

pub const RELEASE: &str = "vulngate";
pub const NAMESPACE: &str = "vulngate";
pub const SETUP: &str = "tests/setup.d/helm.sh";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    root().join("charts/vulngate")
}

/// A tool from PATH, else from .tools/bin; a clear failure when neither has it.
pub fn tool(name: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    let local = root().join(".tools/bin").join(name);
    if local.is_file() {
        return local;
    }
    panic!(
        "`{name}` is not installed: run `bash {SETUP}` (tests/run.sh runs it) to install helm, kubectl and kubernetes-validate into .tools/bin"
    );
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(program: &Path, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `bash {SETUP}`", program.display()));
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `helm template` of the chart as release `vulngate` in namespace `vulngate`.
pub fn helm_template(extra: &[&str]) -> Output {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    args.extend_from_slice(extra);
    run(&tool("helm"), &args)
}

pub fn render(extra: &[&str]) -> Vec<Value> {
    let out = helm_template(extra);
    assert!(out.ok, "helm template {extra:?} failed:\n{}", out.stderr);
    parse_docs(&out.stdout)
}

pub fn parse_docs(text: &str) -> Vec<Value> {
    // Empty documents are skipped.
    serde_saphyr::from_multiple(text).expect("rendered YAML parses")
}

/// The value sets every render test covers: the defaults and each file in charts/vulngate/ci.
pub fn cases() -> Vec<(String, Vec<String>)> {
    let mut cases = vec![("default".to_string(), vec![])];
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/vulngate/ci exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the value sets of charts/vulngate/ci, found {files:?}"
    );
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        cases.push((
            name,
            vec!["-f".to_string(), f.to_string_lossy().into_owned()],
        ));
    }
    cases
}

pub fn render_case(args: &[String]) -> Vec<Value> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    render(&args)
}

pub fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

pub fn all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind_of(d) == kind).collect()
}

/// Objects installed by the chart (not `helm test` hooks).
pub fn installed(docs: &[Value]) -> Vec<Value> {
    docs.iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"].as_str() != Some("test"))
        .cloned()
        .collect()
}

pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = all(docs, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

pub fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("string item").to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A Kubernetes label selector, evaluated as the API server does.
pub fn selector_matches(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            if labels.get(k.as_str()).map(String::as_str) != v.as_str() {
                return false;
            }
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let got = labels.get(e["key"].as_str().unwrap());
        let values = str_list(&e["values"]);
        let ok = match e["operator"].as_str().unwrap() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => !got.is_some_and(|g| values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            op => panic!("unknown selector operator {op}"),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The labels a namespace has in a cluster: its own plus kubernetes.io/metadata.name.
pub fn ns_labels(name: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("kubernetes.io/metadata.name".into(), name.into());
    l
}

/// The ConfigMap holding vulngate's config file.
pub fn config_map(docs: &[Value]) -> &Value {
    let found: Vec<&Value> = all(docs, "ConfigMap")
        .into_iter()
        .filter(|c| c["data"]["config.yaml"].is_string())
        .collect();
    assert_eq!(found.len(), 1, "expected one ConfigMap with config.yaml");
    found[0]
}

pub fn config_of(docs: &[Value]) -> (String, Config) {
    let cm = config_map(docs);
    let text = cm["data"]["config.yaml"]
        .as_str()
        .expect("ConfigMap has config.yaml")
        .to_string();
    let config = Config::from_yaml(&text, Path::new("/etc/vulngate"))
        .unwrap_or_else(|e| panic!("vulngate rejects the rendered config: {e}\n{text}"));
    (text, config)
}

pub fn container(deploy: &Value) -> &Value {
    let containers = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    containers
        .iter()
        .find(|c| c["name"] == "vulngate")
        .expect("container vulngate")
}

pub fn container_port(c: &Value, name: &str) -> u16 {
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("container port {name}"))["containerPort"]
        .as_u64()
        .unwrap() as u16
}

/// The volume mounted at the longest mountPath that holds `path`.
pub fn mount_for<'a>(deploy: &'a Value, path: &Path) -> Option<(&'a Value, &'a Value)> {
    let c = container(deploy);
    let mounts = c["volumeMounts"].as_array()?;
    let m = mounts
        .iter()
        .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())?;
    let volumes = deploy["spec"]["template"]["spec"]["volumes"].as_array()?;
    let v = volumes.iter().find(|v| v["name"] == m["name"])?;
    Some((m, v))
}

pub fn webhooks(docs: &[Value]) -> Vec<&Value> {
    one(docs, "ValidatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}
