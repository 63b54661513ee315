//! An image's outcome: its reference parsed and routed, its digest resolved and its
//! summary fetched (or found in the summary cache), then judged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;

use crate::admission::{ContainerImage, SpecLite};
use crate::decision::ImageOutcome;
use crate::domain::scan_error::ScanError;
use crate::domain::summary::{ScanStatus, ScanSummary};
use crate::image::ImageRef;
use crate::policy::NamespacePolicy;
use crate::resolve::{PullContext, ResolveError, Resolved};
use crate::scan::ScanTarget;
use crate::scan::cache::CacheKey;

use super::Engine;

impl Engine {
    /// The parsed reference and the scanner route of an image, or its outcome when
    /// that is already known (unreadable, exempt, no scanner).
    fn locate<'s>(&'s self, written: &str, policy: &NamespacePolicy) -> Located<'s> {
        let known = self.images.parse(written, |image| KnownImage {
            route: self.router.position(&image),
            image: Arc::new(image),
        });
        let KnownImage { image, route } = match known {
            Ok(k) => k,
            Err(e) => {
                return Located::Decided(ImageOutcome::Invalid {
                    message: e.to_string(),
                });
            }
        };
        if policy.exempt_images.iter().any(|p| p.matches(&image)) {
            return Located::Decided(ImageOutcome::Exempt);
        }
        match route.and_then(|r| self.router.at(r)) {
            Some(route) => Located::Routed(image, route),
            None => Located::Decided(ImageOutcome::Unscanned {
                digest: image.digest.clone(),
                reason: format!("no scanner is configured for registry {}", image.registry),
            }),
        }
    }

    /// An image's outcome when nothing needs waiting for: decided by [`Engine::locate`],
    /// or a digest whose summary is cached. `None`: [`Engine::evaluate`] it.
    /// Summary cache hits are added to `hits`.
    pub(super) fn evaluate_now(
        &self,
        written: &str,
        policy: &NamespacePolicy,
        now: time::OffsetDateTime,
        clock: Instant,
        hits: &mut u64,
    ) -> Option<ImageOutcome> {
        let (image, route) = match self.locate(written, policy) {
            Located::Decided(outcome) => return Some(outcome),
            Located::Routed(image, route) => (image, route),
        };
        let (Some(digest), Some(key)) = (image.digest.as_deref(), &image.digest_key) else {
            return None;
        };
        let target = ScanTarget {
            image: &image,
            digest,
        };
        let key = CacheKey {
            route: route.index,
            digest: key.clone(),
        };
        let summary = self.cache.cached(&key, &route.scanner, &target, clock)?;
        *hits += 1;
        Some(match summary.status {
            ScanStatus::Complete => {
                ImageOutcome::of_scans(policy, digest.to_string(), &[(None, summary)], now)
            }
            _ => ImageOutcome::of_unfinished(digest, &summary),
        })
    }

    /// Reference -> digest -> summary -> judgement, for one distinct image.
    pub(super) async fn evaluate(
        &self,
        written: &str,
        policy: &NamespacePolicy,
        pull: &PullContext,
        now: time::OffsetDateTime,
    ) -> ImageOutcome {
        let (image, route) = match self.locate(written, policy) {
            Located::Decided(outcome) => return outcome,
            Located::Routed(image, route) => (image, route),
        };
        let resolved = match &image.digest {
            Some(d) => Resolved::Manifest { digest: d.clone() },
            // Boxed, like the index path below: rare paths keep the common future small.
            None => match Box::pin(self.resolve_tag(&image, pull, route.scanner.as_ref())).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return ImageOutcome::Unscanned {
                        digest: None,
                        reason: format!(
                            "tag {} is not mapped to a digest by any registry or scan report",
                            image.tag.as_deref().unwrap_or("latest")
                        ),
                    };
                }
                Err(ResolveError::NotFound(m)) => return ImageOutcome::NotFound { message: m },
                Err(ResolveError::Backend(m)) => return ImageOutcome::BackendError { message: m },
            },
        };
        let digest = resolved.digest().to_string();
        let summary = match self
            .summary(route.index, &route.scanner, &image, &digest)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return ImageOutcome::BackendError {
                    message: e.to_string(),
                };
            }
        };
        let judged = match (&resolved, summary.status) {
            (Resolved::Index { platforms, .. }, ScanStatus::NotScanned)
                if !platforms.is_empty() =>
            {
                match Box::pin(self.platform_summaries(
                    route.index,
                    &route.scanner,
                    &image,
                    platforms,
                ))
                .await
                {
                    Ok(Some(per_platform)) => per_platform,
                    Ok(None) => return ImageOutcome::of_unfinished(&digest, &summary),
                    Err(e) => {
                        return ImageOutcome::BackendError {
                            message: e.to_string(),
                        };
                    }
                }
            }
            (_, ScanStatus::Complete) => vec![(None, summary)],
            _ => return ImageOutcome::of_unfinished(&digest, &summary),
        };
        ImageOutcome::of_scans(policy, digest, &judged, now)
    }

    async fn resolve_tag(
        &self,
        image: &ImageRef,
        pull: &PullContext,
        scanner: &dyn crate::scan::Scanner,
    ) -> Result<Option<Resolved>, ResolveError> {
        if let Some(resolver) = &self.resolver {
            if let Some(r) = resolver.resolve(image, pull).await? {
                return Ok(Some(r));
            }
        }
        Ok(scanner
            .digest_for_tag(image)
            .map(|digest| Resolved::Manifest { digest }))
    }

    async fn summary(
        &self,
        route: usize,
        scanner: &Arc<dyn crate::scan::Scanner>,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Arc<ScanSummary>, Arc<ScanError>> {
        let target = ScanTarget { image, digest };
        self.cache.get_or_fetch(route, scanner, &target).await
    }

    /// Summaries of an index's platform manifests; `None` when any is unfinished.
    async fn platform_summaries(
        &self,
        route: usize,
        scanner: &Arc<dyn crate::scan::Scanner>,
        image: &ImageRef,
        platforms: &[(String, String)],
    ) -> Result<Option<Vec<(Option<String>, Arc<ScanSummary>)>>, Arc<ScanError>> {
        let fetched = join_all(
            platforms
                .iter()
                .map(|(_, digest)| self.summary(route, scanner, image, digest)),
        )
        .await;
        let mut out = Vec::with_capacity(platforms.len());
        for ((platform, _), summary) in platforms.iter().zip(fetched) {
            let summary = summary?;
            if summary.status != ScanStatus::Complete {
                return Ok(None);
            }
            out.push((Some(platform.clone()), summary));
        }
        Ok(Some(out))
    }
}

