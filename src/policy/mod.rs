//! Pure policy: namespace annotations merged over the cluster defaults, and a scan
//! summary judged against the resulting limits. No I/O here.

pub(crate) mod allowlist;
pub(crate) mod counting;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::PolicyConfig;
use crate::domain::annotations::{
    ALLOW_CVES_ANNOTATION, BREAK_GLASS_ANNOTATION, CONTROLLER_PODS_ANNOTATION, COUNT_ANNOTATION,
    EXEMPT_IMAGES_ANNOTATION, GRACE_DAYS_ANNOTATION, MAX_EXEMPT_PATTERNS, MAX_SCAN_AGE_ANNOTATION,
    MODE_ANNOTATION, UNSCANNED_ANNOTATION,
};
use crate::domain::limits::LimitKey;
use crate::domain::rules::{ControllerPods, CountRule, Mode, UnscannedRule};
use crate::domain::summary::ScanSummary;
use crate::pattern::ImagePattern;
use crate::thread_cache::PerThreadMap;
use allowlist::AllowEntry;

/// Where a setting came from, so a denial can say who to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Annotation {
        namespace: String,
        key: String,
    },
    ClusterDefault,
    /// A file of the config (the cluster-wide accepted vulnerabilities).
    File(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Annotation { namespace, key } => {
                write!(f, "annotation {key} on namespace {namespace}")
            }
            Source::ClusterDefault => f.write_str("the cluster default"),
            Source::File(path) => write!(f, "the cluster-wide list {path}"),
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
    pub count: CountRule,
    pub allow_cves: Vec<AllowEntry>,
    pub grace_days: Option<u32>,
    pub max_scan_age: Option<Duration>,
    /// An active break-glass: violations are allowed with warnings until then.
    pub break_glass_until: Option<(OffsetDateTime, Source)>,
    pub controller_pods: ControllerPods,
    /// Bad annotation values: reported, and the cluster default used instead.
    pub problems: Vec<String>,
}

