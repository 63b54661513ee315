//! The rules: each image's outcome -> its effect under the namespace's mode,
//! unscanned and onError rules -> the object's decision, with the relief of a
//! break-glass or a controller-created pod.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::admission::{ContainerImage, Response};
use crate::domain::annotations::CONTROLLER_PODS_ANNOTATION;
use crate::domain::rules::{ControllerPods, Mode, OnError, UnscannedRule};
use crate::events::Regarding;
use crate::policy::NamespacePolicy;

use super::text::{self, MAX_LISTED};
use super::{ContainerDecision, Decision, Effect, Event, ImageOutcome, Origin, Relief, Subject};

/// One pod to decide, and under which rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodContext<'p, 'c> {
    pub policy: &'p NamespacePolicy,
    /// The cluster's `onError` rule.
    pub on_error: OnError,
    pub subject: Subject<'p>,
    pub containers: &'p [ContainerImage<'c>],
    pub origin: &'p Origin,
    /// Give each container's part (the audit), or only the object's (admission).
    pub per_container: bool,
}

/// The outcomes of a pod's images, for [`decide`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodOutcomes<'p, 'c> {
    pub pod: PodContext<'p, 'c>,
    /// For each container, the index of its image in `outcomes`.
    pub image_of_container: &'p [usize],
    pub outcomes: &'p [ImageOutcome],
}

/// Allowed without judging (kind, operation, exempt namespace...): the reason is
/// the audit annotation `reason`.
pub(crate) fn not_judged<'c>(reason: String) -> Decision<'c> {
    decision(Response {
        allowed: true,
        message: None,
        warnings: Vec::new(),
        audit_annotations: [
            ("decision".to_string(), "allowed".to_string()),
            ("reason".to_string(), reason),
        ]
        .into(),
    })
}

/// Denied before judging: there is nothing readable to judge.
pub(crate) fn refused<'c>(message: String) -> Decision<'c> {
    decision(Response {
        allowed: false,
        message: Some(message),
        warnings: Vec::new(),
        audit_annotations: [("decision".to_string(), "denied".to_string())].into(),
    })
}

/// The namespace's annotations could not be read, so its limits are unknown: a
/// backend error under `onError`. `pod.policy` is the cluster default's.
pub(crate) fn namespace_unknown<'c>(pod: &PodContext<'_, 'c>, message: &str) -> Decision<'c> {
    let text = format!("vulngate could not judge {}: {message}", pod.subject);
    let deny = pod.on_error == OnError::Deny && pod.policy.mode == Mode::Enforce;
    let response = if deny {
        refused(text).response
    } else {
        warned(text)
    };
    with_unjudged(response, pod, message)
}

/// Mode off: nothing of the pod is judged (its annotations' problems are still told).
pub(crate) fn decide_mode_off<'c>(pod: &PodContext<'_, 'c>) -> Option<Decision<'c>> {
    if pod.policy.mode != Mode::Off {
        return None;
    }
    let reason = format!("mode off in namespace {}", pod.policy.namespace);
    let mut off = not_judged(reason.clone());
    off.response
        .warnings
        .extend(pod.policy.problems.iter().cloned());
    off.containers = unjudged_parts(pod, &reason);
    Some(off)
}

/// More distinct images than one review may name: refused before any lookup, since
/// each may cost registry and scanner calls (warn mode: a warning).
pub(crate) fn decide_too_many_images<'c>(
    pod: &PodContext<'_, 'c>,
    distinct_images: usize,
    max_images: usize,
) -> Option<Decision<'c>> {
    if distinct_images <= max_images {
        return None;
    }
    let text = format!(
        "it names {distinct_images} distinct images, more than the {max_images} that one review may judge (review.maxImages), so none was judged"
    );
    let mut response = if pod.policy.mode == Mode::Enforce {
        refused(format!("vulngate denied {}: {text}", pod.subject)).response
    } else {
        warned(format!("vulngate did not judge {}: {text}", pod.subject))
    };
    response
        .audit_annotations
        .insert("too-many-images".into(), distinct_images.to_string());
    Some(with_unjudged(response, pod, &text))
}

