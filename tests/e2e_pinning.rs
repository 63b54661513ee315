//! `POST /mutate` over TLS, the real binary against the real docker-registry: what was
//! judged is what runs. A tag is pinned to the digest the registry served when it was
//! judged; moving the tag afterwards changes nothing for the pinned Pod; what was not
//! judged, or would be denied, is never patched.

mod support;

#[path = "support/chart.rs"]
mod chart_support;

use base64::Engine as _;
use serde_json::{Value, json};
use support::registry::{Registry, RegistryAuth};
use support::webhook::{
    Webhook, config_with_routes, digest, object_with_pod_spec, pod_spec, review, status_message,
};

/// Routes: the test registry (tags resolved on it), then everything else on the scan
/// reports' tag map (Docker Hub names, for the alias spellings).
fn config(pin: bool) -> String {
    config_with_routes(
        "  - match: \"127.0.0.1:*\"\n    scanner: {file: {path: scans, reloadInterval: 200ms}}\n    registry: {plainHttp: true, timeout: 3s}\n",
        &format!(
            "policy: {{exemptNamespaces: [kube-system, trusted]}}\ncache: {{tagTtl: 1s}}\npinDigests: {{enabled: {pin}}}\n"
        ),
    )
}

const NAMESPACES: &str = "---\nkind: Namespace\nmetadata: {name: shop}\n---\nkind: Namespace\nmetadata:\n  name: quiet\n  annotations: {vulngate.io/mode: \"off\"}\n---\nkind: Namespace\nmetadata:\n  name: exempting\n  annotations: {vulngate.io/exempt-images: \"127.0.0.1:*/shop/*\"}\n";

/// A clean Docker Hub image known to the scan reports' tag map.
const HUB_IMAGE: &str = "nginx:1.26";

struct Setup {
    registry: Registry,
    webhook: Webhook,
    client: reqwest::Client,
    /// `127.0.0.1:PORT`
    host: String,
    /// `shop/app:1` as first pushed (clean).
    first: String,
    /// The index `shop/multi:1` and its platform manifests (clean).
    index: String,
    /// `shop/bad:1` (one critical vulnerability).
    bad: String,
}

async fn start() -> Setup {
    support::registry::require_tools();
    let registry = Registry::start(RegistryAuth::None).await;
    let host = registry.host();
    let first = registry.push_image("shop/app", "1", "amd64").await;
    let bad = registry.push_image("shop/bad", "1", "amd64").await;
    let multi = registry
        .push_index("shop/multi", "1", &["amd64", "arm64"])
        .await;
    let mut summaries = format!(
        "summaries:\n  - {{digest: \"{first}\", critical: 0}}\n  - {{digest: \"{bad}\", critical: 1}}\n  - {{digest: \"{}\", image: \"{HUB_IMAGE}\", critical: 0}}\n",
        digest("hub-clean")
    );
    for (_, platform) in &multi.platforms {
        summaries.push_str(&format!("  - {{digest: \"{platform}\", critical: 0}}\n"));
    }
    let webhook = Webhook::start(
        &config(true),
        &[
            ("scans/summaries.yaml", summaries),
            ("namespaces.yaml", NAMESPACES.to_string()),
        ],
    );
    let client = webhook.client(false);
    Setup {
        registry,
        webhook,
        client,
        host,
        first,
        index: multi.digest,
        bad,
    }
}

fn pod(namespace: &str, spec: Value) -> Value {
    let mut review = review(
        "uid-pin",
        "Pod",
        "CREATE",
        namespace,
        object_with_pod_spec("Pod", spec),
        None,
    );
    review["request"]["object"]["apiVersion"] = json!("v1");
    review
}

/// POSTs a review to `/mutate`; returns the `response` part, checked for its uid.
async fn mutate(webhook: &Webhook, client: &reqwest::Client, review: &Value) -> Value {
    let out = webhook.answer(client, "/mutate", review).await;
    assert_eq!(out["apiVersion"], review["apiVersion"], "{out}");
    out["response"].clone()
}

/// The JSON Patch of an answer (`None` when it has none), checked to be announced as one.
fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let encoded = response["patch"].as_str()?;
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the patch is base64");
    Some(serde_json::from_slice(&bytes).expect("the patch is a JSON Patch"))
}

/// The review's object with the answer's patch applied, as the apiserver applies it.
fn patched(review: &Value, response: &Value) -> Value {
    let mut object = review["request"]["object"].clone();
    let patch = patch_of(response).expect("a patch");
    json_patch::patch(&mut object, &patch).expect("the patch applies to the object");
    object
}

/// The same review carrying `object` (as the apiserver sends after a mutation).
fn with_object(review: &Value, object: Value) -> Value {
    let mut next = review.clone();
    next["request"]["object"] = object;
    next
}

