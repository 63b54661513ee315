//! The engine: a review decoded, what of it is judged, the namespace's policy and every
//! image's outcome gathered concurrently under one deadline, the decision taken
//! (`decision/`), and its side effects applied: metrics, Events, the log line.

mod lookup;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::time::Instant as TokioInstant;

use crate::admission::{
    self, BadReview, ContainerImage, JudgedPod, Request, Response, Scope, SpecLite,
};
use crate::config::{Config, PolicyConfig};
use crate::decision::{
    self, Decision, ImageOutcome, Origin, PodContext, PodOutcomes, Relief, Subject,
};
use crate::domain::rules::OnError;
use crate::events::Events;
use crate::image::{ImageRef, ParseCache};
use crate::metrics::Metrics;
use crate::namespaces::NamespaceSource;
use crate::policy::allowlist::{self, AllowEntry};
use crate::policy::{NamespacePolicy, PolicyCache, Source};
use crate::resolve::{DigestResolver, PullContext};
use crate::scan::ScannerRouter;
use crate::scan::cache::SummaryCache;

use lookup::{KnownImage, distinct_images, pull_context};

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

/// One pod's containers to decide, and where they come from.
struct PodUnderReview<'p, 'c> {
    subject: Subject<'p>,
    namespace: &'p str,
    containers: &'p [ContainerImage<'c>],
    /// Where the pod's pull credentials come from; read only when a tag is resolved.
    spec: Option<&'p SpecLite<'p>>,
    origin: &'p Origin,
    deadline: TokioInstant,
    /// Give each container's part (audit), or only the pod's decision (admission).
    per_container: bool,
}