/// The decision on a pod whose images all have an outcome.
pub(crate) fn decide<'c>(input: &PodOutcomes<'_, 'c>) -> Decision<'c> {
    let PodOutcomes {
        pod,
        image_of_container,
        outcomes,
    } = *input;
    let policy = pod.policy;
    let mut denials = Vec::new();
    let mut warnings: Vec<String> = policy.problems.clone();
    let mut audit = BTreeMap::new();
    let mut containers = Vec::with_capacity(if pod.per_container {
        pod.containers.len()
    } else {
        0
    });
    for (container, &image) in pod.containers.iter().zip(image_of_container) {
        let outcome = &outcomes[image];
        let (effect, text) = image_effect(policy, pod.on_error, outcome);
        if pod.per_container {
            containers.push(ContainerDecision {
                container: container.clone(),
                outcome: Some(outcome.clone()),
                effect: match effect {
                    Effect::Deny => Effect::Deny,
                    Effect::Warn if text.is_some() => Effect::Warn,
                    _ => Effect::Allow,
                },
                message: text.clone(),
            });
        }
        let Some(text) = text else { continue };
        let line = text::container_line(container, outcome.digest(), &text);
        match effect {
            Effect::Deny => denials.push(line),
            Effect::Warn | Effect::Allow => warnings.push(line),
        }
    }
    let mut effect = if !denials.is_empty() {
        Effect::Deny
    } else if warnings.is_empty() {
        Effect::Allow
    } else {
        Effect::Warn
    };
    let mut events = Vec::new();
    let relief = if denials.is_empty() {
        None
    } else {
        relief(&pod, &denials, &mut audit, &mut events)
    };
    if let Some((_, relief)) = &relief {
        effect = Effect::Warn;
        for denial in denials.drain(..) {
            warnings.push(format!("{relief}: {denial}"));
        }
        for part in &mut containers {
            if part.effect == Effect::Deny {
                part.effect = Effect::Warn;
                part.message = part.message.take().map(|m| format!("{relief}: {m}"));
            }
        }
    }
    text::bound_warnings(&mut warnings);
    audit.insert("decision".to_string(), effect.label().to_string());
    let response = if denials.is_empty() {
        if !warnings.is_empty() && policy.mode == Mode::Warn {
            audit.insert("mode".into(), "warn".into());
        }
        Response {
            allowed: true,
            message: None,
            warnings,
            audit_annotations: audit,
        }
    } else {
        audit.insert("denied-containers".into(), denials.len().to_string());
        let mut message = format!("vulngate denied {}: ", pod.subject);
        let listed = denials.len().min(MAX_LISTED);
        message.push_str(&denials[..listed].join("; "));
        if denials.len() > listed {
            let _ = write!(message, "; and {} more", denials.len() - listed);
        }
        Response {
            allowed: false,
            message: Some(message),
            warnings,
            audit_annotations: audit,
        }
    };
    Decision {
        response,
        containers,
        events,
        relief: relief.map(|(kind, _)| kind),
    }
}

/// The relief that lets `denials` through as warnings, if any, with its text; its
/// audit annotation and Event are added.
fn relief(
    pod: &PodContext<'_, '_>,
    denials: &[String],
    audit: &mut BTreeMap<String, String>,
    events: &mut Vec<Event>,
) -> Option<(Relief, String)> {
    let policy = pod.policy;
    let namespace = policy.namespace.as_str();
    let (relief, text, event) = if let Some((until, source)) = &policy.break_glass_until {
        audit.insert("break-glass-until".into(), until.to_string());
        let text = format!("allowed by break-glass until {until} ({source})");
        let event = Event {
            regarding: Regarding {
                api_version: "v1",
                kind: "Namespace",
                namespace: None,
                name: namespace.to_string(),
                uid: None,
            },
            reason: "BreakGlass",
            note: format!("{text}: {}: {}", pod.subject, denials.join("; ")),
        };
        (Relief::BreakGlass, text, event)
    } else if let (Some(owner), ControllerPods::Warn) =
        (&pod.origin.controller, policy.controller_pods)
    {
        let controller = owner.controller;
        audit.insert("controller-pod".into(), controller.to_string());
        let text = format!(
            "allowed because the {controller} created this pod from a template judged when its workload was created or updated ({CONTROLLER_PODS_ANNOTATION} is warn)"
        );
        let event = Event {
            regarding: Regarding {
                api_version: owner.api_version,
                kind: owner.kind,
                namespace: Some(namespace.to_string()),
                name: owner.name.clone(),
                uid: None,
            },
            reason: "ReplicaOverLimits",
            note: format!("{text}: {}", denials.join("; ")),
        };
        (Relief::ControllerPod, text, event)
    } else {
        return None;
    };
    if !pod.origin.dry_run {
        events.push(event);
    }
    Some((relief, text))
}

