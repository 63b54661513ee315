//! Credentials for signing: an access key from files or the environment (with an
//! optional STS security token), or RRSA (the pod's OIDC token exchanged with STS
//! `AssumeRoleWithOIDC`, cached and refreshed before it expires).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use crate::cloud::query::percent_encode;
use crate::config::alibaba::{CredentialsConfig, normalize_endpoint};
use crate::secret::Secret;

use super::setup_error::ClientSetupError;

pub(crate) const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub(crate) const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub(crate) const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub(crate) const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub(crate) const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub(crate) const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub(crate) const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
pub(crate) const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";

/// STS credentials are renewed when fewer than this many seconds remain (as the
/// vendor's credentials-go does).
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(180);

#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
}

/// Credentials could not be had. `config` tells an operator problem (missing file,
/// role refused) from a passing one (STS unreachable).
#[derive(Debug, Clone)]
pub struct CredentialError {
    pub config: bool,
    pub message: String,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn config_error(message: String) -> CredentialError {
    CredentialError {
        config: true,
        message,
    }
}

#[async_trait]
pub(crate) trait CredentialProvider: Send + Sync + fmt::Debug {
    /// `files`, `env` or `rrsa`, for logs.
    fn source(&self) -> &'static str;
    async fn credentials(&self) -> Result<Credentials, CredentialError>;
}

/// Picks the credential source: key files, then access key variables, then RRSA.
/// Default variable names are only looked at when the config does not ask for
/// RRSA explicitly, so an explicit choice beats whatever the pod happens to inherit.
pub fn from_config(
    config: &CredentialsConfig,
    env: &dyn Fn(&str) -> Option<String>,
    http: reqwest::Client,
) -> Result<Arc<dyn CredentialProvider>, ClientSetupError> {
    if let (Some(id), Some(secret)) = (&config.access_key_id_file, &config.access_key_secret_file) {
        return Ok(Arc::new(FileCredentials {
            access_key_id_file: id.clone(),
            access_key_secret_file: secret.clone(),
            security_token_file: config.security_token_file.clone(),
        }));
    }
    let explicit_env = config.access_key_id_env.is_some();
    if explicit_env || config.rrsa.is_none() {
        let id_var = config
            .access_key_id_env
            .as_deref()
            .unwrap_or(ENV_ACCESS_KEY_ID);
        let secret_var = config
            .access_key_secret_env
            .as_deref()
            .unwrap_or(ENV_ACCESS_KEY_SECRET);
        let token_var = config
            .security_token_env
            .as_deref()
            .unwrap_or(ENV_SECURITY_TOKEN);
        let non_empty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        match (non_empty(id_var), non_empty(secret_var)) {
            (Some(id), Some(secret)) => {
                return Ok(Arc::new(StaticCredentials(Credentials {
                    access_key_id: id.trim().to_string(),
                    access_key_secret: Secret::new(secret.trim()),
                    security_token: non_empty(token_var).map(|t| Secret::new(t.trim())),
                })));
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(ClientSetupError::HalfKeyPair {
                    id_var: id_var.to_string(),
                    secret_var: secret_var.to_string(),
                });
            }
            (None, None) if explicit_env => {
                return Err(ClientSetupError::KeyPairUnset {
                    id_var: id_var.to_string(),
                    secret_var: secret_var.to_string(),
                });
            }
            (None, None) => {}
        }
    }
    let rrsa_config = config.rrsa.clone().unwrap_or_default();
    let role_arn = rrsa_config.role_arn.clone().or_else(|| env(ENV_ROLE_ARN));
    let provider_arn = rrsa_config
        .oidc_provider_arn
        .clone()
        .or_else(|| env(ENV_OIDC_PROVIDER_ARN));
    let token_file = rrsa_config
        .token_file
        .clone()
        .or_else(|| env(ENV_OIDC_TOKEN_FILE).map(PathBuf::from));
    match (role_arn, provider_arn, token_file) {
        (Some(role_arn), Some(oidc_provider_arn), Some(token_file)) => {
            let endpoint = rrsa_config
                .sts_endpoint
                .clone()
                .or_else(|| env(ENV_STS_ENDPOINT))
                .or_else(|| env(ENV_STS_REGION).map(|r| format!("sts.{r}.aliyuncs.com")))
                .unwrap_or_else(|| "sts.aliyuncs.com".to_string());
            let sts_endpoint =
                normalize_endpoint(&endpoint).map_err(ClientSetupError::StsEndpoint)?;
            Ok(Arc::new(RrsaCredentials {
                role_arn,
                oidc_provider_arn,
                token_file,
                sts_endpoint,
                role_session_name: rrsa_config
                    .role_session_name
                    .unwrap_or_else(|| "vulngate".to_string()),
                duration_seconds: rrsa_config.duration_seconds.unwrap_or(3600),
                http,
                cached: tokio::sync::Mutex::new(None),
            }))
        }
        (None, None, None) if config.rrsa.is_none() => Err(ClientSetupError::NoCredentials),
        (role, provider, file) => {
            let mut missing = Vec::new();
            if role.is_none() {
                missing.push(format!("roleArn ({ENV_ROLE_ARN})"));
            }
            if provider.is_none() {
                missing.push(format!("oidcProviderArn ({ENV_OIDC_PROVIDER_ARN})"));
            }
            if file.is_none() {
                missing.push(format!("tokenFile ({ENV_OIDC_TOKEN_FILE})"));
            }
            Err(ClientSetupError::RrsaIncomplete { missing })
        }
    }
}

/// Keys set once (environment variables).
#[derive(Debug)]
pub(crate) struct StaticCredentials(pub Credentials);

#[async_trait]
impl CredentialProvider for StaticCredentials {
    fn source(&self) -> &'static str {
        "env"
    }
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        Ok(self.0.clone())
    }
}

