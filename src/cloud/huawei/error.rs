//! Huawei Cloud error responses: `{"error_code","error_msg"}` and the variants
//! the SDK also accepts (`{"code","message"}`, one level of nesting).

use serde_json::Value;

/// Throttling codes of API Gateway (`APIGW.*` today, `APIG.*` on older gateways),
/// recognized whatever the HTTP status; 429 is recognized whatever the code.
pub(crate) const THROTTLING_CODES: &[&str] = &["APIGW.0308", "APIG.0308"];

/// HSS's documented codes for a caller without the right (HTTP 400, not 403):
/// `HSS.0010` "Access denied", `HSS.0013` "Insufficient permissions".
pub(crate) const PERMISSION_CODES: &[&str] = &["HSS.0010", "HSS.0013"];

/// What an error response said, reduced to what a message needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
    /// `X-Request-Id` of the response, for the vendor's support.
    pub request_id: Option<String>,
}

impl ApiError {
    pub(crate) fn from_response(status: u16, request_id: Option<String>, body: &[u8]) -> ApiError {
        let (code, message) = parse_body(body);
        ApiError {
            status,
            code,
            message,
            request_id,
        }
    }

    pub(crate) fn is_throttling(&self) -> bool {
        self.status == 429
            || self
                .code
                .as_deref()
                .is_some_and(|c| THROTTLING_CODES.contains(&c))
    }

    /// A missing permission: HTTP 403, or a documented HSS permission code.
    pub(crate) fn is_permission_denied(&self) -> bool {
        self.status == 403
            || self
                .code
                .as_deref()
                .is_some_and(|c| PERMISSION_CODES.contains(&c))
    }

    /// `HTTP 400 (HSS.0013: Insufficient permissions.), request id abc`
    pub(crate) fn describe(&self) -> String {
        let mut out = format!("HTTP {}", self.status);
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => out.push_str(&format!(" ({c}: {})", clip(m))),
            (Some(c), None) => out.push_str(&format!(" ({c})")),
            (None, Some(m)) => out.push_str(&format!(" ({})", clip(m))),
            (None, None) => {}
        }
        if let Some(id) = &self.request_id {
            out.push_str(&format!(", request id {id}"));
        }
        out
    }
}

/// Vendor text is kept short: it goes into admission messages.
fn clip(s: &str) -> String {
    const MAX: usize = 200;
    let s = s.trim();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn parse_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let pick = |o: &Value| -> (Option<String>, Option<String>) {
        let s = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_string))
        };
        (
            s(&["error_code", "code"]),
            s(&["error_msg", "message", "error_description"]),
        )
    };
    let top = pick(&v);
    if top.0.is_some() || top.1.is_some() {
        return top;
    }
    // `{"error": {"code": .., "message": ..}}` (IAM and some gateways).
    v.as_object()
        .and_then(|o| o.values().find(|x| x.is_object()))
        .map(pick)
        .unwrap_or((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_huawei_answers() {
        let e = ApiError::from_response(
            400,
            Some("req-1".into()),
            br#"{"error_code":"HSS.0013","error_msg":"Insufficient permissions."}"#,
        );
        assert_eq!(
            e.describe(),
            "HTTP 400 (HSS.0013: Insufficient permissions.), request id req-1"
        );
        assert!(e.is_permission_denied());
        assert!(
            !ApiError::from_response(400, None, br#"{"error_code":"HSS.0001"}"#)
                .is_permission_denied()
        );
        let e = ApiError::from_response(401, None, br#"{"error":{"code":"401","message":"bad"}}"#);
        assert_eq!(e.code.as_deref(), Some("401"));
        assert_eq!(e.message.as_deref(), Some("bad"));
        let e = ApiError::from_response(502, None, b"<html>bad gateway</html>");
        assert_eq!(e.describe(), "HTTP 502");
    }

    #[test]
    fn throttling_by_status_or_code() {
        assert!(ApiError::from_response(429, None, b"").is_throttling());
        // API Gateway's code, answered with a status other than 429 too.
        for code in ["APIGW.0308", "APIG.0308"] {
            let body = format!(
                r#"{{"error_code":"{code}","error_msg":"The throttling threshold has been reached"}}"#
            );
            assert!(
                ApiError::from_response(400, None, body.as_bytes()).is_throttling(),
                "{code}"
            );
        }
        assert!(!ApiError::from_response(503, None, b"").is_throttling());
    }
}
