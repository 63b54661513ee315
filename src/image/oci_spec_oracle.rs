//! The reading of references that `ImageRef::parse` replaced: oci-spec's regular
//! expression (through oci-client), then vulngate's own checks. Kept as the oracle that
//! the hand-written grammar is compared with, by a unit test and by the `image_ref`
//! fuzz target (feature `fuzz-oracle`); never on the admission path.

use super::{
    DigestKey, ImageRef, InvalidImage, NAME_TOTAL_LENGTH_MAX, canonical_name, check_digest,
    refuse_blank,
};

/// What `parse` answered when it read references with oci-spec's regular expression.
fn parse_with_oci_spec(written: &str) -> Result<ImageRef, InvalidImage> {
    use std::str::FromStr;
    let invalid = |reason: String| InvalidImage::new(written, reason);
    refuse_blank(written)?;
    let parsed = oci_client::Reference::from_str(written).map_err(|e| invalid(e.to_string()))?;
    // The registry's one name is vulngate's, not the grammar's: applied to both sides.
    let (registry, repository) = canonical_name(parsed.registry(), parsed.repository());
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(invalid(oci_client::ParseError::NameTooLong.to_string()));
    }
    if let Some(c) = repository
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
        registry,
        repository,
        tag,
        digest_key: digest.as_deref().map(DigestKey::new),
        digest,
    })
}

/// How `ImageRef::parse` and the oracle disagree on `written`, if they do. The one
/// difference allowed: oci-spec's Unicode `\w` took a tag of non-ASCII letters, which
/// no registry serves and the hand-written grammar refuses.
pub fn disagreement(written: &str) -> Option<String> {
    let ours = ImageRef::parse(written);
    let theirs = parse_with_oci_spec(written);
    let agree = if written.is_ascii() {
        ours == theirs
    } else {
        ours.is_err()
            && theirs
                .as_ref()
                .map_or(true, |r| !r.tag.as_ref().is_some_and(|t| t.is_ascii()))
    };
    (!agree).then(|| format!("{written:?}: parse answered {ours:?}, oci-spec {theirs:?}"))
}
