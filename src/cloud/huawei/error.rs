//! Huawei Cloud error responses: `{"error_code","error_msg"}` and the variants
//! the SDK also accepts (`{"code","message"}`, one level of nesting).

use serde_json::Value;

/// Throttling codes of API Gateway, answered with or without HTTP 429.
/// HSS's own throttling code is unconfirmed; 429 is recognized whatever the code.
pub const THROTTLING_CODES: &[&str] = &["APIG.0308"];

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
    pub fn from_response(status: u16, request_id: Option<String>, body: &[u8]) -> ApiError {
        let (code, message) = parse_body(body);
        ApiError {
            status,
            code,
            message,
            request_id,
        }
    }

    pub fn is_throttling(&self) -> bool {
        self.status == 429
            || self
                .code
                .as_deref()
                .is_some_and(|c| THROTTLING_CODES.contains(&c))
    }

    /// `HTTP 403 (HSS.0004: no permission), request id abc`
    pub fn describe(&self) -> String {
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
            403,
            Some("req-1".into()),
            br#"{"error_code":"HSS.0004","error_msg":"no permission"}"#,
        );
        assert_eq!(
            e.describe(),
            "HTTP 403 (HSS.0004: no permission), request id req-1"
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
        assert!(ApiError::from_response(
            400,
            None,
            br#"{"error_code":"APIG.0308","error_msg":"throttled"}"#
        )
        .is_throttling());
        assert!(!ApiError::from_response(503, None, b"").is_throttling());
    }
}
