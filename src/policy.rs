//! Pure policy: namespace annotations merged over the cluster defaults, and a scan
//! summary judged against the resulting limits. No I/O here.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Mode, PolicyConfig, UnscannedRule};
use crate::pattern::ImagePattern;
use crate::scan::{ExtraCount, ScanSummary, Severity};

pub const ANNOTATION_PREFIX: &str = "vulngate.io/";
pub const MODE_ANNOTATION: &str = "vulngate.io/mode";
pub const UNSCANNED_ANNOTATION: &str = "vulngate.io/unscanned";
pub const EXEMPT_IMAGES_ANNOTATION: &str = "vulngate.io/exempt-images";
/// Most exemption patterns read from one namespace annotation: each image of every
/// review in the namespace is matched against all of them.
pub const MAX_EXEMPT_PATTERNS: usize = 64;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKey {
    Severity(Severity),
    Total,
    Extra(ExtraCount),
}

impl LimitKey {
    pub const ALL: [LimitKey; 9] = [
        LimitKey::Severity(Severity::Critical),
        LimitKey::Severity(Severity::High),
        LimitKey::Severity(Severity::Medium),
        LimitKey::Severity(Severity::Low),
        LimitKey::Severity(Severity::Unknown),
        LimitKey::Total,
        LimitKey::Extra(ExtraCount::MaliciousFiles),
        LimitKey::Extra(ExtraCount::BaselineRisks),
        LimitKey::Extra(ExtraCount::ApplicationVulnerabilities),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKey::Severity(s) => s.as_str(),
            LimitKey::Total => "total",
            LimitKey::Extra(e) => e.key(),
        }
    }

    pub fn parse(key: &str) -> Option<LimitKey> {
        LimitKey::ALL.into_iter().find(|k| k.as_str() == key)
    }

    pub fn is_known(key: &str) -> bool {
        LimitKey::parse(key).is_some()
    }

    pub fn known_list() -> String {
        LimitKey::ALL.map(LimitKey::as_str).join(", ")
    }

    pub fn annotation(self) -> String {
        format!("{ANNOTATION_PREFIX}max-{}", self.as_str())
    }

    /// The count a summary has for this key; `None` when the scanner does not report it.
    pub fn count(self, summary: &ScanSummary) -> Option<u64> {
        match self {
            LimitKey::Severity(s) => summary.counts.get(s),
            LimitKey::Total => Some(summary.counts.total()),
            LimitKey::Extra(e) => summary.extra.get(&e).copied(),
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a setting came from, so a denial can say who to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Annotation { namespace: String, key: String },
    ClusterDefault,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Annotation { namespace, key } => {
                write!(f, "annotation {key} on namespace {namespace}")
            }
            Source::ClusterDefault => f.write_str("the cluster default"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: LimitKey,
    pub max: u64,
    pub source: Source,
}

/// The effective policy of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub namespace: String,
    pub mode: Mode,
    pub limits: Vec<Limit>,
    pub unscanned: UnscannedRule,
    pub unscanned_source: Source,
    pub exempt_images: Vec<ImagePattern>,
    /// Bad annotation values: reported, and the cluster default used instead.
    pub problems: Vec<String>,
}

impl NamespacePolicy {
    /// Merges a namespace's annotations over the cluster defaults.
    pub fn resolve(
        config: &PolicyConfig,
        namespace: &str,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> NamespacePolicy {
        let defaults = &config.defaults;
        let mut policy = NamespacePolicy {
            namespace: namespace.to_string(),
            mode: defaults.mode,
            limits: Vec::new(),
            unscanned: defaults.unscanned,
            unscanned_source: Source::ClusterDefault,
            exempt_images: config.exempt_images.clone(),
            problems: Vec::new(),
        };
        let empty = BTreeMap::new();
        let annotations = annotations.unwrap_or(&empty);
        let source = |key: &str| Source::Annotation {
            namespace: namespace.to_string(),
            key: key.to_string(),
        };

        for key in LimitKey::ALL {
            let name = key.annotation();
            let from_annotation = annotations.get(&name).and_then(|raw| {
                match raw.trim().parse::<u64>() {
                    Ok(max) => Some(max),
                    Err(_) => {
                        policy.problems.push(format!(
                            "annotation {name}={:?} on namespace {namespace} is not a non-negative integer; the cluster default applies",
                            crate::admission::clip(raw, crate::admission::MAX_QUOTED)
                        ));
                        None
                    }
                }
            });
            let limit = match from_annotation {
                Some(max) => Some(Limit {
                    key,
                    max,
                    source: source(&name),
                }),
                None => defaults.limits.get(key.as_str()).map(|&max| Limit {
                    key,
                    max,
                    source: Source::ClusterDefault,
                }),
            };
            policy.limits.extend(limit);
        }

        if let Some(raw) = annotations.get(MODE_ANNOTATION) {
            match raw.trim() {
                "enforce" => policy.mode = Mode::Enforce,
                "warn" => policy.mode = Mode::Warn,
                "off" => policy.mode = Mode::Off,
                _ => policy.problems.push(format!(
                    "annotation {MODE_ANNOTATION}={:?} on namespace {namespace} is not one of enforce, warn, off; the cluster default applies",
                    crate::admission::clip(raw, crate::admission::MAX_QUOTED)
                )),
            }
        }
        if let Some(raw) = annotations.get(UNSCANNED_ANNOTATION) {
            match raw.trim() {
                "deny" | "warn" | "allow" => {
                    policy.unscanned = match raw.trim() {
                        "deny" => UnscannedRule::Deny,
                        "warn" => UnscannedRule::Warn,
                        _ => UnscannedRule::Allow,
                    };
                    policy.unscanned_source = source(UNSCANNED_ANNOTATION);
                }
                _ => policy.problems.push(format!(
                    "annotation {UNSCANNED_ANNOTATION}={:?} on namespace {namespace} is not one of deny, warn, allow; the cluster default applies",
                    crate::admission::clip(raw, crate::admission::MAX_QUOTED)
                )),
            }
        }
        if let Some(raw) = annotations.get(EXEMPT_IMAGES_ANNOTATION) {
            let parts: Vec<&str> = raw
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            if parts.len() > MAX_EXEMPT_PATTERNS {
                policy.problems.push(format!(
                    "annotation {EXEMPT_IMAGES_ANNOTATION} on namespace {namespace} has {} patterns; only the first {MAX_EXEMPT_PATTERNS} are used",
                    parts.len()
                ));
            }
            for part in parts.into_iter().take(MAX_EXEMPT_PATTERNS) {
                match ImagePattern::parse(part) {
                    Ok(p) => policy.exempt_images.push(p),
                    Err(e) => policy.problems.push(format!(
                        "annotation {EXEMPT_IMAGES_ANNOTATION} on namespace {namespace}: {e}; that entry is ignored"
                    )),
                }
            }
        }
        policy
    }

    pub fn is_exempt(&self, image: &crate::image::ImageRef) -> bool {
        self.exempt_images.iter().any(|p| p.matches(image))
    }
}

/// A count over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: LimitKey,
    pub count: u64,
    pub limit: Limit,
}

/// The judgement of one summary against a policy's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judgement {
    pub violations: Vec<Violation>,
    /// Limits the scanner cannot serve (no such count): reported, never silently passed.
    pub unenforceable: Vec<Limit>,
}

