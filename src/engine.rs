//! The decision: a decoded review -> policy of its namespace -> every image's digest
//! and scan summary, concurrently under one deadline -> allowed, warned or denied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::time::Instant as TokioInstant;

use crate::admission::{self, BadReview, ContainerImage, PodSpecPath, Request, SpecLite, Verdict};
use crate::config::{Config, PolicyConfig};
use crate::domain::rules::{ControllerPods, Mode, OnError, UnscannedRule};
use crate::domain::scan_error::ScanError;
use crate::domain::summary::{ScanStatus, ScanSummary, SeverityCounts};
use crate::domain::text::{clip, MAX_QUOTED};
use crate::events::{Events, Regarding};
use crate::image::{ImageRef, ParseCache};
use crate::metrics::Metrics;
use crate::namespaces::NamespaceSource;
use crate::policy::allowlist::{self, AllowEntry};
use crate::policy::{judge, Limit, NamespacePolicy, PolicyCache, Source, Violation};
use crate::resolve::{DigestResolver, PullContext, ResolveError, Resolved};
use crate::scan::cache::{CacheKey, SummaryCache};
use crate::scan::{ScanTarget, ScannerRouter};

/// Longest list of offending images spelled out in one message (and of warnings).
const MAX_LISTED: usize = 20;
/// Longest single line of a message or warning.
const MAX_LINE: usize = 2048;

pub struct Engine {
    policy: PolicyConfig,
    /// Cluster-wide accepted vulnerabilities (config and the accepted-CVEs file).
    accepted: Vec<AllowEntry>,
    exempt_namespaces: HashSet<String, crate::FastHashState>,
    deadline: Duration,
    /// Most distinct images one review may name (`review.maxImages`).
    max_images: usize,
    namespaces: Arc<dyn NamespaceSource>,
    router: ScannerRouter,
    resolver: Option<Arc<dyn DigestResolver>>,
    cache: SummaryCache,
    policies: PolicyCache,
    images: ParseCache<KnownImage>,
    events: Option<Events>,
    metrics: Arc<Metrics>,
}

/// What became of one image.
#[derive(Debug, Clone)]
pub enum Outcome {
    Exempt {
        pattern: String,
    },
    Passed {
        digest: String,
        /// The counts judged (the worst per severity over an index's platforms).
        counts: SeverityCounts,
        unenforceable: Vec<Unenforceable>,
        notes: Vec<String>,
    },
    OverLimit {
        digest: String,
        counts: SeverityCounts,
        violations: Vec<PlatformViolation>,
        unenforceable: Vec<Unenforceable>,
        notes: Vec<String>,
    },
    Unscanned {
        digest: Option<String>,
        reason: String,
    },
    NotFound {
        message: String,
    },
    BackendError {
        message: String,
    },
    Invalid {
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct PlatformViolation {
    pub violation: Violation,
    /// For a multi-arch image judged by its platform manifests: the platform whose count this is.
    pub platform: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Unenforceable {
    pub limit: Limit,
    pub scanner: &'static str,
}

/// What became of one container of a pod judged by [`Engine::judge_pod`].
#[derive(Debug, Clone)]
pub struct ContainerResult<'a> {
    pub container: ContainerImage<'a>,
    /// `None` when the pod was not judged image by image (exempt namespace, mode off,
    /// namespace lookup failed); `message` then says why.
    pub outcome: Option<Outcome>,
    pub verdict: ContainerVerdict,
    /// The text admission would give for this container (a denial or a warning).
    pub message: Option<String>,
}

/// One container's share of the pod's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerVerdict {
    Allowed,
    Warned,
    Denied,
}

impl ContainerVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerVerdict::Allowed => "allowed",
            ContainerVerdict::Warned => "warn",
            ContainerVerdict::Denied => "denied",
        }
    }

    fn of(verdict: &Verdict) -> ContainerVerdict {
        match (verdict.allowed, verdict.warnings.is_empty()) {
            (false, _) => ContainerVerdict::Denied,
            (true, true) => ContainerVerdict::Allowed,
            (true, false) => ContainerVerdict::Warned,
        }
    }
}

/// A pod judged as admission would judge it: the verdict and each container's part.
#[derive(Debug, Clone)]
pub struct PodJudgement<'a> {
    pub verdict: Verdict,
    pub containers: Vec<ContainerResult<'a>>,
}

/// A review that judged no container: its verdict alone.
impl From<Verdict> for PodJudgement<'_> {
    fn from(verdict: Verdict) -> Self {
        PodJudgement {
            verdict,
            containers: Vec::new(),
        }
    }
}

/// One pod's containers to judge, and where they come from.
struct PodUnderReview<'p, 'c> {
    subject: Subject<'p>,
    namespace: &'p str,
    containers: &'p [ContainerImage<'c>],
    /// Where the pod's pull credentials come from; read only when a tag is resolved.
    spec: Option<&'p SpecLite<'p>>,
    origin: &'p Origin,
    deadline: TokioInstant,
    /// Report each container's result (audit), or only the pod's verdict (admission).
    per_container: bool,
}

/// What a verdict's messages name; written out only when a message is (most
/// reviews are allowed without one).
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
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

/// The effect of an outcome under the namespace's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Warn,
    Deny,
}

