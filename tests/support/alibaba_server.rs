//! An in-test Alibaba Cloud OpenAPI server for `cr` (2018-12-01), `Sas` (2018-12-03)
//! and STS `AssumeRoleWithOIDC`, on 127.0.0.1:0.
//!
//! It checks every request's signature with its own implementation of the vendor's
//! description (canonicalization, percent-encoding, HMAC), written here and not
//! shared with the client (`v1_signature`, `acs3_signature`: tests/scanner_acr.rs runs
//! them against the vendor's published vectors), and answers with the documented JSON
//! shapes and the field types of the alibabacloud-go-sdk models: the seeds' example
//! bodies come from tests/fixtures/alibaba/. Faults (throttling, errors,
//! slow replies) are injected per action.
#![allow(dead_code)]
// A test server: its early-return error answers are full responses.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/alibaba/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One request the server accepted (signature valid).
#[derive(Debug, Clone)]
pub struct Seen {
    pub action: String,
    /// `acs3`, `v1` or `sts`.
    pub signature: &'static str,
    pub access_key_id: String,
    pub params: BTreeMap<String, String>,
}

#[derive(Default)]
pub struct Data {
    /// AccessKeyId -> (secret, security token the key must come with).
    pub keys: HashMap<String, (String, Option<String>)>,
    pub seen: Vec<Seen>,
    pub rejected: Vec<String>,
    nonces: HashSet<String>,
    // cr
    pub instances: Vec<(String, Vec<String>)>,
    pub repos: HashMap<(String, String, String), String>,
    /// RepoId -> [(tag, digest as ACR writes it: bare hex)].
    pub tags: HashMap<String, Vec<(String, String)>>,
    /// (RepoId, tag) -> Status; absent = never scanned.
    pub scan_status: HashMap<(String, String), String>,
    pub summaries: HashMap<(String, String), Value>,
    /// (RepoId, tag) -> ListRepoTagScanResult entries, served in pages.
    pub scan_results: HashMap<(String, String), Vec<Value>>,
    /// The largest page `ListRepoTag` and `ListRepoTagScanResult` serve: a larger
    /// `PageSize` is answered with a page of this length (and this `PageSize`).
    /// The model documents no maximum; `None` serves what is asked, up to 100.
    pub page_size_cap: Option<usize>,
    // Sas: by bare hex digest
    pub sas_tasks: HashMap<String, Value>,
    /// Tasks every DescribeImageLatestScanTask answer lists besides the digest's own:
    /// the model's `Task` is a list, and nothing in it says that list holds only
    /// tasks of the digest asked about.
    pub sas_listed_tasks: Vec<Value>,
    /// Unhandled findings by (digest, necessity).
    pub sas_vuls: HashMap<(String, String), u64>,
    /// Findings an operator marked as handled, by (digest, necessity).
    pub sas_handled_vuls: HashMap<(String, String), u64>,
    pub sas_counts: HashMap<String, Value>,
    /// The images Security Center protects (PublicPreCheckImageScanTask counts them).
    pub sas_images: Vec<SasImage>,
    /// `Data` of every PublicCreateImageScanTask answer; a task is created only when it
    /// says `CanCreate: true` and `Result: SUCCESS` (the default answer).
    pub sas_create_data: Option<Value>,
    // STS
    pub sts_tokens: Vec<String>,
    pub sts_expires_in: i64,
    // faults, by action
    pub throttle: HashMap<String, u32>,
    pub unavailable: HashMap<String, u32>,
    /// Answers `SignatureNonceUsed` this many times (a nonce the service saw before).
    pub nonce_used: HashMap<String, u32>,
    pub errors: HashMap<String, (u16, Value)>,
    pub delay: HashMap<String, Duration>,
}

/// One image Security Center knows, as its filters name it.
#[derive(Debug, Clone)]
pub struct SasImage {
    pub registry_type: String,
    pub region: String,
    pub instance: String,
    pub namespace: String,
    pub name: String,
    pub tag: String,
    /// Bare hex.
    pub digest: String,
}

