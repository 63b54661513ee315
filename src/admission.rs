//! AdmissionReview in and out: decoding only the fields a decision needs, finding
//! the pod spec of every kind that carries one, and encoding the response.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::domain::text::{MAX_QUOTED, clip};

mod judged;
mod skim;

pub(crate) use judged::ControllerOwner;
pub(crate) use judged::{JudgedPod, Scope, scope};

pub(crate) const V1: &str = "admission.k8s.io/v1";
pub(crate) const V1BETA1: &str = "admission.k8s.io/v1beta1";

/// An undecodable review: answered with HTTP 400, since it has no uid to answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

/// The review as sent. `O` is how the objects are read: typed in one pass when the
/// whole review is well formed, or kept raw so that an unreadable object still
/// leaves a uid to answer. Strings are borrowed from the body where JSON allows
/// (no escapes), so decoding allocates little.
#[derive(Deserialize)]
struct ReviewIn<'a, O> {
    #[serde(
        rename = "apiVersion",
        default,
        borrow,
        deserialize_with = "borrowed_or_none"
    )]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    kind: Option<Cow<'a, str>>,
    #[serde(default = "none", borrow)]
    request: Option<RequestIn<'a, O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a, O> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: GroupVersionKind<'a>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    operation: Cow<'a, str>,
    #[serde(default, borrow)]
    user_info: UserInfo<'a>,
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default = "none")]
    old_object: Option<O>,
    #[serde(default)]
    dry_run: Option<bool>,
}

fn none<T>() -> Option<T> {
    None
}

/// The kind of the object under review (its group and version are not needed).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupVersionKind<'a> {
    #[serde(default, borrow)]
    pub kind: Cow<'a, str>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(default, borrow)]
    pub username: Cow<'a, str>,
}

/// The decoded request: what the decision needs, mostly borrowed from the body.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub api_version: &'static str,
    pub uid: Cow<'a, str>,
    pub kind: GroupVersionKind<'a>,
    pub sub_resource: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Cow<'a, str>,
    pub user_info: UserInfo<'a>,
    pub dry_run: bool,
    /// The object, when its kind carries a pod spec and it could be read.
    pub object: Result<Option<ObjectLite<'a>>, String>,
    pub old_object: Option<ObjectLite<'a>>,
}

/// Decodes a review. Errors only for what leaves no uid to answer to.
pub fn decode(body: &[u8]) -> Result<Request<'_>, BadReview> {
    // JSON is UTF-8: checked once for the whole body, the readers need not check each
    // string they borrow. Nearly every review is read by the fast path; serde_json
    // reads the rest, and says what is wrong with them.
    match std::str::from_utf8(body).ok().and_then(skim::review) {
        Some(review) => checked(review, |o| Ok(Some(o)), Some),
        None => decode_with_serde_json(body),
    }
}

/// What [`decode`] answers, read by serde_json alone: the reference that the fast
/// path is checked against (tests, the `admission` fuzz target).
pub fn decode_with_serde_json(body: &[u8]) -> Result<Request<'_>, BadReview> {
    // One typed pass reads a well-formed review; the raw pass below is for the rest.
    // A body that is not UTF-8 is left to serde_json, which rejects it only where it
    // reads a bad string.
    let typed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<ReviewIn<ObjectLite>>(text),
        Err(_) => serde_json::from_slice::<ReviewIn<ObjectLite>>(body),
    };
    if let Ok(review) = typed {
        return checked(review, |o| Ok(Some(o)), Some);
    }
    let review: ReviewIn<&RawValue> = serde_json::from_slice(body)
        .map_err(|e| BadReview(format!("cannot decode AdmissionReview: {e}")))?;
    checked(
        review,
        |raw| read_object(raw).map_err(|e| format!("cannot read the object: {e}")),
        // oldObject is `{}`, `""` or `"None"` on some CREATEs; anything unreadable
        // is treated as absent, which only makes the review stricter.
        |raw| read_object(raw).ok().flatten(),
    )
}

