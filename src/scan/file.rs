//! The `file` scanner: scan results that CI pipelines already produce, read from a
//! file or a directory. Two formats: a plain summaries file keyed by digest, and
//! Trivy's JSON report (`trivy image --format json`, SchemaVersion 2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::digest_key::DigestKey;
use super::{
    ScanError, ScanStatus, ScanSummary, ScanTarget, Scanner, Severity, SeverityCounts,
    Vulnerability,
};
use crate::image::ImageRef;

pub const KIND: &str = "file";

/// What the files held when they were read.
#[derive(Debug, Default, Clone)]
struct Tables {
    /// Shared with the summary cache: a cached summary costs no copy.
    by_digest: HashMap<DigestKey, Arc<ScanSummary>>,
    /// `registry/repository:tag` -> digest, from reports that name their tags.
    by_tag: HashMap<String, String>,
}

/// The files read and their modification times and sizes: a change to any of them,
/// or a file added or removed, makes the scanner read them again.
type Stamp = Vec<(PathBuf, Option<SystemTime>, u64)>;

#[derive(Debug)]
pub struct FileScanner {
    /// `None` for a scanner built from documents in memory.
    path: Option<PathBuf>,
    tables: RwLock<Arc<Tables>>,
    stamp: RwLock<Stamp>,
    not_scanned: Arc<ScanSummary>,
}

impl Default for FileScanner {
    fn default() -> Self {
        FileScanner::with_tables(None, Tables::default(), Stamp::new())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("scan file {path}: {message}")]
pub struct FileScanError {
    pub path: PathBuf,
    pub message: String,
}

fn file_error(path: &Path, message: String) -> FileScanError {
    FileScanError {
        path: path.to_path_buf(),
        message,
    }
}

impl FileScanner {
    fn with_tables(path: Option<PathBuf>, tables: Tables, stamp: Stamp) -> FileScanner {
        FileScanner {
            path,
            tables: RwLock::new(Arc::new(tables)),
            stamp: RwLock::new(stamp),
            not_scanned: Arc::new(ScanSummary::status_only(KIND, ScanStatus::NotScanned)),
        }
    }

    /// Reads one file, or every `.json`/`.yaml`/`.yml` file of a directory.
    pub fn load(path: &Path) -> Result<FileScanner, FileScanError> {
        let stamp = stamp_of(path)?;
        let tables = read_tables(&stamp)?;
        Ok(FileScanner::with_tables(
            Some(path.to_path_buf()),
            tables,
            stamp,
        ))
    }

    /// Reads the files again when any of them changed; a file that no longer reads
    /// leaves the previous summaries in place. `Ok(Some(n))`: reloaded, `n` digests.
    pub fn reload_if_changed(&self) -> Result<Option<usize>, FileScanError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let stamp = stamp_of(path)?;
        if *self.stamp.read().unwrap_or_else(|e| e.into_inner()) == stamp {
            return Ok(None);
        }
        let tables = read_tables(&stamp);
        // Remember the failed stamp too, so a broken file is reported once, not every poll.
        *self.stamp.write().unwrap_or_else(|e| e.into_inner()) = stamp;
        let tables = tables?;
        let count = tables.by_digest.len();
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tables);
        Ok(Some(count))
    }

    /// Polls the files every `every` while the scanner is in use (a ConfigMap or Secret
    /// volume is updated in place by the kubelet).
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let (Some(path), Ok(runtime)) = (self.path.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let scanner: Weak<FileScanner> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(scanner) = scanner.upgrade() else {
                    return;
                };
                // Reading a large directory blocks; keep it off the reactor threads.
                let result = tokio::task::spawn_blocking(move || scanner.reload_if_changed()).await;
                match result {
                    Ok(Ok(Some(count))) => tracing::info!(
                        path = %path.display(),
                        digests = count,
                        "scan files changed: summaries reloaded"
                    ),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => tracing::warn!(
                        error = %e,
                        "scan files changed but could not be read; the previous summaries stay in use"
                    ),
                    Err(e) => tracing::warn!(error = %e, "scan file reload task failed"),
                }
            }
        });
    }

    /// Adds a summaries document or a Trivy report (JSON or YAML).
    pub fn add_document(&mut self, text: &str) -> Result<(), String> {
        let tables = self.tables.get_mut().unwrap_or_else(|e| e.into_inner());
        Arc::make_mut(tables).add_document(text)
    }

    pub fn len(&self) -> usize {
        self.tables().by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn tables(&self) -> Arc<Tables> {
        Arc::clone(&self.tables.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The files under `path` with their modification times and sizes, in name order.
fn stamp_of(path: &Path) -> Result<Stamp, FileScanError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e.to_string()))?;
    let files = if meta.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| file_error(path, e.to_string()))? {
            let p = entry.map_err(|e| file_error(path, e.to_string()))?.path();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(ext, "json" | "yaml" | "yml") && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).map_err(|e| file_error(&f, e.to_string()))?;
            Ok((f, meta.modified().ok(), meta.len()))
        })
        .collect()
}

