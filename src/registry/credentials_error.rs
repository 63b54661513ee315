//! Why a docker config (file or pull Secret) cannot be used. Never quotes an entry:
//! serde_json errors can quote input (e.g. `invalid type: string "hunter2"`), so a
//! JSON error is reduced to its line and column.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the auth field for {host} is not base64")]
    AuthNotBase64 { host: String },
    #[error("the auth field for {host} is not UTF-8")]
    AuthNotUtf8 { host: String },
    #[error("the auth field for {host} is not user:password")]
    AuthNotPair { host: String },
    #[error("not a docker config.json: invalid JSON at line {line} column {column}")]
    NotConfigJson { line: usize, column: usize },
    #[error("not a .dockercfg: invalid JSON at line {line} column {column}")]
    NotDockercfg { line: usize, column: usize },
    #[error("cannot read docker config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<CredentialsError>,
    },
}
