//! The rules as tables: every mode x unscanned rule x onError x image outcome, and
//! every relief case (a controller restarting a workload's pod, a break-glass before
//! and after its time, a grace period).

use std::collections::BTreeMap;
use std::sync::Arc;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::text::{MAX_LINE, MAX_LISTED, log_reason};
use super::*;
use crate::admission::ContainerKind;
use crate::config::PolicyConfig;
use crate::domain::rules::OnError;
use crate::domain::summary::{ScanStatus, ScanSummary, Severity, SeverityCounts, Vulnerability};
use crate::policy::NamespacePolicy;

const NOW: OffsetDateTime = datetime!(2026-12-05 12:00 UTC);
const DIGEST: &str = "sha256:0123456789abcdef";

fn policy(annotations: &[(&str, &str)]) -> NamespacePolicy {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    NamespacePolicy::resolve(
        &PolicyConfig::default(),
        &[],
        "shop",
        Some(&annotations),
        NOW,
    )
}

/// A finished scan with one high vulnerability per publication date.
fn scan(published: &[OffsetDateTime]) -> Arc<ScanSummary> {
    let mut summary = ScanSummary::status_only("file", ScanStatus::Complete);
    summary.counts = SeverityCounts::zero();
    for (i, date) in published.iter().enumerate() {
        summary.counts.bump(Severity::High);
        summary.vulnerabilities.push(Vulnerability {
            id: format!("CVE-2026-{i}"),
            severity: Severity::High,
            fixable: Some(true),
            published: Some(*date),
        });
    }
    summary.finished_at = Some(NOW - Duration::hours(1));
    Arc::new(summary)
}

fn outcome(kind: &str, policy: &NamespacePolicy) -> ImageOutcome {
    let old = NOW - Duration::days(400);
    match kind {
        "passed" => ImageOutcome::of_scans(policy, DIGEST.into(), &[(None, scan(&[]))], NOW),
        "over-limit" => {
            ImageOutcome::of_scans(policy, DIGEST.into(), &[(None, scan(&[old, old]))], NOW)
        }
        "unscanned" => ImageOutcome::of_unfinished(
            DIGEST,
            &ScanSummary::status_only("file", ScanStatus::Scanning),
        ),
        "backend-error" => ImageOutcome::BackendError {
            message: "harbor unavailable: HTTP 503".into(),
        },
        "not-found" => ImageOutcome::NotFound {
            message: "no such image".into(),
        },
        "invalid" => ImageOutcome::Invalid {
            message: "not an image reference".into(),
        },
        "exempt" => ImageOutcome::Exempt,
        other => panic!("no outcome {other}"),
    }
}

const CONTAINERS: [ContainerImage<'static>; 1] = [ContainerImage {
    kind: ContainerKind::Container,
    name: "app",
    image: "registry.example.com/app:1",
}];

fn decide_one(
    policy: &NamespacePolicy,
    on_error: OnError,
    outcome: ImageOutcome,
    origin: &Origin,
) -> Decision<'static> {
    let pod = PodContext {
        policy,
        on_error,
        subject: Subject::Object {
            kind: "Pod",
            namespace: "shop",
            name: Some("web"),
        },
        containers: &CONTAINERS,
        origin,
        per_container: true,
    };
    if let Some(decided) = decide_mode_off(&pod).or_else(|| decide_too_many_images(&pod, 1, 100)) {
        return decided;
    }
    decide(&PodOutcomes {
        pod,
        image_of_container: &[0],
        outcomes: &[outcome],
    })
}

fn restarted_by_replicaset() -> Origin {
    Origin {
        controller: Some(ControllerOwner {
            controller: "replicaset-controller",
            kind: "ReplicaSet",
            api_version: "apps/v1",
            name: "web-1".into(),
        }),
        dry_run: false,
    }
}

