//! Why a scanner gave no answer.

/// A scanner failed to answer; decided by the `onError` rule.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Network error, 5xx, timeout, throttling that outlived the deadline.
    #[error("{scanner} unavailable: {message}")]
    Unavailable {
        scanner: &'static str,
        message: String,
    },
    /// Wrong credentials, missing permission, bad endpoint: an operator must act.
    #[error("{scanner} configuration error: {message}")]
    Config {
        scanner: &'static str,
        message: String,
    },
}

impl ScanError {
    /// The `outcome` label of the scanner call metric.
    pub fn label(&self) -> &'static str {
        match self {
            ScanError::Unavailable { .. } => "unavailable",
            ScanError::Config { .. } => "config_error",
        }
    }
}
