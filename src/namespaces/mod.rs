//! Namespace annotations, the source of per-namespace policy.

use std::collections::BTreeMap;
use std::sync::Arc;

pub mod file;

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

/// Namespaces from the cluster: a watch-backed cache (in-cluster config or kubeconfig).
pub async fn cluster_source() -> Result<Arc<dyn NamespaceSource>, String> {
    Err(
        "namespace policies from the cluster are not available in this build; set namespacesFile"
            .into(),
    )
}