/// Keys in files (a mounted Secret), re-read at every call so a rotated Secret is
/// picked up without a restart.
#[derive(Debug)]
pub(crate) struct FileCredentials {
    access_key_id_file: PathBuf,
    access_key_secret_file: PathBuf,
    security_token_file: Option<PathBuf>,
}

async fn read_trimmed(path: &Path, what: &str) -> Result<String, CredentialError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| config_error(format!("cannot read {what} file {}: {e}", path.display())))?;
    let value = text.trim().to_string();
    if value.is_empty() {
        return Err(config_error(format!(
            "{what} file {} is empty",
            path.display()
        )));
    }
    Ok(value)
}

#[async_trait]
impl CredentialProvider for FileCredentials {
    fn source(&self) -> &'static str {
        "files"
    }
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        let access_key_id = read_trimmed(&self.access_key_id_file, "accessKeyId").await?;
        let secret = read_trimmed(&self.access_key_secret_file, "accessKeySecret").await?;
        let security_token = match &self.security_token_file {
            Some(p) => Some(Secret::new(read_trimmed(p, "securityToken").await?)),
            None => None,
        };
        Ok(Credentials {
            access_key_id,
            access_key_secret: Secret::new(secret),
            security_token,
        })
    }
}

/// RRSA: `AssumeRoleWithOIDC` (anonymous call) with the token file's content.
pub(crate) struct RrsaCredentials {
    role_arn: String,
    oidc_provider_arn: String,
    token_file: PathBuf,
    sts_endpoint: url::Url,
    role_session_name: String,
    duration_seconds: u32,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Credentials, OffsetDateTime)>>,
}

impl fmt::Debug for RrsaCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RrsaCredentials")
            .field("role_arn", &self.role_arn)
            .field("oidc_provider_arn", &self.oidc_provider_arn)
            .field("token_file", &self.token_file)
            .field("sts_endpoint", &self.sts_endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl RrsaCredentials {
    async fn assume_role(&self) -> Result<(Credentials, OffsetDateTime), CredentialError> {
        // Re-read every time: the kubelet rotates the projected token.
        let token = read_trimmed(&self.token_file, "RRSA OIDC token").await?;
        let url = format!(
            "{}?Action=AssumeRoleWithOIDC&Format=JSON&Timestamp={}&Version=2015-04-01",
            self.sts_endpoint,
            percent_encode(&super::timestamp(OffsetDateTime::now_utc()))
        );
        let duration = self.duration_seconds.to_string();
        let form = [
            ("RoleArn", self.role_arn.as_str()),
            ("OIDCProviderArn", self.oidc_provider_arn.as_str()),
            ("OIDCToken", token.as_str()),
            ("RoleSessionName", self.role_session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        let unavailable = |message: String| CredentialError {
            config: false,
            message,
        };
        let response = self
            .http
            .post(&url)
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(format!("STS AssumeRoleWithOIDC: {}", transport_text(&e))))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("STS AssumeRoleWithOIDC: {}", transport_text(&e))))?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let field = |k: &str| {
                json.as_ref()
                    .and_then(|j| j.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let message = format!(
                "STS AssumeRoleWithOIDC for {} failed: HTTP {status} {}: {} (RequestId {})",
                self.role_arn,
                field("Code"),
                field("Message"),
                field("RequestId")
            );
            return Err(CredentialError {
                config: (400..500).contains(&status) && status != 429,
                message,
            });
        }
        let creds = json.as_ref().and_then(|j| j.get("Credentials"));
        let text = |k: &str| {
            creds
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(id), Some(secret), Some(token), Some(expiration)) = (
            text("AccessKeyId"),
            text("AccessKeySecret"),
            text("SecurityToken"),
            text("Expiration"),
        ) else {
            return Err(unavailable(
                "STS AssumeRoleWithOIDC: answer without Credentials.{AccessKeyId,AccessKeySecret,SecurityToken,Expiration}"
                    .to_string(),
            ));
        };
        let expires =
            OffsetDateTime::parse(&expiration, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    unavailable(format!(
                        "STS AssumeRoleWithOIDC: bad Expiration {expiration:?}: {e}"
                    ))
                })?;
        Ok((
            Credentials {
                access_key_id: id,
                access_key_secret: Secret::new(secret),
                security_token: Some(Secret::new(token)),
            },
            expires,
        ))
    }
}

