//! `POST /mutate`: each image that a review resolved from a tag and allowed is
//! rewritten to the digest that was judged (`nginx:1.25` -> `nginx:1.25@sha256:...`),
//! so the kubelet pulls what was checked even if the tag moves afterwards.
//!
//! The mutating answer never denies: an object that would be denied gets
//! `allowed: true` and no patch, and the validating webhook (which runs after every
//! mutating one) denies it. The judging is the engine's own, through its caches,
//! so the validating review of the same object that follows is decided from them.

use std::time::{Duration, Instant};

use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation, ReplaceOperation};

use crate::admission::{
    self, BadReview, ContainerImage, ContainerKind, PodSpecPath, Request, Response, SpecLite,
};
use crate::decision::{ContainerDecision, Effect};
use crate::engine::Engine;
use crate::image::ImageRef;

/// Decides one AdmissionReview body sent to `POST /mutate`: allowed, with a JSON Patch
/// when an image is pinned. `apiserver_timeout` shortens the configured deadline.
pub async fn review(
    engine: &Engine,
    body: &[u8],
    apiserver_timeout: Option<Duration>,
) -> Result<Vec<u8>, BadReview> {
    let started = Instant::now();
    let _in_flight = engine.metrics().in_flight();
    let request = admission::decode(body)?;
    let deadline = engine.deadline_from(apiserver_timeout);
    let judged = engine.decide_review(&request, deadline, true).await;
    let ops = if judged.response.allowed {
        pins(&request, &judged.containers)
    } else {
        Vec::new()
    };
    engine.metrics().images_pinned(ops.len());
    tracing::info!(
        uid = request.uid.as_ref(),
        kind = request.kind.kind.as_ref(),
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = request.name.as_deref().unwrap_or(""),
        operation = request.operation.as_ref(),
        pinned = ops.len(),
        judged_allowed = judged.response.allowed,
        elapsed_us = started.elapsed().as_micros() as u64,
        "pin"
    );
    let patch = if ops.is_empty() {
        None
    } else {
        // Plain strings and pointers always serialize.
        serde_json::to_vec(&Patch(ops)).ok()
    };
    let allowed = Response {
        allowed: true,
        ..Response::default()
    };
    Ok(admission::encode_patched(
        request.api_version,
        &request.uid,
        &allowed,
        patch.as_deref(),
    ))
}

/// One `replace` per judged image that was allowed and written without a digest,
/// writing the digest that was judged. Nothing for what was not judged.
pub(crate) fn pins(request: &Request<'_>, judged: &[ContainerDecision<'_>]) -> Vec<PatchOperation> {
    let Some(path) = PodSpecPath::for_kind(&request.kind.kind) else {
        return Vec::new();
    };
    let Some(spec) = request
        .object
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .and_then(|object| path.pod_spec(object))
    else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    for result in judged {
        if result.effect == Effect::Deny {
            continue;
        }
        let Some(digest) = result.outcome.as_ref().and_then(|o| o.digest()) else {
            continue;
        };
        let Some(pinned) = pinned_reference(result.container.image, digest) else {
            continue;
        };
        for pointer in pointers(path, spec, &result.container) {
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer,
                value: serde_json::Value::String(pinned.clone()),
            }));
        }
    }
    ops
}

/// `written` with the judged digest appended, or `None` when it already names a
/// digest (pinned before, or written so): what is pinned stays as it is.
pub(crate) fn pinned_reference(written: &str, digest: &str) -> Option<String> {
    if written.contains('@') {
        return None;
    }
    let pinned = format!("{written}@{digest}");
    // The digest came from a registry or a scan report: only a reference the runtime
    // accepts, naming exactly that digest, is written into the object.
    ImageRef::parse(&pinned)
        .ok()
        .filter(|image| image.digest.as_deref() == Some(digest))?;
    Some(pinned)
}