fn checked<'a, O>(
    review: ReviewIn<'a, O>,
    object: impl FnOnce(O) -> Result<Option<ObjectLite<'a>>, String>,
    old_object: impl FnOnce(O) -> Option<ObjectLite<'a>>,
) -> Result<Request<'a>, BadReview> {
    let api_version = match review.api_version.as_deref() {
        Some(V1) => V1,
        Some(V1BETA1) => V1BETA1,
        Some(other) => {
            return Err(BadReview(format!(
                "unsupported apiVersion {:?}: expected {V1} or {V1BETA1}",
                clip(other, MAX_QUOTED)
            )));
        }
        None => return Err(BadReview("AdmissionReview has no apiVersion".into())),
    };
    if let Some(kind) = review.kind.as_deref() {
        if kind != "AdmissionReview" {
            return Err(BadReview(format!(
                "unexpected kind {:?}: expected AdmissionReview",
                clip(kind, MAX_QUOTED)
            )));
        }
    }
    let request = review
        .request
        .ok_or_else(|| BadReview("AdmissionReview has no request".into()))?;
    if request.uid.is_empty() {
        return Err(BadReview("AdmissionReview request has an empty uid".into()));
    }
    let object = match request.object {
        Some(o) => object(o),
        None => Ok(None),
    };
    let old_object = request.old_object.and_then(old_object);
    Ok(Request {
        api_version,
        uid: request.uid,
        kind: request.kind,
        sub_resource: request.sub_resource.filter(|s| !s.is_empty()),
        name: request.name.filter(|s| !s.is_empty()),
        namespace: request.namespace.filter(|s| !s.is_empty()),
        operation: request.operation,
        user_info: request.user_info,
        dry_run: request.dry_run.unwrap_or(false),
        object,
        old_object,
    })
}

fn read_object(raw: &RawValue) -> Result<Option<ObjectLite<'_>>, serde_json::Error> {
    if !raw.get().trim_start().starts_with('{') {
        return Ok(None);
    }
    serde_json::from_str(raw.get()).map(Some)
}

/// The parts of any object that matter: metadata and whatever holds a pod spec.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectLite<'a> {
    #[serde(default, deserialize_with = "object_or_default", borrow)]
    pub metadata: MetadataLite<'a>,
    #[serde(default, deserialize_with = "object_or_default", borrow)]
    pub spec: SpecLite<'a>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataLite<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub owner_references: Vec<OwnerReference<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OwnerReference<'a> {
    #[serde(default, borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default)]
    pub controller: Option<bool>,
}

/// A union of the spec shapes of Pod, pod-template workloads and CronJob.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecLite<'a> {
    #[serde(default, borrow)]
    pub containers: Vec<ContainerLite<'a>>,
    #[serde(default, borrow)]
    pub init_containers: Vec<ContainerLite<'a>>,
    #[serde(default, borrow)]
    pub ephemeral_containers: Vec<ContainerLite<'a>>,
    /// Volumes; those with an `image` source (ImageVolume, Kubernetes 1.31+) are pulled
    /// by the kubelet like a container's image, so they are judged like one.
    #[serde(default, borrow)]
    pub volumes: Vec<VolumeLite<'a>>,
    #[serde(default, borrow)]
    pub image_pull_secrets: Vec<LocalObjectReference<'a>>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    pub service_account_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub template: Option<Box<TemplateLite<'a>>>,
    #[serde(default, borrow)]
    pub job_template: Option<Box<TemplateLite<'a>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateLite<'a> {
    #[serde(default, deserialize_with = "object_or_default", borrow)]
    pub spec: SpecLite<'a>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerLite<'a> {
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    pub image: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumeLite<'a> {
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub image: Option<ImageVolumeSource<'a>>,
}

/// `volumes[].image`: the OCI image (or artifact) mounted as the volume.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageVolumeSource<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed_or_none")]
    pub reference: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LocalObjectReference<'a> {
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
}

/// An optional string borrowed from the body when JSON allows (no escapes). serde's
/// own `Option<Cow<str>>` always copies: `borrow` reaches only a bare `Cow<str>`.
fn borrowed_or_none<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

