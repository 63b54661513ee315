//! The background audit of `vulngate serve` (`audit: {interval: 10m}`): every period
//! the running pods are listed from the cluster and judged exactly as `vulngate audit`
//! judges them, through the Engine that decides admission (so the same policies, caches
//! and decisions). Pods with an image over its limits are counted per namespace into
//! `vulngate_running_pods_over_limit{namespace,verdict}`, and each gets one Warning
//! Event per run. A failed run is logged and counted; the server goes on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use crate::audit::{self, AuditOptions, Row};
use crate::decision::text::{ViolationForm, violation_text};
use crate::engine::Engine;
use crate::events::{Events, Regarding};
use crate::kube_client::KubeClient;
use crate::metrics::OverLimit;

/// The Event reason on a running pod over its limits.
pub(crate) const REASON: &str = "OverVulnerabilityLimits";
/// Longest wait for the namespace cache before the first run (it answers by direct
/// reads meanwhile, so this only spares the apiserver those reads).
const FIRST_RUN_WAIT: Duration = Duration::from_secs(30);

pub struct BackgroundAudit {
    engine: Arc<Engine>,
    /// The cluster's API, made on the first run that can (no kubeconfig or in-cluster
    /// config yet is a failed run like any other, not a reason to stop the webhook).
    kube: KubeClient,
    cluster: Option<(kube::Client, Events)>,
    interval: Duration,
}

/// What one run found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RunTotals {
    pub pods: usize,
    pub namespaces: usize,
    pub denied_pods: usize,
    pub warned_pods: usize,
    pub events: usize,
}

/// One running pod over its limits.
struct Offender<'a> {
    namespace: &'a str,
    name: &'a str,
    denied: bool,
    rows: Vec<&'a Row>,
}

impl BackgroundAudit {
    pub fn new(engine: Arc<Engine>, interval: Duration, kube: KubeClient) -> BackgroundAudit {
        BackgroundAudit {
            engine,
            kube,
            cluster: None,
            interval,
        }
    }

    async fn cluster(&mut self) -> Result<(kube::Client, Events), String> {
        if let Some(cluster) = &self.cluster {
            return Ok(cluster.clone());
        }
        let client = self
            .kube
            .get()
            .await
            .map_err(|e| format!("cannot list pods: {e}"))?;
        let cluster = (client.clone(), Events::new(client));
        self.cluster = Some(cluster.clone());
        Ok(cluster)
    }

    /// Runs every `interval` until `stop` turns true (or its sender is gone).
    pub async fn run(mut self, stop: watch::Receiver<bool>) {
        let stopped = || {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        };
        let waited = tokio::time::Instant::now() + FIRST_RUN_WAIT.min(self.interval);
        while !self.engine.namespaces_ready() && tokio::time::Instant::now() < waited {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stopped() => return,
            }
        }
        let mut ticker = tokio::time::interval(self.interval);
        // A run longer than the interval delays the next instead of starting a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped() => break,
            }
            tokio::select! {
                _ = self.run_once() => {}
                _ = stopped() => break,
            }
        }
        tracing::info!("background audit stopped");
    }

    /// One run: list, judge, export, publish. Failures are logged and counted.
    pub(crate) async fn run_once(&mut self) -> Option<RunTotals> {
        let started = Instant::now();
        let listed = match self.cluster().await {
            Ok((client, events)) => audit::running_pods(client, None)
                .await
                .map(|pods| (pods, events)),
            Err(e) => Err(e),
        };
        let (pods, events) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                self.engine.metrics().audit_failed();
                tracing::warn!(error = %e, "background audit failed; the next period tries again");
                return None;
            }
        };
        let report = audit::audit(&self.engine, &pods, &AuditOptions::default()).await;
        let (by_namespace, offenders) = tally(&pods, &report.containers);
        self.engine.metrics().audit_succeeded(&by_namespace);
        let uids: HashMap<(&str, &str), &str> = pods
            .iter()
            .filter_map(|p| {
                Some((
                    (
                        p.metadata.namespace.as_deref()?,
                        p.metadata.name.as_deref()?,
                    ),
                    p.metadata.uid.as_deref()?,
                ))
            })
            .collect();
        // At most one Event per pod and run, even if a list were to repeat a pod.
        let mut published: HashSet<String> = HashSet::new();
        for offender in &offenders {
            let uid = uids.get(&(offender.namespace, offender.name)).copied();
            let key = uid.map_or_else(
                || format!("{}/{}", offender.namespace, offender.name),
                str::to_string,
            );
            if !published.insert(key) {
                continue;
            }
            events.audit_warn(
                Regarding {
                    api_version: "v1",
                    kind: "Pod",
                    namespace: Some(offender.namespace.to_string()),
                    name: offender.name.to_string(),
                    uid: uid.map(str::to_string),
                },
                REASON,
                note(offender),
            );
        }
        let totals = RunTotals {
            pods: pods.len(),
            namespaces: by_namespace.len(),
            denied_pods: offenders.iter().filter(|o| o.denied).count(),
            warned_pods: offenders.iter().filter(|o| !o.denied).count(),
            events: published.len(),
        };
        tracing::info!(
            pods = totals.pods,
            namespaces = totals.namespaces,
            denied_pods = totals.denied_pods,
            warned_pods = totals.warned_pods,
            events = totals.events,
            scanner_lookups = report.summary.scanner_lookups,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "background audit"
        );
        Some(totals)
    }
}

