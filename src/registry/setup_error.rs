//! Why the tag resolver cannot be built from the config; each error names the key.

use std::path::PathBuf;

use super::credentials_error::CredentialsError;

#[derive(Debug, thiserror::Error)]
pub enum RegistrySetupError {
    #[error(
        "registries[{index}].registry.mirror: {mirror:?} must be a host[:port] such as mirror.local:5000"
    )]
    Mirror { index: usize, mirror: String },
    #[error("registries[{index}].registry.timeout: must be greater than zero")]
    ZeroTimeout { index: usize },
    #[error("registries[{index}].registry.caFile: cannot read {}: {source}", path.display())]
    ReadCa {
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resolution.dockerConfigFile: {0}")]
    DockerConfig(CredentialsError),
    #[error("resolution.useImagePullSecrets needs access to the Kubernetes API")]
    NoKubernetesClient,
    #[error("resolution.platforms: {0:?} is not os/arch[/variant] such as linux/amd64")]
    Platform(String),
}