#[async_trait]
impl CredentialProvider for RrsaCredentials {
    fn source(&self) -> &'static str {
        "rrsa"
    }

    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        // One refresh at a time; concurrent callers wait for it.
        let mut cached = self.cached.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some((creds, expires)) = cached.as_ref() {
            if *expires - now > REFRESH_MARGIN {
                return Ok(creds.clone());
            }
        }
        match self.assume_role().await {
            Ok((creds, expires)) => {
                tracing::debug!(role = %self.role_arn, expires = %expires, "RRSA credentials refreshed");
                *cached = Some((creds.clone(), expires));
                Ok(creds)
            }
            // A failed early refresh keeps using credentials that still work.
            Err(e) => match cached.as_ref() {
                Some((creds, expires)) if *expires > now + Duration::from_secs(10) => {
                    tracing::warn!(error = %e, "RRSA refresh failed; using the current credentials until they expire");
                    Ok(creds.clone())
                }
                _ => Err(e),
            },
        }
    }
}

/// A reqwest error as text without the URL (which could carry query secrets).
pub(crate) fn transport_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alibaba::RrsaConfig;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn http() -> reqwest::Client {
        crate::crypto::http_client().build().unwrap()
    }

    #[tokio::test]
    async fn files_come_first_and_are_re_read() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, "AKID1\n").unwrap();
        std::fs::write(&secret, "s3cret\n").unwrap();
        let config = CredentialsConfig {
            access_key_id_file: Some(id.clone()),
            access_key_secret_file: Some(secret),
            ..Default::default()
        };
        let env = env_of(&[(ENV_ACCESS_KEY_ID, "ENVID"), (ENV_ACCESS_KEY_SECRET, "x")]);
        let p = from_config(&config, &env, http()).unwrap();
        assert_eq!(p.source(), "files");
        let c = p.credentials().await.unwrap();
        assert_eq!(c.access_key_id, "AKID1");
        assert_eq!(c.access_key_secret.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::write(&id, "AKID2").unwrap();
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AKID2");
    }

    #[tokio::test]
    async fn env_with_sts_token_then_rrsa() {
        let env = env_of(&[
            (ENV_ACCESS_KEY_ID, "STS.ID"),
            (ENV_ACCESS_KEY_SECRET, "sec"),
            (ENV_SECURITY_TOKEN, "tok"),
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
            (ENV_OIDC_TOKEN_FILE, "/var/run/token"),
        ]);
        let p = from_config(&CredentialsConfig::default(), &env, http()).unwrap();
        assert_eq!(p.source(), "env");
        let c = p.credentials().await.unwrap();
        assert_eq!(c.security_token.unwrap().expose(), "tok");
        // Asking for RRSA explicitly skips the inherited key variables.
        let config = CredentialsConfig {
            rrsa: Some(RrsaConfig::default()),
            ..Default::default()
        };
        let p = from_config(&config, &env, http()).unwrap();
        assert_eq!(p.source(), "rrsa");
        assert!(format!("{p:?}").contains("sts.aliyuncs.com"));
    }

    #[test]
    fn nothing_configured_is_a_clear_error() {
        let err = from_config(&CredentialsConfig::default(), &env_of(&[]), http())
            .unwrap_err()
            .to_string();
        assert!(err.contains("accessKeyIdFile"), "{err}");
        let half = env_of(&[(ENV_ACCESS_KEY_ID, "x")]);
        let err = from_config(&CredentialsConfig::default(), &half, http())
            .unwrap_err()
            .to_string();
        assert!(err.contains("must both be set"), "{err}");
        let config = CredentialsConfig {
            rrsa: Some(RrsaConfig {
                role_arn: Some("r".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = from_config(&config, &env_of(&[]), http())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("oidcProviderArn") && err.contains("tokenFile"),
            "{err}"
        );
    }
}