/// Judges a finished scan's counts against the limits. A count equal to its limit passes.
pub fn judge(policy: &NamespacePolicy, summary: &ScanSummary) -> Judgement {
    let mut judgement = Judgement::default();
    for limit in &policy.limits {
        match limit.key.count(summary) {
            Some(count) if count > limit.max => judgement.violations.push(Violation {
                key: limit.key,
                count,
                limit: limit.clone(),
            }),
            Some(_) => {}
            None => judgement.unenforceable.push(limit.clone()),
        }
    }
    judgement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{ScanStatus, SeverityCounts};

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn summary(critical: Option<u64>, high: u64) -> ScanSummary {
        let mut s = ScanSummary::status_only("file", ScanStatus::Complete);
        s.counts = SeverityCounts {
            critical,
            high: Some(high),
            ..SeverityCounts::zero()
        };
        s
    }

    #[test]
    fn annotation_overrides_default_and_equal_is_allowed() {
        let config = PolicyConfig::default();
        let a = ann(&[("vulngate.io/max-high", "3")]);
        let p = NamespacePolicy::resolve(&config, "shop", Some(&a));
        assert!(judge(&p, &summary(Some(0), 3)).violations.is_empty());
        let j = judge(&p, &summary(Some(0), 4));
        assert_eq!(j.violations.len(), 1);
        assert_eq!(j.violations[0].count, 4);
        assert_eq!(j.violations[0].limit.max, 3);
        assert_eq!(
            j.violations[0].limit.source.to_string(),
            "annotation vulngate.io/max-high on namespace shop"
        );
    }

    #[test]
    fn bad_annotation_falls_back_to_default_and_is_reported() {
        let config = PolicyConfig::default();
        let a = ann(&[
            ("vulngate.io/max-critical", "-1"),
            ("vulngate.io/mode", "audit"),
        ]);
        let p = NamespacePolicy::resolve(&config, "shop", Some(&a));
        assert_eq!(p.problems.len(), 2);
        assert_eq!(p.mode, Mode::Enforce);
        let j = judge(&p, &summary(Some(1), 0));
        assert_eq!(j.violations[0].limit.source, Source::ClusterDefault);
    }

    #[test]
    fn exemption_lists_and_echoed_values_are_bounded() {
        let config = PolicyConfig::default();
        let many = (0..200)
            .map(|i| format!("registry.example.com/team-{i}/*"))
            .collect::<Vec<_>>()
            .join(",");
        let huge = "9".repeat(100_000);
        let a = ann(&[
            ("vulngate.io/exempt-images", many.as_str()),
            ("vulngate.io/max-high", huge.as_str()),
        ]);
        let p = NamespacePolicy::resolve(&config, "shop", Some(&a));
        assert_eq!(p.exempt_images.len(), MAX_EXEMPT_PATTERNS);
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(p.problems.iter().all(|m| m.len() < 1024));
        // The overflowing number is a bad value: the default limit stays.
        assert_eq!(
            p.limits
                .iter()
                .find(|l| l.key == LimitKey::Severity(Severity::High))
                .unwrap()
                .max,
            0
        );
    }

    #[test]
    fn missing_count_is_unenforceable_not_zero() {
        let config = PolicyConfig::default();
        let p = NamespacePolicy::resolve(&config, "shop", None);
        let j = judge(&p, &summary(None, 0));
        assert!(j.violations.is_empty());
        assert_eq!(j.unenforceable.len(), 1);
        assert_eq!(
            j.unenforceable[0].key,
            LimitKey::Severity(Severity::Critical)
        );
    }

    #[test]
    fn total_and_exemptions() {
        let config = PolicyConfig::default();
        let a = ann(&[
            ("vulngate.io/max-total", "2"),
            ("vulngate.io/max-high", "10"),
            (
                "vulngate.io/exempt-images",
                "docker.io/library/*, ,quay.io/x",
            ),
        ]);
        let p = NamespacePolicy::resolve(&config, "shop", Some(&a));
        let j = judge(&p, &summary(Some(0), 3));
        assert_eq!(j.violations.len(), 1);
        assert_eq!(j.violations[0].key, LimitKey::Total);
        assert!(p.is_exempt(&crate::image::ImageRef::parse("nginx:1").unwrap()));
        assert!(!p.is_exempt(&crate::image::ImageRef::parse("quay.io/y:1").unwrap()));
    }
}
