//! Why a command could not start: each lower layer's error, with what was being set
//! up when it happened.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::kube_client::KubeClientError;
use crate::namespaces::file_error::NamespacesFileError;
use crate::registry::setup_error::RegistrySetupError;
use crate::scan::file::FileScanError;
use crate::scan::setup_error::SetupError;
use crate::server::ServeError;
use crate::shared_cache::SharedCacheError;
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kubernetes(#[from] KubeClientError),
    #[error("resolution.useImagePullSecrets: {0}")]
    PullSecretsClient(KubeClientError),
    #[error("Kubernetes API client for Events: {0}")]
    EventsClient(KubeClientError),
    #[error(transparent)]
    Namespaces(#[from] NamespacesFileError),
    /// The scanner of route `index` (registry pattern `pattern`).
    #[error("registries[{index}] ({pattern}): {source}")]
    Route {
        index: usize,
        pattern: String,
        source: RouteError,
    },
    #[error(transparent)]
    SharedCache(#[from] SharedCacheError),
    #[error(transparent)]
    Registry(#[from] RegistrySetupError),
    #[error("acceptedCvesFile {}: {source}", path.display())]
    AcceptedCvesFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An entry of the accepted vulnerabilities file that does not read; the
    /// allowlist parser's message names the file and the entry.
    #[error("{0}")]
    AcceptedCve(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Why the scanner of a route cannot be built, prefixed by its kind.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    File(#[from] FileScanError),
    #[error("hss: {0}")]
    Hss(SetupError),
    #[error("harbor: {0}")]
    Harbor(SetupError),
    #[error("acr scanner: {0}")]
    Acr(SetupError),
    #[error("sas scanner: {0}")]
    Sas(SetupError),
    /// `maxRequestsPerSecond` or `maxConcurrent`.
    #[error(transparent)]
    Limits(#[from] ConfigError),
}