impl<'p, 'c> PodUnderReview<'p, 'c> {
    fn context<'a>(&'a self, policy: &'a NamespacePolicy, on_error: OnError) -> PodContext<'a, 'c> {
        PodContext {
            policy,
            on_error,
            subject: self.subject,
            containers: self.containers,
            origin: self.origin,
            per_container: self.per_container,
        }
    }
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
    pub(crate) fn set_events(&mut self, events: Events) {
        self.events = Some(events);
    }

    /// Adds cluster-wide accepted vulnerabilities (the accepted-CVEs file).
    pub(crate) fn add_accepted(&mut self, entries: Vec<AllowEntry>) {
        self.accepted.extend(entries);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn cache(&self) -> &SummaryCache {
        &self.cache
    }

    /// Puts the replicas' shared tier under the summary cache.
    pub fn set_shared_cache(&mut self, shared: Arc<crate::shared_cache::SharedTier>) {
        self.cache.set_shared(shared);
    }

    /// The kind of scanner that holds `image`'s scans (`file`, `harbor`...), if any.
    pub(crate) fn scanner_for(&self, image: &ImageRef) -> Option<&'static str> {
        self.router.route(image).map(|r| r.scanner.kind())
    }

    /// Index of the config's `registries` route that holds `image`'s scans, if any.
    pub(crate) fn route_index(&self, image: &ImageRef) -> Option<usize> {
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
        let decision = self
            .decide_review(&request, self.deadline_from(deadline), false)
            .await;
        let result = decision.effect().label();
        let elapsed = started.elapsed();
        self.metrics.review(&request.kind.kind, result, elapsed);
        let reason = decision.log_reason();
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
            &decision.response,
        ))
    }

    /// When a review must be answered: the configured deadline, shortened by the
    /// apiserver's `?timeout=` (already less its margin).
    pub(crate) fn deadline_from(&self, apiserver: Option<Duration>) -> TokioInstant {
        TokioInstant::now() + apiserver.map_or(self.deadline, |d| d.min(self.deadline))
    }

    /// Decides a review, keeping each judged container's part when `for_pinning`
    /// (`POST /mutate`, pin.rs); no container when nothing was judged. Pinning
    /// publishes no Event: the validating review of the same object does.
    pub(crate) async fn decide_review<'r>(
        &self,
        request: &'r Request<'_>,
        deadline: TokioInstant,
        for_pinning: bool,
    ) -> Decision<'r> {
        let pod = match admission::scope(request, |ns| self.exempt_namespaces.contains(ns)) {
            Scope::NotJudged(reason) => return decision::not_judged(reason),
            Scope::Unreadable(message) => return decision::refused(message),
            Scope::Judged(pod) => pod,
        };
        let JudgedPod {
            kind,
            namespace,
            name,
            spec,
            containers,
            controller,
        } = pod;
        let origin = Origin {
            controller,
            dry_run: request.dry_run || for_pinning,
        };
        let pod = PodUnderReview {
            subject: Subject::Object {
                kind,
                namespace,
                name,
            },
            namespace,
            containers: &containers,
            spec: Some(spec),
            origin: &origin,
            deadline,
            per_container: for_pinning,
        };
        self.decide_containers(&pod).await
    }

    /// Decides a pod spec's containers as a new Pod in `namespace` created directly by a
    /// user would be decided (no controller-pod relief), with each container's part
    /// (`vulngate audit`). Each distinct image is looked up once, through the summary cache.
    pub(crate) async fn decide_pod<'s>(
        &self,
        subject: &str,
        namespace: &str,
        spec: &'s SpecLite<'_>,
    ) -> Decision<'s> {
        let containers = spec.images();
        // Looking at running pods changes nothing: no break-glass Events on
        // every audit (the background audit leaves its own, on the Pod).
        let origin = Origin {
            controller: None,
            dry_run: true,
        };
        let pod = PodUnderReview {
            subject: Subject::Named(subject),
            namespace,
            containers: &containers,
            spec: Some(spec),
            origin: &origin,
            deadline: TokioInstant::now() + self.deadline,
            per_container: true,
        };
        if self.exempt_namespaces.contains(namespace) {
            let reason = format!("namespace {namespace} is exempt");
            let mut exempt = decision::not_judged(reason.clone());
            exempt.containers = decision::unjudged(&containers, &reason);
            return exempt;
        }
        self.decide_containers(&pod).await
    }

    /// Decides bare image references as if they were one pod's containers (`vulngate check`).
    pub async fn decide_images(&self, namespace: &str, images: &[String]) -> Response {
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
        let pod = PodUnderReview {
            subject: Subject::Images { namespace },
            namespace,
            containers: &containers,
            spec: None,
            origin: &Origin::default(),
            deadline: TokioInstant::now() + self.deadline,
            per_container: false,
        };
        self.decide_containers(&pod).await.response
    }

    /// Gathers the namespace's policy and each distinct image's outcome under the
    /// deadline, decides, and applies the decision's side effects.
    async fn decide_containers<'c>(&self, pod: &PodUnderReview<'_, 'c>) -> Decision<'c> {
        let PodUnderReview {
            namespace,
            containers,
            spec,
            deadline,
            ..
        } = *pod;
        let now = time::OffsetDateTime::now_utc();
        let lookup = tokio::time::timeout_at(deadline, self.namespaces.annotations(namespace))
            .await
            .unwrap_or_else(|_| {
                Err(crate::namespaces::NamespaceError(
                    "no answer from the Kubernetes API within the review deadline".into(),
                ))
            });
        let on_error = self.policy.defaults.on_error;
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
                return decision::namespace_unknown(
                    &pod.context(&policy, on_error),
                    &e.to_string(),
                );
            }
        };
        if let Some(decided) = decision::decide_mode_off(&pod.context(&policy, on_error)) {
            return decided;
        }
        let (distinct, image_of_container) = distinct_images(containers);
        if let Some(decided) = decision::decide_too_many_images(
            &pod.context(&policy, on_error),
            distinct.len(),
            self.max_images,
        ) {
            return decided;
        }
        // Most images are decided from the summary cache, with no future to build;
        // the rest wait for registries and scanners, within the deadline.
        let clock = Instant::now();
        let mut hits = 0;
        let mut outcomes: Vec<Option<ImageOutcome>> = distinct
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
                        .unwrap_or_else(|_| ImageOutcome::BackendError {
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
        let outcomes: Vec<ImageOutcome> = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| ImageOutcome::BackendError {
                    message: "vulngate did not evaluate this image".into(),
                })
            })
            .collect();
        let decided = decision::decide(&PodOutcomes {
            pod: pod.context(&policy, on_error),
            image_of_container: &image_of_container,
            outcomes: &outcomes,
        });
        self.apply(&decided, pod.origin);
        decided
    }

    /// The decision's side effects: its Events, and the count of controller pods
    /// allowed over their limits. A dry run (the pinning pass included: the
    /// validating review of the same object counts it) creates no pod to count.
    fn apply(&self, decided: &Decision<'_>, origin: &Origin) {
        if decided.relief == Some(Relief::ControllerPod) && !origin.dry_run {
            self.metrics.controller_pod_warned();
        }
        if let Some(events) = &self.events {
            for event in &decided.events {
                events.warn(event.regarding.clone(), event.reason, event.note.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPattern;
    use crate::decision::text::{MAX_LINE, MAX_LISTED};
    use crate::namespaces::file::FileNamespaces;
    use crate::scan::Route;
    use crate::scan::file::FileScanner;

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
        let denied = engine.decide_images("default", &images).await;
        assert!(!denied.allowed);
        let message = denied.message.unwrap();
        assert!(message.ends_with("and 980 more"), "{message}");
        assert!(message.len() < 16 * 1024);

        let warned = engine.decide_images("relaxed", &images).await;
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
        let under = engine.decide_images("default", &repeated).await;
        assert!(
            !under.message.as_deref().unwrap_or("").contains("maxImages"),
            "100 distinct images are judged: {under:?}"
        );

        let denied = engine.decide_images("default", &images).await;
        assert!(!denied.allowed);
        assert_eq!(
            denied.message.as_deref(),
            Some(
                "vulngate denied images for namespace default: it names 101 distinct images, more than the 100 that one review may judge (review.maxImages), so none was judged"
            )
        );
        assert_eq!(denied.audit_annotations["too-many-images"], "101");

        let warned = engine.decide_images("relaxed", &images).await;
        assert!(warned.allowed);
        assert_eq!(warned.warnings.len(), 1, "{warned:?}");
        assert!(warned.warnings[0].starts_with(
            "vulngate did not judge images for namespace relaxed: it names 101 distinct images"
        ));

        let raised = engine_with("review: {maxImages: 101}\n");
        let judged = raised.decide_images("default", &images).await;
        assert!(!judged.message.unwrap().contains("maxImages"));
    }

    #[tokio::test]
    async fn huge_image_names_are_clipped_in_messages() {
        let images = vec![
            format!("registry.example.com/{}:1", "a".repeat(100_000)),
            format!("UPPER/{}", "B".repeat(100_000)),
        ];
        let verdict = engine().decide_images("default", &images).await;
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
