//! Every text a decision writes: one function for each, bounded in length.

use std::borrow::Cow;
use std::fmt::Display;

use crate::admission::{ContainerImage, Response};
use crate::domain::text::{MAX_QUOTED, clip};
use crate::policy::{NamespacePolicy, Source};

use super::{PlatformViolation, Unenforceable};

/// Longest list of offending images spelled out in one message (and of warnings).
pub(crate) const MAX_LISTED: usize = 20;
/// Longest single line of a message or warning.
pub(crate) const MAX_LINE: usize = 2048;

/// A count over its limit, as any report names it.
pub(crate) struct LimitViolation<'a> {
    pub key: &'a dyn Display,
    pub count: u64,
    pub max: u64,
    pub source: &'a dyn Display,
    pub platform: Option<&'a str>,
}

/// Where a [`LimitViolation`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViolationForm {
    /// Admission's message: `3 high vulnerabilities on platform linux/arm64, over the
    /// limit of 0 set by annotation ...`.
    Admission,
    /// The audit report's failed limits: `high 3>0 on linux/arm64`.
    AuditColumn,
    /// The background audit's Event on a running pod: `3 high over the limit 0 (...) on linux/arm64`.
    AuditEvent,
}

/// The one spelling of a limit violation, in each of its forms.
pub(crate) fn violation_text(v: &LimitViolation<'_>, form: ViolationForm) -> String {
    let LimitViolation {
        key,
        count,
        max,
        source,
        platform,
    } = v;
    match (form, platform) {
        (ViolationForm::Admission, Some(p)) => format!(
            "{count} {key} vulnerabilities on platform {p}, over the limit of {max} set by {source}"
        ),
        (ViolationForm::Admission, None) => {
            format!("{count} {key} vulnerabilities, over the limit of {max} set by {source}")
        }
        (ViolationForm::AuditColumn, Some(p)) => format!("{key} {count}>{max} on {p}"),
        (ViolationForm::AuditColumn, None) => format!("{key} {count}>{max}"),
        (ViolationForm::AuditEvent, Some(p)) => {
            format!("{count} {key} over the limit {max} ({source}) on {p}")
        }
        (ViolationForm::AuditEvent, None) => {
            format!("{count} {key} over the limit {max} ({source})")
        }
    }
}

pub(super) fn describe_violations(violations: &[PlatformViolation]) -> String {
    violations
        .iter()
        .map(|pv| {
            let v = &pv.violation;
            violation_text(
                &LimitViolation {
                    key: &v.key,
                    count: v.count,
                    max: v.limit.max,
                    source: &v.limit.source,
                    platform: pv.platform.as_deref(),
                },
                ViolationForm::Admission,
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn describe_unenforceable(list: &[Unenforceable]) -> String {
    list.iter()
        .map(|u| {
            format!(
                "limit max-{} (set by {}) cannot be enforced: the {} scanner does not report {} counts",
                u.limit.key, u.limit.source, u.scanner, u.limit.key
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn unscanned_source(policy: &NamespacePolicy) -> String {
    match &policy.unscanned_source {
        Source::ClusterDefault => "the cluster default unscanned: deny".into(),
        source => source.to_string(),
    }
}

/// `container "app" (image "nginx:1", sha256:...): text`, at most [`MAX_LINE`] bytes.
pub(super) fn container_line(
    container: &ContainerImage<'_>,
    digest: Option<&str>,
    text: &str,
) -> String {
    let line = format!(
        "{} {:?} (image {:?}{}): {text}",
        container.kind.describe(),
        clip(container.name, MAX_QUOTED),
        clip(container.image, MAX_QUOTED),
        digest
            .map(|d| format!(", {}", clip(d, MAX_QUOTED)))
            .unwrap_or_default()
    );
    clip(&line, MAX_LINE).into_owned()
}

/// At most [`MAX_LISTED`] warnings, each at most [`MAX_LINE`] bytes, the last one
/// saying how many were left out: a pod of 10,000 containers in warn mode must not
/// become an answer of 10,000 warnings.
pub(super) fn bound_warnings(warnings: &mut Vec<String>) {
    for w in warnings.iter_mut() {
        if w.len() > MAX_LINE {
            *w = clip(w, MAX_LINE).into_owned();
        }
    }
    if warnings.len() > MAX_LISTED {
        let more = warnings.len() - MAX_LISTED;
        warnings.truncate(MAX_LISTED);
        warnings.push(format!("and {more} more warnings"));
    }
}

/// The log line's `reason`: the denial, else the warnings (an allow because a scanner
/// was down names the image and why), else nothing. Warnings are bounded in number and
/// length already; their sum is cut to the size of a denial message.
pub(super) fn log_reason(response: &Response) -> Cow<'_, str> {
    match &response.message {
        Some(message) => message.as_str().into(),
        None if response.warnings.is_empty() => "".into(),
        None => clip(&response.warnings.join("; "), MAX_LISTED * MAX_LINE / 4)
            .into_owned()
            .into(),
    }
}