impl SasImage {
    /// Whether every filter given (comma-separated values) names this image.
    fn selected_by(&self, params: &BTreeMap<String, String>) -> bool {
        let fields = [
            ("RegistryTypes", &self.registry_type),
            ("RegionIds", &self.region),
            ("InstanceIds", &self.instance),
            ("RepoNamespaces", &self.namespace),
            ("RepoNames", &self.name),
            ("Tags", &self.tag),
            ("Digests", &self.digest),
        ];
        fields.iter().all(|(key, value)| match params.get(*key) {
            Some(list) => list.split(',').any(|v| v == value.as_str()),
            None => true,
        })
    }
}

impl Data {
    pub fn count(&self, action: &str) -> usize {
        self.seen.iter().filter(|s| s.action == action).count()
    }
}

pub struct Server {
    pub url: String,
    pub data: Arc<Mutex<Data>>,
}

impl Server {
    pub async fn start() -> Server {
        let data = Arc::new(Mutex::new(Data {
            sts_expires_in: 3600,
            ..Default::default()
        }));
        let app = Router::new().fallback(handle).with_state(data.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            url: format!("http://{addr}"),
            data,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Data) -> R) -> R {
        f(&mut self.data.lock().unwrap())
    }

    pub fn count(&self, action: &str) -> usize {
        self.with(|d| d.count(action))
    }
}

// ---- the vendor's canonicalization, written from its description ----

/// RFC 3986: keep A-Z a-z 0-9 - _ . ~, everything else %XX upper-case.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dec(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let h = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(h, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn parse_query(raw: &str) -> BTreeMap<String, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

fn sorted_query(params: &BTreeMap<String, String>) -> String {
    let mut pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    pairs.sort();
    pairs.join("&")
}

/// The V1 (HMAC-SHA1, `SignatureVersion=1.0`) signature of `params` (every parameter
/// but `Signature`): `Base64(HMAC-SHA1(secret + "&", METHOD&%2F&enc(sorted query)))`.
pub fn v1_signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    let to_sign = format!("{method}&{}&{}", enc("/"), enc(&sorted_query(params)));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The ACS3-HMAC-SHA256 signature (hex) of an RPC-style request (path `/`): `headers`
/// are the signed headers' (lower-case name, value) pairs, a name given twice has its
/// values joined with `,`; `signed` the signed names in order.
pub fn acs3_signature(
    method: &str,
    query: &BTreeMap<String, String>,
    headers: &[(String, String)],
    signed: &[String],
    payload_hash: &str,
    secret: &str,
) -> String {
    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical = [
        method.to_string(),
        "/".into(),
        sorted_query(query),
        canonical_headers,
        signed.join(";"),
        payload_hash.to_string(),
    ]
    .join("\n");
    let to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

type Reject = (u16, &'static str, String);

fn check_timestamp(ts: &str) -> Result<(), Reject> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map_err(|_| (400, "IllegalTimestamp", format!("bad timestamp {ts}")))?;
    if !ts.ends_with('Z') || ts.len() != 20 {
        return Err((
            400,
            "IllegalTimestamp",
            format!("not yyyy-MM-ddTHH:mm:ssZ: {ts}"),
        ));
    }
    if (time::OffsetDateTime::now_utc() - t).abs() > time::Duration::minutes(15) {
        return Err((400, "IllegalTimestamp", "too old".into()));
    }
    Ok(())
}

fn verify_acs3(
    data: &mut Data,
    method: &Method,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Reject> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let auth = h("authorization").ok_or((400, "IncompleteSignature", "no Authorization".into()))?;
    let rest = auth.strip_prefix("ACS3-HMAC-SHA256 ").ok_or((
        400,
        "IncompleteSignature",
        "algorithm".into(),
    ))?;
    let mut fields = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or((400, "IncompleteSignature", part.to_string()))?;
        fields.insert(k.trim().to_string(), v.trim().to_string());
    }
    let ak = fields.get("Credential").cloned().unwrap_or_default();
    let signed: Vec<String> = fields
        .get("SignedHeaders")
        .cloned()
        .unwrap_or_default()
        .split(';')
        .map(str::to_string)
        .collect();
    for required in [
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ] {
        if !signed.iter().any(|s| s == required) {
            return Err((400, "IncompleteSignature", format!("{required} not signed")));
        }
    }
    for name in headers.keys() {
        if name.as_str().starts_with("x-acs-") && !signed.iter().any(|s| s == name.as_str()) {
            return Err((
                400,
                "IncompleteSignature",
                format!("{name} sent but not signed"),
            ));
        }
    }
    let payload = hex::encode(Sha256::digest(body));
    if h("x-acs-content-sha256").as_deref() != Some(payload.as_str()) {
        return Err((
            400,
            "InvalidParameter",
            "x-acs-content-sha256 mismatch".into(),
        ));
    }
    check_timestamp(&h("x-acs-date").unwrap_or_default())?;
    let nonce = h("x-acs-signature-nonce").unwrap_or_default();
    if !data.nonces.insert(nonce) {
        return Err((400, "SignatureNonceUsed", "nonce used".into()));
    }
    let (secret, token) = data.keys.get(&ak).cloned().ok_or((
        404,
        "InvalidAccessKeyId.NotFound",
        "Specified access key is not found.".into(),
    ))?;
    if let Some(token) = token {
        if h("x-acs-security-token").as_deref() != Some(token.as_str())
            || h("x-acs-accesskey-id").as_deref() != Some(ak.as_str())
        {
            return Err((
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "token".into(),
            ));
        }
    }
    let mut header_values: Vec<(String, String)> = Vec::new();
    for name in &signed {
        for v in headers.get_all(name.as_str()) {
            header_values.push((name.clone(), v.to_str().unwrap().to_string()));
        }
    }
    let expected = acs3_signature(
        method.as_str(),
        query,
        &header_values,
        &signed,
        &payload,
        &secret,
    );
    if fields.get("Signature") != Some(&expected) {
        return Err((
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.".into(),
        ));
    }
    Ok(ak)
}