/// A parsed reference and its scanner route (a position in the router), remembered
/// per written reference: the router does not change while the engine lives.
#[derive(Clone)]
pub(super) struct KnownImage {
    image: Arc<ImageRef>,
    route: Option<usize>,
}

/// Where an image stands before any waiting.
enum Located<'s> {
    Decided(ImageOutcome),
    Routed(Arc<ImageRef>, &'s crate::scan::Route),
}

pub(super) fn pull_context(namespace: &str, spec: &SpecLite<'_>) -> PullContext {
    PullContext {
        namespace: namespace.to_string(),
        service_account: spec.service_account_name.as_deref().map(str::to_string),
        image_pull_secrets: spec
            .image_pull_secrets
            .iter()
            .map(|s| s.name.to_string())
            .collect(),
    }
}

/// The distinct images of `containers` in order, and for each container the index
/// of its image among them.
pub(super) fn distinct_images<'a>(containers: &[ContainerImage<'a>]) -> (Vec<&'a str>, Vec<usize>) {
    // Pods have a handful of containers: a scan beats hashing. Hostile ones with
    // thousands get a map.
    const SCAN_UP_TO: usize = 32;
    let mut distinct: Vec<&str> = Vec::with_capacity(containers.len());
    let mut index: HashMap<&str, usize, crate::FastHashState> = HashMap::default();
    let of_container = containers
        .iter()
        .map(|c| {
            let known = if containers.len() <= SCAN_UP_TO {
                distinct.iter().position(|d| *d == c.image)
            } else {
                index.get(c.image).copied()
            };
            known.unwrap_or_else(|| {
                distinct.push(c.image);
                if containers.len() > SCAN_UP_TO {
                    index.insert(c.image, distinct.len() - 1);
                }
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of_container)
}
