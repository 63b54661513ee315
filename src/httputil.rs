//! Small helpers shared by the HTTP clients of the cloud and registry scanners.

/// The vendor's request id, for error messages.
pub fn request_id(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("X-Request-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What went wrong on the way: `timed out after 5s`, `connection failed: ...`,
/// with the causes that say what happened. `timeout` is the client's own.
pub(crate) fn transport_error(e: &reqwest::Error, timeout: std::time::Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    let mut out = if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out = format!("{out}: {s}");
        source = s.source();
    }
    out
}

/// Removes known secret values from text that came from outside (a vendor's
/// error message could echo what it was sent).
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_string(), |t, s| t.replace(s, "***"))
}