fn verify_v1(
    data: &mut Data,
    method: &Method,
    query: &BTreeMap<String, String>,
) -> Result<String, Reject> {
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    if get("SignatureMethod") != "HMAC-SHA1" || get("SignatureVersion") != "1.0" {
        return Err((400, "IncompleteSignature", "method/version".into()));
    }
    if !get("Format").eq_ignore_ascii_case("JSON") {
        return Err((400, "InvalidParameter", "Format".into()));
    }
    check_timestamp(&get("Timestamp"))?;
    if !data.nonces.insert(get("SignatureNonce")) {
        return Err((400, "SignatureNonceUsed", "nonce used".into()));
    }
    let ak = get("AccessKeyId");
    let (secret, token) = data.keys.get(&ak).cloned().ok_or((
        404,
        "InvalidAccessKeyId.NotFound",
        "Specified access key is not found.".into(),
    ))?;
    if let Some(token) = token {
        if query.get("SecurityToken") != Some(&token) {
            return Err((
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "token".into(),
            ));
        }
    }
    let mut signed = query.clone();
    let given = signed.remove("Signature").unwrap_or_default();
    let expected = v1_signature(method.as_str(), &signed, &secret);
    if given != expected {
        return Err((
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.".into(),
        ));
    }
    Ok(ak)
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("TEST-REQ-{:06}", N.fetch_add(1, Ordering::Relaxed))
}

