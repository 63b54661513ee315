//! Namespace annotations, the source of per-namespace policy.

use std::collections::BTreeMap;
use std::sync::Arc;

pub mod cluster;
pub mod file;
pub(crate) mod file_error;

use async_trait::async_trait;

pub type Annotations = Arc<BTreeMap<String, String>>;

#[derive(Debug, Clone, thiserror::Error)]
#[error("namespace lookup failed: {0}")]
pub struct NamespaceError(pub String);

/// Where namespace annotations come from: a file, or a watch-backed cluster cache.
#[async_trait]
pub trait NamespaceSource: Send + Sync {
    /// The annotations of a namespace; `Ok(None)` when it does not exist.
    async fn annotations(&self, name: &str) -> Result<Option<Annotations>, NamespaceError>;

    /// True once the source can answer (the cluster cache has synced).
    fn is_ready(&self) -> bool;
}

/// Namespaces from the cluster: a watch-backed cache on `client`. Returns at once;
/// the source reports ready when its first list has synced.
pub(crate) fn cluster_source(client: kube::Client) -> Arc<dyn NamespaceSource> {
    Arc::new(cluster::ClusterNamespaces::new(client))
}
