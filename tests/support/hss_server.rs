//! An in-test Huawei Cloud HSS v5 + IAM server on 127.0.0.1:0.
//!
//! It checks every HSS request's SDK-HMAC-SHA256 signature with its own
//! canonicalization, written from Huawei's description and sharing no code with
//! the client's signer (only the SHA-256 and HMAC primitives), or checks the
//! `X-Auth-Token` it issued from its IAM endpoint.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const AK: &str = "HSTESTACCESSKEY0001";
pub const SK: &str = "hss-test-secret-key-very-secret-0001";
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
pub const REGION: &str = "cn-north-4";
pub const IAM_DOMAIN: &str = "demo-domain";
pub const IAM_USER: &str = "vulngate";
pub const IAM_PASSWORD: &str = "iam-password-do-not-leak-42";
/// The security token of temporary AK/SK, when a test uses them.
pub const SECURITY_TOKEN: &str = "temporary-security-token-777";

/// What the next HSS requests get instead of a normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The next `times` requests are throttled with this status and error code.
    Throttle {
        times: u32,
        status: u16,
        code: &'static str,
    },
    /// Every request answers this status and JSON body.
    Status { status: u16, body: Value },
    /// Every request waits this long before answering normally.
    Slow(Duration),
}

/// One image version HSS knows, with its vulnerability counts by repair necessity.
#[derive(Debug, Clone)]
pub struct Image {
    pub record: Value,
    /// Unhandled: (immediate_repair, delay_repair, not_needed_repair, without a necessity)
    pub vuls: (u64, u64, u64, u64),
    /// Handled (HSS's `handle_status=handled`), the same way.
    pub handled: (u64, u64, u64, u64),
}

#[derive(Default)]
pub struct HssState {
    pub images: Mutex<Vec<Image>>,
    pub fault: Mutex<Option<Fault>>,
    /// Requests by operation (`ListRegistryImages`, `ListImageVulnerabilities`, `IAM`).
    pub calls: Mutex<BTreeMap<String, u32>>,
    /// Query strings of ListRegistryImages calls, as sent.
    pub list_queries: Mutex<Vec<String>>,
    /// Requests whose signature or token did not verify.
    pub auth_failures: AtomicU32,
    /// Tokens issued by the IAM endpoint and still valid.
    pub tokens: Mutex<HashSet<String>>,
    pub token_lifetime: Mutex<Duration>,
    pub issued: AtomicU32,
    request_seq: AtomicU32,
}

pub struct HssServer {
    pub addr: SocketAddr,
    pub state: Arc<HssState>,
}

