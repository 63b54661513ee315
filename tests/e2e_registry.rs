//! The binary resolving tags on a real registry (basic auth from a docker config
//! file), judging the pushed digests, including a multi-arch index.

mod support;

use base64::Engine as _;
use serde_json::Value;
use support::registry::{Registry, RegistryAuth};
use support::webhook::{Webhook, object_with_pod_spec, pod_spec, review};

fn pod(image: &str) -> Value {
    review(
        "uid",
        "Pod",
        "CREATE",
        "shop",
        object_with_pod_spec("Pod", pod_spec(&[("app", image)])),
        None,
    )
}

#[tokio::test]
async fn tags_on_a_live_registry_are_judged_by_their_digests() {
    let registry = Registry::start(RegistryAuth::Basic {
        username: "ci".into(),
        password: "s3cret-pass".into(),
    })
    .await;
    let host = registry.host();
    let bad = registry.push_image("shop/app", "bad", "amd64").await;
    let good = registry.push_image("shop/app", "good", "amd64").await;
    let index = registry
        .push_index("shop/multi", "1", &["amd64", "arm64"])
        .await;
    let platform = |arch: &str| {
        index
            .platforms
            .iter()
            .find(|(p, _)| p.ends_with(arch))
            .map(|(_, d)| d.clone())
            .expect("platform digest")
    };
    // Summaries keyed by the pushed digests; the index itself has none, so its
    // platform manifests are judged and the worst count wins.
    let summaries = format!(
        "summaries:\n  - {{digest: \"{bad}\", high: 3}}\n  - {{digest: \"{good}\", high: 0}}\n  - {{digest: \"{}\", high: 0}}\n  - {{digest: \"{}\", high: 2}}\n",
        platform("amd64"),
        platform("arm64")
    );
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret-pass");
    let docker_config = format!("{{\"auths\": {{\"{host}\": {{\"auth\": \"{auth}\"}}}}}}");
    let config = r#"listen: 127.0.0.1:0
opsListen: 127.0.0.1:0
tls: {generateDir: tls}
deadline: 5s
namespacesFile: namespaces.yaml
registries:
  - match: "127.0.0.1:*"
    scanner: {file: {path: scans}}
    registry: {plainHttp: true, timeout: 3s}
resolution: {dockerConfigFile: docker/config.json}
log: {format: json, level: debug}
"#;
    let webhook = Webhook::start(
        config,
        &[
            ("scans/summaries.yaml", summaries),
            (
                "namespaces.yaml",
                "kind: Namespace\nmetadata: {name: shop}\n".to_string(),
            ),
            ("docker/config.json", docker_config),
        ],
    );
    let client = webhook.client(false);

    let r = webhook
        .review(&client, &pod(&format!("{host}/shop/app:bad")))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&bad),
        "the message names the resolved digest: {message}"
    );
    assert!(message.contains("3 high vulnerabilities"), "{message}");

    let r = webhook
        .review(&client, &pod(&format!("{host}/shop/app:good")))
        .await;
    assert_eq!(r["allowed"], true, "{r}");

    let r = webhook
        .review(&client, &pod(&format!("{host}/shop/multi:1")))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("2 high vulnerabilities on platform linux/arm64"),
        "{message}"
    );
    assert!(
        message.contains(&index.digest),
        "judged as the index digest: {message}"
    );

    let r = webhook
        .review(&client, &pod(&format!("{host}/shop/app:missing")))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{r}"
    );

    let logs = webhook.stderr();
    assert!(
        !logs.contains("s3cret-pass") && !logs.contains(&auth),
        "no credential in the logs"
    );
}