/// JSON pointers to where `container`'s image is written in the object.
fn pointers(
    path: PodSpecPath,
    spec: &SpecLite<'_>,
    container: &ContainerImage<'_>,
) -> Vec<PointerBuf> {
    let (list, field): (&str, &[&str]) = match container.kind {
        ContainerKind::Container => ("containers", &["image"]),
        ContainerKind::Init => ("initContainers", &["image"]),
        ContainerKind::Ephemeral => ("ephemeralContainers", &["image"]),
        ContainerKind::ImageVolume => ("volumes", &["image", "reference"]),
    };
    let indices: Vec<usize> = match container.kind {
        ContainerKind::ImageVolume => (spec.volumes.iter().enumerate())
            .filter(|(_, v)| {
                v.name == container.name
                    && v.image.as_ref().and_then(|i| i.reference.as_deref())
                        == Some(container.image)
            })
            .map(|(i, _)| i)
            .collect(),
        kind => {
            let containers = match kind {
                ContainerKind::Init => &spec.init_containers,
                ContainerKind::Ephemeral => &spec.ephemeral_containers,
                _ => &spec.containers,
            };
            (containers.iter().enumerate())
                .filter(|(_, c)| {
                    c.name == container.name && c.image.as_deref() == Some(container.image)
                })
                .map(|(i, _)| i)
                .collect()
        }
    };
    indices
        .into_iter()
        .map(|index| {
            let mut pointer = PointerBuf::from_tokens(spec_location(path).iter().copied());
            pointer.push_back(list);
            pointer.push_back(index);
            field.iter().for_each(|token| pointer.push_back(*token));
            pointer
        })
        .collect()
}

