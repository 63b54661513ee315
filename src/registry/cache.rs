//! Resolution caches: tag -> Resolved for `cache.tagTtl`, and digest -> kind of
//! manifest for much longer (a digest names immutable content).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::resolve::{ResolveError, Resolved, TagKey};

#[derive(Clone)]
pub(crate) struct ResolutionCache {
    tags: Cache<TagKey, Resolved>,
    by_digest: Cache<String, Resolved>,
}

const DIGEST_TTL: Duration = Duration::from_secs(24 * 3600);

impl ResolutionCache {
    pub fn new(tag_ttl: Duration, max_entries: u64) -> ResolutionCache {
        ResolutionCache {
            tags: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(tag_ttl)
                .build(),
            by_digest: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(DIGEST_TTL)
                .build(),
        }
    }

    /// The cached resolution of `key`, or the result of `resolve`. Concurrent callers
    /// of one key share a single `resolve` run; an error is handed to all of them and
    /// not cached, so the next call tries again.
    pub async fn tag<F>(&self, key: TagKey, resolve: F) -> Result<Resolved, ResolveError>
    where
        F: Future<Output = Result<Resolved, ResolveError>>,
    {
        self.tags
            .try_get_with(key, resolve)
            .await
            .map_err(|e: Arc<ResolveError>| (*e).clone())
    }

    /// What a digest was found to be (manifest or index with its platforms).
    pub async fn digest(&self, digest: &str) -> Option<Resolved> {
        self.by_digest.get(digest).await
    }

    pub(crate) async fn remember_digest(&self, resolved: Resolved) {
        self.by_digest
            .insert(resolved.digest().to_string(), resolved)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key() -> TagKey {
        TagKey {
            host: "h".into(),
            repository: "r".into(),
            tag: "t".into(),
            credential: None,
        }
    }

    #[tokio::test]
    async fn errors_are_not_cached_successes_are() {
        let cache = ResolutionCache::new(Duration::from_secs(60), 100);
        let calls = AtomicUsize::new(0);
        let fail = async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ResolveError::Backend("down".into()))
        };
        assert!(cache.tag(key(), fail).await.is_err());
        let ok = async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Resolved::Manifest {
                digest: "sha256:a".into(),
            })
        };
        assert_eq!(cache.tag(key(), ok).await.unwrap().digest(), "sha256:a");
        let again = async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Resolved::Manifest {
                digest: "sha256:b".into(),
            })
        };
        assert_eq!(cache.tag(key(), again).await.unwrap().digest(), "sha256:a");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
