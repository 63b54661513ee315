//! The OCI distribution protocol side: which host to ask, the oci-client set-up of
//! one registry, tag -> digest (HEAD, GET fallback), index platforms, error mapping.

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::time::Duration;

use super::setup_error::RegistrySetupError;
use crate::image::ImageRef;
use crate::resolve::{ResolveError, Resolved};

/// What the HEAD and GET of a manifest accept: OCI manifest and index, Docker v2
/// manifest and manifest list, as the container runtimes ask.
pub(crate) const ACCEPT: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Docker Hub's API is served by `registry-1.docker.io`, not by `docker.io`.
pub(crate) const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The host asked for `image`: the mirror when one is set, Docker Hub's API host for
/// `docker.io`, else the registry as written (with its port).
pub(crate) fn api_host(image: &ImageRef, mirror: Option<&str>) -> String {
    match mirror {
        Some(m) => m.to_string(),
        None if image.registry == "docker.io" => DOCKER_HUB_API_HOST.to_string(),
        None => image.registry.clone(),
    }
}

/// The oci-client reference of `image`'s tag, asked at `host` (same repository path).
pub(crate) fn tag_reference(image: &ImageRef, host: &str) -> Reference {
    let tag = image.tag.clone().unwrap_or_else(|| "latest".to_string());
    let mut reference = Reference::with_tag(image.registry.clone(), image.repository.clone(), tag);
    if host != image.registry {
        reference.set_mirror_registry(host.to_string());
    }
    reference
}

/// How one registry host is reached.
#[derive(Clone)]
pub struct Connection {
    pub host: String,
    pub plain_http: bool,
    /// PEM CA bundle trusted for this registry, on top of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Connection {
    /// One oci-client per (connection, credential): oci-client keeps the first auth
    /// it sees per registry and caches tokens per repository, so sharing a client
    /// between credentials would mix them up.
    pub fn client(&self) -> Result<Client, String> {
        let config = ClientConfig {
            protocol: if self.plain_http {
                ClientProtocol::HttpsExcept(vec![self.host.clone()])
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: self
                .ca_pem
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            connect_timeout: Some(self.timeout),
            read_timeout: Some(self.timeout),
            // Never pick a platform for us: indexes are read whole.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        crate::crypto::install_default_provider();
        Client::try_from(config)
            .map_err(|e| format!("cannot set up a client for registry {}: {e}", self.host))
    }
}

/// A platform `os/arch[/variant]` as written in `resolution.platforms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub written: String,
    os: String,
    arch: String,
    variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform, RegistrySetupError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                written: s.to_string(),
                os: os.to_string(),
                arch: arch.to_string(),
                variant: parts
                    .get(2)
                    .map(|v| v.to_string())
                    .filter(|v| !v.is_empty()),
            }),
            _ => Err(RegistrySetupError::Platform(s.to_string())),
        }
    }

    /// `linux/arm64` matches any arm64 variant; `linux/arm/v7` only v7.
    fn matches(&self, p: &IndexPlatform) -> bool {
        p.os == self.os
            && p.architecture == self.arch
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant.as_deref() == Some(v))
    }
}

#[derive(Deserialize)]
struct ManifestBody {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<IndexPlatform>,
}

#[derive(Deserialize)]
struct IndexPlatform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// Reads a manifest body: an index lists the digests of the wanted platforms (in
/// the configured order, only those present); anything else is a single manifest.
pub(crate) fn classify_manifest(
    digest: String,
    body: &[u8],
    platforms: &[Platform],
) -> Result<Resolved, String> {
    let parsed: ManifestBody = serde_json::from_slice(body)
        .map_err(|e| format!("manifest {digest} is not valid JSON: {e}"))?;
    let is_index = matches!(
        parsed.media_type.as_deref(),
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE)
    ) || parsed.manifests.is_some();
    if !is_index {
        return Ok(Resolved::Manifest { digest });
    }
    let entries = parsed.manifests.unwrap_or_default();
    let platforms = platforms
        .iter()
        .filter_map(|want| {
            entries
                .iter()
                .find(|e| e.platform.as_ref().is_some_and(|p| want.matches(p)))
                .map(|e| (want.written.clone(), e.digest.clone()))
        })
        .collect();
    Ok(Resolved::Index { digest, platforms })
}

/// HEAD the tag for its digest (GET when the header is missing, hashing the body).
pub(crate) async fn fetch_digest(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
) -> Result<String, OciDistributionError> {
    client.fetch_manifest_digest(reference, auth).await
}

/// GET the manifest by digest, to tell an index from a manifest.
pub(crate) async fn fetch_by_digest(
    client: &Client,
    reference: &Reference,
    digest: &str,
    auth: &RegistryAuth,
) -> Result<bytes::Bytes, OciDistributionError> {
    let by_digest = reference.clone_with_digest(digest.to_string());
    let (body, _) = client.pull_manifest_raw(&by_digest, auth, ACCEPT).await?;
    Ok(body)
}

