//! The vendor's error model: an error code in an answer ([`ApiError`]) and every way
//! a call can fail ([`RpcError`]), each with the label of the per-call metric. The
//! scanners map them to their own errors.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::credentials::CredentialError;

/// The service answered with an error code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub product: &'static str,
    pub action: &'static str,
    pub ram_action: &'static str,
    pub http_status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    /// `AccessDeniedDetail.AuthAction` when the service names the missing action.
    pub auth_action: Option<String>,
    /// From `x-ratelimit-user[-api]: ...,TimeLeft:<ms>,...`.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn is_throttling(&self) -> bool {
        self.http_status == 429
            || self.http_status == 503
            || self.code.starts_with("Throttling")
            || self.code == "ServiceUnavailable"
    }

    /// The access key, secret, token or clock is wrong.
    pub(crate) fn is_credential(&self) -> bool {
        let c = self.code.as_str();
        c == "SignatureDoesNotMatch"
            || c == "IncompleteSignature"
            || c == "IllegalTimestamp"
            || c.starts_with("InvalidAccessKeyId")
            || c.starts_with("InvalidSecurityToken")
            || c.starts_with("InvalidAccessKeySecret")
            || self.http_status == 401
    }

    /// The service failed, whatever the HTTP status: ACR answers `SystemError` (and
    /// other services `ServerError`) in an HTTP 200 body with `IsSuccess=false`.
    pub(crate) fn is_server_fault(&self) -> bool {
        self.http_status >= 500
            || matches!(
                self.code.as_str(),
                "SystemError" | "ServerError" | "InternalError" | "UnknownError"
            )
    }

    /// Alibaba Cloud's risk control refused the call: not a RAM permission.
    pub(crate) fn is_risk_control(&self) -> bool {
        self.code == "Forbidden.RiskControl"
    }

    /// The nonce was seen before: the call may be sent again with a new one.
    pub(crate) fn is_nonce_reused(&self) -> bool {
        self.code == "SignatureNonceUsed"
    }

    /// The caller lacks a RAM permission.
    pub(crate) fn is_permission(&self) -> bool {
        !self.is_credential()
            && !self.is_risk_control()
            && (self.http_status == 403
                || self.code.starts_with("Forbidden")
                || self.code == "NoPrivilege"
                || self.code == "NoPermission")
    }

    /// The named resource (instance, repository, tag) does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        if self.is_credential() {
            return false;
        }
        // Business codes only (`REPO_NOT_EXIST`, `TAG_NOT_EXIST`): a bare 404 or
        // `InvalidAction.NotFound` means a wrong endpoint, not a missing image.
        let c = self.code.to_ascii_lowercase().replace(['_', '.'], "");
        !c.starts_with("invalid") && (c.contains("notexist") || c.contains("notfound"))
    }

    /// Product, action, status, code, message and request id, for error messages.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!(
            "{} {}: HTTP {} {}",
            self.product, self.action, self.http_status, self.code
        );
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        }
        text.push_str(&format!(
            " (RequestId {})",
            self.request_id.as_deref().unwrap_or("none")
        ));
        text
    }
}

#[derive(Debug, Clone)]
pub enum RpcError {
    Api(ApiError),
    /// No answer: connection refused, timeout, broken body.
    Transport {
        product: &'static str,
        action: &'static str,
        message: String,
    },
    Credentials(CredentialError),
    /// An answer that is not the documented JSON.
    BadResponse {
        product: &'static str,
        action: &'static str,
        message: String,
        request_id: Option<String>,
    },
    /// Throttled or unavailable on every attempt until the retry budget ran out.
    Exhausted {
        last: Box<RpcError>,
        attempts: u32,
    },
}

impl RpcError {
    pub(crate) fn is_retryable(&self) -> bool {
        // Every attempt is signed with a fresh nonce, so a reused one is retried too.
        matches!(self, RpcError::Api(e) if e.is_throttling() || e.is_nonce_reused())
    }

    pub fn api(&self) -> Option<&ApiError> {
        match self {
            RpcError::Api(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Api(e) => f.write_str(&e.describe()),
            RpcError::Transport {
                product,
                action,
                message,
            } => write!(f, "{product} {action}: {message}"),
            RpcError::Credentials(e) => write!(f, "credentials: {}", e.message),
            RpcError::BadResponse {
                product,
                action,
                message,
                request_id,
            } => write!(
                f,
                "{product} {action}: unexpected answer: {message} (RequestId {})",
                request_id.as_deref().unwrap_or("none")
            ),
            RpcError::Exhausted { last, attempts } => write!(
                f,
                "{last}; gave up after {attempts} attempts within the retry budget"
            ),
        }
    }
}

/// The label of one RPC outcome, for per-call metrics.
pub(crate) fn rpc_outcome_label(result: &Result<Value, RpcError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(RpcError::Api(e)) if e.is_throttling() => "throttled",
        Err(RpcError::Api(e)) if e.is_credential() || e.is_permission() => "denied",
        Err(RpcError::Api(e)) if e.is_server_fault() => "server_error",
        Err(RpcError::Api(_)) => "client_error",
        Err(RpcError::Exhausted { .. }) => "throttled",
        Err(RpcError::Transport { .. }) => "transport_error",
        Err(RpcError::Credentials(_)) => "credentials_error",
        Err(RpcError::BadResponse { .. }) => "bad_response",
    }
}

impl std::error::Error for RpcError {}

/// A GetRepoTagScanSummary error answer with `status` and `code` (request id
/// `RID-1`), for the tests of the errors and of their mapping by the scanners.
#[cfg(test)]
pub(crate) fn example_api_error(status: u16, code: &str) -> ApiError {
    ApiError {
        product: "cr",
        action: "GetRepoTagScanSummary",
        ram_action: "cr:GetScanCount",
        http_status: status,
        code: code.into(),
        message: "m".into(),
        request_id: Some("RID-1".into()),
        auth_action: None,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds() {
        let e = example_api_error;
        assert!(e(400, "Throttling.User").is_throttling());
        assert!(e(503, "ServiceUnavailable").is_throttling());
        assert!(e(403, "Forbidden.RAM").is_permission());
        assert!(e(403, "SignatureDoesNotMatch").is_credential());
        assert!(!e(404, "InvalidAccessKeyId.NotFound").is_not_found());
        assert!(e(200, "REPO_NOT_EXIST").is_not_found());
        assert!(
            !e(404, "").is_not_found(),
            "a wrong endpoint is not a missing image"
        );
        assert!(!e(404, "InvalidAction.NotFound").is_not_found());
        assert!(e(200, "SystemError").is_server_fault());
        assert!(!e(403, "Forbidden.RiskControl").is_permission());
        assert!(RpcError::Api(e(400, "SignatureNonceUsed")).is_retryable());
    }
}