impl NamespacePolicy {
    /// Merges a namespace's annotations over the cluster defaults.
    /// `accepted`: the cluster-wide accepted vulnerabilities; `now` decides whether a
    /// break-glass is still active.
    pub fn resolve(
        config: &PolicyConfig,
        accepted: &[AllowEntry],
        namespace: &str,
        annotations: Option<&BTreeMap<String, String>>,
        now: OffsetDateTime,
    ) -> NamespacePolicy {
        let defaults = &config.defaults;
        let mut policy = NamespacePolicy {
            namespace: namespace.to_string(),
            mode: defaults.mode,
            limits: Vec::new(),
            unscanned: defaults.unscanned,
            unscanned_source: Source::ClusterDefault,
            exempt_images: config.exempt_images.clone(),
            count: defaults.count,
            allow_cves: accepted.to_vec(),
            grace_days: defaults.grace_days,
            max_scan_age: defaults.max_scan_age,
            break_glass_until: None,
            controller_pods: defaults.controller_pods,
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
                            crate::domain::text::clip(raw, crate::domain::text::MAX_QUOTED)
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
                    crate::domain::text::clip(raw, crate::domain::text::MAX_QUOTED)
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
                    crate::domain::text::clip(raw, crate::domain::text::MAX_QUOTED)
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
        policy.resolve_depth_rules(annotations, now);
        policy
    }

    /// The rules beyond limits: what counts, accepted ids, grace, scan age,
    /// break-glass and controller pods.
    fn resolve_depth_rules(&mut self, annotations: &BTreeMap<String, String>, now: OffsetDateTime) {
        let namespace = self.namespace.clone();
        let source = |key: &str| Source::Annotation {
            namespace: namespace.clone(),
            key: key.to_string(),
        };
        let bad = |key: &str, raw: &str, expected: &str| {
            format!(
                "annotation {key}={:?} on namespace {namespace} is not {expected}; the cluster default applies",
                crate::domain::text::clip(raw, crate::domain::text::MAX_QUOTED)
            )
        };
        if let Some(raw) = annotations.get(COUNT_ANNOTATION) {
            match raw.trim() {
                "all" => self.count = CountRule::All,
                "fixable" => self.count = CountRule::Fixable,
                _ => self
                    .problems
                    .push(bad(COUNT_ANNOTATION, raw, "one of all, fixable")),
            }
        }
        if let Some(raw) = annotations.get(ALLOW_CVES_ANNOTATION) {
            let (entries, problems) = allowlist::parse_list(raw, &source(ALLOW_CVES_ANNOTATION));
            self.allow_cves.extend(entries);
            self.problems.extend(problems);
        }
        if let Some(raw) = annotations.get(GRACE_DAYS_ANNOTATION) {
            match raw.trim().parse::<u32>() {
                Ok(days) => self.grace_days = Some(days),
                Err(_) => self
                    .problems
                    .push(bad(GRACE_DAYS_ANNOTATION, raw, "a number of days")),
            }
        }
        if let Some(raw) = annotations.get(MAX_SCAN_AGE_ANNOTATION) {
            match humantime::parse_duration(raw.trim()) {
                Ok(age) => self.max_scan_age = Some(age),
                Err(_) => self.problems.push(bad(
                    MAX_SCAN_AGE_ANNOTATION,
                    raw,
                    "a duration such as 7d or 36h",
                )),
            }
        }
        if let Some(raw) = annotations.get(CONTROLLER_PODS_ANNOTATION) {
            match raw.trim() {
                "enforce" => self.controller_pods = ControllerPods::Enforce,
                "warn" => self.controller_pods = ControllerPods::Warn,
                _ => {
                    self.problems
                        .push(bad(CONTROLLER_PODS_ANNOTATION, raw, "one of enforce, warn"))
                }
            }
        }
        if let Some(raw) = annotations.get(BREAK_GLASS_ANNOTATION) {
            match OffsetDateTime::parse(raw.trim(), &Rfc3339) {
                Ok(until) if until > now => {
                    self.break_glass_until = Some((until, source(BREAK_GLASS_ANNOTATION)))
                }
                Ok(_) => self.problems.push(format!(
                    "annotation {BREAK_GLASS_ANNOTATION}={raw:?} on namespace {namespace} has expired and is ignored"
                )),
                Err(_) => self.problems.push(format!(
                    "annotation {BREAK_GLASS_ANNOTATION}={raw:?} on namespace {namespace} is not an RFC 3339 time and is ignored"
                )),
            }
        }
    }

    pub fn is_exempt(&self, image: &crate::image::ImageRef) -> bool {
        self.exempt_images.iter().any(|p| p.matches(image))
    }
}

/// Resolved policies by namespace, reused while the namespace's annotations are
/// the same `Arc` (the namespace sources hand out a new one on every change), so
/// the hot path does not parse annotations per review. Each thread keeps its own
/// map, so that a review takes no lock shared with other threads.
#[derive(Debug)]
pub(crate) struct PolicyCache {
    by_namespace: PerThreadMap<String, CachedPolicy>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        PolicyCache {
            by_namespace: PerThreadMap::new(MAX_CACHED_POLICIES),
        }
    }
}

#[derive(Debug)]
struct CachedPolicy {
    annotations: Option<Arc<BTreeMap<String, String>>>,
    policy: Arc<NamespacePolicy>,
}

/// More namespaces than this (in one thread) and that thread's map starts over
/// (deleted namespaces leave entries).
const MAX_CACHED_POLICIES: usize = 10_000;