/// What one image's outcome means under the namespace's mode and rules, and the
/// text admission gives for it.
pub(super) fn image_effect(
    policy: &NamespacePolicy,
    on_error: OnError,
    outcome: &ImageOutcome,
) -> (Effect, Option<String>) {
    let enforce = || match policy.mode {
        Mode::Enforce => Effect::Deny,
        _ => Effect::Warn,
    };
    match outcome {
        ImageOutcome::Exempt => (Effect::Allow, None),
        // The common case, without building a text.
        ImageOutcome::Passed {
            unenforceable,
            notes,
            ..
        } if unenforceable.is_empty() && notes.is_empty() => (Effect::Allow, None),
        ImageOutcome::Passed {
            unenforceable,
            notes,
            ..
        } => {
            let text = [
                text::describe_unenforceable(unenforceable),
                notes.join("; "),
            ]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
            if text.is_empty() {
                (Effect::Allow, None)
            } else {
                (Effect::Warn, Some(text))
            }
        }
        ImageOutcome::OverLimit {
            violations,
            unenforceable,
            notes,
            ..
        } => {
            let mut text = text::describe_violations(violations);
            if !unenforceable.is_empty() {
                let _ = write!(text, "; {}", text::describe_unenforceable(unenforceable));
            }
            if !notes.is_empty() {
                let _ = write!(text, "; {}", notes.join("; "));
            }
            (enforce(), Some(text))
        }
        ImageOutcome::Unscanned { reason, .. } => match policy.unscanned {
            UnscannedRule::Deny => (
                enforce(),
                Some(format!(
                    "{reason}; unscanned images are denied ({})",
                    text::unscanned_source(policy)
                )),
            ),
            UnscannedRule::Warn => (Effect::Warn, Some(reason.clone())),
            UnscannedRule::Allow => (Effect::Allow, None),
        },
        ImageOutcome::BackendError { message } => match on_error {
            OnError::Deny => (enforce(), Some(format!("{message} (onError: deny)"))),
            OnError::Allow => (Effect::Warn, Some(format!("{message} (onError: allow)"))),
        },
        ImageOutcome::NotFound { message } | ImageOutcome::Invalid { message } => {
            (enforce(), Some(message.clone()))
        }
    }
}

fn decision<'c>(response: Response) -> Decision<'c> {
    Decision {
        response,
        containers: Vec::new(),
        events: Vec::new(),
        relief: None,
    }
}

fn warned(text: String) -> Response {
    Response {
        allowed: true,
        message: None,
        warnings: vec![text],
        audit_annotations: [("decision".to_string(), "warned".to_string())].into(),
    }
}

/// `response` for a pod none of whose images was judged, each container's part
/// saying why.
fn with_unjudged<'c>(response: Response, pod: &PodContext<'_, 'c>, reason: &str) -> Decision<'c> {
    let effect = Effect::of(&response);
    let mut decided = decision(response);
    decided.containers = unjudged_parts(pod, reason);
    decided
        .containers
        .iter_mut()
        .for_each(|c| c.effect = effect);
    decided
}

/// Each container's part when none was judged (empty unless asked for).
fn unjudged_parts<'c>(pod: &PodContext<'_, 'c>, reason: &str) -> Vec<ContainerDecision<'c>> {
    if pod.per_container {
        unjudged(pod.containers, reason)
    } else {
        Vec::new()
    }
}

/// Each container's part when none was judged: allowed, saying why.
pub(crate) fn unjudged<'c>(
    containers: &[ContainerImage<'c>],
    reason: &str,
) -> Vec<ContainerDecision<'c>> {
    containers
        .iter()
        .map(|c| ContainerDecision {
            container: c.clone(),
            outcome: None,
            effect: Effect::Allow,
            message: Some(reason.to_string()),
        })
        .collect()
}