#[test]
fn every_mode_unscanned_rule_and_on_error_rule_gives_each_outcome_its_effect() {
    use Effect::{Allow, Deny, Warn};
    // (outcome, unscanned rule or "*", onError or "*", effect in enforce mode, in warn mode)
    let rules: [(&str, &str, &str, Effect, Effect); 10] = [
        ("passed", "*", "*", Allow, Allow),
        ("exempt", "*", "*", Allow, Allow),
        ("over-limit", "*", "*", Deny, Warn),
        ("unscanned", "deny", "*", Deny, Warn),
        ("unscanned", "warn", "*", Warn, Warn),
        ("unscanned", "allow", "*", Allow, Allow),
        ("backend-error", "*", "deny", Deny, Warn),
        ("backend-error", "*", "allow", Warn, Warn),
        ("not-found", "*", "*", Deny, Warn),
        ("invalid", "*", "*", Deny, Warn),
    ];
    let mut cases = 0;
    for mode in ["enforce", "warn", "off"] {
        for unscanned in ["deny", "warn", "allow"] {
            for (on_error, on_error_name) in [(OnError::Deny, "deny"), (OnError::Allow, "allow")] {
                let policy = policy(&[
                    ("vulngate.io/mode", mode),
                    ("vulngate.io/unscanned", unscanned),
                    ("vulngate.io/max-high", "1"),
                ]);
                assert!(policy.problems.is_empty(), "{:?}", policy.problems);
                for (kind, rule_unscanned, rule_on_error, in_enforce, in_warn) in rules {
                    if ![unscanned, "*"].contains(&rule_unscanned)
                        || ![on_error_name, "*"].contains(&rule_on_error)
                    {
                        continue;
                    }
                    cases += 1;
                    let case = format!(
                        "mode {mode}, unscanned {unscanned}, onError {on_error_name}, {kind}"
                    );
                    let decided = decide_one(
                        &policy,
                        on_error,
                        outcome(kind, &policy),
                        &Origin::default(),
                    );
                    let response = &decided.response;
                    let expected = match mode {
                        "enforce" => in_enforce,
                        "warn" => in_warn,
                        _ => Allow,
                    };
                    assert_eq!(decided.effect(), expected, "{case}: {response:?}");
                    assert_eq!(decided.containers[0].effect, expected, "{case}");
                    assert_eq!(
                        response.audit_annotations["decision"],
                        expected.label(),
                        "{case}"
                    );
                    assert_eq!(decided.relief, None, "{case}");
                    assert!(decided.events.is_empty(), "{case}");
                    match expected {
                        Deny => {
                            let message = response.message.as_deref().unwrap_or_default();
                            assert!(
                                message.starts_with("vulngate denied Pod shop/web: container \"app\" (image \"registry.example.com/app:1\""),
                                "{case}: {message}"
                            );
                            assert_eq!(response.audit_annotations["denied-containers"], "1");
                        }
                        Warn => {
                            assert!(response.allowed, "{case}");
                            assert_eq!(response.warnings.len(), 1, "{case}");
                            assert_eq!(
                                response.audit_annotations.get("mode").map(String::as_str),
                                (mode == "warn").then_some("warn"),
                                "{case}"
                            );
                        }
                        Allow if mode == "off" => assert_eq!(
                            response.audit_annotations["reason"], "mode off in namespace shop",
                            "{case}"
                        ),
                        Allow => assert!(response.warnings.is_empty(), "{case}: {response:?}"),
                    }
                    if kind == "backend-error" && mode != "off" {
                        let said = format!("(onError: {on_error_name})");
                        let text = decided.containers[0].message.as_deref().unwrap_or_default();
                        assert!(text.ends_with(&said), "{case}: {text}");
                    }
                }
            }
        }
    }
    assert_eq!(cases, 3 * 3 * 2 * 7, "every combination was decided");
}

#[test]
fn the_texts_of_each_outcome_are_admissions_own() {
    let enforce = policy(&[("vulngate.io/max-high", "1")]);
    let over = decide_one(
        &enforce,
        OnError::Deny,
        outcome("over-limit", &enforce),
        &Origin::default(),
    );
    assert_eq!(
        over.response.message.as_deref(),
        Some(
            "vulngate denied Pod shop/web: container \"app\" (image \"registry.example.com/app:1\", sha256:0123456789abcdef): 2 high vulnerabilities, over the limit of 1 set by annotation vulngate.io/max-high on namespace shop"
        )
    );
    let unscanned = decide_one(
        &enforce,
        OnError::Deny,
        outcome("unscanned", &enforce),
        &Origin::default(),
    );
    assert_eq!(
        unscanned.containers[0].message.as_deref(),
        Some(
            "the file scan of this image is not finished yet; unscanned images are denied (the cluster default unscanned: deny)"
        )
    );
}

