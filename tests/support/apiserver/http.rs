//! The HTTP side: paths, Status errors, GET, list with `limit`/`continue`, POST, merge
//! PATCH.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::store::{Inner, ResourceInfo, Snapshot, copy_identity};
use super::watch::start_watch;
use super::{ObjectKey, RequestRecord, Shared};

const SNAPSHOT_LIMIT: usize = 32;

pub(super) fn status(
    code: u16,
    reason: &str,
    message: impl Into<String>,
    details: Option<Value>,
) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    let mut response = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

pub(super) fn details(key: &ObjectKey) -> Value {
    let group = key
        .api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("");
    let mut d = json!({"name": key.name, "kind": key.plural});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

pub(super) fn resource_label(key: &ObjectKey) -> String {
    match key.api_version.rsplit_once('/') {
        Some((group, _)) => format!("{}.{}", key.plural, group),
        None => key.plural.clone(),
    }
}

pub(super) fn not_found(key: &ObjectKey) -> Response {
    status(
        404,
        "NotFound",
        format!("{} \"{}\" not found", resource_label(key), key.name),
        Some(details(key)),
    )
}

/// An error answer from a helper, boxed: a `Response` is large.
pub(super) type Rejection = Box<Response>;

/// What the apiserver says for a path that names no resource it serves.
pub(super) fn not_served() -> Response {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        None,
    )
}

pub(super) fn bad_request(message: impl Into<String>) -> Response {
    status(400, "BadRequest", message, None)
}

pub(super) fn json_response(code: StatusCode, value: Value) -> Response {
    (code, axum::Json(value)).into_response()
}

/// What a path names.
pub(super) struct Target {
    pub(super) api_version: String,
    pub(super) plural: String,
    pub(super) info: ResourceInfo,
    /// `Some` for a path under `/namespaces/{ns}/`.
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
}

pub(super) fn parse_path(inner: &Inner, path: &str) -> Result<Target, Rejection> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return Err(Box::new(not_served())),
    };
    let lookup = |plural: &str| {
        inner
            .resources
            .get(&(api_version.clone(), plural.to_string()))
            .cloned()
    };
    let unknown = || Box::new(not_served());
    let target =
        |plural: &str, info: ResourceInfo, namespace: Option<&str>, name: Option<&str>| Target {
            api_version: api_version.clone(),
            plural: plural.into(),
            info,
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
        };
    // `/namespaces/{ns}/{plural}...` when {plural} is a namespaced resource of this group.
    if let ["namespaces", ns, plural, tail @ ..] = rest {
        if let Some(info) = lookup(plural).filter(|i| i.namespaced) {
            return match tail {
                [] => Ok(target(plural, info, Some(ns), None)),
                [name] => Ok(target(plural, info, Some(ns), Some(name))),
                _ => Err(unknown()),
            };
        }
    }
    match rest {
        [plural] => lookup(plural)
            .map(|info| target(plural, info, None, None))
            .ok_or_else(unknown),
        [plural, name] => lookup(plural)
            .filter(|i| !i.namespaced)
            .map(|info| target(plural, info, None, Some(name)))
            .ok_or_else(unknown),
        _ => Err(unknown()),
    }
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let is_watch =
        method == Method::GET && query.get("watch").is_some_and(|w| w == "1" || w == "true");
    let record = RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        watch: is_watch,
    };
    let failure = {
        let mut inner = shared.lock();
        inner.requests.push(record.clone());
        inner.failure_for(&record)
    };
    if let Some(code) = failure {
        if code == 0 {
            // A request the server never answers.
            std::future::pending::<()>().await;
        }
        return match code {
            429 => status(
                429,
                "TooManyRequests",
                "injected: too many requests, please try again later",
                None,
            ),
            500 => status(500, "InternalError", "injected: internal error", None),
            c => status(c, "InternalError", format!("injected failure {c}"), None),
        };
    }
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}),
        );
    }
    let mut inner = shared.lock();
    let target = match parse_path(&inner, &path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let response = match (&method, &target.name) {
        (&Method::GET, None) if is_watch => {
            drop(inner);
            return start_watch(shared, target, &query);
        }
        (&Method::GET, None) => list(&mut inner, &target, &query),
        (&Method::GET, Some(_)) => get_one(&inner, &target),
        (&Method::POST, None) => create(&mut inner, &target, &body),
        (&Method::PATCH, Some(_)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            patch(&mut inner, &target, &content_type, &body)
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
            None,
        ),
    };
    drop(inner);
    if method != Method::GET {
        shared.notify();
    }
    response
}

pub(super) fn object_key(target: &Target, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: target.api_version.clone(),
        plural: target.plural.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.into(),
    }
}

pub(super) fn get_one(inner: &Inner, target: &Target) -> Response {
    let key = object_key(target, target.name.as_deref().unwrap_or_default());
    match inner.objects.get(&key) {
        Some(obj) => json_response(StatusCode::OK, obj.clone()),
        None => not_found(&key),
    }
}