fn read_tables(stamp: &Stamp) -> Result<Tables, FileScanError> {
    let mut tables = Tables::default();
    for (file, _, _) in stamp {
        let text = std::fs::read_to_string(file).map_err(|e| file_error(file, e.to_string()))?;
        tables
            .add_document(&text)
            .map_err(|m| file_error(file, m))?;
    }
    release_freed_memory();
    Ok(tables)
}

/// Parsing a large report briefly takes several times its size; glibc keeps freed
/// memory for reuse, which would leave the webhook's RSS at that peak for good.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no
    // memory the program holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Tables {
    fn add_document(&mut self, text: &str) -> Result<(), String> {
        match parse_document(text)? {
            Document::Summaries(s) => {
                for (i, entry) in s.summaries.into_iter().enumerate() {
                    self.add_entry(entry)
                        .map_err(|m| format!("summaries[{i}]: {m}"))?;
                }
            }
            Document::Trivy(report) => self.add_trivy(report)?,
        }
        Ok(())
    }
    fn add_entry(&mut self, entry: SummaryEntry) -> Result<(), String> {
        check_digest(&entry.digest)?;
        let finished_at = match &entry.finished_at {
            Some(t) => Some(
                OffsetDateTime::parse(t, &Rfc3339)
                    .map_err(|e| format!("finishedAt {t:?} is not an RFC 3339 time: {e}"))?,
            ),
            None => None,
        };
        if let Some(image) = &entry.image {
            let parsed = ImageRef::parse(image).map_err(|e| e.to_string())?;
            if parsed.tag.is_some() && image.contains(':') {
                self.add_tag(&parsed, &entry.digest);
            }
        }
        let mut summary = ScanSummary::status_only(KIND, entry.status.into());
        summary.counts = SeverityCounts {
            critical: Some(entry.critical),
            high: Some(entry.high),
            medium: Some(entry.medium),
            low: Some(entry.low),
            unknown: Some(entry.unknown),
        };
        summary.finished_at = finished_at;
        self.by_digest
            .insert(DigestKey::new(&entry.digest), Arc::new(summary));
        Ok(())
    }

    fn add_trivy(&mut self, report: TrivyReport) -> Result<(), String> {
        let meta = report.metadata;
        let digests: Vec<String> = meta
            .repo_digests
            .iter()
            .filter_map(|d| d.rsplit_once('@').map(|(_, d)| d.to_string()))
            .collect();
        if digests.is_empty() {
            return Err(format!(
                "Trivy report of {:?} has no Metadata.RepoDigests, so it cannot be matched to an image digest",
                report.artifact_name
            ));
        }
        for d in &digests {
            check_digest(d)?;
        }
        let mut counts = SeverityCounts::zero();
        let mut fixable = SeverityCounts::zero();
        let mut vulnerabilities = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for result in report.results {
            for v in result.vulnerabilities {
                // Trivy lists a CVE once per affected package; count each id once.
                if !seen.insert((v.vulnerability_id.clone(), v.pkg_name.clone())) {
                    continue;
                }
                let severity = Severity::parse_loose(&v.severity);
                let has_fix = v.fixed_version.as_deref().is_some_and(|f| !f.is_empty());
                counts.bump(severity);
                if has_fix {
                    fixable.bump(severity);
                }
                vulnerabilities.push(Vulnerability {
                    id: v.vulnerability_id,
                    severity,
                    fixable: Some(has_fix),
                    published: v
                        .published_date
                        .as_deref()
                        .and_then(|p| OffsetDateTime::parse(p, &Rfc3339).ok()),
                });
            }
        }
        let mut summary = ScanSummary::status_only(KIND, ScanStatus::Complete);
        summary.counts = counts;
        summary.fixable = Some(fixable);
        summary.vulnerabilities = vulnerabilities;
        summary.finished_at = report
            .created_at
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        for tag in &meta.repo_tags {
            if let Ok(parsed) = ImageRef::parse(tag) {
                self.add_tag(&parsed, &digests[0]);
            }
        }
        let summary = Arc::new(summary);
        for d in digests {
            self.by_digest
                .insert(DigestKey::new(&d), Arc::clone(&summary));
        }
        Ok(())
    }

    fn add_tag(&mut self, image: &ImageRef, digest: &str) {
        if let Some(tag) = &image.tag {
            self.by_tag
                .insert(format!("{}:{tag}", image.name()), digest.to_string());
        }
    }
}

