//! `vulngate audit`: the images of every running Pod judged against its namespace's
//! current policy, exactly as admission would judge the same Pod created now.
//!
//! Pods come from the cluster (`Api<Pod>` list, all namespaces or one); pods in phase
//! `Succeeded` or `Failed` are skipped. Each pod goes through [`Engine::decide_pod`], so
//! digests and summaries come through the same resolver and summary cache as admission
//! (one scanner call per distinct digest) and the decision is admission's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::admission::ObjectLite;
use crate::decision::text::{LimitViolation, ViolationForm, violation_text};
use crate::decision::{Effect, ImageOutcome};
use crate::domain::summary::Severity;
use crate::engine::Engine;
use crate::image::ImageRef;
use crate::pattern::{ImagePattern, wildcard_match};

/// Pods judged at once; the summary cache makes concurrent lookups of one digest one call.
const CONCURRENCY: usize = 8;
/// Page size of the Pod list.
const PAGE: u32 = 500;

/// What to list and show.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// One namespace; `None` for all.
    pub namespace: Option<String>,
    /// Only images with at least one vulnerability of this severity or worse.
    pub severity: Option<Severity>,
    /// Only containers with this effect (the `verdict` column).
    pub verdict: Option<Effect>,
    /// Only containers whose image has no finished scan.
    pub unscanned: bool,
    /// Only images matching this wildcard pattern (`*` matches anything), tried
    /// against the image as written and normalized (`nginx` is `docker.io/library/nginx`).
    pub image: Option<String>,
}

/// One container of one running pod.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub pod: String,
    /// `Kind/name` of the pod's controlling owner, or empty for a bare pod.
    pub workload: String,
    pub container: String,
    /// `container`, `initContainer`, `ephemeralContainer` or `imageVolume`.
    pub container_type: &'static str,
    pub image: String,
    pub digest: Option<String>,
    pub critical: Option<u64>,
    pub high: Option<u64>,
    pub medium: Option<u64>,
    pub low: Option<u64>,
    pub unknown: Option<u64>,
    /// passed, over-limit, unscanned, exempt, not-found, error, invalid or not-judged.
    pub status: &'static str,
    /// allowed, warn or denied: this container's part of admission's verdict.
    pub verdict: &'static str,
    /// The limits the image is over.
    pub failed_limits: Vec<FailedLimit>,
    /// Admission's text for this container (denial, warning, or why it was not judged).
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedLimit {
    /// critical, high, medium, low, unknown, total, fixable-critical...
    pub limit: String,
    pub count: u64,
    pub max: u64,
    /// Where the limit was set (an annotation, the cluster default...).
    pub source: String,
    /// For a multi-arch image: the platform with this count.
    pub platform: Option<String>,
}

impl FailedLimit {
    /// As the limit, count and maximum of a violation, for its texts.
    pub(crate) fn as_violation(&self) -> LimitViolation<'_> {
        LimitViolation {
            key: &self.limit,
            count: self.count,
            max: self.max,
            source: &self.source,
            platform: self.platform.as_deref(),
        }
    }

    fn short(&self) -> String {
        violation_text(&self.as_violation(), ViolationForm::AuditColumn)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Pods with at least one row shown.
    pub pods: usize,
    pub containers: usize,
    /// Distinct images shown (by digest when known, else as written).
    pub distinct_images: usize,
    /// Distinct images over a limit in at least one of the namespaces they run in.
    pub over_limit: usize,
    /// Distinct images with no finished scan.
    pub unscanned: usize,
    pub denied_containers: usize,
    pub warned_containers: usize,
    /// Vulnerabilities per severity, each distinct digest counted once.
    pub vulnerabilities: BTreeMap<&'static str, u64>,
    /// Summaries fetched from scanners during this audit.
    pub scanner_lookups: u64,
    /// Running pods listed (before filters).
    pub pods_listed: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub containers: Vec<Row>,
    pub summary: Summary,
}

impl Report {
    /// True when any shown image is over one of its limits (exit status 1).
    pub fn any_over_limit(&self) -> bool {
        self.containers.iter().any(|r| r.status == "over-limit")
    }
}

