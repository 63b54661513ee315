//! IAM token authentication: `POST /v3/auth/tokens` with a password, the token
//! taken from `X-Subject-Token`, cached and fetched again before it expires.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::auth::AuthError;
use super::error::ApiError;
use crate::secret::{Secret, SecretSource};

/// Tokens live 24 h; a new one is fetched this long before expiry.
const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

pub(crate) struct IamTokens {
    http: reqwest::Client,
    /// The client's timeout, for messages.
    timeout: Duration,
    /// `https://iam.<region>.myhuaweicloud.com`, no trailing slash.
    endpoint: String,
    domain: String,
    user: String,
    password: SecretSource,
    project_id: String,
    cached: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    token: Secret,
    /// When to fetch a new one (some time before `expires_at`).
    refresh_at: OffsetDateTime,
}

impl IamTokens {
    pub fn new(
        http: reqwest::Client,
        timeout: Duration,
        endpoint: &str,
        domain: &str,
        user: &str,
        password: SecretSource,
        project_id: &str,
    ) -> IamTokens {
        IamTokens {
            http,
            timeout,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            domain: domain.to_string(),
            user: user.to_string(),
            password,
            project_id: project_id.to_string(),
            cached: Mutex::new(None),
        }
    }

    /// A valid token, fetched when none is cached or the cached one is near expiry.
    /// Concurrent callers wait for one fetch.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if OffsetDateTime::now_utc() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Drops the cached token (the service answered 401: revoked early).
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<CachedToken, AuthError> {
        let config = AuthError::Config;
        let unavailable = AuthError::Unavailable;
        let password = self
            .password
            .load()
            .map_err(|e| config(format!("IAM password: {e}")))?;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "domain": {"name": self.domain},
                "name": self.user,
                "password": password.expose(),
            }}},
            "scope": {"project": {"id": self.project_id}},
        }});
        let url = format!("{}/v3/auth/tokens", self.endpoint);
        let resp = self
            .http
            .post(&url)
            .header("Content-Type", "application/json;charset=utf8")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "IAM token request to {url} failed: {}",
                    crate::httputil::transport_error(&e, self.timeout)
                ))
            })?;
        let status = resp.status().as_u16();
        let request_id = crate::httputil::request_id(resp.headers());
        let subject = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| {
            unavailable(format!(
                "IAM token response: {}",
                crate::httputil::transport_error(&e, self.timeout)
            ))
        })?;
        if !(200..300).contains(&status) {
            let err = ApiError::from_response(status, request_id, &bytes);
            let what = format!(
                "IAM token for user {:?} in domain {:?}: {}",
                self.user,
                self.domain,
                crate::httputil::scrub(&err.describe(), &[password.expose()])
            );
            return Err(match status {
                400 | 401 | 403 | 404 => config(format!(
                    "{what}; check the user, domain, password and project id"
                )),
                _ => unavailable(what),
            });
        }
        let Some(subject) = subject.filter(|s| !s.is_empty()) else {
            return Err(unavailable(format!(
                "IAM answered HTTP {status} without an X-Subject-Token header"
            )));
        };
        let now = OffsetDateTime::now_utc();
        let expires_at = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/token/expires_at")?.as_str().map(str::to_string))
            .and_then(|s| {
                OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).ok()
            })
            // Without a readable expiry, assume a short life rather than 24 h.
            .unwrap_or(now + Duration::from_secs(3600));
        let life = (expires_at - now).max(time::Duration::ZERO);
        let margin = time::Duration::try_from(REFRESH_MARGIN)
            .unwrap_or(time::Duration::ZERO)
            .min(life / 2);
        Ok(CachedToken {
            token: Secret::new(subject),
            refresh_at: expires_at - margin,
        })
    }
}
