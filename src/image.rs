//! Image references, normalized the way the container runtime reads them.

use std::fmt;

use oci_client::ParseError;

use crate::domain::digest_key::DigestKey;
use crate::thread_cache::PerThreadMap;

mod grammar;
#[cfg(any(test, feature = "fuzz-oracle"))]
pub mod oci_spec_oracle;

/// The longest repository path (after normalization) that the distribution grammar takes.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A parsed, normalized image reference (`nginx` is `docker.io/library/nginx:latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, normalized by [`canonical_registry`] (`docker.io` for Docker Hub).
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
    crate::domain::text::clip(reference, crate::domain::text::MAX_QUOTED)
)]
pub struct InvalidImage {
    pub reference: String,
    pub reason: String,
}

impl InvalidImage {
    fn new(reference: &str, reason: String) -> InvalidImage {
        InvalidImage {
            reference: reference.to_string(),
            reason,
        }
    }
}

/// Empty and padded texts, which neither grammar reading should see.
fn refuse_blank(written: &str) -> Result<(), InvalidImage> {
    if written.is_empty() {
        return Err(InvalidImage::new(written, "empty".into()));
    }
    if written.trim() != written {
        return Err(InvalidImage::new(written, "surrounding white space".into()));
    }
    Ok(())
}

impl ImageRef {
    pub fn parse(written: &str) -> Result<ImageRef, InvalidImage> {
        let invalid = |reason: String| InvalidImage::new(written, reason);
        refuse_blank(written)?;
        let written_parts = grammar::split(written)
            .ok_or_else(|| invalid(ParseError::ReferenceInvalidFormat.to_string()))?;
        let (registry, repository) = normalize(written_parts.name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(ParseError::NameTooLong.to_string()));
        }
        if let Some(d) = written_parts.digest {
            check_digest_length(d).map_err(|e| invalid(e.to_string()))?;
        }
        // The grammar allows upper case in a first part it then takes for a Docker Hub path.
        if let Some(c) = repository
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/'))
        {
            return Err(invalid(format!("character {c:?} in the repository name")));
        }
        let digest = written_parts.digest.map(str::to_string);
        if let Some(d) = &digest {
            check_digest(d).map_err(invalid)?;
        }
        let tag = match (written_parts.tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            registry,
            repository,
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
/// the reference once (the engine: its scanner route, found by matching patterns),
/// since a cluster's pods name the same images again and again. Each thread keeps its own
/// map: a review then takes no lock and touches no reference count that another
/// thread writes, where a shared map cost every image a cache line bounced between
/// cores.
pub(crate) struct ParseCache<T: Send> {
    by_written: PerThreadMap<Box<str>, Result<T, InvalidImage>>,
}

/// More distinct references than this (in one thread) and that thread's map starts over.
const MAX_CACHED_REFS: usize = 10_000;

impl<T: Clone + Send> Default for ParseCache<T> {
    fn default() -> Self {
        ParseCache {
            by_written: PerThreadMap::new(MAX_CACHED_REFS),
        }
    }
}

impl<T: Clone + Send> ParseCache<T> {
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

/// The registry and repository of a written name, as Docker reads it: a first part
/// without a '.' or ':' (and not `localhost`) is a Docker Hub path.
fn normalize(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            canonical_name(first, rest)
        }
        _ => canonical_name(DOCKER_HUB, name),
    }
}

/// One name per image: the registry as [`canonical_registry`] writes it, and an
/// official Docker Hub image's single part under `library/`.
pub(crate) fn canonical_name(registry: &str, repository: &str) -> (String, String) {
    let registry = canonical_registry(registry);
    if registry == DOCKER_HUB && !repository.contains('/') {
        return (registry, format!("library/{repository}"));
    }
    (registry, repository.to_string())
}

/// One name per registry, so routes, exemptions, scan reports' tags and credentials
/// all see the registry the runtime pulls from under a single spelling: host names
/// are case-insensitive, `:443` is the default port of https (the scheme registries are
/// reached with), and Docker Hub is `docker.io` however it is written
/// (`index.docker.io`, `registry-1.docker.io`).
pub fn canonical_registry(written: &str) -> String {
    let lower = written.to_ascii_lowercase();
    // A first component is a registry only when it has a dot or a port, is `localhost`,
    // or (for a dotless name) has upper case; folding must not take that away, or
    // `ghc:443/x` would come back as the Docker Hub repository `ghc/x`.
    if !reads_as_registry(&lower) {
        return written.to_string();
    }
    let host = match lower.rsplit_once(':') {
        Some((host, port)) if port.parse::<u32>() == Ok(443) && reads_as_registry(host) => host,
        _ => lower.as_str(),
    };
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => host.to_string(),
    }
}

