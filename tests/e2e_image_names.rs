//! What the runtime pulls is what is judged, however it is written: every spelling of a
//! registry is one name (routes, exemptions, the scan reports' tags), and image volumes
//! are judged like containers. The real binary over TLS.

mod support;

use serde_json::{Value, json};
use support::webhook::{
    Webhook, basic_config, digest, object_with_pod_spec, pod_spec, review, status_message,
};

/// Scan reports name the canonical forms; a namespace that only warns on unscanned
/// images is where an alias that missed the tag map would have slipped through.
fn start() -> Webhook {
    let summaries = format!(
        "summaries:\n  - {{digest: \"{}\", image: \"nginx:1.25\", critical: 1}}\n  - {{digest: \"{}\", image: \"registry.example.com/app/crit1:1\", critical: 1}}\n  - {{digest: \"{}\", image: \"registry.example.com/app/clean:1\", status: complete}}\n",
        digest("nginx"),
        digest("crit1"),
        digest("clean"),
    );
    let namespaces = "---\nkind: Namespace\nmetadata:\n  name: warnunscanned\n  annotations: {vulngate.io/unscanned: warn}\n---\nkind: Namespace\nmetadata:\n  name: exempting\n  annotations: {vulngate.io/unscanned: warn, vulngate.io/exempt-images: \"REGISTRY-1.docker.io/library/nginx\"}\n";
    Webhook::start(
        &basic_config(""),
        &[
            ("scans/summaries.yaml", summaries),
            ("namespaces.yaml", namespaces.to_string()),
        ],
    )
}

fn pod(namespace: &str, spec: Value) -> Value {
    review(
        "uid-pod",
        "Pod",
        "CREATE",
        namespace,
        object_with_pod_spec("Pod", spec),
        None,
    )
}

#[tokio::test]
async fn every_alias_of_a_registry_is_decided_like_the_canonical_name() {
    let webhook = start();
    let client = webhook.client(false);
    for (canonical, aliases) in [
        (
            "nginx:1.25",
            &[
                "docker.io/library/nginx:1.25",
                "library/nginx:1.25",
                "registry-1.docker.io/library/nginx:1.25",
                "DOCKER.IO/library/nginx:1.25",
                "index.docker.io/library/nginx:1.25",
                "index.docker.io/nginx:1.25",
                "Registry-1.Docker.IO:443/library/nginx:1.25",
            ][..],
        ),
        (
            "registry.example.com/app/crit1:1",
            &[
                "registry.example.com:443/app/crit1:1",
                "REGISTRY.EXAMPLE.COM/app/crit1:1",
                "Registry.Example.com:443/app/crit1:1",
            ][..],
        ),
    ] {
        let expected = webhook
            .review(
                &client,
                &pod("warnunscanned", pod_spec(&[("web", canonical)])),
            )
            .await;
        assert_eq!(expected["allowed"], false, "{canonical}: {expected}");
        assert!(
            status_message(&expected).contains("1 critical vulnerabilities, over the limit of 0"),
            "{expected}"
        );
        for alias in aliases {
            let response = webhook
                .review(&client, &pod("warnunscanned", pod_spec(&[("web", alias)])))
                .await;
            assert_eq!(response["allowed"], false, "{alias}: {response}");
            assert_eq!(
                response["status"]["code"], expected["status"]["code"],
                "{alias}"
            );
            assert!(
                status_message(&response)
                    .contains("1 critical vulnerabilities, over the limit of 0"),
                "{alias}: {response}"
            );
            assert!(
                !response["warnings"].to_string().contains("not mapped"),
                "{alias}: {response}"
            );
        }
    }
    // An exemption written with one spelling exempts every spelling.
    for written in ["nginx:1.25", "index.docker.io/library/nginx:1.25"] {
        let response = webhook
            .review(&client, &pod("exempting", pod_spec(&[("web", written)])))
            .await;
        assert_eq!(response["allowed"], true, "{written}: {response}");
    }
}

#[tokio::test]
async fn an_image_volume_over_the_limits_is_denied_and_named() {
    let webhook = start();
    let client = webhook.client(false);
    let with_volume = |reference: &str| {
        let mut spec = pod_spec(&[("web", "registry.example.com/app/clean:1")]);
        spec["volumes"] = json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "models", "image": {"reference": reference, "pullPolicy": "IfNotPresent"}},
        ]);
        spec
    };
    for kind in ["Pod", "Deployment", "CronJob"] {
        let response = webhook
            .review(
                &client,
                &review(
                    &format!("uid-{kind}"),
                    kind,
                    "CREATE",
                    "warnunscanned",
                    object_with_pod_spec(kind, with_volume("nginx:1.25")),
                    None,
                ),
            )
            .await;
        assert_eq!(response["allowed"], false, "{kind}: {response}");
        let text = status_message(&response);
        assert!(
            text.contains(&format!(
                "image volume \"models\" (image \"nginx:1.25\", {})",
                digest("nginx")
            )),
            "{kind}: {text}"
        );
        assert!(
            text.contains("1 critical vulnerabilities, over the limit of 0"),
            "{text}"
        );
        assert!(
            !text.contains("\"web\""),
            "the clean container is not named: {text}"
        );
    }
    // A clean image volume is allowed.
    let response = webhook
        .review(
            &client,
            &pod(
                "warnunscanned",
                with_volume("registry.example.com/app/clean:1"),
            ),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response}");
}