/// Which objects a list or watch selects: one resource, in one namespace or all.
pub(super) struct Filter {
    pub(super) api_version: String,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
}

impl Filter {
    pub(super) fn new(target: &Target) -> Self {
        Self {
            api_version: target.api_version.clone(),
            plural: target.plural.clone(),
            namespace: target.namespace.clone(),
        }
    }

    pub(super) fn in_scope(&self, key: &ObjectKey) -> bool {
        key.api_version == self.api_version
            && key.plural == self.plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
    }
}

/// `limit`/`continue` paginate a consistent snapshot, as the audit's pages need.
pub(super) fn list(
    inner: &mut Inner,
    target: &Target,
    query: &HashMap<String, String>,
) -> Response {
    let filter = Filter::new(target);
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => return bad_request("limit must be a non-negative integer"),
    };
    let (rv, mut items) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match inner.snapshots.remove(token) {
            Some(snapshot) => (snapshot.rv, snapshot.remaining),
            None => {
                return status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    None,
                );
            }
        },
        None => {
            if let Some(r) = query
                .get("resourceVersion")
                .filter(|r| !r.is_empty() && *r != "0")
            {
                let Ok(requested) = r.parse::<u64>() else {
                    return bad_request(format!("invalid resource version: {r}"));
                };
                let exact = query
                    .get("resourceVersionMatch")
                    .is_some_and(|m| m == "Exact");
                if exact && requested != inner.rv {
                    return status(
                        410,
                        "Expired",
                        format!("too old resource version: {requested} ({})", inner.rv),
                        None,
                    );
                }
                if requested > inner.rv {
                    return status(
                        504,
                        "Timeout",
                        format!(
                            "Too large resource version: {requested}, current: {}",
                            inner.rv
                        ),
                        None,
                    );
                }
            }
            let items = inner
                .objects
                .iter()
                .filter(|(k, _)| filter.in_scope(k))
                .map(|(_, v)| {
                    // Items of a list carry no kind/apiVersion of their own.
                    let mut v = v.clone();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    v
                })
                .collect();
            (inner.rv, items)
        }
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit.filter(|l| items.len() > *l) {
        let remaining = items.split_off(limit);
        let token = format!("fake-continue-{}", inner.next_id());
        metadata["continue"] = json!(token);
        metadata["remainingItemCount"] = json!(remaining.len());
        inner
            .snapshots
            .insert(token.clone(), Snapshot { rv, remaining });
        inner.snapshot_order.push_back(token);
        while inner.snapshot_order.len() > SNAPSHOT_LIMIT {
            if let Some(old) = inner.snapshot_order.pop_front() {
                inner.snapshots.remove(&old);
            }
        }
    }
    json_response(
        StatusCode::OK,
        json!({
            "kind": format!("{}List", target.info.kind),
            "apiVersion": target.api_version,
            "metadata": metadata,
            "items": items,
        }),
    )
}

fn parse_body(body: &Bytes) -> Result<Value, Rejection> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(Box::new(bad_request("the body must be a JSON object")));
    }
    Ok(value)
}

/// POST: what kube's event recorder sends the first time.
pub(super) fn create(inner: &mut Inner, target: &Target, body: &Bytes) -> Response {
    let object = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if target.info.namespaced && target.namespace.is_none() {
        return bad_request("a namespaced object must be created under /namespaces/{namespace}/");
    }
    let Some(name) = object["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
    else {
        return status(
            422,
            "Invalid",
            format!(
                "{} \"\" is invalid: metadata.name: Required value",
                target.info.kind
            ),
            None,
        );
    };
    let key = object_key(target, name);
    if let Some(ns) = &target.namespace {
        if !inner.namespace_exists(ns) {
            return not_found(&ObjectKey::namespace(ns));
        }
    }
    if inner.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", resource_label(&key), key.name),
            Some(details(&key)),
        );
    }
    let object = inner.fill_new(object, &key);
    let stored = inner.write(key, None, object);
    json_response(StatusCode::CREATED, stored)
}

/// PATCH as a JSON merge patch (RFC 7386): what kube's event recorder sends for a repeat.
/// A strategic merge patch is applied the same way (lists replaced).
pub(super) fn patch(
    inner: &mut Inner,
    target: &Target,
    content_type: &str,
    body: &Bytes,
) -> Response {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(
        media,
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) {
        return status(
            415,
            "UnsupportedMediaType",
            format!("this fake accepts application/merge-patch+json only (got {media:?})"),
            None,
        );
    }
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid patch: {e}")),
    };
    let key = object_key(target, target.name.as_deref().unwrap_or_default());
    let Some(old) = inner.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    let mut new = old.clone();
    merge_patch(&mut new, &patch);
    copy_identity(&old, &mut new);
    if new == old {
        return json_response(StatusCode::OK, old);
    }
    let stored = inner.write(key, Some(old), new);
    json_response(StatusCode::OK, stored)
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}
