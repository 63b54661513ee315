//! `scanner: {hss: ...}`: Huawei Cloud HSS, and how its requests are authenticated
//! (AK/SK signing, the default, or an IAM user token). Config holds only where the
//! credentials are read from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::retry::RetryConfig;
use crate::secret::SecretSource;

/// `imageType` values HSS accepts.
const IMAGE_TYPES: &[&str] = &[
    "private_image",
    "shared_image",
    "instance_image",
    "harbor",
    "jfrog",
];

/// The default endpoint of a Huawei Cloud service in a region, as the SDK's region
/// tables give it: `https://<service>.<region>.myhuaweicloud.com`, except the regions
/// of Huawei Cloud Europe, served under `myhuaweicloud.eu`.
pub(crate) fn default_endpoint(service: &str, region: &str) -> String {
    const EU_REGIONS: &[&str] = &["eu-west-101"];
    let domain = if EU_REGIONS.contains(&region) {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    };
    format!("https://{service}.{region}.{domain}")
}

/// `scanner: {hss: {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HssConfig {
    /// Region id, e.g. `cn-north-4`.
    pub region: String,
    /// The IAM project id of that region.
    pub project_id: String,
    /// Default `https://hss.<region>.myhuaweicloud.com` (`.eu` for eu-west-101).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `all_granted_eps`, `0` (default project) or an id; omitted when absent.
    #[serde(default)]
    pub enterprise_project_id: Option<String>,
    /// `private_image` (SWR organizations of this account, the default),
    /// `shared_image`, or `instance_image` (SWR Enterprise, with `instanceId`).
    #[serde(default = "default_image_type")]
    pub image_type: String,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub auth: HuaweiAuthConfig,
    /// One HTTP request, connection included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Which vulnerabilities count: `any` (HSS's own count, handled and unhandled
    /// alike) or `unhandled` (those an operator has not handled yet, as Alibaba Cloud
    /// Security Center counts).
    #[serde(default)]
    pub handle_status: HandleStatus,
}

/// ListImageVulnerabilities' `handle_status` filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandleStatus {
    #[default]
    Any,
    Unhandled,
}

fn default_image_type() -> String {
    "private_image".to_string()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl HssConfig {
    pub(crate) fn rebase_paths(&mut self, base: &std::path::Path) {
        self.auth.rebase(base);
    }

    pub fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| default_endpoint("hss", &self.region))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let id_like = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !id_like(&self.region) {
            return Err(ConfigError::invalid(
                format!("region {:?}", self.region),
                "expected an id such as cn-north-4",
            ));
        }
        if !id_like(&self.project_id) {
            return Err(ConfigError::invalid(
                format!("projectId {:?}", self.project_id),
                "expected the project id of the region (letters and digits)",
            ));
        }
        if !IMAGE_TYPES.contains(&self.image_type.as_str()) {
            return Err(ConfigError::invalid(
                format!("imageType {:?}", self.image_type),
                format!("use one of {}", IMAGE_TYPES.join(", ")),
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid("timeout", "must be greater than zero"));
        }
        Ok(())
    }
}

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
    pub(crate) fn rebase(&mut self, base: &std::path::Path) {
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
    pub fn check(&self) -> Result<(), ConfigError> {
        let load = |key: &'static str, source: &SecretSource| {
            source
                .load()
                .map(|_| ())
                .map_err(|source| ConfigError::Credential {
                    key: format!("auth: {key}"),
                    source,
                })
        };
        match self {
            HuaweiAuthConfig::AkSk(c) => {
                load("accessKey", &c.access_key)?;
                load("secretKey", &c.secret_key)?;
                if let Some(t) = &c.security_token {
                    load("securityToken", t)?;
                }
            }
            HuaweiAuthConfig::Password(c) => load("password", &c.password)?,
        }
        Ok(())
    }
}
