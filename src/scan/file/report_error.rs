//! Why a scan file (a summaries file or a Trivy report) does not read.

use crate::image::InvalidImage;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Yaml(#[from] serde_saphyr::Error),
    /// It reads as neither; the error of the shape it looked meant to have.
    #[error("neither a summaries file nor a Trivy JSON report: summaries file: {0}")]
    NotSummaries(Box<ReportError>),
    #[error("neither a summaries file nor a Trivy JSON report: Trivy report: {0}")]
    NotTrivy(Box<ReportError>),
    #[error("digest {0:?} is not sha256:<64 hex digits>")]
    Digest(String),
    #[error("finishedAt {value:?} is not an RFC 3339 time: {source}")]
    FinishedAt {
        value: String,
        source: time::error::Parse,
    },
    #[error(transparent)]
    Image(#[from] InvalidImage),
    #[error(
        "the Trivy report of {artifact} has no Metadata.RepoDigests (it was scanned from a tarball or a local image, not pulled from a registry), so it cannot be matched to an image digest"
    )]
    NoRepoDigests { artifact: String },
}