pub struct EngineParts {
    pub namespaces: Arc<dyn NamespaceSource>,
    pub router: ScannerRouter,
    pub resolver: Option<Arc<dyn DigestResolver>>,
    pub metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(config: &Config, parts: EngineParts) -> Engine {
        let (accepted, _) = allowlist::parse_list(
            &config.policy.defaults.allow_cves.join(","),
            &Source::ClusterDefault,
        );
        Engine {
            policy: config.policy.clone(),
            accepted,
            exempt_namespaces: config.policy.exempt_namespaces.iter().cloned().collect(),
            deadline: config.deadline,
            max_images: config.review.max_images,
            namespaces: parts.namespaces,
            router: parts.router,
            resolver: parts.resolver,
            cache: SummaryCache::new(&config.cache, parts.metrics.clone()),
            policies: PolicyCache::default(),
            images: ParseCache::default(),
            events: None,
            metrics: parts.metrics,
        }
    }

    /// Publishes Kubernetes Events (break-glass, controller pods over their limits).
    pub fn set_events(&mut self, events: Events) {
        self.events = Some(events);
    }

    fn publish(&self, origin: &Origin, regarding: Regarding, reason: &'static str, note: String) {
        if let (Some(events), false) = (&self.events, origin.dry_run) {
            events.warn(regarding, reason, note);
        }
    }

    /// Adds cluster-wide accepted vulnerabilities (the accepted-CVEs file).
    pub fn add_accepted(&mut self, entries: Vec<AllowEntry>) {
        self.accepted.extend(entries);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn cache(&self) -> &SummaryCache {
        &self.cache
    }

    /// Puts the replicas' shared tier under the summary cache.
    pub fn set_shared_cache(&mut self, shared: Arc<crate::shared_cache::SharedTier>) {
        self.cache.set_shared(shared);
    }

    /// The kind of scanner that holds `image`'s scans (`file`, `harbor`...), if any.
    pub fn scanner_for(&self, image: &ImageRef) -> Option<&'static str> {
        self.router.route(image).map(|r| r.scanner.kind())
    }

    /// Index of the config's `registries` route that holds `image`'s scans, if any.
    pub fn route_index(&self, image: &ImageRef) -> Option<usize> {
        self.router.route(image).map(|r| r.index)
    }

    pub fn namespaces_ready(&self) -> bool {
        self.namespaces.is_ready()
    }

    /// Decides one AdmissionReview body; `deadline` (from the apiserver's `?timeout=`)
    /// shortens the configured one.
    pub async fn review(
        &self,
        body: &[u8],
        deadline: Option<Duration>,
    ) -> Result<Vec<u8>, BadReview> {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        let request = match admission::decode(body) {
            Ok(request) => request,
            Err(e) => {
                self.metrics.invalid_review(started.elapsed());
                return Err(e);
            }
        };
        let verdict = self.decide(&request, self.deadline_from(deadline)).await;
        let result = result_label(&verdict);
        let elapsed = started.elapsed();
        self.metrics.review(&request.kind.kind, result, elapsed);
        let reason = log_reason(&verdict);
        tracing::info!(
            // As `&str`, not `%`: a plain string skips the formatting machinery.
            uid = request.uid.as_ref(),
            kind = request.kind.kind.as_ref(),
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = request.name.as_deref().unwrap_or(""),
            operation = request.operation.as_ref(),
            result,
            elapsed_us = elapsed.as_micros() as u64,
            // Not `message`: that is the event's own name, "review".
            reason = reason.as_ref(),
            "review"
        );
        Ok(admission::encode(
            request.api_version,
            &request.uid,
            &verdict,
        ))
    }

    /// When a review must be answered: the configured deadline, shortened by the
    /// apiserver's `?timeout=` (already less its margin).
    pub fn deadline_from(&self, apiserver: Option<Duration>) -> TokioInstant {
        TokioInstant::now() + apiserver.map_or(self.deadline, |d| d.min(self.deadline))
    }

    pub async fn decide(&self, request: &Request<'_>, deadline: TokioInstant) -> Verdict {
        self.judge_review(request, deadline, false).await.verdict
    }

