//! Why an Alibaba Cloud client cannot be made from its settings: each error names the
//! key or variable to fix, never a credential.

use crate::config::EndpointError;

use super::credentials::{
    ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE,
    ENV_ROLE_ARN,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("endpoint: {0}")]
    Endpoint(EndpointError),
    #[error("endpoint {0:?} has no host")]
    NoHost(String),
    #[error("HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("credentials: {id_var} and {secret_var} must both be set")]
    HalfKeyPair { id_var: String, secret_var: String },
    #[error("credentials: {id_var} and {secret_var} are not set")]
    KeyPairUnset { id_var: String, secret_var: String },
    #[error(
        "credentials: none found; set credentials.accessKeyIdFile and accessKeySecretFile, \
         the {ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET} variables, or RRSA \
         (credentials.rrsa or {ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN}, {ENV_OIDC_TOKEN_FILE})"
    )]
    NoCredentials,
    #[error("credentials.rrsa.stsEndpoint: {0}")]
    StsEndpoint(EndpointError),
    /// RRSA settings missing, each as `key (VARIABLE)`.
    #[error("credentials.rrsa: missing {}", missing.join(", "))]
    RrsaIncomplete { missing: Vec<String> },
}