fn reply(status: u16, mut body: Value) -> Response {
    if body.get("RequestId").is_none() {
        body["RequestId"] = json!(request_id());
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    reply(
        status,
        json!({"RequestId": request_id(), "HostId": "test", "Code": code, "Message": message,
               "Recommend": "https://api.aliyun.com/troubleshoot"}),
    )
}

fn ok(mut body: Value) -> Response {
    body["Code"] = json!("success");
    body["IsSuccess"] = json!(true);
    reply(200, body)
}

fn acr_not_exist(code: &str) -> Response {
    // ACR EE business errors: HTTP 200 with IsSuccess=false.
    reply(
        200,
        json!({"Code": code, "IsSuccess": false, "Message": "not exist"}),
    )
}

async fn handle(
    State(state): State<Arc<Mutex<Data>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query().unwrap_or(""));
    if query.get("Action").map(String::as_str) == Some("AssumeRoleWithOIDC") {
        return sts(&state, &method, &query, &body);
    }
    let header_action = headers
        .get("x-acs-action")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (action, version, kind) = match header_action {
        Some(a) => {
            let v = headers
                .get("x-acs-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (a, v, "acs3")
        }
        None => (
            query.get("Action").cloned().unwrap_or_default(),
            query.get("Version").cloned().unwrap_or_default(),
            "v1",
        ),
    };
    // This request's own parameters: taken from `seen` after the lock is released
    // again, a concurrent request's could be the last one there.
    let (delay, params) = {
        let mut data = state.lock().unwrap();
        let verified = if kind == "acs3" {
            verify_acs3(&mut data, &method, &query, &headers, &body)
        } else {
            verify_v1(&mut data, &method, &query)
        };
        let ak = match verified {
            Ok(ak) => ak,
            Err((status, code, message)) => {
                data.rejected.push(format!("{action}: {code}: {message}"));
                return error(status, code, &message);
            }
        };
        let mut params = query.clone();
        for common in [
            "AccessKeyId",
            "Action",
            "Version",
            "Format",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
            "Signature",
            "SecurityToken",
        ] {
            if kind == "v1" {
                params.remove(common);
            }
        }
        data.seen.push(Seen {
            action: action.clone(),
            signature: kind,
            access_key_id: ak,
            params: params.clone(),
        });
        (data.delay.get(&action).copied(), params)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut data = state.lock().unwrap();
    if let Some(n) = data.throttle.get_mut(&action).filter(|n| **n > 0) {
        *n -= 1;
        return error(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        );
    }
    if let Some(n) = data.unavailable.get_mut(&action).filter(|n| **n > 0) {
        *n -= 1;
        return error(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        );
    }
    if let Some(n) = data.nonce_used.get_mut(&action).filter(|n| **n > 0) {
        *n -= 1;
        return error(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    if let Some((status, body)) = data.errors.get(&action).cloned() {
        return reply(status, body);
    }
    match version.as_str() {
        "2018-12-01" => cr(&mut data, &method, &action, &params),
        "2018-12-03" => sas(&mut data, &action, &params),
        other => error(400, "InvalidVersion", &format!("version {other}")),
    }
}

fn require<'a>(
    params: &'a BTreeMap<String, String>,
    keys: &[&str],
) -> Result<Vec<&'a str>, Response> {
    keys.iter()
        .map(|k| {
            params
                .get(*k)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    error(
                        400,
                        "MissingParameter",
                        &format!("{k} is mandatory for this action."),
                    )
                })
        })
        .collect()
}

