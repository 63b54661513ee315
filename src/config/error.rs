//! Why a config cannot be used. Every error names the key to fix; a YAML error also
//! the line and column the parser stopped at.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An error in the config file at `path`.
    #[error("config file {}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<ConfigError>,
    },
    /// The text does not read as a config; `key` is where the parser stopped, when
    /// the parser's own message does not already start with it.
    #[error("{}{source}", key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Yaml {
        key: Option<String>,
        source: Box<serde_saphyr::Error>,
    },
    /// A value that reads but is not allowed.
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("{key}: {source}")]
    Endpoint { key: String, source: EndpointError },
    /// A credential the config names that cannot be read.
    #[error("{key}: {source}")]
    Credential {
        key: String,
        source: crate::secret::SecretError,
    },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// An endpoint override that is not `host[:port]` or `http(s)://host[:port]`.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {endpoint:?}: {source}")]
    Parse {
        endpoint: String,
        source: url::ParseError,
    },
    #[error("endpoint {endpoint:?}: must be http(s)://host[:port]")]
    NotHttp { endpoint: String },
    #[error("endpoint {endpoint:?}: must not have a path or query")]
    PathOrQuery { endpoint: String },
}