#[test]
fn violations_relief_by_controller_restart_and_break_glass() {
    // Two hours after and before NOW.
    let (future, past) = ("2026-12-05T14:00:00Z", "2026-12-05T10:00:00Z");
    let dry = Origin {
        dry_run: true,
        ..restarted_by_replicaset()
    };
    // (case, annotations beyond max-high, origin, effect, relief, Event reason, annotation)
    let cases = [
        (
            "a user's pod",
            vec![],
            Origin::default(),
            Effect::Deny,
            None,
            None,
            None,
        ),
        (
            "a ReplicaSet's pod, controller-pods warn",
            vec![("vulngate.io/controller-pods", "warn")],
            restarted_by_replicaset(),
            Effect::Warn,
            Some(Relief::ControllerPod),
            Some("ReplicaOverLimits"),
            Some("controller-pod"),
        ),
        (
            "a ReplicaSet's pod in a dry run",
            vec![("vulngate.io/controller-pods", "warn")],
            dry,
            Effect::Warn,
            Some(Relief::ControllerPod),
            None,
            Some("controller-pod"),
        ),
        (
            "a ReplicaSet's pod, controller-pods enforce",
            vec![("vulngate.io/controller-pods", "enforce")],
            restarted_by_replicaset(),
            Effect::Deny,
            None,
            None,
            None,
        ),
        (
            "a user's pod before the break-glass ends",
            vec![("vulngate.io/break-glass-until", future)],
            Origin::default(),
            Effect::Warn,
            Some(Relief::BreakGlass),
            Some("BreakGlass"),
            Some("break-glass-until"),
        ),
        (
            "a user's pod after the break-glass ended",
            vec![("vulngate.io/break-glass-until", past)],
            Origin::default(),
            Effect::Deny,
            None,
            None,
            None,
        ),
        (
            "a ReplicaSet's pod under a break-glass: the break-glass relieves",
            vec![
                ("vulngate.io/break-glass-until", future),
                ("vulngate.io/controller-pods", "warn"),
            ],
            restarted_by_replicaset(),
            Effect::Warn,
            Some(Relief::BreakGlass),
            Some("BreakGlass"),
            Some("break-glass-until"),
        ),
    ];
    for (case, extra, origin, effect, relief, event, annotation) in cases {
        let mut annotations = vec![("vulngate.io/max-high", "1")];
        annotations.extend(extra);
        let policy = policy(&annotations);
        let decided = decide_one(
            &policy,
            OnError::Deny,
            outcome("over-limit", &policy),
            &origin,
        );
        assert_eq!(decided.effect(), effect, "{case}: {:?}", decided.response);
        assert_eq!(decided.relief, relief, "{case}");
        assert_eq!(decided.events.first().map(|e| e.reason), event, "{case}");
        if let Some(key) = annotation {
            assert!(
                decided.response.audit_annotations.contains_key(key),
                "{case}"
            );
        }
        if relief.is_some() {
            let warning = decided
                .response
                .warnings
                .last()
                .cloned()
                .unwrap_or_default();
            assert!(warning.starts_with("allowed b"), "{case}: {warning}");
            assert!(
                warning.contains("2 high vulnerabilities"),
                "{case}: {warning}"
            );
            assert_eq!(decided.containers[0].effect, Effect::Warn, "{case}");
            assert_eq!(
                decided.response.audit_annotations["decision"], "warned",
                "{case}"
            );
        }
    }
    let expired = policy(&[("vulngate.io/break-glass-until", past)]);
    assert!(expired.problems[0].contains("has expired and is ignored"));
}

#[test]
fn a_controller_restart_event_names_the_workload() {
    let policy = policy(&[
        ("vulngate.io/max-high", "1"),
        ("vulngate.io/controller-pods", "warn"),
    ]);
    let decided = decide_one(
        &policy,
        OnError::Deny,
        outcome("over-limit", &policy),
        &restarted_by_replicaset(),
    );
    let event = &decided.events[0];
    assert_eq!(
        (event.regarding.kind, event.regarding.name.as_str()),
        ("ReplicaSet", "web-1")
    );
    assert_eq!(event.regarding.namespace.as_deref(), Some("shop"));
    assert!(
        event
            .note
            .starts_with("allowed because the replicaset-controller created this pod")
    );
}