fn hex_of(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

fn cr(
    data: &mut Data,
    method: &Method,
    action: &str,
    params: &BTreeMap<String, String>,
) -> Response {
    let expected_method = if action == "GetRepoTag" {
        Method::GET
    } else {
        Method::POST
    };
    if *method != expected_method {
        return error(400, "UnsupportedHTTPMethod", "method");
    }
    match action {
        "ListInstance" => {
            let v = match require(params, &["PageNo", "PageSize"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let (page, size): (usize, usize) = (v[0].parse().unwrap(), v[1].parse().unwrap());
            let all: Vec<Value> = data
                .instances
                .iter()
                .map(|(id, _)| json!({"InstanceId": id, "InstanceName": id, "InstanceStatus": "RUNNING",
                                      "InstanceSpecification": "Enterprise_Basic", "RegionId": "cn-hangzhou"}))
                .collect();
            let chunk = page_of(&all, page, size);
            ok(
                json!({"Instances": chunk, "TotalCount": all.len(), "PageNo": page, "PageSize": size}),
            )
        }
        "ListInstanceEndpoint" => {
            let v = match require(params, &["InstanceId"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let Some((_, domains)) = data.instances.iter().find(|(id, _)| id == v[0]) else {
                return acr_not_exist("INSTANCE_NOT_EXIST");
            };
            let domains: Vec<Value> = domains
                .iter()
                .map(|d| json!({"Domain": d, "Type": "SYSTEM"}))
                .collect();
            ok(json!({"Endpoints": [
                {"EndpointType": "internet", "Enable": true, "Status": "RUNNING", "Domains": domains, "AclEnable": false}
            ]}))
        }
        "GetRepository" => {
            let v = match require(params, &["InstanceId", "RepoNamespaceName", "RepoName"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match data
                .repos
                .get(&(v[0].to_string(), v[1].to_string(), v[2].to_string()))
            {
                Some(id) => ok(
                    json!({"RepoId": id, "RepoName": v[2], "RepoNamespaceName": v[1], "InstanceId": v[0],
                                      "RepoStatus": "NORMAL", "RepoType": "PRIVATE", "RepoBuildType": "MANUAL"}),
                ),
                None => acr_not_exist("REPO_NOT_EXIST"),
            }
        }
        "GetRepoTag" => {
            let v = match require(params, &["InstanceId", "RepoId", "Tag"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match data
                .tags
                .get(v[1])
                .and_then(|t| t.iter().find(|(tag, _)| tag == v[2]))
            {
                Some((tag, digest)) => ok(
                    json!({"Tag": tag, "Digest": digest, "ImageId": "img", "Status": "NORMAL",
                                                 "ImageSize": 1024, "ImageCreate": 1, "ImageUpdate": 1}),
                ),
                None => acr_not_exist("TAG_NOT_EXIST"),
            }
        }
        "ListRepoTag" => {
            let v = match require(params, &["InstanceId", "RepoId", "PageNo", "PageSize"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let (page, size): (usize, usize) = (v[2].parse().unwrap(), v[3].parse().unwrap());
            let size = data.page_size_cap.map_or(size, |cap| size.min(cap));
            let tags = data.tags.get(v[1]).cloned().unwrap_or_default();
            let images: Vec<Value> = tags
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .map(|(t, d)| json!({"Tag": t, "Digest": d, "ImageId": "img", "Status": "NORMAL"}))
                .collect();
            // TotalCount is a string in this API.
            ok(
                json!({"Images": images, "TotalCount": tags.len().to_string(), "PageNo": page, "PageSize": size}),
            )
        }
        "GetRepoTagScanStatus"
        | "GetRepoTagScanSummary"
        | "CreateRepoTagScanTask"
        | "ListRepoTagScanResult" => {
            let v = match require(params, &["InstanceId", "RepoId", "Tag"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let key = (v[1].to_string(), v[2].to_string());
            let tag_digest = data
                .tags
                .get(v[1])
                .and_then(|t| t.iter().find(|(tag, _)| tag == v[2]))
                .map(|(_, d)| d.clone());
            let Some(tag_digest) = tag_digest else {
                return acr_not_exist("TAG_NOT_EXIST");
            };
            if let Some(d) = params.get("Digest") {
                if hex_of(d) != hex_of(&tag_digest) {
                    return error(400, "InvalidParameter", "Digest does not match the tag");
                }
            }
            match action {
                "CreateRepoTagScanTask" => {
                    data.scan_status.insert(key, "SCANNING".into());
                    ok(json!({}))
                }
                "GetRepoTagScanStatus" => match data.scan_status.get(&key) {
                    Some(s) => {
                        let mut body = fixture("get_repo_tag_scan_status.json");
                        body["Status"] = json!(s);
                        body["RequestId"] = json!(request_id());
                        reply(200, body)
                    }
                    // Never scanned: a successful answer without a status.
                    None => ok(json!({"ScanService": "ACR_SCAN_SERVICE"})),
                },
                "ListRepoTagScanResult" => {
                    let page: usize = params
                        .get("PageNo")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(1);
                    let size: usize = params
                        .get("PageSize")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(30);
                    if page == 0 || size == 0 || size > 100 {
                        return error(400, "InvalidParameter", "PageNo/PageSize");
                    }
                    let size = data.page_size_cap.map_or(size, |cap| size.min(cap));
                    let Some(all) = data.scan_results.get(&key) else {
                        return acr_not_exist("SCAN_RESULT_NOT_EXIST");
                    };
                    let chunk = page_of(all, page, size);
                    ok(
                        json!({"Vulnerabilities": chunk, "TotalCount": all.len(), "PageNo": page, "PageSize": size}),
                    )
                }
                _ => match data.summaries.get(&key) {
                    Some(body) => reply(200, body.clone()),
                    None => acr_not_exist("SCAN_RESULT_NOT_EXIST"),
                },
            }
        }
        other => error(404, "InvalidAction.NotFound", other),
    }
}

/// One ListRepoTagScanResult entry as the API reference describes it.
pub fn scan_result(cve: &str, severity: &str, fixed: &str) -> Value {
    json!({
        "CveName": cve, "Severity": severity, "Feature": "openssl", "Version": "1.1.1k",
        "VersionFixed": fixed, "VersionFormat": "dpkg",
        "FixCmd": if fixed.is_empty() { String::new() } else { format!("apt-get install --only-upgrade openssl={fixed}") },
        "AddedBy": "sha256:123456717b8e40b6480979b739010d8d549989602bcdd07922119aec6f9dbe57",
        "CveLink": format!("https://security-tracker.debian.org/tracker/{cve}"),
        "CveLocation": "/usr/lib/libssl.so", "Description": "a description vulngate does not keep",
        "ScanType": "cve"
    })
}

fn sas(data: &mut Data, action: &str, params: &BTreeMap<String, String>) -> Response {
    match action {
        "DescribeImageLatestScanTask" => {
            let v = match require(params, &["Digest"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let mut tasks = data.sas_listed_tasks.clone();
            tasks.extend(data.sas_tasks.get(v[0]).cloned());
            reply(200, json!({"Task": tasks}))
        }
        "PublicPreCheckImageScanTask" => {
            // This server's model of the quota: every selected image needs a scan,
            // and one that has no scan task yet consumes one unit.
            let selected: Vec<&SasImage> = data
                .sas_images
                .iter()
                .filter(|i| i.selected_by(params))
                .collect();
            let unscanned = selected
                .iter()
                .filter(|i| !data.sas_tasks.contains_key(&i.digest))
                .count();
            reply(
                200,
                json!({"Data": {"ScanImageCount": unscanned, "NeedAuthCount": selected.len()}}),
            )
        }
        "PublicCreateImageScanTask" => {
            let v = match require(params, &["Digests"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let answer = data.sas_create_data.clone().unwrap_or_else(|| {
                json!({"CanCreate": true, "TaskId": "task-1", "Status": "INIT", "Result": "SUCCESS",
                       "Progress": 0, "TotalCount": 1, "FinishCount": 0})
            });
            let created =
                answer["CanCreate"] == json!(true) && answer["Result"] == json!("SUCCESS");
            if created {
                for digest in v[0].split(',') {
                    data.sas_tasks.insert(
                        digest.to_string(),
                        json!({"Status": "PROCESSING", "Target": digest, "TargetType": "IMAGE",
                               "TaskType": "IMAGE_SCAN", "Source": "openapi", "TaskId": "task-1",
                               "StartTime": 1669693400000i64}),
                    );
                }
            }
            reply(200, json!({ "Data": answer }))
        }
        "DescribeImageVulList" => {
            // The model requires only `Type`; every other filter narrows the list.
            let v = match require(params, &["Type"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let necessity = params.get("Necessity").map(String::as_str);
            if v[0] != "cve" || necessity.is_some_and(|n| !["asap", "later", "nntf"].contains(&n)) {
                return error(400, "InvalidParameter", "Type/Necessity");
            }
            let digest = params.get("Digest").map(String::as_str);
            let size: u64 = match params.get("PageSize").map(|p| p.parse::<u64>()) {
                None => 10,
                Some(Ok(n)) if n > 0 => n,
                Some(_) => return error(400, "InvalidParameter", "PageSize"),
            };
            let dealed = params.get("Dealed").map(|d| d.to_ascii_lowercase());
            let unhandled = data
                .sas_vuls
                .iter()
                .filter(|_| dealed.as_deref() != Some("y"));
            let handled = data
                .sas_handled_vuls
                .iter()
                .filter(|_| dealed.as_deref() != Some("n"));
            let matching: Vec<(&(String, String), u64)> = unhandled
                .chain(handled)
                .filter(|((d, n), _)| {
                    digest.is_none_or(|want| want == d) && necessity.is_none_or(|want| want == n)
                })
                .map(|(k, n)| (k, *n))
                .collect();
            let total: u64 = matching.iter().map(|(_, n)| n).sum();
            let records: Vec<Value> = matching
                .iter()
                .flat_map(|((d, n), count)| (0..*count).map(move |i| (d, n, i)))
                .take(size as usize)
                .map(|(d, n, i)| json!({"Name": format!("alinux3:2:2024:{i}"), "Necessity": n, "Status": 1, "ImageDigest": d}))
                .collect();
            reply(
                200,
                json!({"TotalCount": total, "PageSize": size, "CurrentPage": 1, "VulRecords": records}),
            )
        }
        "DescribeImageSecurityScanCount" => {
            let v = match require(params, &["ImageDigest"]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match data.sas_counts.get(v[0]) {
                Some(body) => reply(200, body.clone()),
                None => reply(
                    200,
                    json!({"Data": {"ImageBaselineCount": 0, "ImageMaliciousFileCount": 0,
                                                    "ImageScaVulCount": 0, "ImageCveVulCount": 0}}),
                ),
            }
        }
        other => error(404, "InvalidAction.NotFound", other),
    }
}

fn sts(
    state: &Arc<Mutex<Data>>,
    method: &Method,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Response {
    let mut data = state.lock().unwrap();
    if *method != Method::POST || query.get("Version").map(String::as_str) != Some("2015-04-01") {
        return error(400, "InvalidParameter", "method/version");
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    for k in [
        "RoleArn",
        "OIDCProviderArn",
        "OIDCToken",
        "RoleSessionName",
        "DurationSeconds",
    ] {
        if !form.contains_key(k) {
            return error(400, "MissingParameter", k);
        }
    }
    let token = form["OIDCToken"].clone();
    if token.starts_with("expired") {
        data.rejected
            .push("AssumeRoleWithOIDC: expired token".into());
        return error(
            400,
            "AuthenticationFail.OIDCToken.Expired",
            "The OIDC token has expired.",
        );
    }
    data.sts_tokens.push(token);
    let n = data.sts_tokens.len();
    let id = format!("STS.rrsa-{n}");
    let secret = format!("rrsa-secret-{n}");
    let security_token = format!("CAIS-rrsa-token-{n}");
    data.keys
        .insert(id.clone(), (secret.clone(), Some(security_token.clone())));
    data.seen.push(Seen {
        action: "AssumeRoleWithOIDC".into(),
        signature: "sts",
        access_key_id: String::new(),
        params: form,
    });
    let expiration = time::OffsetDateTime::now_utc() + time::Duration::seconds(data.sts_expires_in);
    let expiration = expiration
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    reply(
        200,
        json!({
            "AssumedRoleUser": {"Arn": "acs:ram::1:role/vulngate/vulngate", "AssumedRoleId": "1:vulngate"},
            "Credentials": {"AccessKeyId": id, "AccessKeySecret": secret, "SecurityToken": security_token, "Expiration": expiration}
        }),
    )
}

/// Page `page` (from 1) of `size` entries, as the RPC APIs page their lists.
fn page_of(all: &[Value], page: usize, size: usize) -> Vec<Value> {
    all.iter()
        .skip(page.saturating_sub(1) * size)
        .take(size)
        .cloned()
        .collect()
}