/// What an oci-client error means for admission. Messages name the image and the
/// host, never a credential (oci-client's own errors carry only URLs and codes).
pub(crate) fn map_error(
    e: OciDistributionError,
    image: &ImageRef,
    host: &str,
    cred_source: Option<&str>,
) -> ResolveError {
    let tag = image.tag.as_deref().unwrap_or("latest");
    let name = image.name();
    let not_found = || {
        ResolveError::NotFound(format!(
            "tag {tag} of {name} does not exist on the registry"
        ))
    };
    let refused = || match cred_source {
        Some(src) => ResolveError::Backend(format!(
            "registry {host} refused the credentials from {src} for {name}"
        )),
        None => ResolveError::Backend(format!(
            "registry {host} requires credentials for {name} and none are configured for it"
        )),
    };
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                not_found()
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                refused()
            } else {
                ResolveError::Backend(format!("registry {host} failed for {name}: {envelope}"))
            }
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        }
        | OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => refused(),
        OciDistributionError::ServerError { code, .. } => {
            ResolveError::Backend(format!("registry {host} answered HTTP {code} for {name}"))
        }
        OciDistributionError::RequestError(r) => {
            let what = if r.is_timeout() {
                "timed out"
            } else if r.is_connect() {
                "cannot be reached"
            } else {
                "failed"
            };
            ResolveError::Backend(format!(
                "registry {host} {what} resolving {name}:{tag}: {}",
                error_chain(&r)
            ))
        }
        other => ResolveError::Backend(format!("registry {host} resolving {name}:{tag}: {other}")),
    }
}

/// The error and its causes on one line ("connection refused" sits deep in reqwest's).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_and_repo(written: &str) -> (String, String) {
        let image = ImageRef::parse(written).unwrap();
        let r = tag_reference(&image, &api_host(&image, None));
        (r.resolve_registry().to_string(), r.repository().to_string())
    }

    #[test]
    fn docker_hub_is_asked_at_registry_1() {
        for written in [
            "nginx",
            "docker.io/library/nginx",
            "index.docker.io/library/nginx:latest",
            "registry-1.docker.io/library/nginx",
            "DOCKER.IO/library/nginx",
            "index.docker.io:443/nginx",
        ] {
            assert_eq!(
                host_and_repo(written),
                ("registry-1.docker.io".into(), "library/nginx".into()),
                "{written}"
            );
        }
        assert_eq!(
            host_and_repo("jmalloc/echo-server:v1"),
            ("registry-1.docker.io".into(), "jmalloc/echo-server".into())
        );
    }

    #[test]
    fn first_component_is_a_host_only_with_dot_colon_or_localhost() {
        assert_eq!(
            host_and_repo("localhost:5000/app"),
            ("localhost:5000".into(), "app".into())
        );
        assert_eq!(
            host_and_repo("localhost/app"),
            ("localhost".into(), "app".into())
        );
        assert_eq!(
            host_and_repo("reg.example.com:8443/team/app:1.2"),
            ("reg.example.com:8443".into(), "team/app".into())
        );
        assert_eq!(
            host_and_repo("team/app"),
            ("registry-1.docker.io".into(), "team/app".into())
        );
    }

    #[test]
    fn bare_name_means_latest_and_mirror_keeps_the_path() {
        let image = ImageRef::parse("localhost:5000/team/app").unwrap();
        let r = tag_reference(&image, &api_host(&image, Some("mirror.local:5001")));
        assert_eq!(r.resolve_registry(), "mirror.local:5001");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("latest"));
    }

    #[test]
    fn index_lists_wanted_platforms_in_configured_order() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
          "manifests":[
            {"digest":"sha256:arm","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:s390","platform":{"os":"linux","architecture":"s390x"}},
            {"digest":"sha256:amd","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let platforms: Vec<Platform> = ["linux/amd64", "linux/arm64", "linux/riscv64"]
            .iter()
            .map(|p| Platform::parse(p).unwrap())
            .collect();
        let r = classify_manifest("sha256:idx".into(), body, &platforms).unwrap();
        assert_eq!(
            r,
            Resolved::Index {
                digest: "sha256:idx".into(),
                platforms: vec![
                    ("linux/amd64".into(), "sha256:amd".into()),
                    ("linux/arm64".into(), "sha256:arm".into()),
                ]
            }
        );
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert_eq!(
            classify_manifest("sha256:m".into(), m, &platforms).unwrap(),
            Resolved::Manifest {
                digest: "sha256:m".into()
            }
        );
        assert!(classify_manifest("sha256:x".into(), b"<html>", &platforms).is_err());
    }

    #[test]
    fn platform_strings_are_checked() {
        assert!(Platform::parse("linux/arm/v7").is_ok());
        for bad in ["linux", "", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
