//! Image references as written in a pod spec, and exemption patterns. The hand-written
//! grammar answers as oci-spec's regular expression did (`image::oci_spec_oracle`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate::image::{canonical_registry, oci_spec_oracle, ImageRef};
use vulngate::pattern::{wildcard_match, ImagePattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(d) = oci_spec_oracle::disagreement(text) {
        panic!("{d}");
    }
    if let Ok(image) = ImageRef::parse(text) {
        // The normalized form is itself a valid reference that means the same image.
        let normalized = image.to_string();
        let again = ImageRef::parse(&normalized).unwrap_or_else(|e| {
            panic!("{text:?} normalized to {normalized:?}, which is invalid: {e}")
        });
        assert_eq!(again, image, "{text:?} -> {normalized:?} is not stable");
        assert!(image.registry.starts_with(image.host()));
        // One name per registry: the normalization is idempotent and leaves no alias.
        assert_eq!(canonical_registry(&image.registry), image.registry, "{text:?}");
        // A dotless host keeps what makes it a registry (`ghc:443` is not `ghc`).
        let dotless = !image.host().contains('.') && image.host() != "localhost";
        assert!(
            !matches!(image.host(), "index.docker.io" | "registry-1.docker.io")
                && (dotless || !image.registry.ends_with(":443"))
                && (dotless || !image.registry.bytes().any(|b| b.is_ascii_uppercase())),
            "{text:?} kept an alias: {}",
            image.registry
        );
        // Any spelling of the same registry names the same image.
        if let Some(rest) = normalized.strip_prefix("docker.io/") {
            for alias in ["index.docker.io", "Registry-1.Docker.IO:443"] {
                let aliased = ImageRef::parse(&format!("{alias}/{rest}"));
                assert_eq!(aliased.as_ref().ok(), Some(&image), "{alias}/{rest}");
            }
        }
        let _ = image.name();
    }
    // A pattern and a text from one input: `pattern\ntext`.
    if let Some((pattern, subject)) = text.split_once('\n') {
        let _ = wildcard_match(pattern, subject);
        if let (Ok(p), Ok(i)) = (ImagePattern::parse(pattern), ImageRef::parse(subject)) {
            let _ = p.matches(&i);
        }
    }
});
