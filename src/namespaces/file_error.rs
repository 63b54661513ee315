//! Why a namespaces file cannot be used; every error names the file, and a document
//! error its number.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NamespacesFileError {
    #[error("namespaces file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("namespaces file {}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<NamespacesFileError>,
    },
    /// The text is not YAML documents (the message names the line).
    #[error("{0}")]
    Yaml(serde_saphyr::Error),
    /// Document `number` (from 1) is not a Namespace or a List of them.
    #[error("document {number}: {source}")]
    Document {
        number: usize,
        source: Box<NamespacesFileError>,
    },
    #[error("a Namespace without metadata")]
    NoMetadata,
    #[error("a Namespace without metadata.name")]
    NoName,
    #[error("expected a Namespace or a List of them, found kind {0:?}")]
    WrongKind(String),
}