    /// [`Engine::decide`], keeping each judged container's outcome when `for_pinning`
    /// (`POST /mutate`, pin.rs); no container when nothing was judged. Pinning
    /// publishes no Event: the validating review of the same object does.
    pub async fn judge_review<'r>(
        &self,
        request: &'r Request<'_>,
        deadline: TokioInstant,
        for_pinning: bool,
    ) -> PodJudgement<'r> {
        let kind = request.kind.kind.as_ref();
        let Some(path) = PodSpecPath::for_kind(kind) else {
            return allow_unjudged(format!("kind {kind:?} carries no pod spec")).into();
        };
        match request.operation.as_ref() {
            "CREATE" | "UPDATE" => {}
            other => return allow_unjudged(format!("operation {other} is not judged")).into(),
        }
        if let Some(sub) = &request.sub_resource {
            if !(kind == "Pod" && sub == "ephemeralcontainers") {
                return allow_unjudged(format!("subresource {sub} is not judged")).into();
            }
        }
        let object = match &request.object {
            Ok(Some(o)) => o,
            Ok(None) => return deny_plain(format!("{kind} review has no object to judge")).into(),
            Err(e) => {
                return deny_plain(format!("vulngate could not read this {kind}: {e}")).into()
            }
        };
        let namespace = request
            .namespace
            .as_deref()
            .or(object.metadata.namespace.as_deref())
            .unwrap_or("default");
        if self.exempt_namespaces.contains(namespace) {
            return allow_unjudged(format!("namespace {namespace} is exempt")).into();
        }
        let Some(spec) = path.pod_spec(object) else {
            return deny_plain(format!("{kind} has no pod template to judge")).into();
        };
        let mut containers = spec.images();
        if request.operation == "UPDATE" {
            if let Some(old_spec) = request.old_object.as_ref().and_then(|o| path.pod_spec(o)) {
                let old: HashSet<(&str, &str), crate::FastHashState> = old_spec
                    .images()
                    .into_iter()
                    .map(|c| (c.name, c.image))
                    .collect();
                containers.retain(|c| !old.contains(&(c.name, c.image)));
            }
            if containers.is_empty() {
                return allow_unjudged("the update adds or changes no image".into()).into();
            }
        }
        let subject = Subject::Object {
            kind,
            namespace,
            name: request.name.as_deref().or(object.metadata.name.as_deref()),
        };
        let origin = Origin {
            controller: (kind == "Pod" && request.operation == "CREATE")
                .then(|| controller_of(request, object))
                .flatten(),
            dry_run: request.dry_run || for_pinning,
        };
        let pod = PodUnderReview {
            subject,
            namespace,
            containers: &containers,
            spec: Some(spec),
            origin: &origin,
            deadline,
            per_container: for_pinning,
        };
        let (verdict, containers) = self.judge_containers(&pod).await;
        PodJudgement {
            verdict,
            containers,
        }
    }

    /// Judges a pod spec's containers as a new Pod in `namespace` created directly by a
    /// user would be judged (no controller-pod relief), reporting each container's outcome
    /// (`vulngate audit`). Each distinct image is looked up once, through the summary cache.
    pub async fn judge_pod<'s>(
        &self,
        subject: &str,
        namespace: &str,
        spec: &'s SpecLite<'_>,
    ) -> PodJudgement<'s> {
        let containers = spec.images();
        if self.exempt_namespaces.contains(namespace) {
            let reason = format!("namespace {namespace} is exempt");
            return PodJudgement {
                containers: unjudged(&containers, &reason),
                verdict: allow_unjudged(reason),
            };
        }
        let deadline = TokioInstant::now() + self.deadline;
        let pod = PodUnderReview {
            subject: Subject::Named(subject),
            namespace,
            containers: &containers,
            spec: Some(spec),
            // Looking at running pods changes nothing: no break-glass Events on
            // every audit (the background audit leaves its own, on the Pod).
            origin: &Origin {
                controller: None,
                dry_run: true,
            },
            deadline,
            per_container: true,
        };
        let (verdict, containers) = self.judge_containers(&pod).await;
        PodJudgement {
            verdict,
            containers,
        }
    }

    /// Decides bare image references as if they were one pod's containers (`vulngate check`).
    pub async fn check_images(&self, namespace: &str, images: &[String]) -> Verdict {
        let names: Vec<String> = (1..=images.len()).map(|i| format!("image-{i}")).collect();
        let containers: Vec<ContainerImage> = images
            .iter()
            .zip(&names)
            .map(|(image, name)| ContainerImage {
                kind: admission::ContainerKind::Container,
                name,
                image,
            })
            .collect();
        let deadline = TokioInstant::now() + self.deadline;
        let pod = PodUnderReview {
            subject: Subject::Images { namespace },
            namespace,
            containers: &containers,
            spec: None,
            origin: &Origin::default(),
            deadline,
            per_container: false,
        };
        self.judge_containers(&pod).await.0
    }

    async fn judge_containers<'c>(
        &self,
        pod: &PodUnderReview<'_, 'c>,
    ) -> (Verdict, Vec<ContainerResult<'c>>) {
        let PodUnderReview {
            subject,
            namespace,
            containers,
            spec,
            origin,
            deadline,
            per_container,
        } = *pod;
        let now = time::OffsetDateTime::now_utc();
        let lookup = tokio::time::timeout_at(deadline, self.namespaces.annotations(namespace))
            .await
            .unwrap_or_else(|_| {
                Err(crate::namespaces::NamespaceError(
                    "no answer from the Kubernetes API within the review deadline".into(),
                ))
            });
        let policy = match lookup {
            Ok(annotations) => self.policies.resolve(
                &self.policy,
                &self.accepted,
                namespace,
                annotations.as_ref(),
                now,
            ),
            Err(e) => {
                // Without the namespace's annotations its limits are unknown: a backend error.
                let policy =
                    NamespacePolicy::resolve(&self.policy, &self.accepted, namespace, None, now);
                let verdict = self.on_error_verdict(&policy, &subject, &e.to_string());
                let mut results = unjudged(containers, &e.to_string());
                let status = ContainerVerdict::of(&verdict);
                results.iter_mut().for_each(|r| r.verdict = status);
                return (verdict, results);
            }
        };
        if policy.mode == Mode::Off {
            let reason = format!("mode off in namespace {namespace}");
            let mut v = allow_unjudged(reason.clone());
            v.warnings.extend(policy.problems.iter().cloned());
            return (v, unjudged(containers, &reason));
        }

        let (distinct, image_of_container) = distinct_images(containers);
        if distinct.len() > self.max_images {
            // Each image may cost registry and scanner calls: refuse before any.
            return self.too_many_images(&policy, &subject, containers, distinct.len());
        }
        // Most images are decided from the summary cache, with no future to build;
        // the rest wait for registries and scanners, within the deadline.
        let clock = Instant::now();
        let mut hits = 0;
        let mut outcomes: Vec<Option<Outcome>> = distinct
            .iter()
            .map(|image| self.evaluate_now(image, &policy, now, clock, &mut hits))
            .collect();
        self.metrics.cache_hits(hits);
        let waiting: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        if !waiting.is_empty() {
            let pull = match spec {
                Some(spec) => pull_context(namespace, spec),
                None => PullContext {
                    namespace: namespace.to_string(),
                    ..PullContext::default()
                },
            };
            let (policy, pull) = (&policy, &pull);
            let waited = join_all(waiting.iter().map(|&i| {
                let image = distinct[i];
                async move {
                    tokio::time::timeout_at(deadline, self.evaluate(image, policy, pull, now))
                        .await
                        .unwrap_or_else(|_| Outcome::BackendError {
                            message:
                                "no answer from the registry or scanner within the review deadline"
                                    .into(),
                        })
                }
            }))
            .await;
            for (i, outcome) in waiting.into_iter().zip(waited) {
                outcomes[i] = Some(outcome);
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Outcome::BackendError {
                    message: "vulngate did not evaluate this image".into(),
                })
            })
            .collect();

        let mut denials = Vec::new();
        let mut warnings: Vec<String> = policy.problems.clone();
        let mut audit = BTreeMap::new();
        let mut results = Vec::with_capacity(if per_container { containers.len() } else { 0 });
        for (container, &image) in containers.iter().zip(&image_of_container) {
            let outcome = &outcomes[image];
            let (effect, text) = self.effect(&policy, outcome);
            if per_container {
                results.push(ContainerResult {
                    container: container.clone(),
                    outcome: Some(outcome.clone()),
                    verdict: match effect {
                        Effect::Deny => ContainerVerdict::Denied,
                        Effect::Warn if text.is_some() => ContainerVerdict::Warned,
                        _ => ContainerVerdict::Allowed,
                    },
                    message: text.clone(),
                });
            }
            let Some(text) = text else { continue };
            let line = format!(
                "{} {:?} (image {:?}{}): {text}",
                container.kind.describe(),
                clip(container.name, MAX_QUOTED),
                clip(container.image, MAX_QUOTED),
                digest_of(outcome)
                    .map(|d| format!(", {}", clip(d, MAX_QUOTED)))
                    .unwrap_or_default()
            );
            let line = clip(&line, MAX_LINE).into_owned();
            match effect {
                Effect::Deny => denials.push(line),
                Effect::Warn | Effect::Allow => warnings.push(line),
            }
        }
        let decision = if !denials.is_empty() {
            "denied"
        } else if warnings.is_empty() {
            "allowed"
        } else {
            "warned"
        };
        // Violations that a break-glass or a controller-created pod lets through.
        let relief = if denials.is_empty() {
            None
        } else if let Some((until, source)) = &policy.break_glass_until {
            audit.insert("break-glass-until".into(), until.to_string());
            let relief = format!("allowed by break-glass until {until} ({source})");
            self.publish(
                origin,
                Regarding {
                    api_version: "v1",
                    kind: "Namespace",
                    namespace: None,
                    name: namespace.to_string(),
                    uid: None,
                },
                "BreakGlass",
                format!("{relief}: {subject}: {}", denials.join("; ")),
            );
            Some(relief)
        } else if let (Some(owner), ControllerPods::Warn) =
            (&origin.controller, policy.controller_pods)
        {
            let controller = owner.controller;
            audit.insert("controller-pod".into(), controller.to_string());
            self.metrics.controller_pod_warned();
            let relief = format!(
                "allowed because the {controller} created this pod from a template judged when its workload was created or updated ({} is warn)",
                crate::domain::annotations::CONTROLLER_PODS_ANNOTATION
            );
            self.publish(
                origin,
                Regarding {
                    api_version: owner.api_version,
                    kind: owner.kind,
                    namespace: Some(namespace.to_string()),
                    name: owner.name.clone(),
                    uid: None,
                },
                "ReplicaOverLimits",
                format!("{relief}: {}", denials.join("; ")),
            );
            Some(relief)
        } else {
            None
        };
        let decision = if relief.is_some() { "warned" } else { decision };
        if let Some(relief) = relief {
            for denial in denials.drain(..) {
                warnings.push(format!("{relief}: {denial}"));
            }
            for result in &mut results {
                if result.verdict == ContainerVerdict::Denied {
                    result.verdict = ContainerVerdict::Warned;
                    result.message = result.message.take().map(|m| format!("{relief}: {m}"));
                }
            }
        }
        bound_warnings(&mut warnings);
        audit.insert("decision".to_string(), decision.to_string());
        if denials.is_empty() {
            if !warnings.is_empty() && policy.mode == Mode::Warn {
                audit.insert("mode".into(), "warn".into());
            }
            let verdict = Verdict {
                allowed: true,
                message: None,
                warnings,
                audit_annotations: audit,
            };
            return (verdict, results);
        }
        audit.insert("denied-containers".into(), denials.len().to_string());
        let mut message = format!("vulngate denied {subject}: ");
        let listed = denials.len().min(MAX_LISTED);
        message.push_str(&denials[..listed].join("; "));
        if denials.len() > listed {
            let _ = write!(message, "; and {} more", denials.len() - listed);
        }
        let verdict = Verdict {
            allowed: false,
            message: Some(message),
            warnings,
            audit_annotations: audit,
        };
        (verdict, results)
    }

    /// The verdict on a review naming more than `max_images` distinct images: denied
    /// in enforce mode, allowed with a warning in warn mode; no image is judged.
    fn too_many_images<'c>(
        &self,
        policy: &NamespacePolicy,
        subject: &Subject<'_>,
        containers: &[ContainerImage<'c>],
        count: usize,
    ) -> (Verdict, Vec<ContainerResult<'c>>) {
        let text = format!(
            "it names {count} distinct images, more than the {} that one review may judge (review.maxImages), so none was judged",
            self.max_images
        );
        let mut verdict = if policy.mode == Mode::Enforce {
            deny_plain(format!("vulngate denied {subject}: {text}"))
        } else {
            Verdict {
                allowed: true,
                message: None,
                warnings: vec![format!("vulngate did not judge {subject}: {text}")],
                audit_annotations: [("decision".to_string(), "warned".to_string())].into(),
            }
        };
        verdict
            .audit_annotations
            .insert("too-many-images".into(), count.to_string());
        let mut results = unjudged(containers, &text);
        let status = ContainerVerdict::of(&verdict);
        results.iter_mut().for_each(|r| r.verdict = status);
        (verdict, results)
    }

    /// What one image's outcome means under the namespace's mode and rules.
    fn effect(&self, policy: &NamespacePolicy, outcome: &Outcome) -> (Effect, Option<String>) {
        let enforce = |strict: bool| match (strict, policy.mode) {
            (true, Mode::Enforce) => Effect::Deny,
            _ => Effect::Warn,
        };
        match outcome {
            Outcome::Exempt { .. } => (Effect::Allow, None),
            Outcome::Passed {
                unenforceable,
                notes,
                ..
            } if unenforceable.is_empty() && notes.is_empty() => (Effect::Allow, None),
            Outcome::Passed {
                unenforceable,
                notes,
                ..
            } => {
                let text = [describe_unenforceable(unenforceable), notes.join("; ")]
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
            Outcome::OverLimit {
                violations,
                unenforceable,
                notes,
                ..
            } => {
                let mut text = describe_violations(violations);
                if !unenforceable.is_empty() {
                    let _ = write!(text, "; {}", describe_unenforceable(unenforceable));
                }
                if !notes.is_empty() {
                    let _ = write!(text, "; {}", notes.join("; "));
                }
                (enforce(true), Some(text))
            }
            Outcome::Unscanned { reason, .. } => match policy.unscanned {
                UnscannedRule::Deny => (
                    enforce(true),
                    Some(format!(
                        "{reason}; unscanned images are denied ({})",
                        unscanned_source(policy)
                    )),
                ),
                UnscannedRule::Warn => (Effect::Warn, Some(reason.clone())),
                UnscannedRule::Allow => (Effect::Allow, None),
            },
            Outcome::BackendError { message } => match self.policy.defaults.on_error {
                OnError::Deny => (enforce(true), Some(format!("{message} (onError: deny)"))),
                OnError::Allow => (Effect::Warn, Some(format!("{message} (onError: allow)"))),
            },
            Outcome::NotFound { message } | Outcome::Invalid { message } => {
                (enforce(true), Some(message.clone()))
            }
        }
    }

    fn on_error_verdict(
        &self,
        policy: &NamespacePolicy,
        subject: &dyn fmt::Display,
        message: &str,
    ) -> Verdict {
        let text = format!("vulngate could not judge {subject}: {message}");
        let deny = self.policy.defaults.on_error == OnError::Deny && policy.mode == Mode::Enforce;
        if deny {
            deny_plain(text)
        } else {
            Verdict {
                allowed: true,
                message: None,
                warnings: vec![text],
                audit_annotations: [("decision".to_string(), "warned".to_string())].into(),
            }
        }
    }

    /// The parsed reference and the scanner route of an image, or its outcome when
    /// that is already known (unreadable, exempt, no scanner).
    fn locate<'s>(&'s self, written: &str, policy: &NamespacePolicy) -> Located<'s> {
        let known = self.images.parse(written, |image| KnownImage {
            route: self.router.position(&image),
            image: Arc::new(image),
        });
        let KnownImage { image, route } = match known {
            Ok(k) => k,
            Err(e) => {
                return Located::Decided(Outcome::Invalid {
                    message: e.to_string(),
                })
            }
        };
        if let Some(p) = policy.exempt_images.iter().find(|p| p.matches(&image)) {
            return Located::Decided(Outcome::Exempt {
                pattern: p.as_str().to_string(),
            });
        }
        match route.and_then(|r| self.router.at(r)) {
            Some(route) => Located::Routed(image, route),
            None => Located::Decided(Outcome::Unscanned {
                digest: image.digest.clone(),
                reason: format!("no scanner is configured for registry {}", image.registry),
            }),
        }
    }

    /// An image's outcome when nothing needs waiting for: decided by [`Engine::locate`],
    /// or a digest whose summary is cached. `None`: [`Engine::evaluate`] it.
    /// Summary cache hits are added to `hits`.
    fn evaluate_now(
        &self,
        written: &str,
        policy: &NamespacePolicy,
        now: time::OffsetDateTime,
        clock: Instant,
        hits: &mut u64,
    ) -> Option<Outcome> {
        let (image, route) = match self.locate(written, policy) {
            Located::Decided(outcome) => return Some(outcome),
            Located::Routed(image, route) => (image, route),
        };
        let (Some(digest), Some(key)) = (image.digest.as_deref(), &image.digest_key) else {
            return None;
        };
        let target = ScanTarget {
            image: &image,
            digest,
        };
        let key = CacheKey {
            route: route.index,
            digest: key.clone(),
        };
        let summary = self.cache.cached(&key, &route.scanner, &target, clock)?;
        *hits += 1;
        Some(match summary.status {
            ScanStatus::Complete => {
                judge_scans(policy, digest.to_string(), &[(None, summary)], now)
            }
            _ => unscanned(digest, &summary),
        })
    }

    /// Reference -> digest -> summary -> judgement, for one distinct image.
    pub async fn evaluate(
        &self,
        written: &str,
        policy: &NamespacePolicy,
        pull: &PullContext,
        now: time::OffsetDateTime,
    ) -> Outcome {
        let (image, route) = match self.locate(written, policy) {
            Located::Decided(outcome) => return outcome,
            Located::Routed(image, route) => (image, route),
        };
        let resolved = match &image.digest {
            Some(d) => Resolved::Manifest { digest: d.clone() },
            // Boxed, like the index path below: rare paths keep the common future small.
            None => match Box::pin(self.resolve_tag(&image, pull, route.scanner.as_ref())).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Outcome::Unscanned {
                        digest: None,
                        reason: format!(
                            "tag {} is not mapped to a digest by any registry or scan report",
                            image.tag.as_deref().unwrap_or("latest")
                        ),
                    }
                }
                Err(ResolveError::NotFound(m)) => return Outcome::NotFound { message: m },
                Err(ResolveError::Backend(m)) => return Outcome::BackendError { message: m },
            },
        };
        let digest = resolved.digest().to_string();
        let summary = match self
            .summary(route.index, &route.scanner, &image, &digest)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Outcome::BackendError {
                    message: e.to_string(),
                }
            }
        };
        let judged = match (&resolved, summary.status) {
            (Resolved::Index { platforms, .. }, ScanStatus::NotScanned)
                if !platforms.is_empty() =>
            {
                match Box::pin(self.platform_summaries(
                    route.index,
                    &route.scanner,
                    &image,
                    platforms,
                ))
                .await
                {
                    Ok(Some(per_platform)) => per_platform,
                    Ok(None) => return unscanned(&digest, &summary),
                    Err(e) => {
                        return Outcome::BackendError {
                            message: e.to_string(),
                        }
                    }
                }
            }
            (_, ScanStatus::Complete) => vec![(None, summary)],
            _ => return unscanned(&digest, &summary),
        };
        judge_scans(policy, digest, &judged, now)
    }

    async fn resolve_tag(
        &self,
        image: &ImageRef,
        pull: &PullContext,
        scanner: &dyn crate::scan::Scanner,
    ) -> Result<Option<Resolved>, ResolveError> {
        if let Some(resolver) = &self.resolver {
            if let Some(r) = resolver.resolve(image, pull).await? {
                return Ok(Some(r));
            }
        }
        Ok(scanner
            .digest_for_tag(image)
            .map(|digest| Resolved::Manifest { digest }))
    }

    async fn summary(
        &self,
        route: usize,
        scanner: &Arc<dyn crate::scan::Scanner>,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Arc<ScanSummary>, Arc<ScanError>> {
        let target = ScanTarget { image, digest };
        self.cache.get_or_fetch(route, scanner, &target).await
    }

    /// Summaries of an index's platform manifests; `None` when any is unfinished.
    async fn platform_summaries(
        &self,
        route: usize,
        scanner: &Arc<dyn crate::scan::Scanner>,
        image: &ImageRef,
        platforms: &[(String, String)],
    ) -> Result<Option<Vec<(Option<String>, Arc<ScanSummary>)>>, Arc<ScanError>> {
        let fetched = join_all(
            platforms
                .iter()
                .map(|(_, digest)| self.summary(route, scanner, image, digest)),
        )
        .await;
        let mut out = Vec::with_capacity(platforms.len());
        for ((platform, _), summary) in platforms.iter().zip(fetched) {
            let summary = summary?;
            if summary.status != ScanStatus::Complete {
                return Ok(None);
            }
            out.push((Some(platform.clone()), summary));
        }
        Ok(Some(out))
    }
}

