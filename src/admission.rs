//! AdmissionReview in and out: decoding only the fields a decision needs, finding
//! the pod spec of every kind that carries one, and encoding the response.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

/// Longest piece of request data quoted back in a message or a log line.
pub const MAX_QUOTED: usize = 256;

/// `s` cut to at most `max` bytes (on a character boundary), saying how long it was.
/// Request data quoted in answers and logs goes through here, so a 7 MiB value
/// never becomes a 7 MiB message or log line.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}... ({} bytes)", &s[..end], s.len()))
}

/// An undecodable review: answered with HTTP 400, since it has no uid to answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

/// The review as sent. `O` is how the objects are read: typed in one pass when the
/// whole review is well formed, or kept raw so that an unreadable object still
/// leaves a uid to answer.
#[derive(Deserialize)]
struct ReviewIn<O> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default = "none")]
    request: Option<RequestIn<O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<O> {
    uid: String,
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    user_info: UserInfo,
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

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The decoded request, owning what the decision needs.
#[derive(Debug, Clone)]
pub struct Request {
    pub api_version: String,
    pub uid: String,
    pub kind: GroupVersionKind,
    pub sub_resource: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub operation: String,
    pub user_info: UserInfo,
    pub dry_run: bool,
    /// The object, when its kind carries a pod spec and it could be read.
    pub object: Result<Option<ObjectLite>, String>,
    pub old_object: Option<ObjectLite>,
}

/// Decodes a review. Errors only for what leaves no uid to answer to.
pub fn decode(body: &[u8]) -> Result<Request, BadReview> {
    // One typed pass reads nearly every review; the raw pass below is for the rest.
    if let Ok(review) = serde_json::from_slice::<ReviewIn<ObjectLite>>(body) {
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

fn checked<O>(
    review: ReviewIn<O>,
    object: impl FnOnce(O) -> Result<Option<ObjectLite>, String>,
    old_object: impl FnOnce(O) -> Option<ObjectLite>,
) -> Result<Request, BadReview> {
    let api_version = match review.api_version.as_deref() {
        Some(v @ (V1 | V1BETA1)) => v.to_string(),
        Some(other) => {
            return Err(BadReview(format!(
                "unsupported apiVersion {:?}: expected {V1} or {V1BETA1}",
                clip(other, MAX_QUOTED)
            )))
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

fn read_object(raw: &RawValue) -> Result<Option<ObjectLite>, serde_json::Error> {
    if !raw.get().trim_start().starts_with('{') {
        return Ok(None);
    }
    serde_json::from_str(raw.get()).map(Some)
}

/// The parts of any object that matter: metadata and whatever holds a pod spec.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectLite {
    #[serde(default, deserialize_with = "object_or_default")]
    pub metadata: MetadataLite,
    #[serde(default, deserialize_with = "object_or_default")]
    pub spec: SpecLite,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataLite {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OwnerReference {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub controller: Option<bool>,
}

/// A union of the spec shapes of Pod, pod-template workloads and CronJob.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecLite {
    #[serde(default)]
    pub containers: Vec<ContainerLite>,
    #[serde(default)]
    pub init_containers: Vec<ContainerLite>,
    #[serde(default)]
    pub ephemeral_containers: Vec<ContainerLite>,
    #[serde(default)]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub template: Option<Box<TemplateLite>>,
    #[serde(default)]
    pub job_template: Option<Box<TemplateLite>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateLite {
    #[serde(default, deserialize_with = "object_or_default")]
    pub spec: SpecLite,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerLite {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LocalObjectReference {
    #[serde(default)]
    pub name: String,
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

impl PodSpecPath {
    pub fn for_kind(kind: &str) -> Option<PodSpecPath> {
        match kind {
            "Pod" => Some(PodSpecPath::Pod),
            "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "ReplicationController" => Some(PodSpecPath::Template),
            "CronJob" => Some(PodSpecPath::CronJob),
            _ => None,
        }
    }

    pub fn pod_spec(self, object: &ObjectLite) -> Option<&SpecLite> {
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
}

impl ContainerKind {
    pub fn describe(self) -> &'static str {
        match self {
            ContainerKind::Container => "container",
            ContainerKind::Init => "init container",
            ContainerKind::Ephemeral => "ephemeral container",
        }
    }
}

/// One container's image as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub kind: ContainerKind,
    pub name: String,
    pub image: String,
}

impl SpecLite {
    pub fn images(&self) -> Vec<ContainerImage> {
        let groups = [
            (ContainerKind::Init, &self.init_containers),
            (ContainerKind::Container, &self.containers),
            (ContainerKind::Ephemeral, &self.ephemeral_containers),
        ];
        groups
            .into_iter()
            .flat_map(|(kind, list)| {
                list.iter().map(move |c| ContainerImage {
                    kind,
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// The response part of a review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
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
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    status: &'static str,
    reason: &'static str,
    message: &'a str,
}

/// Encodes the response AdmissionReview in the version the request came in.
pub fn encode(api_version: &str, uid: &str, verdict: &Verdict) -> Vec<u8> {
    let status = match (&verdict.message, verdict.allowed) {
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
            allowed: verdict.allowed,
            status,
            warnings: &verdict.warnings,
            audit_annotations: &verdict.audit_annotations,
        },
    };
    // Plain structs of strings and maps always serialize.
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let v = Verdict {
            allowed: false,
            message: Some("no".into()),
            ..Verdict::default()
        };
        let out: serde_json::Value = serde_json::from_slice(&encode(V1BETA1, "u", &v)).unwrap();
        assert_eq!(out["apiVersion"], V1BETA1);
        assert_eq!(out["response"]["status"]["code"], 403);
        assert_eq!(out["response"]["uid"], "u");
    }
}
