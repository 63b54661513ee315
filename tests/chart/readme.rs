//! The chart's README values table and NOTES stay true to values.yaml.

use super::*;

/// The Values table of charts/vulngate/README.md, made from the `# --` comments of values.yaml.
fn values_table() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let values: Value = serde_saphyr::from_str(&text).unwrap();
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
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, child) in m {
                let k = k.as_str();
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
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
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