/// `null` reads as the default, like an absent key.
fn object_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Kinds whose objects carry a pod spec, and where it sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSpecPath {
    /// `spec`
    Pod,
    /// `spec.template.spec`
    Template,
    /// `spec.jobTemplate.spec.template.spec`
    CronJob,
}

/// The kinds vulngate judges and where each one's pod spec sits.
pub const JUDGED_KINDS: [(&str, PodSpecPath); 8] = [
    ("Pod", PodSpecPath::Pod),
    ("Deployment", PodSpecPath::Template),
    ("ReplicaSet", PodSpecPath::Template),
    ("StatefulSet", PodSpecPath::Template),
    ("DaemonSet", PodSpecPath::Template),
    ("Job", PodSpecPath::Template),
    ("CronJob", PodSpecPath::CronJob),
    ("ReplicationController", PodSpecPath::Template),
];

impl PodSpecPath {
    pub fn for_kind(kind: &str) -> Option<PodSpecPath> {
        JUDGED_KINDS
            .iter()
            .find(|(judged, _)| *judged == kind)
            .map(|(_, path)| *path)
    }

    pub fn pod_spec<'o, 'a>(self, object: &'o ObjectLite<'a>) -> Option<&'o SpecLite<'a>> {
        match self {
            PodSpecPath::Pod => Some(&object.spec),
            PodSpecPath::Template => object.spec.template.as_ref().map(|t| &t.spec),
            PodSpecPath::CronJob => object
                .spec
                .job_template
                .as_ref()
                .and_then(|j| j.spec.template.as_ref())
                .map(|t| &t.spec),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Container,
    Init,
    Ephemeral,
    /// A volume whose source is an image (`spec.volumes[].image.reference`).
    ImageVolume,
}

impl ContainerKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            ContainerKind::Container => "container",
            ContainerKind::Init => "init container",
            ContainerKind::Ephemeral => "ephemeral container",
            ContainerKind::ImageVolume => "image volume",
        }
    }
}

/// One container's image as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage<'a> {
    pub kind: ContainerKind,
    pub name: &'a str,
    pub image: &'a str,
}

impl<'a> SpecLite<'a> {
    pub fn images(&self) -> Vec<ContainerImage<'_>> {
        let groups = [
            (ContainerKind::Init, &self.init_containers),
            (ContainerKind::Container, &self.containers),
            (ContainerKind::Ephemeral, &self.ephemeral_containers),
        ];
        let mut images = Vec::with_capacity(groups.iter().map(|(_, list)| list.len()).sum());
        images.extend(groups.into_iter().flat_map(|(kind, list)| {
            list.iter().map(move |c| ContainerImage {
                kind,
                name: &c.name,
                image: c.image.as_deref().unwrap_or_default(),
            })
        }));
        images.extend(self.volumes.iter().filter_map(|v| {
            v.image.as_ref().map(|source| ContainerImage {
                kind: ContainerKind::ImageVolume,
                name: &v.name,
                image: source.reference.as_deref().unwrap_or_default(),
            })
        }));
        images
    }
}

/// The response part of a review: what a decision answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub allowed: bool,
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
    /// `JSONPatch` when `patch` is set (a mutating answer, pin.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// The JSON Patch, base64-encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    status: &'static str,
    reason: &'static str,
    message: &'a str,
}

/// Encodes the response AdmissionReview in the version the request came in.
pub fn encode(api_version: &str, uid: &str, response: &Response) -> Vec<u8> {
    encode_patched(api_version, uid, response, None)
}

