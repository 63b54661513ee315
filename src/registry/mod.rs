//! Tag -> digest resolution on live registries (OCI distribution API via oci-client).
//!
//! - `client`: which host to ask, the protocol, index platforms, error meaning;
//! - `credentials`: docker config parsing, host matching, secret wrapping;
//! - `pull_secrets`: imagePullSecrets through the Kubernetes API;
//! - `cache`: tag and digest caches with single-flight resolution.

pub(crate) mod cache;
pub(crate) mod client;
pub(crate) mod credentials;
pub(crate) mod credentials_error;
pub(crate) mod pull_secrets;
pub(crate) mod setup_error;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oci_client::secrets::RegistryAuth;

use crate::config::{Config, HostPattern, RegistryAccess};
use crate::image::ImageRef;
use crate::resolve::{DigestResolver, PullContext, ResolveError, Resolved, TagKey};
use crate::shared_cache::SharedTier;

use cache::ResolutionCache;
use client::{Connection, Platform};
use credentials::{DockerConfigFile, SourcedCredential};
use pull_secrets::PullSecrets;
use setup_error::RegistrySetupError;

/// Used when a registry has no `timeout` of its own.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

struct Route {
    pattern: HostPattern,
    access: RegistryAccess,
    ca_pem: Option<Vec<u8>>,
}

/// Resolves tags on the registries of `registries[]`, with the credentials of
/// `resolution`, caching for `cache.tagTtl`.
pub struct RegistryResolver {
    routes: Vec<Route>,
    docker_config: Option<DockerConfigFile>,
    pull_secrets: Option<PullSecrets>,
    platforms: Vec<Platform>,
    default_timeout: Duration,
    cache: ResolutionCache,
    /// oci-client clients by (route, host, credential fingerprint): reuses
    /// connections and bearer tokens without mixing credentials.
    clients: moka::future::Cache<(usize, String, Option<String>), oci_client::Client>,
    /// Resolutions other replicas made, asked before the registry (`cache.shared`).
    shared: Option<Arc<SharedTier>>,
}

impl RegistryResolver {
    /// Builds the resolver from the config. `kube` is needed only when
    /// `resolution.useImagePullSecrets` is on. Errors (unreadable CA file or docker
    /// config, bad platform, mirror that is not a host) are meant for start-up.
    pub fn from_config(
        config: &Config,
        kube: Option<kube::Client>,
    ) -> Result<RegistryResolver, RegistrySetupError> {
        let mut routes = Vec::new();
        for (i, route) in config.registries.iter().enumerate() {
            let access = route.registry.clone().unwrap_or(RegistryAccess {
                resolve: true,
                ..RegistryAccess::default()
            });
            if let Some(m) = &access.mirror {
                if m.is_empty() || m.contains(['/', ' ', '@']) {
                    return Err(RegistrySetupError::Mirror {
                        index: i,
                        mirror: m.clone(),
                    });
                }
            }
            if access.timeout.is_some_and(|t| t.is_zero()) {
                return Err(RegistrySetupError::ZeroTimeout { index: i });
            }
            let ca_pem = match &access.ca_file {
                Some(path) => {
                    Some(
                        std::fs::read(path).map_err(|source| RegistrySetupError::ReadCa {
                            index: i,
                            path: path.clone(),
                            source,
                        })?,
                    )
                }
                None => None,
            };
            routes.push(Route {
                pattern: route.host_match.clone(),
                access,
                ca_pem,
            });
        }
        let docker_config = match &config.resolution.docker_config_file {
            Some(path) => {
                Some(DockerConfigFile::load(path).map_err(RegistrySetupError::DockerConfig)?)
            }
            None => None,
        };
        let pull_secrets = match (config.resolution.use_image_pull_secrets, kube) {
            (false, _) => None,
            (true, Some(client)) => Some(PullSecrets::new(client, config.cache.tag_ttl)),
            (true, None) => {
                return Err(RegistrySetupError::NoKubernetesClient);
            }
        };
        let platforms = config
            .resolution
            .platforms
            .iter()
            .map(|p| Platform::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RegistryResolver {
            routes,
            docker_config,
            pull_secrets,
            platforms,
            default_timeout: DEFAULT_TIMEOUT.min(config.deadline),
            cache: ResolutionCache::new(config.cache.tag_ttl, config.cache.max_entries),
            clients: moka::future::Cache::builder().max_capacity(1_000).build(),
            shared: None,
        })
    }

    /// Shares resolutions with the other replicas through `shared`.
    pub fn with_shared(mut self, shared: Option<Arc<SharedTier>>) -> RegistryResolver {
        self.shared = shared;
        self
    }

    /// Whether any route of `config` resolves tags on its registry (else the wiring
    /// builds no resolver).
    pub fn wanted(config: &Config) -> bool {
        config
            .registries
            .iter()
            .any(|r| r.registry.as_ref().is_none_or(|a| a.resolve))
    }

