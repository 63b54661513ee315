//! How requests to Huawei Cloud are authenticated: AK/SK signing (default) or
//! an IAM user token. Config holds only where the credentials are read from.

use std::sync::Arc;

use time::OffsetDateTime;

use super::iam::IamTokens;
use super::signer::{self, SignRequest};
use crate::config::huawei::{AkSkConfig, HuaweiAuthConfig, default_endpoint};

/// Why a request could not be authenticated. The scanner maps it to its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// A credential is missing or unreadable, or IAM refused it: an operator must act.
    #[error("{0}")]
    Config(String),
    /// IAM did not answer, or answered with something unusable: may pass.
    #[error("{0}")]
    Unavailable(String),
}

/// The runtime side of [`HuaweiAuthConfig`].
pub(crate) enum Authenticator {
    AkSk(AkSkConfig),
    Token(Arc<IamTokens>),
}

/// A request about to be sent, with every header but the auth ones.
pub(crate) struct Outgoing<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Authenticator {
    pub fn new(
        config: &HuaweiAuthConfig,
        http: reqwest::Client,
        timeout: std::time::Duration,
        region: &str,
        project_id: &str,
    ) -> Authenticator {
        match config {
            HuaweiAuthConfig::AkSk(c) => Authenticator::AkSk(c.clone()),
            HuaweiAuthConfig::Password(c) => {
                let endpoint = c
                    .iam_endpoint
                    .clone()
                    .unwrap_or_else(|| default_endpoint("iam", region));
                Authenticator::Token(Arc::new(IamTokens::new(
                    http,
                    timeout,
                    &endpoint,
                    &c.domain,
                    &c.user,
                    c.password.clone(),
                    project_id,
                )))
            }
        }
    }

    /// The headers to send: the request's own plus the authentication ones.
    pub async fn headers(&self, req: Outgoing<'_>) -> Result<Vec<(String, String)>, AuthError> {
        let config = AuthError::Config;
        let mut headers = req.headers;
        match self {
            Authenticator::AkSk(c) => {
                let ak = c
                    .access_key
                    .load()
                    .map_err(|e| config(format!("access key: {e}")))?;
                let sk = c
                    .secret_key
                    .load()
                    .map_err(|e| config(format!("secret key: {e}")))?;
                if let Some(t) = &c.security_token {
                    let t = t
                        .load()
                        .map_err(|e| config(format!("security token: {e}")))?;
                    headers.push(("X-Security-Token".into(), t.expose().to_string()));
                }
                headers.push((
                    signer::DATE_HEADER.into(),
                    signer::sdk_date(OffsetDateTime::now_utc()),
                ));
                let authorization = signer::authorization(
                    ak.expose(),
                    &sk,
                    &SignRequest {
                        method: req.method,
                        path: req.path,
                        query: req.query,
                        headers: &headers,
                        body: req.body,
                    },
                )
                .map_err(config)?;
                headers.push(("Authorization".into(), authorization));
            }
            Authenticator::Token(tokens) => {
                let token = tokens.token().await?;
                headers.push(("X-Auth-Token".into(), token.expose().to_string()));
            }
        }
        Ok(headers)
    }

    /// After a 401: a token may have been revoked early; fetch a new one next time.
    /// Returns whether another try can help.
    pub(crate) async fn on_unauthorized(&self) -> bool {
        match self {
            Authenticator::AkSk(_) => false,
            Authenticator::Token(tokens) => {
                tokens.invalidate().await;
                true
            }
        }
    }

    pub(crate) fn is_token(&self) -> bool {
        matches!(self, Authenticator::Token(_))
    }
}