/// The running pods of one namespace or of all, page by page.
pub async fn running_pods(
    client: kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<Pod>, String> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut pods = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api.list(&params).await.map_err(|e| match namespace {
            Some(ns) => format!("cannot list pods in namespace {ns}: {e}"),
            None => format!("cannot list pods: {e}"),
        })?;
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        pods.extend(page.items.into_iter().filter(is_running));
        if token.is_none() {
            break;
        }
    }
    Ok(pods)
}

fn is_running(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// Judges every pod and applies the filters.
pub async fn audit(engine: &Engine, pods: &[Pod], options: &AuditOptions) -> Report {
    audit_with_progress(engine, pods, options, None).await
}

/// As [`audit`], stepping `progress` once per pod judged.
pub async fn audit_with_progress(
    engine: &Engine,
    pods: &[Pod],
    options: &AuditOptions,
    progress: Option<&crate::progress::Progress>,
) -> Report {
    let calls_before = engine.metrics().scanner_calls_total();
    // The futures are made up front: a closure kept inside the stream would make the
    // future of this function not Send for every lifetime (the background audit spawns it).
    let judging: Vec<_> = pods
        .iter()
        .map(|pod| pod_rows_counted(engine, pod, progress))
        .collect();
    let judged: Vec<Vec<Row>> = stream::iter(judging).buffered(CONCURRENCY).collect().await;
    let image_pattern = options
        .image
        .as_deref()
        .map(|p| (p, ImagePattern::parse(p).ok()));
    let mut rows: Vec<Row> = judged
        .into_iter()
        .flatten()
        .filter(|row| keep(row, options, image_pattern.as_ref()))
        .collect();
    rows.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    let mut summary = summarize(&rows);
    summary.pods_listed = pods.len();
    summary.scanner_lookups = engine
        .metrics()
        .scanner_calls_total()
        .saturating_sub(calls_before);
    Report {
        containers: rows,
        summary,
    }
}

async fn pod_rows_counted(
    engine: &Engine,
    pod: &Pod,
    progress: Option<&crate::progress::Progress>,
) -> Vec<Row> {
    let rows = pod_rows(engine, pod).await;
    if let Some(p) = progress {
        p.step();
    }
    rows
}

/// One row per container of `pod`, as admission would decide the pod now.
async fn pod_rows(engine: &Engine, pod: &Pod) -> Vec<Row> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let workload = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|owners| {
            owners
                .iter()
                .find(|o| o.controller == Some(true))
                .or_else(|| owners.first())
        })
        .map(|o| format!("{}/{}", o.kind, o.name))
        .unwrap_or_default();
    // The same view of the pod that admission decodes from a review.
    let encoded = serde_json::to_vec(pod).map_err(|e| e.to_string());
    let read = encoded
        .as_deref()
        .map_err(Clone::clone)
        .and_then(|bytes| serde_json::from_slice::<ObjectLite>(bytes).map_err(|e| e.to_string()));
    let object = match read {
        Ok(o) => o,
        Err(e) => {
            return vec![Row {
                namespace,
                pod: name,
                workload,
                container: String::new(),
                container_type: "container",
                image: String::new(),
                digest: None,
                critical: None,
                high: None,
                medium: None,
                low: None,
                unknown: None,
                status: "invalid",
                verdict: Effect::Deny.audit_column(),
                failed_limits: Vec::new(),
                message: Some(format!("cannot read the pod spec: {e}")),
            }];
        }
    };
    let subject = format!("Pod {namespace}/{name}");
    let decision = engine.decide_pod(&subject, &namespace, &object.spec).await;
    decision
        .containers
        .into_iter()
        .map(|c| {
            let counts = match &c.outcome {
                Some(
                    ImageOutcome::Passed { counts, .. } | ImageOutcome::OverLimit { counts, .. },
                ) => Some(*counts),
                _ => None,
            };
            let failed_limits = match &c.outcome {
                Some(ImageOutcome::OverLimit { violations, .. }) => violations
                    .iter()
                    .map(|pv| FailedLimit {
                        limit: pv.violation.key.to_string(),
                        count: pv.violation.count,
                        max: pv.violation.limit.max,
                        source: pv.violation.limit.source.to_string(),
                        platform: pv.platform.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let get = |s: Severity| counts.as_ref().and_then(|c| c.get(s));
            Row {
                namespace: namespace.clone(),
                pod: name.clone(),
                workload: workload.clone(),
                container: c.container.name.to_string(),
                container_type: match c.container.kind {
                    crate::admission::ContainerKind::Init => "initContainer",
                    crate::admission::ContainerKind::Container => "container",
                    crate::admission::ContainerKind::Ephemeral => "ephemeralContainer",
                    crate::admission::ContainerKind::ImageVolume => "imageVolume",
                },
                image: c.container.image.to_string(),
                digest: c
                    .outcome
                    .as_ref()
                    .and_then(ImageOutcome::digest)
                    .map(str::to_string),
                critical: get(Severity::Critical),
                high: get(Severity::High),
                medium: get(Severity::Medium),
                low: get(Severity::Low),
                unknown: get(Severity::Unknown),
                status: status_of(c.outcome.as_ref()),
                verdict: c.effect.audit_column(),
                failed_limits,
                message: c.message,
            }
        })
        .collect()
}

fn status_of(outcome: Option<&ImageOutcome>) -> &'static str {
    match outcome {
        None => "not-judged",
        Some(ImageOutcome::Exempt) => "exempt",
        Some(ImageOutcome::Passed { .. }) => "passed",
        Some(ImageOutcome::OverLimit { .. }) => "over-limit",
        Some(ImageOutcome::Unscanned { .. }) => "unscanned",
        Some(ImageOutcome::NotFound { .. }) => "not-found",
        Some(ImageOutcome::BackendError { .. }) => "error",
        Some(ImageOutcome::Invalid { .. }) => "invalid",
    }
}

fn row_counts(row: &Row) -> [(Severity, Option<u64>); 5] {
    [
        (Severity::Critical, row.critical),
        (Severity::High, row.high),
        (Severity::Medium, row.medium),
        (Severity::Low, row.low),
        (Severity::Unknown, row.unknown),
    ]
}

fn keep(row: &Row, options: &AuditOptions, image: Option<&(&str, Option<ImagePattern>)>) -> bool {
    if let Some(verdict) = options.verdict {
        if row.verdict != verdict.audit_column() {
            return false;
        }
    }
    if options.unscanned && row.status != "unscanned" {
        return false;
    }
    if let Some(severity) = options.severity {
        // Severity orders worst first: `s <= severity` is "this bad or worse".
        let hit = row_counts(row)
            .iter()
            .any(|(s, n)| *s <= severity && n.unwrap_or(0) > 0);
        if !hit {
            return false;
        }
    }
    if let Some((raw, pattern)) = image {
        let normalized = ImageRef::parse(&row.image).ok();
        let by_pattern = match (pattern, &normalized) {
            (Some(p), Some(i)) => p.matches(i),
            _ => false,
        };
        if !by_pattern && !wildcard_match(raw, &row.image) {
            return false;
        }
    }
    true
}

fn summarize(rows: &[Row]) -> Summary {
    let mut pods = BTreeSet::new();
    let mut images: BTreeSet<String> = BTreeSet::new();
    let mut over_limit = BTreeSet::new();
    let mut unscanned = BTreeSet::new();
    // One row with counts per digest: the counts of a digest are the same everywhere.
    let mut counted: BTreeMap<String, &Row> = BTreeMap::new();
    let mut summary = Summary {
        containers: rows.len(),
        ..Summary::default()
    };
    for row in rows {
        pods.insert((&row.namespace, &row.pod));
        let key = row.digest.clone().unwrap_or_else(|| row.image.clone());
        match row.status {
            // Over a limit in at least one namespace.
            "over-limit" => {
                over_limit.insert(key.clone());
            }
            "unscanned" => {
                unscanned.insert(key.clone());
            }
            _ => {}
        }
        if row_counts(row).iter().any(|(_, n)| n.is_some()) {
            counted.entry(key.clone()).or_insert(row);
        }
        images.insert(key);
        match row.verdict {
            "denied" => summary.denied_containers += 1,
            "warn" => summary.warned_containers += 1,
            _ => {}
        }
    }
    summary.pods = pods.len();
    summary.distinct_images = images.len();
    summary.over_limit = over_limit.len();
    summary.unscanned = unscanned.len();
    for s in Severity::ALL {
        summary.vulnerabilities.insert(s.as_str(), 0);
    }
    for row in counted.values() {
        for (s, n) in row_counts(row) {
            if let Some(total) = summary.vulnerabilities.get_mut(s.as_str()) {
                *total += n.unwrap_or(0);
            }
        }
    }
    summary
}

impl Summary {
    /// The one-line summary printed under the table (and on stderr with csv).
    pub fn line(&self) -> String {
        let mut out = format!(
            "{} pod(s), {} container(s), {} distinct image(s): {} over limit, {} unscanned; {} container(s) denied, {} warned; vulnerabilities",
            self.pods,
            self.containers,
            self.distinct_images,
            self.over_limit,
            self.unscanned,
            self.denied_containers,
            self.warned_containers,
        );
        for s in Severity::ALL {
            let n = self.vulnerabilities.get(s.as_str()).copied().unwrap_or(0);
            let _ = write!(out, " {s} {n}");
        }
        let _ = write!(out, "; {} scanner lookup(s)", self.scanner_lookups);
        out
    }
}

/// The CSV columns, in order (documented in docs/audit.md).
pub(crate) const CSV_COLUMNS: [&str; 16] = [
    "namespace",
    "pod",
    "workload",
    "container",
    "container_type",
    "image",
    "digest",
    "critical",
    "high",
    "medium",
    "low",
    "unknown",
    "status",
    "verdict",
    "failed_limits",
    "message",
];

pub fn render_csv(report: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for row in &report.containers {
        let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        let failed = row
            .failed_limits
            .iter()
            .map(FailedLimit::short)
            .collect::<Vec<_>>()
            .join("; ");
        let fields = [
            row.namespace.clone(),
            row.pod.clone(),
            row.workload.clone(),
            row.container.clone(),
            row.container_type.to_string(),
            row.image.clone(),
            row.digest.clone().unwrap_or_default(),
            count(row.critical),
            count(row.high),
            count(row.medium),
            count(row.low),
            count(row.unknown),
            row.status.to_string(),
            row.verdict.to_string(),
            failed,
            row.message.clone().unwrap_or_default(),
        ];
        let line = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

pub fn render_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A table for people: digests shortened, counts as critical/high/medium/low/unknown.
pub fn render_table(report: &Report) -> String {
    let header = [
        "NAMESPACE",
        "WORKLOAD",
        "POD",
        "CONTAINER",
        "IMAGE",
        "DIGEST",
        "C/H/M/L/U",
        "STATUS",
        "VERDICT",
        "FAILED LIMITS",
    ];
    let rows: Vec<[String; 10]> = report
        .containers
        .iter()
        .map(|row| {
            let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            let counts = if row.status == "passed" || row.status == "over-limit" {
                row_counts(row)
                    .iter()
                    .map(|(_, n)| count(*n))
                    .collect::<Vec<_>>()
                    .join("/")
            } else {
                "-".into()
            };
            let failed = row
                .failed_limits
                .iter()
                .map(FailedLimit::short)
                .collect::<Vec<_>>()
                .join(", ");
            [
                row.namespace.clone(),
                if row.workload.is_empty() {
                    "-".into()
                } else {
                    row.workload.clone()
                },
                row.pod.clone(),
                row.container.clone(),
                row.image.clone(),
                row.digest
                    .as_deref()
                    .map(short_digest)
                    .unwrap_or_else(|| "-".into()),
                counts,
                row.status.to_string(),
                row.verdict.to_string(),
                if failed.is_empty() {
                    "-".into()
                } else {
                    failed
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let text = cells
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    out.push_str(&report.summary.line());
    out.push('\n');
    out
}

fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => match hex.get(..12) {
            Some(short) => format!("{alg}:{short}"),
            None => digest.to_string(),
        },
        _ => digest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_and_quotes_are_quoted() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn digests_are_shortened_for_the_table() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("weird"), "weird");
    }
}