/// Judges one summary, or the worst of several platform summaries, keeping for
/// each violated limit the platform that set it.
/// Finished scans (one, or one per platform) judged under the namespace's rules,
/// after `max-scan-age`.
fn judge_scans(
    policy: &NamespacePolicy,
    digest: String,
    judged: &[(Option<String>, Arc<ScanSummary>)],
    now: time::OffsetDateTime,
) -> Outcome {
    let mut age_notes = Vec::new();
    if let Some(max_age) = policy.max_scan_age {
        for (_, summary) in judged {
            match summary.finished_at {
                    Some(finished) if now - finished > max_age => {
                        return Outcome::Unscanned {
                            digest: Some(digest),
                            reason: format!(
                                "the {} scan finished {}, longer ago than max-scan-age {}",
                                summary.scanner,
                                finished.date(),
                                humantime::format_duration(max_age)
                            ),
                        }
                    }
                    Some(_) => {}
                    None => age_notes.push(format!(
                        "max-scan-age could not be applied: the {} scanner does not say when its scan finished",
                        summary.scanner
                    )),
                }
        }
    }
    let mut outcome = judge_platforms(policy, digest, judged, now);
    if let Outcome::Passed { notes, .. } | Outcome::OverLimit { notes, .. } = &mut outcome {
        age_notes.dedup();
        notes.extend(age_notes);
    }
    outcome
}

