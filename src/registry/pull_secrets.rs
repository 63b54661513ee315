//! The pod's and its ServiceAccount's imagePullSecrets, read through the Kubernetes API.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use moka::future::Cache;

use super::credentials::DockerConfig;

/// Reads pull secrets, keeping each (and each ServiceAccount's list) for a short while so
/// a burst of pods does not become a burst of API reads.
#[derive(Clone)]
pub(crate) struct PullSecrets {
    client: kube::Client,
    secrets: Cache<(String, String), Arc<Option<DockerConfig>>>,
    accounts: Cache<(String, String), Arc<Vec<String>>>,
}

impl PullSecrets {
    pub fn new(client: kube::Client, ttl: Duration) -> PullSecrets {
        PullSecrets {
            client,
            secrets: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            accounts: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Docker configs of the named pull secrets, then of the ServiceAccount's, in the
    /// order the kubelet tries them, with a label naming each Secret.
    ///
    /// A Secret that does not exist or has another type is skipped, as the kubelet
    /// does; an API failure is an error (the caller reports it without secrets).
    pub(crate) async fn configs(
        &self,
        namespace: &str,
        pod_secrets: &[String],
        service_account: Option<&str>,
    ) -> Result<Vec<(Arc<DockerConfig>, String)>, String> {
        let mut names: Vec<String> = pod_secrets.to_vec();
        let sa = service_account.unwrap_or("default");
        for n in self.account_secrets(namespace, sa).await?.iter() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(cfg) = self.secret(namespace, &name).await?.as_ref() {
                out.push((Arc::new(cfg.clone()), format!("Secret {namespace}/{name}")));
            }
        }
        Ok(out)
    }

    async fn account_secrets(&self, ns: &str, sa: &str) -> Result<Arc<Vec<String>>, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        self.accounts
            .try_get_with((ns.to_string(), sa.to_string()), async {
                let account = api.get_opt(sa).await.map_err(|e| {
                    format!("cannot read ServiceAccount {ns}/{sa} for its imagePullSecrets: {e}")
                })?;
                let names = account
                    .and_then(|a| a.image_pull_secrets)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.name)
                    .filter(|n| !n.is_empty())
                    .collect();
                Ok::<_, String>(Arc::new(names))
            })
            .await
            .map_err(|e: Arc<String>| e.to_string())
    }

    async fn secret(&self, ns: &str, name: &str) -> Result<Arc<Option<DockerConfig>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        self.secrets
            .try_get_with((ns.to_string(), name.to_string()), async {
                let secret = api
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("cannot read Secret {ns}/{name}: {e}"))?;
                let Some(secret) = secret else {
                    tracing::warn!(namespace = ns, secret = name, "imagePullSecret not found");
                    return Ok(Arc::new(None));
                };
                Ok::<_, String>(Arc::new(parse_secret(&secret, ns, name)?))
            })
            .await
            .map_err(|e: Arc<String>| e.to_string())
    }
}

/// The docker config inside a pull Secret; `None` for Secrets of another type.
fn parse_secret(secret: &Secret, ns: &str, name: &str) -> Result<Option<DockerConfig>, String> {
    let data = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
    };
    let parsed = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => data(".dockerconfigjson")
            .map(|b| DockerConfig::from_config_json(&b))
            .transpose(),
        Some("kubernetes.io/dockercfg") => data(".dockercfg")
            .map(|b| DockerConfig::from_dockercfg(&b))
            .transpose(),
        other => {
            tracing::warn!(
                namespace = ns,
                secret = name,
                r#type = other.unwrap_or(""),
                "imagePullSecret is not of a docker config type; skipped"
            );
            Ok(None)
        }
    };
    parsed.map_err(|e| format!("Secret {ns}/{name}: {e}"))
}