/// Whether a lower-case first component names a registry by itself (the
/// distribution rule: a dot, a port, or `localhost`).
fn reads_as_registry(lower: &str) -> bool {
    lower.contains(['.', ':']) || lower == "localhost"
}

const DOCKER_HUB: &str = "docker.io";

/// oci-spec's check of a digest's length for its algorithm, with its errors.
fn check_digest_length(d: &str) -> Result<(), ParseError> {
    let (algorithm, hex) = d.split_once(':').ok_or(ParseError::DigestInvalidFormat)?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ParseError::DigestUnsupported),
    };
    if hex.len() == len {
        Ok(())
    } else {
        Err(ParseError::DigestInvalidLength)
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
                crate::domain::text::clip(algorithm, 32)
            ));
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
    fn every_spelling_of_a_registry_is_one_name() {
        for (aliases, canonical) in [
            (
                &[
                    "nginx:1.25",
                    "library/nginx:1.25",
                    "docker.io/library/nginx:1.25",
                    "DOCKER.IO/library/nginx:1.25",
                    "index.docker.io/library/nginx:1.25",
                    "index.docker.io/nginx:1.25",
                    "registry-1.docker.io/library/nginx:1.25",
                    "Registry-1.Docker.IO:443/nginx:1.25",
                    "docker.io:443/library/nginx:1.25",
                ][..],
                "docker.io/library/nginx:1.25",
            ),
            (
                &[
                    "registry.example.com/team/app:1",
                    "registry.example.com:443/team/app:1",
                    "REGISTRY.example.COM:443/team/app:1",
                ][..],
                "registry.example.com/team/app:1",
            ),
        ] {
            for written in aliases {
                let image = ImageRef::parse(written).unwrap();
                assert_eq!(image.to_string(), canonical, "{written}");
            }
        }
        // Another port is another registry.
        let r = ImageRef::parse("registry.example.com:8443/team/app:1").unwrap();
        assert_eq!(r.registry, "registry.example.com:8443");
        // A dotless host is a registry only by its port: the port stays, and the form
        // reads back as the same image (found by the image_ref fuzz target).
        for written in ["ghc:443/nginx:1", "localhost:443/app:1"] {
            let image = ImageRef::parse(written).unwrap();
            let again = ImageRef::parse(&image.to_string()).unwrap();
            assert_eq!(again, image, "{written} -> {image}");
        }
        assert_eq!(
            ImageRef::parse("ghc:443/nginx:1").unwrap().registry,
            "ghc:443"
        );
        assert_eq!(
            ImageRef::parse("localhost:443/app:1").unwrap().registry,
            "localhost"
        );
    }

    #[test]
    fn parse_cache_answers_like_parse() {
        let cache = ParseCache::default();
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

    /// Reference-like texts: references put together from valid and nearly valid
    /// parts, pieces of the grammar joined at random, and valid references with one
    /// character changed, inserted or removed.
    fn reference_like_texts(count: usize) -> Vec<String> {
        let hex = "0123456789abcdef".repeat(8);
        let strs = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let domains = strs(&[
            "",
            "localhost/",
            "localhost:5000/",
            "docker.io/",
            "index.docker.io/",
            "quay.io/",
            "Reg-1.Example.COM:443/",
            "a/",
            "x.y/",
            "-a.io/",
            "a-.io/",
            "a..io/",
            "a.io:/",
            "a.io:5x/",
            "a_b.io/",
            "a.io:5000:1/",
            "UPPER/",
        ]);
        let paths = strs(&[
            "a",
            "nginx",
            "a.b",
            "a_b",
            "a__b",
            "a___b",
            "a-b",
            "a---b",
            "a.-b",
            "a..b",
            "_a",
            "a_",
            "A",
            "aB",
            "0",
            "",
            "a/b",
            "x".repeat(130).as_str(),
        ]);
        let tags = strs(&[
            "",
            ":",
            ":v1",
            ":V1.2-rc_3",
            ":_x",
            ":.x",
            ":-x",
            ":a:b",
            ":é",
            &format!(":{}", "t".repeat(128)),
            &format!(":{}", "t".repeat(129)),
        ]);
        let mut digests = vec![String::new(), "@".to_string(), "@sha256".to_string()];
        for algorithm in [
            "sha256",
            "sha384",
            "sha512",
            "md5",
            "a+b.c_d-e",
            "1a",
            "a..b",
            "",
        ] {
            for len in [31, 32, 63, 64, 65, 96, 128] {
                digests.push(format!("@{algorithm}:{}", &hex[..len]));
            }
        }
        digests.push(format!("@sha256:{}", hex[..64].to_uppercase()));
        digests.push(format!("@sha256:{}g", &hex[..63]));
        let pieces = strs(&[
            "a",
            "b9",
            "Z",
            "0",
            "-",
            "__",
            ".",
            "/",
            ":",
            "@",
            "sha256:",
            "localhost",
            "é",
            " ",
            &hex[..64],
        ]);
        let valid = [
            "nginx",
            "library/nginx:1.25",
            "docker.io/team/app:v1@sha256:HEX",
            "localhost:5000/a/b-c__d.e:tag_1",
            "registry.example.com:443/bench/cold-000000@sha256:HEX",
        ];
        let charset: Vec<char> = "az09AZ-_./:@+é ".chars().collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let pick =
            |list: &[String], next: &mut dyn FnMut(usize) -> usize| list[next(list.len())].clone();
        (0..count)
            .map(|i| match i % 3 {
                0 => {
                    let mut text = pick(&domains, &mut next);
                    for k in 0..1 + next(3) {
                        if k > 0 {
                            text.push('/');
                        }
                        text += &pick(&paths, &mut next);
                    }
                    text + &pick(&tags, &mut next) + &pick(&digests, &mut next)
                }
                1 => (0..1 + next(8)).map(|_| pick(&pieces, &mut next)).collect(),
                _ => {
                    let mut chars: Vec<char> = valid[next(valid.len())]
                        .replace("HEX", &hex[..64])
                        .chars()
                        .collect();
                    let at = next(chars.len() + 1);
                    let c = charset[next(charset.len())];
                    match next(3) {
                        0 if at < chars.len() => chars[at] = c,
                        1 if at < chars.len() => {
                            chars.remove(at);
                        }
                        _ => chars.insert(at, c),
                    }
                    chars.into_iter().collect()
                }
            })
            .collect()
    }

    #[test]
    fn parse_answers_as_oci_spec_did() {
        let mut texts = reference_like_texts(40_000);
        // Repository paths of 255 characters and one more, after normalization.
        for len in [247, 248, 253, 254] {
            texts.push("x".repeat(len));
            texts.push(format!("quay.io/a/{}", "x".repeat(len)));
        }
        let (mut valid, mut invalid) = (0, 0);
        for text in &texts {
            if let Some(d) = oci_spec_oracle::disagreement(text) {
                panic!("{d}");
            }
            let ours = ImageRef::parse(text);
            if ours.is_ok() {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        // Both answers are common, so both sides of the grammar were compared.
        assert!(
            valid > 2_000 && invalid > 2_000,
            "{valid} valid, {invalid} invalid"
        );
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
