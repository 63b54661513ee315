//! Image references, normalized the way the container runtime reads them.

use std::fmt;
use std::str::FromStr;

use oci_client::Reference;

use crate::scan::digest_key::DigestKey;
use crate::thread_cache::PerThreadMap;

/// A parsed, normalized image reference (`nginx` is `docker.io/library/nginx:latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host as written, normalized (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was written.
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference carries one (it then wins over the tag).
    pub digest: Option<String>,
    /// The digest as the summary cache's key, parsed once with the reference.
    pub digest_key: Option<DigestKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid image reference {:?}: {reason}",
    crate::admission::clip(reference, crate::admission::MAX_QUOTED)
)]
pub struct InvalidImage {
    pub reference: String,
    pub reason: String,
}

impl ImageRef {
    pub fn parse(written: &str) -> Result<ImageRef, InvalidImage> {
        let invalid = |reason: String| InvalidImage {
            reference: written.to_string(),
            reason,
        };
        if written.is_empty() {
            return Err(invalid("empty".into()));
        }
        if written.trim() != written {
            return Err(invalid("surrounding white space".into()));
        }
        let parsed = Reference::from_str(written).map_err(|e| invalid(e.to_string()))?;
        // The distribution grammar allows only lower case in repository paths.
        if let Some(c) = parsed
            .repository()
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/'))
        {
            return Err(invalid(format!("character {c:?} in the repository name")));
        }
        let digest = parsed.digest().map(str::to_string);
        if let Some(d) = &digest {
            check_digest(d).map_err(invalid)?;
        }
        let tag = match (parsed.tag(), &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag,
            digest_key: digest.as_deref().map(DigestKey::new),
            digest,
        })
    }

    /// `registry/repository`, the form exemption patterns match.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The registry host without a port.
    pub fn host(&self) -> &str {
        self.registry
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(&self.registry, |(host, _)| host)
    }
}

/// Parsed references by their written form, each with what its user derives from
/// the reference once (the engine: its scanner route). Parsing runs the distribution
/// grammar's large regular expression (the costliest step of a warm review), and a
/// cluster's pods name the same images again and again. Each thread keeps its own
/// map: a review then takes no lock and touches no reference count that another
/// thread writes, where a shared map cost every image a cache line bounced between
/// cores.
pub struct ParseCache<T: Send> {
    by_written: PerThreadMap<Box<str>, Result<T, InvalidImage>>,
}

/// More distinct references than this (in one thread) and that thread's map starts over.
const MAX_CACHED_REFS: usize = 10_000;

impl<T: Clone + Send> ParseCache<T> {
    /// A cache whose grammar is ready: the regular expression is compiled on its
    /// first use, which takes tens of milliseconds and blocks every thread that
    /// parses meanwhile. Done here, at start, not in the first review.
    pub fn warmed() -> ParseCache<T> {
        let _ = ImageRef::parse("registry.example.com/warm/up:1");
        ParseCache {
            by_written: PerThreadMap::new(MAX_CACHED_REFS),
        }
    }

    /// `ImageRef::parse`, and `derive` of the parsed reference, remembered.
    pub fn parse(
        &self,
        written: &str,
        derive: impl FnOnce(ImageRef) -> T,
    ) -> Result<T, InvalidImage> {
        if let Some(parsed) = self.by_written.find(written, |p| Some(p.clone())) {
            return parsed;
        }
        let parsed = ImageRef::parse(written).map(derive);
        self.by_written.insert(written.into(), parsed.clone());
        parsed
    }
}

/// A digest the container runtime accepts: a known algorithm and its exact length
/// of lower-case hex (the reference grammar alone allows any algorithm name and
/// any length from 32 hex digits up).
fn check_digest(d: &str) -> Result<(), String> {
    let (algorithm, hex) = d.split_once(':').unwrap_or((d, ""));
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest algorithm {:?} is not sha256, sha384 or sha512",
                crate::admission::clip(algorithm, 32)
            ))
        }
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "a {algorithm} digest is {len} lower-case hex digits"
        ));
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    /// The fully normalized form: `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_docker_hub_names_are_normalized() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        let r = ImageRef::parse("jmalloc/echo-server:v1").unwrap();
        assert_eq!(r.to_string(), "docker.io/jmalloc/echo-server:v1");
    }

    #[test]
    fn registry_with_port_and_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost:5000/app:1@{d}")).unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.host(), "localhost");
        assert_eq!(r.repository, "app");
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
    }

    #[test]
    fn parse_cache_answers_like_parse() {
        let cache = ParseCache::warmed();
        for written in ["nginx", "localhost:5000/app:1", "UPPER/case", "nginx"] {
            assert_eq!(
                cache.parse(written, |r| (r.clone(), r.to_string())),
                ImageRef::parse(written).map(|r| (r.clone(), r.to_string()))
            );
        }
    }

    #[test]
    fn known_digest_algorithms_are_accepted() {
        for d in [
            format!("sha256:{}", "0".repeat(64)),
            format!("sha512:{}", "f".repeat(128)),
        ] {
            let r = ImageRef::parse(&format!("quay.io/a/b@{d}")).unwrap();
            assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        }
    }

    #[test]
    fn malformed_references_are_errors() {
        let long = format!("nginx@sha256:{}", "a".repeat(1 << 20));
        let upper = format!("nginx@sha256:{}", "A".repeat(64));
        let other = format!("nginx@md5:{}", "a".repeat(64));
        for bad in [
            "",
            "UPPER/case",
            "nginx@sha256:abc",
            " nginx",
            "a:b:c:d",
            &long,
            &upper,
            &other,
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
