//! The process's one Kubernetes API client.

use std::sync::Arc;

/// The process's one Kubernetes API client (in-cluster config or kubeconfig), made
/// at first use: a config that reads namespaces from a file, resolves no pull
/// secrets and audits nothing never needs one. Clones share the client.
#[derive(Clone, Default)]
pub struct KubeClient(Arc<tokio::sync::OnceCell<kube::Client>>);

/// Neither an in-cluster config nor a kubeconfig gave a client.
#[derive(Debug, thiserror::Error)]
#[error("no Kubernetes API client: {0}")]
pub struct KubeClientError(#[source] pub kube::Error);

impl KubeClient {
    pub async fn get(&self) -> Result<kube::Client, KubeClientError> {
        self.0
            .get_or_try_init(|| async {
                crate::crypto::install_default_provider();
                kube::Client::try_default().await.map_err(KubeClientError)
            })
            .await
            .cloned()
    }
}