impl PolicyCache {
    /// The policy of `namespace` with these annotations (`None`: no such namespace).
    /// A policy with an active break-glass is resolved again once it has expired.
    pub fn resolve(
        &self,
        config: &PolicyConfig,
        accepted: &[AllowEntry],
        namespace: &str,
        annotations: Option<&Arc<BTreeMap<String, String>>>,
        now: OffsetDateTime,
    ) -> Arc<NamespacePolicy> {
        let fresh = |cached: &CachedPolicy| {
            let same = match (&cached.annotations, annotations) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            same && cached
                .policy
                .break_glass_until
                .as_ref()
                .is_none_or(|(until, _)| *until > now)
        };
        if let Some(policy) = self
            .by_namespace
            .find(namespace, |c| fresh(c).then(|| Arc::clone(&c.policy)))
        {
            return policy;
        }
        let policy = Arc::new(NamespacePolicy::resolve(
            config,
            accepted,
            namespace,
            annotations.map(|a| &**a),
            now,
        ));
        self.by_namespace.insert(
            namespace.to_string(),
            CachedPolicy {
                annotations: annotations.cloned(),
                policy: Arc::clone(&policy),
            },
        );
        policy
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
    /// What the rules left out or could not apply (allowlisted, in grace, no data).
    pub notes: Vec<String>,
}

/// Judges a finished scan against the limits, counting what the namespace's rules
/// say counts. A count equal to its limit passes.
pub fn judge(policy: &NamespacePolicy, summary: &ScanSummary, now: OffsetDateTime) -> Judgement {
    let mut judgement = Judgement::default();
    let counts = counting::effective_counts(policy, summary, now, &mut judgement.notes);
    for limit in &policy.limits {
        match limit.key.count(&counts, summary) {
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
    use crate::domain::summary::{ScanStatus, Severity, SeverityCounts};

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn judge_now(p: &NamespacePolicy, s: &ScanSummary) -> Judgement {
        judge(p, s, OffsetDateTime::now_utc())
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
        let p = NamespacePolicy::resolve(&config, &[], "shop", Some(&a), OffsetDateTime::now_utc());
        assert!(judge_now(&p, &summary(Some(0), 3)).violations.is_empty());
        let j = judge_now(&p, &summary(Some(0), 4));
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
        let p = NamespacePolicy::resolve(&config, &[], "shop", Some(&a), OffsetDateTime::now_utc());
        assert_eq!(p.problems.len(), 2);
        assert_eq!(p.mode, Mode::Enforce);
        let j = judge_now(&p, &summary(Some(1), 0));
        assert_eq!(j.violations[0].limit.source, Source::ClusterDefault);
    }

    #[test]
    fn missing_count_is_unenforceable_not_zero() {
        let config = PolicyConfig::default();
        let p = NamespacePolicy::resolve(&config, &[], "shop", None, OffsetDateTime::now_utc());
        let j = judge_now(&p, &summary(None, 0));
        assert!(j.violations.is_empty());
        assert_eq!(j.unenforceable.len(), 1);
        assert_eq!(
            j.unenforceable[0].key,
            LimitKey::Severity(Severity::Critical)
        );
    }

    #[test]
    fn policy_cache_reuses_until_annotations_change_or_break_glass_expires() {
        let config = PolicyConfig::default();
        let cache = PolicyCache::default();
        let now = OffsetDateTime::now_utc();
        let a = Arc::new(ann(&[("vulngate.io/max-high", "3")]));
        let first = cache.resolve(&config, &[], "shop", Some(&a), now);
        assert!(Arc::ptr_eq(
            &first,
            &cache.resolve(&config, &[], "shop", Some(&a), now)
        ));
        // An updated namespace is a new Arc: resolved again.
        let b = Arc::new(ann(&[("vulngate.io/max-high", "5")]));
        let second = cache.resolve(&config, &[], "shop", Some(&b), now);
        assert_eq!(second.limits[1].max, 5);
        let gone = cache.resolve(&config, &[], "shop", None, now);
        assert_eq!(gone.limits[1].max, 0);
        // A break-glass stops applying when its time has passed, without any change.
        let until = (now + time::Duration::minutes(5)).format(&Rfc3339).unwrap();
        let c = Arc::new(ann(&[("vulngate.io/break-glass-until", until.as_str())]));
        assert!(
            cache
                .resolve(&config, &[], "shop", Some(&c), now)
                .break_glass_until
                .is_some()
        );
        let later = now + time::Duration::minutes(6);
        assert!(
            cache
                .resolve(&config, &[], "shop", Some(&c), later)
                .break_glass_until
                .is_none()
        );
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
        let p = NamespacePolicy::resolve(&config, &[], "shop", Some(&a), OffsetDateTime::now_utc());
        assert_eq!(p.exempt_images.len(), MAX_EXEMPT_PATTERNS);
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(p.problems.iter().all(|m| m.len() < 1024));
        // The overflowing number is a bad value: the default limit stays.
        let high = p
            .limits
            .iter()
            .find(|l| l.key == LimitKey::Severity(Severity::High));
        assert_eq!(high.map(|l| l.max), Some(0));
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
        let p = NamespacePolicy::resolve(&config, &[], "shop", Some(&a), OffsetDateTime::now_utc());
        let j = judge_now(&p, &summary(Some(0), 3));
        assert_eq!(j.violations.len(), 1);
        assert_eq!(j.violations[0].key, LimitKey::Total);
        assert!(p.is_exempt(&crate::image::ImageRef::parse("nginx:1").unwrap()));
        assert!(!p.is_exempt(&crate::image::ImageRef::parse("quay.io/y:1").unwrap()));
    }
}
