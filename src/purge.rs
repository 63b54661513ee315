//! `POST /cache/purge` on the ops port. A purge changes decisions (with a scanner
//! down, a cached summary is what still decides), so it is off unless configured, and
//! then answers only a request carrying the bearer token of `ops.purge.tokenFile`.

use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::scan::cache::SummaryCache;

/// Where the purge token is read from; none means purge is off.
#[derive(Debug, Clone)]
pub struct PurgeAccess {
    token_file: PathBuf,
}

impl PurgeAccess {
    /// The access of `ops.purge`: `None` unless enabled.
    pub fn from_config(config: &crate::config::serving::PurgeConfig) -> Option<PurgeAccess> {
        match (config.enabled, &config.token_file) {
            (true, Some(file)) => Some(PurgeAccess {
                token_file: file.clone(),
            }),
            _ => None,
        }
    }
}

/// Why a purge request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NoToken,
    WrongToken,
    Unconfigured,
}

/// Read at each request, so a rotated Secret takes effect without a restart.
async fn expected_token(file: &Path) -> Option<String> {
    match tokio::fs::read_to_string(file).await {
        Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Ok(_) => {
            tracing::warn!(file = %file.display(), "the purge token file is empty: every purge is refused");
            None
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read the purge token file: every purge is refused");
            None
        }
    }
}

async fn authorize(access: &PurgeAccess, headers: &HeaderMap) -> Result<(), Refusal> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::NoToken)?;
    let expected = expected_token(&access.token_file)
        .await
        .ok_or(Refusal::Unconfigured)?;
    // Hashed first, so neither the comparison's time nor its length says anything.
    let same = Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes()));
    if bool::from(same) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

/// `POST /cache/purge` drops every cached summary (and remembered failure);
/// `?digest=sha256:...` only one digest's.
/// The server routes here only when purge is configured (`access`).
pub async fn purge(
    access: &PurgeAccess,
    cache: &SummaryCache,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    if let Err(refusal) = authorize(access, headers).await {
        tracing::warn!(refusal = ?refusal, "cache purge refused");
        return match refusal {
            Refusal::NoToken => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a cache purge needs the header Authorization: Bearer <token of ops.purge.tokenFile>\n",
            )
                .into_response(),
            Refusal::WrongToken => (
                StatusCode::FORBIDDEN,
                "the bearer token is not the purge token\n",
            )
                .into_response(),
            Refusal::Unconfigured => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the purge token file cannot be read or is empty; see the log\n",
            )
                .into_response(),
        };
    }
    let digest = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("digest=")))
        .map(|d| d.replace("%3A", ":").replace("%3a", ":"));
    let removed = cache.purge(digest.as_deref()).await;
    tracing::info!(
        digest = digest.as_deref().unwrap_or("all"),
        removed,
        "summary cache purged"
    );
    (StatusCode::OK, format!("purged {removed} entries\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn only_the_token_of_the_file_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let access = PurgeAccess {
            token_file: file.clone(),
        };
        let check = async |h: Option<&str>| authorize(&access, &headers(h)).await;
        assert_eq!(check(Some("Bearer s3cret")).await, Ok(()));
        assert_eq!(check(Some("bearer  s3cret ")).await, Ok(()));
        assert_eq!(check(None).await, Err(Refusal::NoToken));
        assert_eq!(check(Some("Basic czNjcmV0")).await, Err(Refusal::NoToken));
        assert_eq!(check(Some("Bearer ")).await, Err(Refusal::NoToken));
        assert_eq!(check(Some("Bearer s3cre")).await, Err(Refusal::WrongToken));
        assert_eq!(
            check(Some("Bearer s3cret2")).await,
            Err(Refusal::WrongToken)
        );
        // A rotated Secret applies at the next request.
        std::fs::write(&file, "n3w").unwrap();
        assert_eq!(check(Some("Bearer s3cret")).await, Err(Refusal::WrongToken));
        assert_eq!(check(Some("Bearer n3w")).await, Ok(()));
        // An empty or missing file refuses everyone, even an empty token.
        std::fs::write(&file, " \n").unwrap();
        assert_eq!(check(Some("Bearer x")).await, Err(Refusal::Unconfigured));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(check(Some("Bearer n3w")).await, Err(Refusal::Unconfigured));
    }
}