/// A parsed reference and its scanner route (a position in the router), remembered
/// per written reference: the router does not change while the engine lives.
#[derive(Clone)]
struct KnownImage {
    image: Arc<ImageRef>,
    route: Option<usize>,
}

/// Where an image stands before any waiting.
enum Located<'s> {
    Decided(Outcome),
    Routed(Arc<ImageRef>, &'s crate::scan::Route),
}

fn judge_platforms(
    policy: &NamespacePolicy,
    digest: String,
    judged: &[(Option<String>, Arc<ScanSummary>)],
    now: time::OffsetDateTime,
) -> Outcome {
    let mut worst: BTreeMap<crate::domain::limits::LimitKey, PlatformViolation> = BTreeMap::new();
    let mut counts: Option<SeverityCounts> = None;
    let mut unenforceable = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (platform, summary) in judged {
        counts = Some(match counts {
            Some(c) => c.worst(&summary.counts),
            None => summary.counts,
        });
        let j = judge(policy, summary, now);
        for note in j.notes {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        for violation in j.violations {
            let replace = worst
                .get(&violation.key)
                .is_none_or(|w| w.violation.count < violation.count);
            if replace {
                worst.insert(
                    violation.key,
                    PlatformViolation {
                        violation,
                        platform: platform.clone(),
                    },
                );
            }
        }
        for limit in j.unenforceable {
            if !unenforceable
                .iter()
                .any(|u: &Unenforceable| u.limit.key == limit.key)
            {
                unenforceable.push(Unenforceable {
                    limit,
                    scanner: summary.scanner,
                });
            }
        }
    }
    let counts = counts.unwrap_or_default();
    if worst.is_empty() {
        Outcome::Passed {
            digest,
            counts,
            unenforceable,
            notes,
        }
    } else {
        Outcome::OverLimit {
            digest,
            counts,
            violations: worst.into_values().collect(),
            unenforceable,
            notes,
        }
    }
}

/// A Pod's owning workload, when a built-in controller created the Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerOwner {
    pub controller: &'static str,
    pub kind: &'static str,
    pub api_version: &'static str,
    pub name: String,
}