fn check_digest(d: &str) -> Result<(), String> {
    match d.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(format!("digest {d:?} is not sha256:<64 hex digits>")),
    }
}

#[async_trait]
impl Scanner for FileScanner {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        self.summary_shared(target)
            .await
            .map(|s| ScanSummary::clone(&s))
    }

    async fn summary_shared(&self, target: &ScanTarget<'_>) -> Result<Arc<ScanSummary>, ScanError> {
        Ok(self
            .tables()
            .by_digest
            .get(&DigestKey::new(target.digest))
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.not_scanned)))
    }

    fn digest_for_tag(&self, image: &ImageRef) -> Option<String> {
        let tag = image.tag.as_ref()?;
        self.tables()
            .by_tag
            .get(&format!("{}:{tag}", image.name()))
            .cloned()
    }
}

enum Document {
    Summaries(SummariesFile),
    Trivy(TrivyReport),
}

/// Typed parsing, one shape after the other: an untagged enum would first buffer the
/// whole document as a tree, several times the size of a 100,000-entry file.
fn parse_document(text: &str) -> Result<Document, String> {
    let json = text.trim_start().starts_with('{');
    let summaries_error = match parse_as::<SummariesFile>(text, json) {
        Ok(s) => return Ok(Document::Summaries(s)),
        Err(e) => e,
    };
    let trivy_error = match parse_as::<TrivyReport>(text, json) {
        Ok(r) => return Ok(Document::Trivy(r)),
        Err(e) => e,
    };
    // Report the error of the shape the document was meant to have.
    let error = if looks_like_summaries(text) {
        format!("summaries file: {summaries_error}")
    } else {
        format!("Trivy report: {trivy_error}")
    };
    Err(format!(
        "neither a summaries file nor a Trivy JSON report: {error}"
    ))
}

/// `text` read as one shape, as JSON or as YAML.
fn parse_as<T: serde::de::DeserializeOwned>(text: &str, json: bool) -> Result<T, String> {
    if json {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }
}

fn looks_like_summaries(text: &str) -> bool {
    text.trim_start()
        .trim_start_matches('{')
        .trim_start()
        .trim_start_matches('"')
        .starts_with("summaries")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummariesFile {
    summaries: Vec<SummaryEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SummaryEntry {
    digest: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default = "complete")]
    status: EntryStatus,
    #[serde(default)]
    critical: u64,
    #[serde(default)]
    high: u64,
    #[serde(default)]
    medium: u64,
    #[serde(default)]
    low: u64,
    #[serde(default)]
    unknown: u64,
    #[serde(default)]
    finished_at: Option<String>,
}

