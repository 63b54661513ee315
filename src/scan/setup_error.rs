//! Why a scanner cannot be built from its config: what to fix (a key, a file, an
//! endpoint), never a credential.

use std::path::PathBuf;

use crate::cloud::alibaba::setup_error::ClientSetupError;
use crate::config::ConfigError;
use crate::secret::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientSetupError),
    /// `key` (`url`, `endpoint`) does not parse as a URL.
    #[error("{key} {url:?}: {source}")]
    Url {
        key: &'static str,
        url: String,
        source: url::ParseError,
    },
    #[error("{key} {url:?}: expected http(s)://host[:port]")]
    NotHttp { key: &'static str, url: String },
    #[error("{key}: {source}")]
    Credential {
        key: &'static str,
        source: SecretError,
    },
    #[error("caFile {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("caFile {}: {source}", path.display())]
    CaPem {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("caFile {}: no certificate in it", path.display())]
    NoCa { path: PathBuf },
    #[error("HTTP client: {0}")]
    HttpClient(reqwest::Error),
}

impl SetupError {
    /// `text` as an `http(s)://host[:port]` URL; errors quote `written`, the value of
    /// `key` as the config has it.
    pub(crate) fn http_url(
        key: &'static str,
        written: &str,
        text: &str,
    ) -> Result<url::Url, SetupError> {
        let url = written.to_string();
        let parsed = url::Url::parse(text).map_err(|source| SetupError::Url {
            key,
            url: url.clone(),
            source,
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(SetupError::NotHttp { key, url });
        }
        Ok(parsed)
    }
}
