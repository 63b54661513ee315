//! An in-test Harbor v2.0 API on 127.0.0.1:0: `GET .../artifacts/{reference}` and
//! `GET .../artifacts/{reference}/additions/vulnerabilities`, with basic auth of one
//! robot account, double-encoded repository names, `X-Accept-Vulnerabilities`, and
//! faults on demand.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

pub const ROBOT: &str = "robot$vulngate";
pub const ROBOT_SECRET: &str = "harbor-robot-secret-XyZ-0987";

pub const MIME_1_1: &str = "application/vnd.security.vulnerability.report; version=1.1";

#[derive(Debug, Clone)]
pub enum Fault {
    /// The next `times` requests get 429 with `Retry-After: 0`.
    Throttle {
        times: u32,
    },
    Status {
        status: u16,
        body: Value,
    },
    Slow(Duration),
}

#[derive(Default)]
pub struct HarborState {
    /// (project, repository as Harbor names it, digest) -> artifact JSON.
    pub artifacts: Mutex<BTreeMap<(String, String, String), Value>>,
    /// (project, repository, digest) -> the `additions/vulnerabilities` answer.
    pub reports: Mutex<BTreeMap<(String, String, String), Value>>,
    pub fault: Mutex<Option<Fault>>,
    /// A status every `additions/vulnerabilities` request gets (artifacts unaffected).
    pub report_fault: Mutex<Option<u16>>,
    pub requests: AtomicU32,
    pub raw_paths: Mutex<Vec<String>>,
    pub bad_requests: Mutex<Vec<String>>,
    seq: AtomicU32,
}

pub struct HarborServer {
    pub addr: SocketAddr,
    pub state: Arc<HarborState>,
}