/// [`encode`] with a JSON Patch (`patch`: the JSON array of operations) for the
/// apiserver to apply, as a mutating webhook answers.
pub(crate) fn encode_patched(
    api_version: &str,
    uid: &str,
    response: &Response,
    patch: Option<&[u8]>,
) -> Vec<u8> {
    use base64::Engine as _;
    let status = match (&response.message, response.allowed) {
        (Some(message), false) => Some(StatusOut {
            code: 403,
            status: "Failure",
            reason: "Forbidden",
            message,
        }),
        _ => None,
    };
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid,
            allowed: response.allowed,
            status,
            warnings: &response.warnings,
            audit_annotations: &response.audit_annotations,
            patch_type: patch.map(|_| "JSONPatch"),
            patch: patch.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        },
    };
    // Sized for the whole answer up front: growing it reallocates once or twice.
    let texts = response.message.as_ref().map_or(0, String::len)
        + response.warnings.iter().map(|w| w.len() + 3).sum::<usize>()
        + (response.audit_annotations.iter())
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>();
    let patched = patch.map_or(0, |p| p.len() * 4 / 3 + 40);
    let mut body =
        Vec::with_capacity(160 + api_version.len() + uid.len() + texts * 9 / 8 + patched);
    // Plain structs of strings and maps always serialize.
    match serde_json::to_writer(&mut body, &out) {
        Ok(()) => body,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_strings_are_borrowed_unless_escaped() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"team\u002da",
            "object":{"metadata":{"name":"web"},"spec":{"containers":[{"name":"a","image":"nginx:1"},{"name":"b"}]}}}}"#;
        let r = decode(body).unwrap();
        assert!(matches!(r.namespace, Some(Cow::Owned(ref n)) if n == "team-a"));
        let object = r.object.unwrap().unwrap();
        assert!(matches!(object.metadata.name, Some(Cow::Borrowed("web"))));
        let images: Vec<_> = object
            .spec
            .containers
            .iter()
            .map(|c| c.image.clone())
            .collect();
        assert!(matches!(images[..], [Some(Cow::Borrowed("nginx:1")), None]));
        assert!(
            matches!(decode(br#"{"apiVersion":null,"request":{"uid":"u"}}"#), Err(BadReview(m)) if m.contains("no apiVersion"))
        );
    }

    #[test]
    fn decodes_quirky_old_objects_and_templates() {
        for old in ["{}", "\"\"", "\"None\"", "null"] {
            let body = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1","kind":{{"kind":"CronJob"}},"operation":"CREATE",
                "object":{{"spec":{{"jobTemplate":{{"spec":{{"template":{{"spec":{{"containers":[{{"name":"a","image":"busybox"}}]}}}}}}}}}}}},
                "oldObject":{old}}}}}"#
            );
            let r = decode(body.as_bytes()).unwrap();
            let object = r.object.unwrap().unwrap();
            let spec = PodSpecPath::CronJob.pod_spec(&object).unwrap();
            assert_eq!(spec.images()[0].image, "busybox");
        }
    }

    #[test]
    fn envelope_errors() {
        assert!(decode(b"{").is_err());
        assert!(decode(br#"{"apiVersion":"admission.k8s.io/v2","request":{"uid":"x"}}"#).is_err());
        assert!(decode(br#"{"apiVersion":"admission.k8s.io/v1"}"#).is_err());
        let r = decode(br#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"x","object":{"spec":{"containers":5}}}}"#).unwrap();
        assert!(r.object.is_err());
    }

    #[test]
    fn echoed_envelope_values_are_clipped() {
        let huge = "v".repeat(1 << 20);
        let body = format!(r#"{{"apiVersion":"{huge}","request":{{"uid":"x"}}}}"#);
        let e = decode(body.as_bytes()).unwrap_err().to_string();
        assert!(e.len() < 1024, "{} bytes", e.len());
        assert!(e.contains("1048576 bytes"), "{e}");
        let body = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"{huge}","request":{{"uid":"x"}}}}"#
        );
        assert!(decode(body.as_bytes()).unwrap_err().to_string().len() < 1024);
        assert_eq!(clip("héllo", 2), "h... (6 bytes)");
        assert_eq!(clip("short", 10), "short");
    }

    #[test]
    fn encodes_denial_with_status() {
        let v = Response {
            allowed: false,
            message: Some("no".into()),
            ..Response::default()
        };
        let out: serde_json::Value = serde_json::from_slice(&encode(V1BETA1, "u", &v)).unwrap();
        assert_eq!(out["apiVersion"], V1BETA1);
        assert_eq!(out["response"]["status"]["code"], 403);
        assert_eq!(out["response"]["uid"], "u");
    }
}