impl HssServer {
    pub async fn start() -> HssServer {
        let state = Arc::new(HssState::default());
        *state.token_lifetime.lock().unwrap() = Duration::from_secs(24 * 3600);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HssServer { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_image(&self, record: Value, vuls: (u64, u64, u64, u64)) {
        self.add_image_with_handled(record, vuls, (0, 0, 0, 0));
    }

    pub fn add_image_with_handled(
        &self,
        record: Value,
        unhandled: (u64, u64, u64, u64),
        handled: (u64, u64, u64, u64),
    ) {
        self.state.images.lock().unwrap().push(Image {
            record,
            vuls: unhandled,
            handled,
        });
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.state.fault.lock().unwrap() = fault;
    }

    pub fn calls(&self, op: &str) -> u32 {
        self.state
            .calls
            .lock()
            .unwrap()
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    pub fn auth_failures(&self) -> u32 {
        self.state.auth_failures.load(Ordering::SeqCst)
    }

    pub fn revoke_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }
}

/// A ListRegistryImages record in the documented shape.
pub fn record(namespace: &str, name: &str, version: &str, digest: &str, status: &str) -> Value {
    json!({
        // RegistryImagesInfo.id is an int64 in the SDK model.
        "id": record_id(namespace, name, version),
        "namespace": namespace,
        "image_name": name,
        "image_id": format!("img-{namespace}-{name}-{version}").replace('/', "-"),
        "image_digest": digest,
        "image_version": version,
        "image_type": "private_image",
        "registry_id": "reg-1",
        "registry_name": "SWR",
        "registry_type": "SwrPrivate",
        "latest_version": true,
        "scan_status": status,
        "scan_failed_code": "",
        "scan_failed_desc": "",
        "image_size": 1024,
        "latest_update_time": 1_700_000_000_000i64,
        "latest_scan_time": 1_700_000_100_000i64,
        "latest_sync_time": 1_700_000_000_000i64,
        "vul_num": 0,
        "unsafe_setting_num": 4,
        "malicious_file_num": 1,
        "domain_name": IAM_DOMAIN,
        "shared_status": "",
        "scannable": true,
        "is_multiple_arch": false,
        "instance_name": "",
        "instance_id": "",
        "instance_url": "",
        "severity_level": "High",
        "association_images": []
    })
}

/// A stable int64 record id per image version.
fn record_id(namespace: &str, name: &str, version: &str) -> i64 {
    let digest = Sha256::digest(format!("{namespace}/{name}:{version}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().unwrap()) & i64::MAX
}

/// HSS's documented error answer (HTTP 400, `HSS.0001` "Invalid parameter.").
fn invalid_parameter(request_id: &str, what: &str) -> Response {
    json_response(
        400,
        request_id,
        json!({"error_code": "HSS.0001", "error_msg": format!("Invalid parameter. {what}")}),
    )
}

fn json_response(status: u16, request_id: &str, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [
            ("X-Request-Id", request_id.to_string()),
            ("Content-Type", "application/json".to_string()),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(state): State<Arc<HssState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = format!(
        "hss-req-{}",
        state.request_seq.fetch_add(1, Ordering::SeqCst)
    );
    let path = uri.path().to_string();
    if path == "/v3/auth/tokens" && method == Method::POST {
        return iam_tokens(&state, &body);
    }
    let segments: Vec<String> = path.split('/').map(percent_decode).collect();
    let op = match segments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["", "v5", p, "image", "registries", "images"] if *p == PROJECT => "ListRegistryImages",
        ["", "v5", p, "image", _, "vulnerabilities"] if *p == PROJECT => "ListImageVulnerabilities",
        ["", "v5", p, "image", "security-report", "statistic"]
            if *p == PROJECT && method == Method::POST =>
        {
            "ShowImageSecurityReportStatistic"
        }
        _ => {
            return json_response(
                404,
                &request_id,
                json!({"error_code": "APIG.0101", "error_msg": "The API does not exist or has not been published in the environment"}),
            );
        }
    };
    *state
        .calls
        .lock()
        .unwrap()
        .entry(op.to_string())
        .or_default() += 1;

    if let Err(why) = check_auth(&state, method.as_str(), &uri, &headers, &body) {
        state.auth_failures.fetch_add(1, Ordering::SeqCst);
        eprintln!("auth failure: {why}");
        return json_response(
            401,
            &request_id,
            json!({"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information: verify aksk signature fail"}),
        );
    }

    let fault = state.fault.lock().unwrap().clone();
    match fault {
        Some(Fault::Throttle {
            times,
            status,
            code,
        }) if times > 0 => {
            *state.fault.lock().unwrap() = Some(Fault::Throttle {
                times: times - 1,
                status,
                code,
            });
            return json_response(
                status,
                &request_id,
                json!({"error_code": code, "error_msg": "The API request is throttled"}),
            );
        }
        Some(Fault::Status { status, body }) => return json_response(status, &request_id, body),
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }

    let query = parse_query(uri.query().unwrap_or(""));
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if op == "ShowImageSecurityReportStatistic" {
        // The page's example request and response, verbatim (tests/fixtures/hss/).
        let want: Value = serde_json::from_str(include_str!(
            "../fixtures/hss/show-image-security-report-statistic.request.json"
        ))
        .unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if got != want || get("security_report_type").as_deref() != Some("vulnerability") {
            return invalid_parameter(&request_id, "unexpected statistic request");
        }
        return (
            StatusCode::OK,
            [
                ("X-Request-Id", request_id),
                ("Content-Type", "application/json".to_string()),
            ],
            include_str!("../fixtures/hss/show-image-security-report-statistic.response.json"),
        )
            .into_response();
    }
    let images = state.images.lock().unwrap().clone();
    match op {
        "ListRegistryImages" => {
            state
                .list_queries
                .lock()
                .unwrap()
                .push(uri.query().unwrap_or("").to_string());
            let field = |img: &Image, k: &str| img.record[k].as_str().map(str::to_string);
            let matching: Vec<Value> = images
                .iter()
                .filter(|img| {
                    ["namespace", "image_name", "image_version"]
                        .iter()
                        .all(|k| match get(k) {
                            Some(want) => field(img, k).as_deref() == Some(want.as_str()),
                            None => true,
                        })
                })
                .map(|img| img.record.clone())
                .collect();
            let offset: usize = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            let limit: usize = get("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
            if !(1..=200).contains(&limit) {
                return invalid_parameter(&request_id, "limit out of range");
            }
            let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
            json_response(
                200,
                &request_id,
                json!({"total_num": matching.len(), "data_list": page}),
            )
        }
        _ => {
            // What the SDK model (ListImageVulnerabilitiesRequest) requires, no more.
            for required in ["image_type", "namespace", "image_name", "tag_name"] {
                if get(required).is_none() {
                    return invalid_parameter(&request_id, &format!("{required} is required"));
                }
            }
            let limit: u64 = get("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
            if !(10..=200).contains(&limit) {
                return invalid_parameter(&request_id, "limit out of range");
            }
            let image_id = &segments[4];
            let Some(img) = images
                .iter()
                .find(|i| i.record["image_id"].as_str() == Some(image_id.as_str()))
            else {
                return json_response(
                    400,
                    &request_id,
                    json!({"error_code": "HSS.0011", "error_msg": "Requested resource not found."}),
                );
            };
            if get("tag_name").as_deref() != img.record["image_version"].as_str() {
                return json_response(200, &request_id, json!({"total_num": 0, "data_list": []}));
            }
            let add = |a: (u64, u64, u64, u64), b: (u64, u64, u64, u64)| {
                (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
            };
            let (h, m, l, other) = match get("handle_status").as_deref() {
                None => add(img.vuls, img.handled),
                Some("unhandled") => img.vuls,
                Some("handled") => img.handled,
                Some(_) => return invalid_parameter(&request_id, "bad handle_status"),
            };
            let total = match get("repair_necessity").as_deref() {
                Some("immediate_repair") => h,
                Some("delay_repair") => m,
                Some("not_needed_repair") => l,
                None => h + m + l + other,
                Some(_) => return invalid_parameter(&request_id, "bad repair_necessity"),
            };
            let shown = total.min(10);
            let list: Vec<Value> = (0..shown)
                .map(|i| json!({"vul_id": format!("CVE-2024-{i:04}"), "repair_necessity": "immediate_repair", "description": "", "position": "", "app_name": "openssl", "app_path": "", "version": "1.0", "solution": "", "url": ""}))
                .collect();
            json_response(
                200,
                &request_id,
                json!({"total_num": total, "data_list": list}),
            )
        }
    }
}

fn iam_tokens(state: &HssState, body: &[u8]) -> Response {
    *state
        .calls
        .lock()
        .unwrap()
        .entry("IAM".to_string())
        .or_default() += 1;
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let user = &v["auth"]["identity"]["password"]["user"];
    let ok = v["auth"]["identity"]["methods"] == json!(["password"])
        && user["domain"]["name"] == IAM_DOMAIN
        && user["name"] == IAM_USER
        && user["password"] == IAM_PASSWORD
        && v["auth"]["scope"]["project"]["id"] == PROJECT;
    if !ok {
        return json_response(
            401,
            "iam-req-1",
            json!({"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}}),
        );
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("MIItoken-{n}-secretish");
    state.tokens.lock().unwrap().insert(token.clone());
    let lifetime = *state.token_lifetime.lock().unwrap();
    let expires = time::OffsetDateTime::now_utc() + lifetime;
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    (
        StatusCode::CREATED,
        [
            ("X-Subject-Token", token),
            ("Content-Type", "application/json".to_string()),
        ],
        json!({"token": {"expires_at": expires, "methods": ["password"]}}).to_string(),
    )
        .into_response()
}

// ---- independent verification of SDK-HMAC-SHA256 ----

fn check_auth(
    state: &HssState,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    if let Some(token) = headers.get("x-auth-token") {
        let token = token.to_str().map_err(|e| e.to_string())?;
        return if state.tokens.lock().unwrap().contains(token) {
            Ok(())
        } else {
            Err("unknown token".into())
        };
    }
    let auth = headers
        .get("authorization")
        .ok_or("no Authorization")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let rest = auth
        .strip_prefix("SDK-HMAC-SHA256 ")
        .ok_or("wrong algorithm")?;
    let mut access = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').ok_or("bad Authorization part")?;
        match k {
            "Access" => access = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(format!("unexpected {k}")),
        }
    }
    if access != Some(AK) {
        return Err("unknown access key".into());
    }
    let signed: Vec<&str> = signed.ok_or("no SignedHeaders")?.split(';').collect();
    for needed in ["host", "x-sdk-date", "x-project-id"] {
        if !signed.contains(&needed) {
            return Err(format!("{needed} not signed"));
        }
    }
    if let Some(t) = headers.get("x-security-token") {
        if t.to_str().ok() != Some(SECURITY_TOKEN) || !signed.contains(&"x-security-token") {
            return Err("X-Security-Token wrong or not signed".into());
        }
    }
    if headers.get("x-project-id").and_then(|v| v.to_str().ok()) != Some(PROJECT) {
        return Err("X-Project-Id missing or wrong".into());
    }
    let date = headers
        .get("x-sdk-date")
        .ok_or("no X-Sdk-Date")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(date, &fmt)
        .map_err(|e| format!("X-Sdk-Date: {e}"))?
        .assume_utc();
    if (time::OffsetDateTime::now_utc() - at).abs() > time::Duration::minutes(15) {
        return Err("X-Sdk-Date too far from now".into());
    }
    let mut signed_values = Vec::new();
    for name in &signed {
        let value = headers
            .get(*name)
            .ok_or(format!("signed header {name} not sent"))?
            .to_str()
            .map_err(|e| e.to_string())?;
        signed_values.push((*name, value));
    }
    let expected = sdk_signature(
        SK,
        method,
        &percent_decode_path(uri.path()),
        uri.query().unwrap_or(""),
        &signed_values,
        body,
    );
    if Some(expected.as_str()) != signature {
        return Err("signature mismatch".to_string());
    }
    Ok(())
}

/// The `SDK-HMAC-SHA256` signature of a request, computed the way the vendor's SDKs
/// do (../shared/apis/scan-apis.md, D.3): `path` decoded, `query` as sent, `signed`
/// the signed headers (lower-case names) in order with their values.
pub fn sdk_signature(
    sk: &str,
    method: &str,
    path: &str,
    query: &str,
    signed: &[(&str, &str)],
    body: &[u8],
) -> String {
    // Canonical URI: every segment escaped, with a trailing slash.
    let mut canonical_uri = path
        .split('/')
        .map(huawei_escape)
        .collect::<Vec<_>>()
        .join("/");
    if !canonical_uri.ends_with('/') {
        canonical_uri.push('/');
    }
    let mut canonical_headers = String::new();
    for (name, value) in signed {
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let names: Vec<&str> = signed.iter().map(|(n, _)| *n).collect();
    let date = signed
        .iter()
        .find(|(n, _)| *n == "x-sdk-date")
        .map(|(_, v)| *v)
        .unwrap_or_default();
    let canonical = format!(
        "{method}\n{canonical_uri}\n{}\n{canonical_headers}\n{}\n{}",
        canonical_query(query),
        names.join(";"),
        hex::encode(Sha256::digest(body))
    );
    let to_sign = format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The canonical form of a query as sent: decoded, escaped again, sorted by key then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = parse_query(query)
        .into_iter()
        .map(|(k, v)| (huawei_escape(&k), huawei_escape(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode_path(path: &str) -> String {
    path.split('/')
        .map(percent_decode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Huawei's escape: A-Z a-z 0-9 `_ - ~ .` kept, other bytes `%XX` upper case.
fn huawei_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_-~.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}
