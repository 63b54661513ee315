//! How requests to Huawei Cloud are authenticated: AK/SK signing (default) or
//! an IAM user token. Config holds only where the credentials are read from.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::iam::IamTokens;
use super::signer::{self, SignRequest};
use crate::scan::ScanError;
use crate::secret::SecretSource;

/// `auth:` of a Huawei scanner. Absent: AK/SK from the SDK's environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    try_from = "HuaweiAuthMap"
)]
pub enum HuaweiAuthConfig {
    /// Access key / secret key, requests signed with SDK-HMAC-SHA256.
    AkSk(AkSkConfig),
    /// An IAM user's password, exchanged for a token at IAM.
    Password(PasswordConfig),
}

/// The one-key map form (`{akSk: {...}}` or `{password: {...}}`), read as a struct.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HuaweiAuthMap {
    ak_sk: Option<AkSkConfig>,
    password: Option<PasswordConfig>,
}

impl TryFrom<HuaweiAuthMap> for HuaweiAuthConfig {
    type Error = String;

    fn try_from(m: HuaweiAuthMap) -> Result<Self, String> {
        match (m.ak_sk, m.password) {
            (Some(c), None) => Ok(HuaweiAuthConfig::AkSk(c)),
            (None, Some(c)) => Ok(HuaweiAuthConfig::Password(c)),
            _ => Err("auth: name one method, akSk or password".into()),
        }
    }
}

impl Default for HuaweiAuthConfig {
    fn default() -> Self {
        HuaweiAuthConfig::AkSk(AkSkConfig::default())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AkSkConfig {
    #[serde(default = "default_ak")]
    pub access_key: SecretSource,
    #[serde(default = "default_sk")]
    pub secret_key: SecretSource,
    /// For temporary AK/SK (sent as `X-Security-Token`).
    #[serde(default)]
    pub security_token: Option<SecretSource>,
}

impl Default for AkSkConfig {
    fn default() -> Self {
        AkSkConfig {
            access_key: default_ak(),
            secret_key: default_sk(),
            security_token: None,
        }
    }
}

fn default_ak() -> SecretSource {
    SecretSource::Env("HUAWEICLOUD_SDK_AK".into())
}
fn default_sk() -> SecretSource {
    SecretSource::Env("HUAWEICLOUD_SDK_SK".into())
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordConfig {
    /// Default `https://iam.<region>.myhuaweicloud.com` (`.eu` for eu-west-101).
    #[serde(default)]
    pub iam_endpoint: Option<String>,
    /// The account (domain) name the IAM user belongs to.
    pub domain: String,
    pub user: String,
    pub password: SecretSource,
}

impl HuaweiAuthConfig {
    pub fn rebase(&mut self, base: &std::path::Path) {
        match self {
            HuaweiAuthConfig::AkSk(c) => {
                c.access_key.rebase(base);
                c.secret_key.rebase(base);
                if let Some(t) = c.security_token.as_mut() {
                    t.rebase(base);
                }
            }
            HuaweiAuthConfig::Password(c) => c.password.rebase(base),
        }
    }

    /// Reads every credential once, so that a missing file stops start-up
    /// with a message instead of failing every review.
    pub fn check(&self) -> Result<(), String> {
        match self {
            HuaweiAuthConfig::AkSk(c) => {
                c.access_key.load().map_err(|e| format!("accessKey: {e}"))?;
                c.secret_key.load().map_err(|e| format!("secretKey: {e}"))?;
                if let Some(t) = &c.security_token {
                    t.load().map_err(|e| format!("securityToken: {e}"))?;
                }
            }
            HuaweiAuthConfig::Password(c) => {
                c.password.load().map_err(|e| format!("password: {e}"))?;
            }
        }
        Ok(())
    }
}

/// The runtime side of [`HuaweiAuthConfig`].
pub enum Authenticator {
    AkSk(AkSkConfig),
    Token(Arc<IamTokens>),
}

/// A request about to be sent, with every header but the auth ones.
pub struct Outgoing<'a> {
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
                    .unwrap_or_else(|| super::default_endpoint("iam", region));
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
    pub async fn headers(
        &self,
        scanner: &'static str,
        req: Outgoing<'_>,
    ) -> Result<Vec<(String, String)>, ScanError> {
        let config = |message: String| ScanError::Config { scanner, message };
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
                let token = tokens.token(scanner).await?;
                headers.push(("X-Auth-Token".into(), token.expose().to_string()));
            }
        }
        Ok(headers)
    }

    /// After a 401: a token may have been revoked early; fetch a new one next time.
    /// Returns whether another try can help.
    pub async fn on_unauthorized(&self) -> bool {
        match self {
            Authenticator::AkSk(_) => false,
            Authenticator::Token(tokens) => {
                tokens.invalidate().await;
                true
            }
        }
    }

    pub fn is_token(&self) -> bool {
        matches!(self, Authenticator::Token(_))
    }
}