/// Where each kind's pod spec sits, as JSON pointer tokens.
fn spec_location(path: PodSpecPath) -> &'static [&'static str] {
    match path {
        PodSpecPath::Pod => &["spec"],
        PodSpecPath::Template => &["spec", "template", "spec"],
        PodSpecPath::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::ImageOutcome as Outcome;
    use crate::domain::summary::SeverityCounts;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn passed() -> Option<Outcome> {
        Some(Outcome::Passed {
            digest: DIGEST.into(),
            counts: SeverityCounts::default(),
            unenforceable: Vec::new(),
            notes: Vec::new(),
        })
    }

    fn result<'a>(
        kind: ContainerKind,
        name: &'a str,
        image: &'a str,
        outcome: Option<Outcome>,
        verdict: Effect,
    ) -> ContainerDecision<'a> {
        ContainerDecision {
            container: ContainerImage { kind, name, image },
            outcome,
            effect: verdict,
            message: None,
        }
    }

    fn review_of(kind: &str, object: &serde_json::Value) -> String {
        serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"kind": kind}, "operation": "CREATE",
                        "namespace": "ns", "object": object}
        })
        .to_string()
    }

    /// The patch applied to `object`, as the apiserver applies it.
    fn applied(object: &serde_json::Value, ops: Vec<PatchOperation>) -> serde_json::Value {
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &ops).expect("the patch applies");
        patched
    }

    #[test]
    fn a_tag_gets_the_judged_digest_and_a_pinned_image_stays() {
        assert_eq!(
            pinned_reference("nginx:1.25", DIGEST),
            Some(format!("nginx:1.25@{DIGEST}"))
        );
        assert_eq!(
            pinned_reference("nginx", DIGEST),
            Some(format!("nginx@{DIGEST}"))
        );
        assert_eq!(
            pinned_reference(&format!("nginx:1.25@{DIGEST}"), DIGEST),
            None
        );
        assert_eq!(pinned_reference("nginx:1.25", ""), None);
        // A digest the runtime would refuse is never written.
        for bad in [
            "sha256:abc",
            "md5:0123456789abcdef0123456789abcdef",
            "sha256:0123/x",
        ] {
            assert_eq!(pinned_reference("nginx:1.25", bad), None, "{bad}");
        }
        assert_eq!(
            pinned_reference(&format!("{}:1", "X".repeat(8)), DIGEST),
            None,
            "an upper-case repository is no reference"
        );
    }

    #[test]
    fn every_kind_of_image_is_pinned_where_it_is_written() {
        let spec = serde_json::json!({
            "initContainers": [{"name": "setup", "image": "busybox:1"}],
            "containers": [{"name": "a", "image": "nginx:1.25"}, {"name": "b", "image": "redis:7"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox:1"}],
            "volumes": [{"name": "scratch", "emptyDir": {}},
                        {"name": "models", "image": {"reference": "models:v1"}}]
        });
        for (kind, object) in [
            ("Pod", serde_json::json!({"spec": spec})),
            (
                "Deployment",
                serde_json::json!({"spec": {"template": {"spec": spec}}}),
            ),
            (
                "CronJob",
                serde_json::json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
            ),
        ] {
            let body = review_of(kind, &object);
            let request = admission::decode(body.as_bytes()).expect("review");
            let judged = [
                result(
                    ContainerKind::Init,
                    "setup",
                    "busybox:1",
                    passed(),
                    Effect::Allow,
                ),
                result(
                    ContainerKind::Container,
                    "a",
                    "nginx:1.25",
                    passed(),
                    Effect::Warn,
                ),
                result(
                    ContainerKind::Container,
                    "b",
                    "redis:7",
                    passed(),
                    Effect::Deny,
                ),
                result(
                    ContainerKind::Ephemeral,
                    "debug",
                    "busybox:1",
                    passed(),
                    Effect::Allow,
                ),
                result(
                    ContainerKind::ImageVolume,
                    "models",
                    "models:v1",
                    passed(),
                    Effect::Allow,
                ),
            ];
            let patched = applied(&object, pins(&request, &judged));
            let spec = PodSpecPath::for_kind(kind)
                .map(|p| spec_location(p).iter().fold(&patched, |v, t| &v[*t]))
                .expect("judged kind");
            let pinned = |image: &str| format!("{image}@{DIGEST}");
            assert_eq!(
                spec["initContainers"][0]["image"],
                pinned("busybox:1"),
                "{kind}"
            );
            assert_eq!(
                spec["containers"][0]["image"],
                pinned("nginx:1.25"),
                "{kind}"
            );
            assert_eq!(spec["containers"][1]["image"], "redis:7", "denied: {kind}");
            assert_eq!(
                spec["ephemeralContainers"][0]["image"],
                pinned("busybox:1"),
                "{kind}"
            );
            assert_eq!(
                spec["volumes"][1]["image"]["reference"],
                pinned("models:v1"),
                "{kind}"
            );
            assert_eq!(
                spec["volumes"][0],
                serde_json::json!({"name": "scratch", "emptyDir": {}})
            );
        }
    }

    #[test]
    fn what_was_not_judged_or_has_no_digest_is_not_pinned() {
        let object = serde_json::json!({"spec": {"containers": [
            {"name": "a", "image": "nginx:1.25"},
            {"name": "b", "image": "registry.example.com/app:1"},
            {"name": "c", "image": "redis:7"},
            {"name": "d", "image": format!("redis@{DIGEST}")}]}});
        let body = review_of("Pod", &object);
        let request = admission::decode(body.as_bytes()).expect("review");
        let pinned = format!("redis@{DIGEST}");
        let judged = [
            // Mode off or an exempt namespace: no outcome.
            result(
                ContainerKind::Container,
                "a",
                "nginx:1.25",
                None,
                Effect::Allow,
            ),
            result(
                ContainerKind::Container,
                "b",
                "registry.example.com/app:1",
                Some(Outcome::Exempt),
                Effect::Allow,
            ),
            result(
                ContainerKind::Container,
                "c",
                "redis:7",
                Some(Outcome::BackendError {
                    message: "down".into(),
                }),
                Effect::Warn,
            ),
            result(
                ContainerKind::Container,
                "d",
                &pinned,
                passed(),
                Effect::Allow,
            ),
        ];
        assert!(pins(&request, &judged).is_empty());
        // A kind without a pod spec, or an unreadable object: nothing to point at.
        let body = review_of("ConfigMap", &object);
        let request = admission::decode(body.as_bytes()).expect("review");
        let judged = [result(
            ContainerKind::Container,
            "a",
            "nginx:1.25",
            passed(),
            Effect::Allow,
        )];
        assert!(pins(&request, &judged).is_empty());
    }

    #[test]
    fn the_patch_is_a_json_patch_array_of_replaces() {
        let object =
            serde_json::json!({"spec": {"containers": [{"name": "a", "image": "nginx:1.25"}]}});
        let body = review_of("Pod", &object);
        let request = admission::decode(body.as_bytes()).expect("review");
        let judged = [result(
            ContainerKind::Container,
            "a",
            "nginx:1.25",
            passed(),
            Effect::Allow,
        )];
        let text = serde_json::to_value(Patch(pins(&request, &judged))).expect("json");
        assert_eq!(
            text,
            serde_json::json!([{"op": "replace", "path": "/spec/containers/0/image",
                                "value": format!("nginx:1.25@{DIGEST}")}])
        );
    }
}
