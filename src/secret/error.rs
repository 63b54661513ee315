//! Why a credential could not be read. Names where it was looked for, never a value.

use super::SecretSource;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read credential file {}: {source}", path.display())]
    ReadFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {name} is not set")]
    EnvUnset { name: String },
    #[error("credential from {} is empty", from.describe())]
    Empty { from: SecretSource },
}