/// Where a review comes from, beyond its namespace.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub controller: Option<ControllerOwner>,
    /// A dry run (`kubectl --dry-run=server`): no Events.
    pub dry_run: bool,
}

/// The built-in controller that created a Pod: the request comes from that
/// controller's service account AND the Pod names a matching controller owner.
/// An ownerReference alone, written by anyone, proves nothing.
fn controller_of(
    request: &Request<'_>,
    object: &admission::ObjectLite<'_>,
) -> Option<ControllerOwner> {
    // (the controller's service account, the owner kind it creates pods for, its API version)
    const CONTROLLERS: [(&str, &str, &str); 5] = [
        ("replicaset-controller", "ReplicaSet", "apps/v1"),
        ("job-controller", "Job", "batch/v1"),
        ("statefulset-controller", "StatefulSet", "apps/v1"),
        ("daemon-set-controller", "DaemonSet", "apps/v1"),
        ("replication-controller", "ReplicationController", "v1"),
    ];
    let account = request
        .user_info
        .username
        .strip_prefix("system:serviceaccount:kube-system:")?;
    let (controller, kind, api_version) = CONTROLLERS.iter().find(|(sa, _, _)| *sa == account)?;
    let owner = object
        .metadata
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == *kind)?;
    Some(ControllerOwner {
        controller,
        kind,
        api_version,
        name: owner.name.to_string(),
    })
}