#[test]
fn vulnerabilities_within_the_grace_period_do_not_count_yet() {
    let recent = NOW - Duration::days(2);
    let old = NOW - Duration::days(400);
    // (grace days, publication dates, effect)
    let cases = [
        (None, vec![recent, recent], Effect::Deny),
        (Some("14"), vec![recent, recent], Effect::Warn),
        (Some("14"), vec![recent, old], Effect::Warn),
        (Some("14"), vec![old, old], Effect::Deny),
        (Some("1"), vec![recent, recent], Effect::Deny),
    ];
    for (grace, published, effect) in cases {
        let mut annotations = vec![("vulngate.io/max-high", "1")];
        if let Some(days) = grace {
            annotations.push(("vulngate.io/grace-days", days));
        }
        let policy = policy(&annotations);
        let image =
            ImageOutcome::of_scans(&policy, DIGEST.into(), &[(None, scan(&published))], NOW);
        let decided = decide_one(&policy, OnError::Deny, image, &Origin::default());
        assert_eq!(
            decided.effect(),
            effect,
            "grace {grace:?}: {:?}",
            decided.response
        );
        if effect == Effect::Warn {
            let note = decided.containers[0].message.as_deref().unwrap_or_default();
            assert!(note.contains("grace period"), "{note}");
        }
    }
}

#[test]
fn a_multi_platform_image_is_judged_by_its_worst_platform() {
    let policy = policy(&[("vulngate.io/max-high", "1")]);
    let old = NOW - Duration::days(400);
    let scans = [
        (Some("linux/amd64".to_string()), scan(&[old])),
        (Some("linux/arm64".to_string()), scan(&[old, old, old])),
    ];
    let image = ImageOutcome::of_scans(&policy, DIGEST.into(), &scans, NOW);
    let decided = decide_one(&policy, OnError::Deny, image, &Origin::default());
    let message = decided.response.message.unwrap_or_default();
    assert!(
        message.contains("3 high vulnerabilities on platform linux/arm64, over the limit of 1"),
        "{message}"
    );
}

#[test]
fn a_namespace_that_cannot_be_read_follows_on_error() {
    let policy = policy(&[]);
    let origin = Origin::default();
    for (on_error, allowed) in [(OnError::Deny, false), (OnError::Allow, true)] {
        let pod = PodContext {
            policy: &policy,
            on_error,
            subject: Subject::Named("Pod shop/web"),
            containers: &CONTAINERS,
            origin: &origin,
            per_container: true,
        };
        let decided = namespace_unknown(&pod, "the apiserver is down");
        assert_eq!(decided.response.allowed, allowed);
        let text = "vulngate could not judge Pod shop/web: the apiserver is down";
        match allowed {
            false => assert_eq!(decided.response.message.as_deref(), Some(text)),
            true => assert_eq!(decided.response.warnings, [text]),
        }
        assert!(decided.containers[0].outcome.is_none());
        assert_eq!(decided.containers[0].effect, decided.effect());
    }
}

#[test]
fn a_warned_review_logs_its_warnings_as_the_reason() {
    let warned = Response {
        allowed: true,
        message: None,
        warnings: vec![
            "container \"app\" (image \"registry.example.com/app:1\"): harbor unavailable: HTTP 503 (onError: allow)".into(),
            "second".into(),
        ],
        audit_annotations: BTreeMap::new(),
    };
    assert_eq!(
        log_reason(&warned),
        "container \"app\" (image \"registry.example.com/app:1\"): harbor unavailable: HTTP 503 (onError: allow); second"
    );
    let many = Response {
        warnings: vec!["w".repeat(MAX_LINE); MAX_LISTED + 1],
        ..warned
    };
    assert!(log_reason(&many).len() < MAX_LISTED * MAX_LINE / 4 + 32);
    let denied = refused("denied because".into());
    assert_eq!(denied.log_reason(), "denied because");
    assert_eq!(not_judged("exempt".into()).log_reason(), "");
}

#[test]
fn one_spelling_of_a_violation_in_each_form() {
    use super::text::{LimitViolation, ViolationForm, violation_text};
    let on_arm = LimitViolation {
        key: &"high",
        count: 3,
        max: 0,
        source: &"annotation vulngate.io/max-high on namespace shop",
        platform: Some("linux/arm64"),
    };
    assert_eq!(
        violation_text(&on_arm, ViolationForm::Admission),
        "3 high vulnerabilities on platform linux/arm64, over the limit of 0 set by annotation vulngate.io/max-high on namespace shop"
    );
    assert_eq!(
        violation_text(&on_arm, ViolationForm::AuditColumn),
        "high 3>0 on linux/arm64"
    );
    assert_eq!(
        violation_text(&on_arm, ViolationForm::AuditEvent),
        "3 high over the limit 0 (annotation vulngate.io/max-high on namespace shop) on linux/arm64"
    );
    let anywhere = LimitViolation {
        platform: None,
        ..on_arm
    };
    assert_eq!(
        violation_text(&anywhere, ViolationForm::AuditColumn),
        "high 3>0"
    );
}
