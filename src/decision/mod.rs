//! The decision rules, pure: no async, no I/O, no metrics. The engine gathers the
//! inputs under the review's deadline and applies what comes out (metrics, Events,
//! the log line).
//!
//! Glossary (the only words for a decision in the code):
//! - [`ImageOutcome`]: what became of one image (exempt, passed, over its limits,
//!   unscanned, not found, a backend error, an invalid reference).
//! - [`Effect`]: allow, warn or deny; of one container's image under the namespace's
//!   mode, unscanned and onError rules, and of a whole object. Written `allowed`,
//!   `warned`, `denied` in metrics, logs and the `decision` audit annotation, and
//!   `allowed`, `warn`, `denied` in the audit report's `verdict` column (its documented
//!   values).
//! - [`Decision`]: what is decided for one object: the response (allowed, message,
//!   warnings, audit annotations), the Events to emit, the relief that turned denials
//!   into warnings and, when asked for, each container's part ([`ContainerDecision`]).
//! - relief: a break-glass, or a controller restarting a pod of a workload judged when
//!   it was created, letting violations through as warnings.
//!
//! Functions that decide are named `decide*`; `policy::judge` is the only `judge`:
//! one scan summary against the limits.

mod outcome;
mod rules;
pub(crate) mod text;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use crate::admission::{ContainerImage, ControllerOwner, Response};
use crate::events::Regarding;

pub(crate) use outcome::{ImageOutcome, PlatformViolation, Unenforceable};
pub(crate) use rules::{
    PodContext, PodOutcomes, decide, decide_mode_off, decide_too_many_images, namespace_unknown,
    not_judged, refused, unjudged,
};

/// Allow, warn or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Warn,
    Deny,
}

impl Effect {
    /// `allowed`, `warned` or `denied`: metrics, logs and the `decision` audit annotation.
    pub fn label(self) -> &'static str {
        match self {
            Effect::Allow => "allowed",
            Effect::Warn => "warned",
            Effect::Deny => "denied",
        }
    }

    /// `allowed`, `warn` or `denied`: the audit report's `verdict` column and its
    /// `--verdict` filter (docs/audit.md).
    pub fn audit_column(self) -> &'static str {
        match self {
            Effect::Allow => "allowed",
            Effect::Warn => "warn",
            Effect::Deny => "denied",
        }
    }

    /// The effect a response has: denied, allowed with warnings, or allowed.
    pub fn of(response: &Response) -> Effect {
        match (response.allowed, response.warnings.is_empty()) {
            (false, _) => Effect::Deny,
            (true, true) => Effect::Allow,
            (true, false) => Effect::Warn,
        }
    }
}

/// What is decided for one object.
#[derive(Debug, Clone)]
pub(crate) struct Decision<'c> {
    pub response: Response,
    /// Each container's part, when asked for (the audit); else empty.
    pub containers: Vec<ContainerDecision<'c>>,
    /// Events to emit (none for a dry run).
    pub events: Vec<Event>,
    pub relief: Option<Relief>,
}

impl Decision<'_> {
    pub(crate) fn effect(&self) -> Effect {
        Effect::of(&self.response)
    }

    /// The log line's `reason`: see [`text::log_reason`].
    pub(crate) fn log_reason(&self) -> Cow<'_, str> {
        text::log_reason(&self.response)
    }
}

/// One container's part of a [`Decision`].
#[derive(Debug, Clone)]
pub(crate) struct ContainerDecision<'c> {
    pub container: ContainerImage<'c>,
    /// `None` when the pod was not judged image by image (exempt namespace, mode off,
    /// namespace lookup failed, too many images); `message` then says why.
    pub outcome: Option<ImageOutcome>,
    pub effect: Effect,
    /// The text admission gives for this container (a denial or a warning).
    pub message: Option<String>,
}

/// What let violations through as warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relief {
    BreakGlass,
    /// A built-in controller created the pod (`controller-pods: warn`).
    ControllerPod,
}

/// A Kubernetes Event a decision asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub regarding: Regarding,
    pub reason: &'static str,
    pub note: String,
}

/// Where a review comes from, beyond its namespace.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub controller: Option<ControllerOwner>,
    /// A dry run (`kubectl --dry-run=server`), or a look at running pods: no Events.
    pub dry_run: bool,
}

/// What a decision's messages name; written out only when a message is (most
/// reviews are allowed without one).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    Object {
        kind: &'a str,
        namespace: &'a str,
        name: Option<&'a str>,
    },
    Images {
        namespace: &'a str,
    },
    Named(&'a str),
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Object {
                kind,
                namespace,
                name: Some(name),
            } => write!(f, "{kind} {namespace}/{name}"),
            Subject::Object {
                kind,
                namespace,
                name: None,
            } => write!(f, "{kind} in namespace {namespace}"),
            Subject::Images { namespace } => write!(f, "images for namespace {namespace}"),
            Subject::Named(subject) => f.write_str(subject),
        }
    }
}
