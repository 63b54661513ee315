//! Wildcard patterns for image names and registry hosts.

use serde::{Deserialize, Serialize};

use crate::image::ImageRef;

/// `*` matches any run of characters (including `/`), everything else matches itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Longest image pattern accepted.
pub(crate) const MAX_PATTERN_LEN: usize = 512;

/// An image exemption pattern such as `registry.k8s.io/*` or `docker.io/library/nginx`.
/// It is matched against the normalized image (`nginx:1.25` is
/// `docker.io/library/nginx:1.25`), with and without its tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ImagePattern(String);

impl ImagePattern {
    pub fn parse(s: &str) -> Result<ImagePattern, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty image pattern".into());
        }
        if s.contains(char::is_whitespace) {
            return Err(format!("image pattern {s:?} contains white space"));
        }
        // An image reference is at most a few hundred bytes, so a longer pattern can
        // never be needed; bounding it bounds the cost of matching (the wildcard match
        // is O(pattern x text) in the worst case, and patterns come from namespace
        // annotations that namespace editors write).
        if s.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "image pattern of {} bytes is longer than {MAX_PATTERN_LEN}",
                s.len()
            ));
        }
        // A pattern written in short form (`nginx`, `library/*`) is normalized the
        // way the image itself is, so it matches what the runtime pulls.
        let normalized = if s.contains('*') {
            canonical_wildcard(s)
        } else {
            ImageRef::parse(s)
                .map(|r| {
                    let mut n = r.name();
                    if s.contains('@') || s.rsplit('/').next().is_some_and(|l| l.contains(':')) {
                        n = r.to_string();
                    }
                    n
                })
                .map_err(|e| format!("image pattern: {e}"))?
        };
        Ok(ImagePattern(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, image: &ImageRef) -> bool {
        // Both forms tried below begin with `registry/repository`: a pattern whose
        // literal start disagrees with it matches neither, and no string is built.
        let literal = self.0.split('*').next().unwrap_or("");
        if !may_start(literal, image) {
            return false;
        }
        let name = image.name();
        if wildcard_match(&self.0, &name) {
            return true;
        }
        wildcard_match(&self.0, &image.to_string())
    }
}

/// A wildcard pattern whose first part is a literal registry (`Registry-1.Docker.io/*`)
/// names that registry as image references do; any other pattern is kept as written.
fn canonical_wildcard(pattern: &str) -> String {
    match pattern.split_once('/') {
        Some((registry, rest))
            if !registry.contains('*')
                && (registry.contains(['.', ':']) || registry == "localhost") =>
        {
            format!("{}/{rest}", crate::image::canonical_registry(registry))
        }
        _ => pattern.to_string(),
    }
}

/// Whether `registry/repository...` could begin with `prefix` (true when the prefix
/// reaches past the repository: the full match decides then).
fn may_start(prefix: &str, image: &ImageRef) -> bool {
    let mut rest = prefix;
    for part in [image.registry.as_str(), "/", image.repository.as_str()] {
        if rest.len() <= part.len() {
            return part.starts_with(rest);
        }
        match rest.strip_prefix(part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    true
}

impl<'de> Deserialize<'de> for ImagePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImagePattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match(
            "*.cr.aliyuncs.com",
            "shop-registry.cn-hangzhou.cr.aliyuncs.com"
        ));
        assert!(!wildcard_match(
            "*.cr.aliyuncs.com",
            "cr.aliyuncs.com.evil.io"
        ));
        assert!(wildcard_match(
            "swr.*.myhuaweicloud.com",
            "swr.cn-north-4.myhuaweicloud.com"
        ));
        assert!(!wildcard_match("a*b", "ac"));
    }

    #[test]
    fn patterns_name_a_registry_as_images_do() {
        for pattern in [
            "registry-1.docker.io/library/*",
            "Index.Docker.IO/library/*",
            "docker.io:443/library/nginx",
            "DOCKER.IO/library/nginx:1.25",
        ] {
            let p = ImagePattern::parse(pattern).unwrap();
            for image in ["nginx:1.25", "registry-1.docker.io/library/nginx:1.25"] {
                assert!(p.matches(&img(image)), "{pattern} should match {image}");
            }
        }
        let p = ImagePattern::parse("Reg.Example.com:443/*").unwrap();
        assert!(p.matches(&img("reg.example.com/a:1")));
        assert!(!p.matches(&img("reg.example.com:8443/a:1")));
    }

    #[test]
    fn overlong_patterns_are_refused() {
        let long = format!("registry.example.com/{}", "*a".repeat(300));
        assert!(
            ImagePattern::parse(&long)
                .unwrap_err()
                .contains("longer than 512")
        );
        assert!(ImagePattern::parse("registry.example.com/*").is_ok());
    }

    #[test]
    fn exemptions_match_the_normalized_form() {
        let p = ImagePattern::parse("docker.io/library/*").unwrap();
        assert!(p.matches(&img("nginx:1.25")));
        assert!(!p.matches(&img("quay.io/nginx/nginx:1.25")));
        let p = ImagePattern::parse("nginx").unwrap();
        assert!(p.matches(&img("docker.io/library/nginx:1.0")));
        let p = ImagePattern::parse("registry.k8s.io/*").unwrap();
        assert!(p.matches(&img("registry.k8s.io/pause:3.9")));
        assert!(!p.matches(&img("registry.k8s.io.evil.com/pause:3.9")));
    }

    #[test]
    fn the_early_rejection_never_changes_an_answer() {
        let images = [
            "nginx:1.25",
            "registry.k8s.io/pause:3.9",
            "localhost:5000/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "quay.io/a/b:c",
        ];
        let patterns = [
            "*",
            "docker.io/*",
            "docker.io/library/nginx:1.25",
            "docker.io/library/nginx:*",
            "registry.k8s.io/pause*",
            "registry.k8s.io/paus",
            "localhost:5000/*/app*",
            "*/b:c",
            "quay.io/a/b:c",
            "quay.io/a",
            "quay.io/a/b:d",
            "localhost:5000/team/app@*",
        ];
        for written in images {
            let image = img(written);
            for pattern in patterns {
                let p = ImagePattern::parse(pattern).unwrap();
                let full = wildcard_match(p.as_str(), &image.name())
                    || wildcard_match(p.as_str(), &image.to_string());
                assert_eq!(p.matches(&image), full, "{pattern} vs {written}");
            }
        }
    }
}