fn metric(webhook: &Webhook, name: &str) -> f64 {
    let (status, text) = webhook.ops_get("/metrics");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_tag_is_pinned_to_the_judged_digest_and_stays_there_when_the_tag_moves() {
    let s = start().await;
    let (webhook, client) = (&s.webhook, &s.client);
    let tag = format!("{}/shop/app:1", s.host);
    let review = pod("shop", pod_spec(&[("app", &tag)]));

    let response = mutate(webhook, client, &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("status").is_none(), "{response}");
    let pinned = patched(&review, &response);
    let pinned_image = format!("{tag}@{}", s.first);
    assert_eq!(pinned["spec"]["containers"][0]["image"], pinned_image);
    assert_eq!(metric(webhook, "vulngate_images_pinned_total"), 1.0);

    // The validating review of the pinned object is decided from the caches that the
    // pinning filled: no scanner call, no summary cache miss.
    let misses = metric(webhook, "vulngate_summary_cache_misses_total");
    let hits = metric(webhook, "vulngate_summary_cache_hits_total");
    let validated = webhook
        .review(client, &with_object(&review, pinned.clone()))
        .await;
    assert_eq!(validated["allowed"], true, "{validated}");
    assert_eq!(
        metric(webhook, "vulngate_summary_cache_misses_total"),
        misses
    );
    assert!(metric(webhook, "vulngate_summary_cache_hits_total") > hits);

    // Reinvoked with its own patch applied: nothing more to pin.
    let again = mutate(webhook, client, &with_object(&review, pinned.clone())).await;
    assert_eq!(again["allowed"], true, "{again}");
    assert!(again.get("patch").is_none(), "{again}");
    assert!(again.get("patchType").is_none(), "{again}");

    // Whoever can push moves the tag to an image over the limits.
    let moved = s.registry.push_image("shop/app", "1", "amd64").await;
    assert_ne!(moved, s.first);
    std::fs::write(
        webhook.dir.path().join("scans/moved.yaml"),
        format!("summaries:\n  - {{digest: \"{moved}\", critical: 1}}\n"),
    )
    .expect("write scans");
    // Once the tag cache (tagTtl 1s) and the scan files (reloaded every 200ms) have
    // caught up, the tag names the new image, which is denied and not pinned...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let unpinned = loop {
        let unpinned = webhook.review(client, &review).await;
        if unpinned["allowed"] == false || std::time::Instant::now() > deadline {
            break unpinned;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(unpinned["allowed"], false, "{unpinned}");
    assert!(status_message(&unpinned).contains(&moved), "{unpinned}");
    let response = mutate(webhook, client, &review).await;
    assert_eq!(
        response["allowed"], true,
        "the mutating answer never denies"
    );
    assert!(response.get("patch").is_none(), "{response}");
    // ...while the pinned Pod still names, and is judged by, the digest judged before.
    assert_eq!(pinned["spec"]["containers"][0]["image"], pinned_image);
    let validated = webhook.review(client, &with_object(&review, pinned)).await;
    assert_eq!(validated["allowed"], true, "{validated}");
}

#[tokio::test]
async fn a_multi_arch_tag_is_pinned_to_its_index_and_every_image_kind_to_its_digest() {
    let s = start().await;
    let (webhook, client) = (&s.webhook, &s.client);
    let multi = format!("{}/shop/multi:1", s.host);
    let app = format!("{}/shop/app:1", s.host);
    let already = format!("{app}@{}", s.first);
    let mut spec = pod_spec(&[("web", &multi), ("sidecar", &already)]);
    spec["initContainers"] = json!([{"name": "setup", "image": app}]);
    spec["volumes"] = json!([
        {"name": "scratch", "emptyDir": {}},
        {"name": "models", "image": {"reference": app, "pullPolicy": "IfNotPresent"}},
    ]);
    let review = pod("shop", spec);
    let response = mutate(webhook, client, &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    let patch = patch_of(&response).expect("a patch");
    assert_eq!(
        patch.0.len(),
        3,
        "the sidecar is pinned already: {response}"
    );
    let pinned = patched(&review, &response);
    let spec = &pinned["spec"];
    assert_eq!(
        spec["containers"][0]["image"],
        format!("{multi}@{}", s.index)
    );
    assert_eq!(spec["containers"][1]["image"], already.as_str());
    assert_eq!(spec["initContainers"][0]["image"], already.as_str());
    assert_eq!(spec["volumes"][1]["image"]["reference"], already.as_str());
    assert_eq!(spec["volumes"][1]["image"]["pullPolicy"], "IfNotPresent");
    assert_eq!(
        spec["volumes"][0],
        json!({"name": "scratch", "emptyDir": {}})
    );

    // The patched object is a valid Pod (ImageVolume is in the newest schemas).
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pinned-pod.json");
    std::fs::write(&file, pinned.to_string()).expect("write pod");
    let kv = chart_support::tool("kubernetes-validate");
    let out = chart_support::run(&kv, &["--strict", file.to_str().expect("utf-8 path")]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.ok && text.contains("passed") && !text.contains("ERROR"),
        "kubernetes-validate: {text}"
    );

    // A workload template is pinned where its pod spec sits.
    for kind in ["Deployment", "CronJob"] {
        let mut review = review_of_kind(kind, &multi);
        review["request"]["uid"] = json!(format!("uid-{kind}"));
        let response = mutate(webhook, client, &review).await;
        let object = patched(&review, &response);
        let template = if kind == "CronJob" {
            &object["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &object["spec"]["template"]["spec"]
        };
        assert_eq!(
            template["containers"][0]["image"],
            format!("{multi}@{}", s.index),
            "{kind}"
        );
    }
}

fn review_of_kind(kind: &str, image: &str) -> Value {
    review(
        "uid",
        kind,
        "CREATE",
        "shop",
        object_with_pod_spec(kind, pod_spec(&[("app", image)])),
        None,
    )
}

#[tokio::test]
async fn what_is_not_judged_or_would_be_denied_is_never_patched() {
    let s = start().await;
    let (webhook, client) = (&s.webhook, &s.client);
    let app = format!("{}/shop/app:1", s.host);
    let bad = format!("{}/shop/bad:1", s.host);
    for (case, review) in [
        (
            "exempt namespace",
            pod("trusted", pod_spec(&[("app", &app)])),
        ),
        ("exempt image", pod("exempting", pod_spec(&[("app", &app)]))),
        ("mode off", pod("quiet", pod_spec(&[("app", &app)]))),
        (
            "kind not judged",
            review(
                "uid-cm",
                "ConfigMap",
                "CREATE",
                "shop",
                json!({"data": {"image": app}}),
                None,
            ),
        ),
        // One image over the limits: the whole object is denied, so nothing is pinned.
        (
            "denied",
            pod("shop", pod_spec(&[("app", &app), ("bad", &bad)])),
        ),
    ] {
        let response = mutate(webhook, client, &review).await;
        assert_eq!(response["allowed"], true, "{case}: {response}");
        assert!(response.get("patch").is_none(), "{case}: {response}");
        assert!(response.get("patchType").is_none(), "{case}: {response}");
        assert!(response.get("status").is_none(), "{case}: {response}");
    }
    // The validating webhook is the one that denies.
    let denied = webhook
        .review(
            client,
            &pod("shop", pod_spec(&[("app", &app), ("bad", &bad)])),
        )
        .await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(status_message(&denied).contains(&s.bad), "{denied}");
    assert_eq!(metric(webhook, "vulngate_images_pinned_total"), 0.0);
}

#[tokio::test]
async fn every_alias_spelling_is_pinned_like_the_canonical_name() {
    let s = start().await;
    let (webhook, client) = (&s.webhook, &s.client);
    let judged = digest("hub-clean");
    for written in [
        HUB_IMAGE,
        "docker.io/library/nginx:1.26",
        "index.docker.io/library/nginx:1.26",
        "registry-1.docker.io/library/nginx:1.26",
        "DOCKER.IO/library/nginx:1.26",
        "Registry-1.Docker.IO:443/library/nginx:1.26",
    ] {
        let review = pod("shop", pod_spec(&[("web", written)]));
        let response = mutate(webhook, client, &review).await;
        assert_eq!(response["allowed"], true, "{written}: {response}");
        let pinned = patched(&review, &response);
        assert_eq!(
            pinned["spec"]["containers"][0]["image"],
            format!("{written}@{judged}"),
            "{written}"
        );
    }
}

#[tokio::test]
async fn a_v1beta1_review_gets_a_v1beta1_answer_with_its_patch() {
    let s = start().await;
    let (webhook, client) = (&s.webhook, &s.client);
    let mut review = pod("shop", pod_spec(&[("web", HUB_IMAGE)]));
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let response = mutate(webhook, client, &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    let pinned = patched(&review, &response);
    assert_eq!(
        pinned["spec"]["containers"][0]["image"],
        format!("{HUB_IMAGE}@{}", digest("hub-clean"))
    );
}

#[tokio::test]
async fn without_pin_digests_there_is_no_mutate_endpoint() {
    let webhook = Webhook::start(
        &config(false),
        &[
            ("scans/summaries.yaml", "summaries: []\n".to_string()),
            ("namespaces.yaml", NAMESPACES.to_string()),
        ],
    );
    let client = webhook.client(false);
    let response = client
        .post(format!("{}/mutate", webhook.base))
        .header("Content-Type", "application/json")
        .body(pod("shop", pod_spec(&[("web", HUB_IMAGE)])).to_string())
        .send()
        .await
        .expect("send review");
    assert_eq!(response.status().as_u16(), 404);
}