impl HarborServer {
    pub async fn start() -> HarborServer {
        let state = Arc::new(HarborState::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HarborServer { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add(&self, project: &str, repository: &str, digest: &str, artifact: Value) {
        self.state
            .artifacts
            .lock()
            .unwrap()
            .insert((project.into(), repository.into(), digest.into()), artifact);
    }

    /// The vulnerability report of an artifact: `vulnerabilities` under the 1.1 type.
    pub fn add_report(
        &self,
        project: &str,
        repository: &str,
        digest: &str,
        vulnerabilities: Value,
    ) {
        self.state.reports.lock().unwrap().insert(
            (project.into(), repository.into(), digest.into()),
            report(vulnerabilities),
        );
    }

    pub fn set_report_fault(&self, status: Option<u16>) {
        *self.state.report_fault.lock().unwrap() = status;
    }

    /// How many `additions/vulnerabilities` requests were made.
    pub fn report_requests(&self) -> usize {
        self.state
            .raw_paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.ends_with("/additions/vulnerabilities"))
            .count()
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.state.fault.lock().unwrap() = fault;
    }

    pub fn requests(&self) -> u32 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// An artifact with one finished report of the 1.1 type (documented shape).
pub fn scanned(digest: &str, status: &str, summary: Option<Value>) -> Value {
    let mut report = json!({
        "report_id": "0f6a9a44-1c6e-4d1b-9c1e-6f1d2c3b4a59",
        "scan_status": status,
        "severity": "High",
        "duration": 42,
        "start_time": "2026-11-20T10:00:00Z",
        "end_time": "2026-11-20T10:00:42Z",
        "complete_percent": 100,
        "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.0"}
    });
    if let Some(s) = summary {
        report["summary"] = s;
    }
    json!({
        "id": 7,
        "type": "IMAGE",
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest,
        "tags": [{"name": "1.0"}],
        "scan_overview": {MIME_1_1: report}
    })
}

/// One finding as Harbor's report writes it (`fix_version` empty when there is no fix).
pub fn finding(id: &str, severity: &str, fix_version: &str) -> Value {
    json!({
        "id": id, "package": format!("pkg-{id}"), "version": "1.0.0", "fix_version": fix_version,
        "severity": severity, "description": "a description vulngate does not keep",
        "links": [format!("https://avd.aquasec.com/nvd/{}", id.to_ascii_lowercase())],
        "preferred_cvss": {"score_v3": 7.5, "vector_v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"},
        "cwe_ids": ["CWE-125"], "vendor_attributes": {}
    })
}

/// The `additions/vulnerabilities` answer: reports keyed by MIME type.
pub fn report(vulnerabilities: Value) -> Value {
    json!({MIME_1_1: {
        "generated_at": "2026-11-20T10:00:42Z",
        "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.0"},
        "severity": "High",
        "vulnerabilities": vulnerabilities
    }})
}

fn error(status: u16, code: &str, message: &str, request_id: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [
            ("X-Request-Id", request_id.to_string()),
            ("Content-Type", "application/json".into()),
        ],
        json!({"errors": [{"code": code, "message": message}]}).to_string(),
    )
        .into_response()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn handle(State(state): State<Arc<HarborState>>, uri: Uri, headers: HeaderMap) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let request_id = format!("harbor-req-{}", state.seq.fetch_add(1, Ordering::SeqCst));
    let raw = uri.path().to_string();
    state.raw_paths.lock().unwrap().push(raw.clone());

    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ROBOT}:{ROBOT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return error(401, "UNAUTHORIZED", "unauthorized", &request_id);
    }

    let fault = state.fault.lock().unwrap().clone();
    match fault {
        Some(Fault::Throttle { times }) if times > 0 => {
            *state.fault.lock().unwrap() = Some(Fault::Throttle { times: times - 1 });
            let mut r = error(429, "TOO_MANY_REQUESTS", "slow down", &request_id);
            r.headers_mut().insert("Retry-After", "0".parse().unwrap());
            return r;
        }
        Some(Fault::Status { status, body }) => {
            return (
                StatusCode::from_u16(status).unwrap(),
                [("X-Request-Id", request_id.clone())],
                body.to_string(),
            )
                .into_response();
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }

    // /api/v2.0/projects/{project}/repositories/{repository}/artifacts/{reference}[/additions/vulnerabilities]
    let parts: Vec<&str> = raw.split('/').collect();
    let (project, repository, reference, is_report) = match parts.as_slice() {
        [
            "",
            "api",
            "v2.0",
            "projects",
            project,
            "repositories",
            repository,
            "artifacts",
            reference,
        ] => (*project, *repository, *reference, false),
        [
            "",
            "api",
            "v2.0",
            "projects",
            project,
            "repositories",
            repository,
            "artifacts",
            reference,
            "additions",
            "vulnerabilities",
        ] => (*project, *repository, *reference, true),
        _ => return error(404, "NOT_FOUND", "no such API", &request_id),
    };
    // The repository segment is decoded twice: once by the router, once by Harbor.
    if repository.contains('/') || (decode(repository).contains('/')) {
        state
            .bad_requests
            .lock()
            .unwrap()
            .push(format!("repository not double-encoded: {repository}"));
        return error(404, "NOT_FOUND", "repository not found", &request_id);
    }
    let repository = decode(&decode(repository));
    let query = uri.query().unwrap_or("");
    if !is_report && !query.split('&').any(|p| p == "with_scan_overview=true") {
        state
            .bad_requests
            .lock()
            .unwrap()
            .push(format!("no with_scan_overview: {query}"));
    }
    let accept = headers
        .get("x-accept-vulnerabilities")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.starts_with(MIME_1_1) {
        state
            .bad_requests
            .lock()
            .unwrap()
            .push(format!("X-Accept-Vulnerabilities: {accept}"));
    }
    if is_report {
        let fault = *state.report_fault.lock().unwrap();
        if let Some(status) = fault {
            return error(status, "UNKNOWN", "report store down", &request_id);
        }
    }
    let key = (decode(project), repository, decode(reference));
    let store = if is_report {
        &state.reports
    } else {
        &state.artifacts
    };
    let found = store.lock().unwrap().get(&key).cloned();
    match found {
        Some(artifact) => (
            StatusCode::OK,
            [
                ("X-Request-Id", request_id),
                ("Content-Type", "application/json".into()),
            ],
            artifact.to_string(),
        )
            .into_response(),
        // Harbor looks up the project, then the repository, then the artifact, and
        // says which one it did not find.
        None => {
            let (project, repository, reference) = &key;
            let artifacts = state.artifacts.lock().unwrap();
            let message = if !artifacts.keys().any(|(p, _, _)| p == project) {
                format!("project {project} not found")
            } else if !artifacts
                .keys()
                .any(|(p, r, _)| p == project && r == repository)
            {
                format!("repository {project}/{repository} not found")
            } else {
                format!("artifact {project}/{repository}@{reference} not found")
            };
            error(404, "NOT_FOUND", &message, &request_id)
        }
    }
}