/// Per namespace with running pods, the pods over their limits by verdict (zeros
/// included, so a namespace that recovers reads 0), and the offending pods.
fn tally<'a>(pods: &'a [Pod], rows: &'a [Row]) -> (BTreeMap<String, OverLimit>, Vec<Offender<'a>>) {
    let mut by_namespace: BTreeMap<String, OverLimit> = pods
        .iter()
        .map(|p| {
            let ns = p
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            (ns, OverLimit::default())
        })
        .collect();
    let mut by_pod: BTreeMap<(&str, &str), Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.status == "over-limit") {
        by_pod
            .entry((row.namespace.as_str(), row.pod.as_str()))
            .or_default()
            .push(row);
    }
    let mut offenders = Vec::new();
    for ((namespace, name), rows) in by_pod {
        // Denied when admission would refuse the pod now; warned when a warn mode
        // or a break-glass lets it through with a warning.
        let denied = rows.iter().any(|r| r.verdict == "denied");
        let counts = by_namespace.entry(namespace.to_string()).or_default();
        if denied {
            counts.denied += 1;
        } else {
            counts.warned += 1;
        }
        offenders.push(Offender {
            namespace,
            name,
            denied,
            rows,
        });
    }
    (by_namespace, offenders)
}

/// `admission would deny this pod now: container "app" (image ..., sha256:...): high 3>0 (...)`.
fn note(offender: &Offender<'_>) -> String {
    let mut out = String::from(if offender.denied {
        "admission would deny this pod now"
    } else {
        "admission would allow this pod now only with a warning"
    });
    for (i, row) in offender.rows.iter().enumerate() {
        let _ = write!(
            out,
            "{} {} {:?} (image {}, {}): ",
            if i == 0 { ":" } else { ";" },
            match row.container_type {
                "initContainer" => "init container",
                "ephemeralContainer" => "ephemeral container",
                "imageVolume" => "image volume",
                _ => "container",
            },
            row.container,
            row.image,
            row.digest.as_deref().unwrap_or("digest unknown"),
        );
        let limits: Vec<String> = row
            .failed_limits
            .iter()
            .map(|l| violation_text(&l.as_violation(), ViolationForm::AuditEvent))
            .collect();
        out.push_str(&limits.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::FailedLimit;

    fn pod(ns: &str, name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
            "spec": {"containers": []},
        }))
        .expect("pod")
    }

    fn row(
        ns: &str,
        pod: &str,
        container: &str,
        status: &'static str,
        verdict: &'static str,
    ) -> Row {
        Row {
            namespace: ns.into(),
            pod: pod.into(),
            workload: String::new(),
            container: container.into(),
            container_type: "container",
            image: "registry.example.com/app/web:1".into(),
            digest: Some("sha256:abc".into()),
            critical: None,
            high: Some(3),
            medium: None,
            low: None,
            unknown: None,
            status,
            verdict,
            failed_limits: if status == "over-limit" {
                vec![FailedLimit {
                    limit: "high".into(),
                    count: 3,
                    max: 0,
                    source: "vulngate.io/max-high".into(),
                    platform: None,
                }]
            } else {
                Vec::new()
            },
            message: None,
        }
    }

    #[test]
    fn pods_are_counted_once_by_their_worst_over_limit_verdict() {
        let pods = [
            pod("shop", "a"),
            pod("shop", "b"),
            pod("lab", "c"),
            pod("calm", "d"),
        ];
        let rows = [
            row("shop", "a", "web", "over-limit", "denied"),
            row("shop", "a", "side", "over-limit", "warn"),
            row("shop", "b", "web", "over-limit", "warn"),
            row("lab", "c", "web", "unscanned", "denied"),
            row("calm", "d", "web", "passed", "allowed"),
        ];
        let (by_namespace, offenders) = tally(&pods, &rows);
        assert_eq!(
            by_namespace["shop"],
            OverLimit {
                denied: 1,
                warned: 1
            }
        );
        // Present with zeros: a namespace whose pods recover drops back to 0.
        assert_eq!(by_namespace["lab"], OverLimit::default());
        assert_eq!(by_namespace["calm"], OverLimit::default());
        assert_eq!(offenders.len(), 2);
        let text = note(&offenders[0]);
        assert!(text.starts_with("admission would deny this pod now: container \"web\" (image registry.example.com/app/web:1, sha256:abc): 3 high over the limit 0 (vulngate.io/max-high); container \"side\""), "{text}");
        assert!(
            note(&offenders[1])
                .starts_with("admission would allow this pod now only with a warning")
        );
    }
}
