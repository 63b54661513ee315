//! Seam between admission and tag-to-digest resolution on live registries.

use async_trait::async_trait;

use crate::image::ImageRef;

/// What a tag resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A single-platform manifest.
    Manifest { digest: String },
    /// A multi-arch index / manifest list, with the digests of the platform
    /// manifests vulngate judges (`linux/amd64` -> digest).
    Index {
        digest: String,
        platforms: Vec<(String, String)>,
    },
}

impl Resolved {
    pub fn digest(&self) -> &str {
        match self {
            Resolved::Manifest { digest } | Resolved::Index { digest, .. } => digest,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// The registry says the tag or repository does not exist: the pod could never pull it.
    #[error("{0}")]
    NotFound(String),
    /// The registry is down, slow, or refused the credentials: follows `onError`.
    #[error("{0}")]
    Backend(String),
}

/// One tag as seen with one credential: results seen with other credentials (or
/// none) are kept apart, so one pod's pull secret never answers for another pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagKey {
    pub host: String,
    pub repository: String,
    pub tag: String,
    /// `Credential::fingerprint`, a one-way hash, or `None` for anonymous.
    pub credential: Option<String>,
}

/// Context of one review that resolution may need (for imagePullSecrets).
#[derive(Debug, Clone, Default)]
pub struct PullContext {
    pub namespace: String,
    pub service_account: Option<String>,
    pub image_pull_secrets: Vec<String>,
}

/// Resolves `name:tag` to the digest the kubelet would pull.
#[async_trait]
pub trait DigestResolver: Send + Sync {
    /// `Ok(None)` when this resolver does not handle the image's registry.
    async fn resolve(
        &self,
        image: &ImageRef,
        ctx: &PullContext,
    ) -> Result<Option<Resolved>, ResolveError>;
}
