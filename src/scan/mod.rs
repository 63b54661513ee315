//! The normalized scan summary and the trait every scanner implements.

pub mod acr;
mod alibaba_error;
pub(crate) mod backoff;
pub(crate) mod cache;
pub mod file;
pub mod harbor;
pub mod hss;
pub mod rate_limit;
pub mod sas;
pub(crate) mod setup_error;
pub mod vulnlist;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::HostPattern;
use crate::domain::scan_error::ScanError;
use crate::domain::summary::ScanSummary;
use crate::image::ImageRef;

/// What a scanner is asked about: the normalized image and the digest it resolved to.
#[derive(Debug, Clone)]
pub struct ScanTarget<'a> {
    pub image: &'a ImageRef,
    /// `sha256:<hex>`
    pub digest: &'a str,
}

/// A source of scan summaries, routed to by registry host.
#[async_trait]
pub trait Scanner: Send + Sync {
    /// The scanner kind (`file`, `acr`, ...), used in messages and metrics.
    fn kind(&self) -> &'static str;

    /// The scan summary of one digest. An image the scanner does not know is
    /// `Ok` with status `NotScanned`, not an error.
    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError>;

    /// The same summary behind an `Arc`: what the summary cache keeps. A scanner that
    /// already holds its summaries in memory hands out its own, so caching costs no copy.
    async fn summary_shared(&self, target: &ScanTarget<'_>) -> Result<Arc<ScanSummary>, ScanError> {
        self.summary(target).await.map(Arc::new)
    }

    /// A digest the scanner itself knows for a tag (a Trivy report names its tags).
    /// Used only when the tag is not resolved on a registry.
    fn digest_for_tag(&self, _image: &ImageRef) -> Option<String> {
        None
    }
}

/// One route of the config: which scanner holds the images of matching registries.
pub struct Route {
    pub index: usize,
    pub pattern: HostPattern,
    pub scanner: Arc<dyn Scanner>,
}

/// Picks the scanner for an image by its registry host; the first match wins.
pub struct ScannerRouter {
    routes: Vec<Route>,
}

impl ScannerRouter {
    pub fn from_routes(routes: Vec<Route>) -> ScannerRouter {
        ScannerRouter { routes }
    }

    /// The route for an image: matched on `host:port` as written, then on the host alone.
    pub fn route(&self, image: &ImageRef) -> Option<&Route> {
        self.position(image).and_then(|p| self.at(p))
    }

    /// Where [`ScannerRouter::route`]'s answer sits, to be remembered per reference.
    pub fn position(&self, image: &ImageRef) -> Option<usize> {
        let registry = lower(&image.registry);
        let host = lower(image.host());
        self.routes
            .iter()
            .position(|r| r.pattern.matches(&registry) || r.pattern.matches(&host))
    }

    pub fn at(&self, position: usize) -> Option<&Route> {
        self.routes.get(position)
    }
}

/// Host names are nearly always written in lower case already: no copy then.
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}
