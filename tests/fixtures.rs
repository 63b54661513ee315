//! Every AdmissionReview in ../shared/fixtures gets a well-formed answer with its
//! uid, in its own apiVersion, decided as a user would expect. New fixtures are
//! covered without code: the test walks the directories.

mod support;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use vulngate::app;
use vulngate::metrics::Metrics;

fn load(dir: &str) -> Vec<(String, Value)> {
    let dir = support::webhook::fixtures_dir().join(dir);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let value: Value = serde_json::from_str(&text).expect("fixture is JSON");
        out.push((file_name(&path), value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The fixture's pod spec images, found independently of vulngate's decoder.
fn images(object: &Value, kind: &str) -> Vec<String> {
    let spec = match kind {
        "Pod" => &object["spec"],
        "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &object["spec"]["template"]["spec"],
    };
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            if let Some(i) = c["image"].as_str() {
                out.push(i.to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn every_fixture_gets_a_well_formed_answer() {
    let state = tempfile::tempdir().expect("temp dir");
    // The embedded default: none of the fixtures' images has a scan there.
    let config = app::load_config(None, state.path()).expect("embedded config");
    let engine = app::build_engine(&config, Arc::new(Metrics::new()))
        .await
        .expect("engine");

    let mut reviews = load("admission");
    for (name, request) in load("admission-requests") {
        let wrapped = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        reviews.push((name, wrapped));
    }
    assert!(
        reviews.len() >= 30,
        "expected the shared fixtures, found {}",
        reviews.len()
    );

    for (name, review) in &reviews {
        let body = serde_json::to_vec(review).expect("encode");
        let out = engine
            .review(&body, None)
            .await
            .unwrap_or_else(|e| panic!("{name}: rejected as undecodable: {e}"));
        let out: Value = serde_json::from_slice(&out).expect("response is JSON");
        let request = &review["request"];
        let response = &out["response"];
        assert_eq!(
            out["apiVersion"], review["apiVersion"],
            "{name}: apiVersion echoed"
        );
        assert_eq!(out["kind"], "AdmissionReview", "{name}");
        assert_eq!(response["uid"], request["uid"], "{name}: uid echoed");
        let allowed = response["allowed"].as_bool().expect("allowed is a boolean");

        let kind = request["kind"]["kind"].as_str().unwrap_or("");
        let operation = request["operation"].as_str().unwrap_or("");
        let namespace = request["namespace"].as_str().unwrap_or("default");
        let new_images = images(&request["object"], kind);
        let old_images = images(&request["oldObject"], kind);
        let unchanged_update =
            operation == "UPDATE" && new_images.iter().all(|i| old_images.contains(i));
        // The embedded config exempts registry.k8s.io/*.
        let (exempt, checked): (Vec<&String>, Vec<&String>) = new_images
            .iter()
            .partition(|i| i.starts_with("registry.k8s.io/"));
        let judged = matches!(
            kind,
            "Pod"
                | "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
                | "CronJob"
                | "ReplicationController"
        ) && matches!(operation, "CREATE" | "UPDATE")
            && request["subResource"].as_str().unwrap_or("").is_empty()
            && namespace != "kube-system"
            && !unchanged_update
            && !checked.is_empty();

        if !judged {
            assert!(
                allowed,
                "{name}: {kind} {operation} in {namespace} is not judged, so allowed: {response}"
            );
            continue;
        }
        // A pod that a built-in controller created from its owner's template is
        // allowed with warnings (controller-pods: warn); any other is denied.
        let controller_kind = request["userInfo"]["username"]
            .as_str()
            .and_then(|u| u.strip_prefix("system:serviceaccount:kube-system:"))
            .and_then(|sa| match sa {
                "replicaset-controller" => Some("ReplicaSet"),
                "job-controller" => Some("Job"),
                "statefulset-controller" => Some("StatefulSet"),
                "daemon-set-controller" => Some("DaemonSet"),
                "replication-controller" => Some("ReplicationController"),
                _ => None,
            });
        let owned = request["object"]["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["controller"] == true && o["kind"].as_str() == controller_kind);
        let message = if kind == "Pod" && owned {
            assert!(
                allowed,
                "{name}: a controller-created pod is allowed with warnings: {response}"
            );
            response["warnings"].to_string()
        } else {
            // Nothing in the embedded scans covers these images: every one is named.
            assert!(
                !allowed,
                "{name}: unscanned images are denied by default: {response}"
            );
            assert_eq!(response["status"]["code"], 403, "{name}");
            response["status"]["message"]
                .as_str()
                .expect("denial message")
                .to_string()
        };
        for image in &checked {
            // Warnings come JSON-encoded, with their quotes escaped.
            let escaped = format!("\\\"{image}\\\"");
            assert!(
                message.contains(&format!("{image:?}")) || message.contains(&escaped),
                "{name}: message names {image}: {message}"
            );
        }
        for image in &exempt {
            assert!(
                !message.contains(image.as_str()),
                "{name}: exempt {image} is not named: {message}"
            );
        }
    }
}

#[tokio::test]
async fn malformed_digest_is_denied_as_an_invalid_reference() {
    let state = tempfile::tempdir().expect("temp dir");
    let config = app::load_config(None, state.path()).expect("embedded config");
    let engine = app::build_engine(&config, Arc::new(Metrics::new()))
        .await
        .expect("engine");
    let path = support::webhook::fixtures_dir()
        .join("admission/pod-create-v1beta1-malformed-digest-sighup.json");
    let body = std::fs::read(path).expect("fixture");
    let out: Value =
        serde_json::from_slice(&engine.review(&body, None).await.expect("decoded")).expect("JSON");
    let message = out["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("invalid image reference"), "{message}");
}