fn complete() -> EntryStatus {
    EntryStatus::Complete
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum EntryStatus {
    Complete,
    Scanning,
    NotScanned,
    Failed,
}

impl From<EntryStatus> for ScanStatus {
    fn from(s: EntryStatus) -> ScanStatus {
        match s {
            EntryStatus::Complete => ScanStatus::Complete,
            EntryStatus::Scanning => ScanStatus::Scanning,
            EntryStatus::NotScanned => ScanStatus::NotScanned,
            EntryStatus::Failed => ScanStatus::Failed,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyReport {
    #[allow(dead_code)]
    schema_version: u32,
    #[serde(default)]
    artifact_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    metadata: TrivyMetadata,
    #[serde(default)]
    results: Vec<TrivyResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyMetadata {
    #[serde(default)]
    repo_tags: Vec<String>,
    #[serde(default)]
    repo_digests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    #[serde(default)]
    vulnerabilities: Vec<TrivyVulnerability>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(default)]
    pkg_name: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    published_date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[tokio::test]
    async fn summaries_file_and_unknown_digest() {
        let mut s = FileScanner::default();
        s.add_document(&format!(
            "summaries:\n- {{digest: \"{D1}\", image: \"shop/web:2\", high: 2, medium: 5}}\n"
        ))
        .unwrap();
        let image = ImageRef::parse("shop/web:2").unwrap();
        assert_eq!(s.digest_for_tag(&image).as_deref(), Some(D1));
        let got = s
            .summary(&ScanTarget {
                image: &image,
                digest: D1,
            })
            .await
            .unwrap();
        assert_eq!(got.counts.high, Some(2));
        assert_eq!(got.counts.total(), 7);
        let other = format!("sha256:{}", "2".repeat(64));
        let got = s
            .summary(&ScanTarget {
                image: &image,
                digest: &other,
            })
            .await
            .unwrap();
        assert_eq!(got.status, ScanStatus::NotScanned);
    }

    #[test]
    fn bad_documents_are_clear_errors() {
        let mut s = FileScanner::default();
        let e = s
            .add_document("summaries:\n- {digest: \"sha256:abc\"}\n")
            .unwrap_err();
        assert!(e.contains("sha256:<64 hex digits>"), "{e}");
        let e = s
            .add_document("summaries:\n- {digest: x, hihg: 1}\n")
            .unwrap_err();
        assert!(e.contains("neither"), "{e}");
        assert!(s.add_document("[1, 2").is_err());
    }

    #[test]
    fn trivy_report_counts_each_vulnerability_once_per_package() {
        let report = format!(
            r#"{{"SchemaVersion": 2, "ArtifactName": "nginx:1.25",
               "Metadata": {{"RepoTags": ["nginx:1.25"], "RepoDigests": ["nginx@{D1}"]}},
               "Results": [{{"Target": "x", "Vulnerabilities": [
                 {{"VulnerabilityID": "CVE-1", "PkgName": "a", "Severity": "HIGH", "FixedVersion": "1.2"}},
                 {{"VulnerabilityID": "CVE-1", "PkgName": "a", "Severity": "HIGH"}},
                 {{"VulnerabilityID": "CVE-2", "PkgName": "b", "Severity": "CRITICAL"}}]}}]}}"#
        );
        let mut s = FileScanner::default();
        s.add_document(&report).unwrap();
        let tables = s.tables();
        let sum = &tables.by_digest[&DigestKey::new(D1)];
        assert_eq!(sum.counts.high, Some(1));
        assert_eq!(sum.counts.critical, Some(1));
        assert_eq!(sum.fixable.and_then(|f| f.high), Some(1));
        assert_eq!(
            s.digest_for_tag(&ImageRef::parse("docker.io/library/nginx:1.25").unwrap())
                .as_deref(),
            Some(D1)
        );
    }
}