fn pull_context(namespace: &str, spec: &SpecLite<'_>) -> PullContext {
    PullContext {
        namespace: namespace.to_string(),
        service_account: spec.service_account_name.as_deref().map(str::to_string),
        image_pull_secrets: spec
            .image_pull_secrets
            .iter()
            .map(|s| s.name.to_string())
            .collect(),
    }
}

/// The distinct images of `containers` in order, and for each container the index
/// of its image among them.
fn distinct_images<'a>(containers: &[ContainerImage<'a>]) -> (Vec<&'a str>, Vec<usize>) {
    // Pods have a handful of containers: a scan beats hashing. Hostile ones with
    // thousands get a map.
    const SCAN_UP_TO: usize = 32;
    let mut distinct: Vec<&str> = Vec::with_capacity(containers.len());
    let mut index: HashMap<&str, usize, crate::FastHashState> = HashMap::default();
    let of_container = containers
        .iter()
        .map(|c| {
            let known = if containers.len() <= SCAN_UP_TO {
                distinct.iter().position(|d| *d == c.image)
            } else {
                index.get(c.image).copied()
            };
            known.unwrap_or_else(|| {
                distinct.push(c.image);
                if containers.len() > SCAN_UP_TO {
                    index.insert(c.image, distinct.len() - 1);
                }
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of_container)
}

fn unjudged<'c>(containers: &[ContainerImage<'c>], reason: &str) -> Vec<ContainerResult<'c>> {
    containers
        .iter()
        .map(|c| ContainerResult {
            container: c.clone(),
            outcome: None,
            verdict: ContainerVerdict::Allowed,
            message: Some(reason.to_string()),
        })
        .collect()
}

fn unscanned(digest: &str, summary: &ScanSummary) -> Outcome {
    let reason = match summary.status {
        ScanStatus::Scanning => format!(
            "the {} scan of this image is not finished yet",
            summary.scanner
        ),
        ScanStatus::Failed => format!("the {} scan of this image failed", summary.scanner),
        _ => format!("{} has no scan of this image", summary.scanner),
    };
    let reason = match &summary.note {
        Some(note) => format!("{reason} ({note})"),
        None => reason,
    };
    Outcome::Unscanned {
        digest: Some(digest.to_string()),
        reason,
    }
}

/// The digest an outcome judged (or found unscanned), if any.
pub fn digest_of(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Passed { digest, .. } | Outcome::OverLimit { digest, .. } => Some(digest),
        Outcome::Unscanned { digest, .. } => digest.as_deref(),
        _ => None,
    }
}