    /// The credential the kubelet would use for `host`: the pod's pull secrets, then
    /// its ServiceAccount's, then the configured docker config file.
    async fn credential_for(
        &self,
        host: &str,
        ctx: &PullContext,
    ) -> Result<Option<SourcedCredential>, ResolveError> {
        if let Some(ps) = &self.pull_secrets {
            let configs = ps
                .configs(
                    &ctx.namespace,
                    &ctx.image_pull_secrets,
                    ctx.service_account.as_deref(),
                )
                .await
                .map_err(ResolveError::Backend)?;
            for (cfg, source) in configs {
                if let Some(c) = cfg.lookup(host) {
                    return Ok(Some(SourcedCredential {
                        credential: c.clone(),
                        source,
                    }));
                }
            }
        }
        Ok(self.docker_config.as_ref().and_then(|file| {
            file.current().lookup(host).map(|c| SourcedCredential {
                credential: c.clone(),
                source: format!("docker config file {}", file.path().display()),
            })
        }))
    }

    async fn resolve_tag(
        &self,
        route_index: usize,
        image: &ImageRef,
        ctx: &PullContext,
    ) -> Result<Resolved, ResolveError> {
        let route = &self.routes[route_index];
        let host = client::api_host(image, route.access.mirror.as_deref());
        let reference = client::tag_reference(image, &host);
        let cred = self.credential_for(&host, ctx).await?;
        let fingerprint = cred.as_ref().map(|c| c.credential.fingerprint());
        let key = TagKey {
            host: host.clone(),
            repository: image.repository.clone(),
            tag: image.tag.clone().unwrap_or_else(|| "latest".into()),
            credential: fingerprint.clone(),
        };
        let timeout = route.access.timeout.unwrap_or(self.default_timeout);
        let conn = Connection {
            host: host.clone(),
            plain_http: route.access.plain_http,
            ca_pem: route.ca_pem.clone(),
            timeout,
        };
        let oci = self
            .clients
            .try_get_with((route_index, host.clone(), fingerprint), async {
                conn.client()
            })
            .await
            .map_err(|e: Arc<String>| ResolveError::Backend(e.to_string()))?;
        let auth = cred
            .as_ref()
            .map_or(RegistryAuth::Anonymous, |c| c.credential.to_registry_auth());
        let source = cred.as_ref().map(|c| c.source.as_str());
        let fetch = async {
            let digest = client::fetch_digest(&oci, &reference, &auth)
                .await
                .map_err(|e| client::map_error(e, image, &host, source))?;
            if let Some(known) = self.cache.digest(&digest).await {
                return Ok(known);
            }
            let body = client::fetch_by_digest(&oci, &reference, &digest, &auth)
                .await
                .map_err(|e| client::map_error(e, image, &host, source))?;
            let resolved = client::classify_manifest(digest, &body, &self.platforms)
                .map_err(|e| ResolveError::Backend(format!("registry {host}: {e}")))?;
            self.cache.remember_digest(resolved.clone()).await;
            Ok(resolved)
        };
        let bounded = async {
            match tokio::time::timeout(timeout, fetch).await {
                Ok(r) => r,
                Err(_) => Err(ResolveError::Backend(format!(
                    "registry {host} timed out after {} resolving {image}",
                    humantime::format_duration(timeout)
                ))),
            }
        };
        let shared_key = key.clone();
        let through_shared = async {
            let shared = self.shared.as_deref();
            if let Some(hit) = async { shared?.tag(&shared_key).await }.await {
                return Ok(hit);
            }
            let resolved = bounded.await?;
            if let Some(shared) = shared {
                shared.remember_tag(&shared_key, &resolved).await;
            }
            Ok(resolved)
        };
        let result = self.cache.tag(key, through_shared).await;
        match &result {
            Ok(r) => {
                tracing::debug!(image = %image, host = %host, digest = r.digest(), "resolved tag")
            }
            Err(e) => {
                tracing::info!(image = %image, host = %host, error = %e, "tag resolution failed")
            }
        }
        result
    }
}

#[async_trait]
impl DigestResolver for RegistryResolver {
    async fn resolve(
        &self,
        image: &ImageRef,
        ctx: &PullContext,
    ) -> Result<Option<Resolved>, ResolveError> {
        // A digest in the reference wins over its tag, as in the runtime.
        if let Some(digest) = &image.digest {
            return Ok(Some(Resolved::Manifest {
                digest: digest.clone(),
            }));
        }
        let Some(index) = self
            .routes
            .iter()
            .position(|r| r.pattern.matches(&image.registry))
        else {
            return Ok(None);
        };
        if !self.routes[index].access.resolve {
            return Ok(None);
        }
        self.resolve_tag(index, image, ctx).await.map(Some)
    }
}