fn describe_violations(violations: &[PlatformViolation]) -> String {
    violations
        .iter()
        .map(|pv| {
            let v = &pv.violation;
            let platform = pv
                .platform
                .as_ref()
                .map(|p| format!(" on platform {p}"))
                .unwrap_or_default();
            format!(
                "{} {} vulnerabilities{platform}, over the limit of {} set by {}",
                v.count, v.key, v.limit.max, v.limit.source
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_unenforceable(list: &[Unenforceable]) -> String {
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

fn unscanned_source(policy: &NamespacePolicy) -> String {
    match &policy.unscanned_source {
        crate::policy::Source::ClusterDefault => "the cluster default unscanned: deny".into(),
        source => source.to_string(),
    }
}

/// At most [`MAX_LISTED`] warnings, each at most [`MAX_LINE`] bytes, the last one
/// saying how many were left out: a pod of 10,000 containers in warn mode must not
/// become an answer of 10,000 warnings.
fn bound_warnings(warnings: &mut Vec<String>) {
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

fn allow_unjudged(reason: String) -> Verdict {
    Verdict {
        allowed: true,
        message: None,
        warnings: Vec::new(),
        audit_annotations: [
            ("decision".to_string(), "allowed".to_string()),
            ("reason".to_string(), reason),
        ]
        .into(),
    }
}

fn deny_plain(message: String) -> Verdict {
    Verdict {
        allowed: false,
        message: Some(message),
        warnings: Vec::new(),
        audit_annotations: [("decision".to_string(), "denied".to_string())].into(),
    }
}

/// The log line's `reason`: the denial, else the warnings (an allow because a scanner
/// was down names the image and why), else nothing. Warnings are bounded in number and
/// length already; their sum is cut to the size of a denial message.
fn log_reason(verdict: &Verdict) -> std::borrow::Cow<'_, str> {
    match &verdict.message {
        Some(message) => message.as_str().into(),
        None if verdict.warnings.is_empty() => "".into(),
        None => clip(&verdict.warnings.join("; "), MAX_LISTED * MAX_LINE / 4)
            .into_owned()
            .into(),
    }
}

fn result_label(verdict: &Verdict) -> &'static str {
    match (verdict.allowed, verdict.warnings.is_empty()) {
        (false, _) => "denied",
        (true, true) => "allowed",
        (true, false) => "warned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPattern;
    use crate::namespaces::file::FileNamespaces;
    use crate::scan::file::FileScanner;
    use crate::scan::Route;

    fn engine() -> Engine {
        engine_with("review: {maxImages: 5000}\n")
    }

    /// An engine of `extra` config keys, with the `relaxed` namespace in warn mode.
    fn engine_with(extra: &str) -> Engine {
        let config = Config::from_yaml(
            &format!("registries: [{{match: \"*\", scanner: {{file: {{path: scans}}}}}}]\n{extra}"),
            std::path::Path::new("/"),
        )
        .unwrap();
        let namespaces = FileNamespaces::parse(
            "kind: Namespace\nmetadata: {name: relaxed, annotations: {vulngate.io/mode: warn}}\n",
        )
        .unwrap();
        Engine::new(
            &config,
            EngineParts {
                namespaces: Arc::new(namespaces),
                router: ScannerRouter::from_routes(vec![Route {
                    index: 0,
                    pattern: HostPattern("*".into()),
                    scanner: Arc::new(FileScanner::default()),
                }]),
                resolver: None,
                metrics: Arc::new(Metrics::new()),
            },
        )
    }

    #[tokio::test]
    async fn many_unscanned_images_give_bounded_denials_and_warnings() {
        let images: Vec<String> = (0..1000)
            .map(|i| format!("registry.example.com/app-{i}:1"))
            .collect();
        let engine = engine();
        let denied = engine.check_images("default", &images).await;
        assert!(!denied.allowed);
        let message = denied.message.unwrap();
        assert!(message.ends_with("and 980 more"), "{message}");
        assert!(message.len() < 16 * 1024);

        let warned = engine.check_images("relaxed", &images).await;
        assert!(warned.allowed);
        assert_eq!(warned.warnings.len(), MAX_LISTED + 1);
        assert_eq!(warned.warnings[MAX_LISTED], "and 980 more warnings");
    }

    #[tokio::test]
    async fn a_review_over_the_distinct_image_cap_is_denied_without_judging() {
        let engine = engine_with("");
        let images: Vec<String> = (0..101)
            .map(|i| format!("registry.example.com/app-{i}:1"))
            .collect();
        // The same image many times counts once.
        let mut repeated: Vec<String> = vec![images[0].clone(); 500];
        repeated.extend_from_slice(&images[1..100]);
        let under = engine.check_images("default", &repeated).await;
        assert!(
            !under.message.as_deref().unwrap_or("").contains("maxImages"),
            "100 distinct images are judged: {under:?}"
        );

        let denied = engine.check_images("default", &images).await;
        assert!(!denied.allowed);
        assert_eq!(
            denied.message.as_deref(),
            Some("vulngate denied images for namespace default: it names 101 distinct images, more than the 100 that one review may judge (review.maxImages), so none was judged")
        );
        assert_eq!(denied.audit_annotations["too-many-images"], "101");

        let warned = engine.check_images("relaxed", &images).await;
        assert!(warned.allowed);
        assert_eq!(warned.warnings.len(), 1, "{warned:?}");
        assert!(warned.warnings[0].starts_with(
            "vulngate did not judge images for namespace relaxed: it names 101 distinct images"
        ));

        let raised = engine_with("review: {maxImages: 101}\n");
        let judged = raised.check_images("default", &images).await;
        assert!(!judged.message.unwrap().contains("maxImages"));
    }

    #[test]
    fn a_warned_review_logs_its_warnings_as_the_reason() {
        let warned = Verdict {
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
        let many = Verdict {
            warnings: vec!["w".repeat(MAX_LINE); MAX_LISTED + 1],
            ..warned
        };
        assert!(log_reason(&many).len() < MAX_LISTED * MAX_LINE / 4 + 32);
        let denied = deny_plain("denied because".into());
        assert_eq!(log_reason(&denied), "denied because");
        assert_eq!(log_reason(&allow_unjudged("exempt".into())), "");
    }

    #[tokio::test]
    async fn huge_image_names_are_clipped_in_messages() {
        let images = vec![
            format!("registry.example.com/{}:1", "a".repeat(100_000)),
            format!("UPPER/{}", "B".repeat(100_000)),
        ];
        let verdict = engine().check_images("default", &images).await;
        assert!(!verdict.allowed);
        let message = verdict.message.unwrap();
        assert!(
            message.len() < 2 * MAX_LINE + 200,
            "{} bytes",
            message.len()
        );
        assert!(
            message.contains("bytes)"),
            "says how long the clipped value was"
        );
    }
}
