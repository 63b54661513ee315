//! The `file` scanner: scan results that CI pipelines already produce, read from a
//! file or a directory. Two formats: a plain summaries file keyed by digest, and
//! Trivy's JSON report (`trivy image --format json`, SchemaVersion 2).
//!
//! A file that cannot be read is skipped with a warning naming it and why, and counted
//! (`vulngate_scan_files_skipped_total`); every other file keeps serving, and a file
//! that becomes unreadable keeps its last good content until it reads again.

mod document;
pub(crate) mod report_error;
mod trivy;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{ScanTarget, Scanner};
use crate::domain::digest_key::DigestKey;
use crate::domain::scan_error::ScanError;
use crate::domain::summary::{ScanStatus, ScanSummary};
use crate::image::ImageRef;
use document::FileContent;
use report_error::ReportError;

pub(crate) const KIND: &str = "file";

/// What the files held when they were read, merged in file name order.
#[derive(Debug, Default, Clone)]
struct Tables {
    /// Shared with the summary cache: a cached summary costs no copy.
    by_digest: HashMap<DigestKey, Arc<ScanSummary>>,
    /// `registry/repository:tag` -> digest, from reports that name their tags.
    by_tag: HashMap<String, String>,
}

impl Tables {
    fn merge(files: &[ReadFile]) -> Tables {
        let mut tables = Tables::default();
        for content in files.iter().filter_map(|f| f.content.as_deref()) {
            tables.add(content);
        }
        tables
    }

    fn add(&mut self, content: &FileContent) {
        self.by_digest.reserve(content.summaries.len());
        for (key, summary) in &content.summaries {
            self.by_digest.insert(key.clone(), Arc::clone(summary));
        }
        for (tag, digest) in &content.tags {
            self.by_tag.insert(tag.clone(), digest.clone());
        }
    }
}

/// A file's modification time and size: a change to either makes it read again.
type Stamp = (Option<SystemTime>, u64);

/// One file of the configured path, as last read.
#[derive(Debug, Clone)]
struct ReadFile {
    path: PathBuf,
    stamp: Stamp,
    /// The last content that read; kept while the file does not read.
    content: Option<Arc<FileContent>>,
    /// Why the file's current state does not read.
    problem: Option<String>,
}

impl ReadFile {
    /// Reads `path`; when it does not read, warns, counts it and keeps `previous`.
    fn read(path: PathBuf, stamp: Stamp, previous: Option<Arc<FileContent>>) -> ReadFile {
        match document::read_file(&path) {
            Ok(content) => ReadFile {
                path,
                stamp,
                content: Some(Arc::new(content)),
                problem: None,
            },
            Err(problem) => {
                crate::metrics::skipped_files_counter().inc();
                if previous.is_some() {
                    tracing::warn!(
                        file = %path.display(),
                        error = %problem,
                        "scan file changed but could not be read; its previous content stays in use"
                    );
                } else {
                    tracing::warn!(
                        file = %path.display(),
                        error = %problem,
                        "scan file skipped: it could not be read"
                    );
                }
                ReadFile {
                    path,
                    stamp,
                    content: previous,
                    problem: Some(problem.to_string()),
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct FileScanner {
    /// `None` for a scanner built from documents in memory.
    path: Option<PathBuf>,
    tables: RwLock<Arc<Tables>>,
    files: Mutex<Vec<ReadFile>>,
    not_scanned: Arc<ScanSummary>,
}

impl Default for FileScanner {
    fn default() -> Self {
        FileScanner::with_files(None, Vec::new())
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
    fn with_files(path: Option<PathBuf>, files: Vec<ReadFile>) -> FileScanner {
        FileScanner {
            path,
            tables: RwLock::new(Arc::new(Tables::merge(&files))),
            files: Mutex::new(files),
            not_scanned: Arc::new(ScanSummary::status_only(KIND, ScanStatus::NotScanned)),
        }
    }

    /// Reads one file, or every `.json`/`.yaml`/`.yml` file of a directory. Fails only
    /// when the path is missing or none of its files reads.
    pub fn load(path: &Path) -> Result<FileScanner, FileScanError> {
        let files: Vec<ReadFile> = list_files(path)?
            .into_iter()
            .map(|(file, stamp)| ReadFile::read(file, stamp, None))
            .collect();
        release_freed_memory();
        if !files.is_empty() && files.iter().all(|f| f.content.is_none()) {
            let problems: Vec<String> = files
                .iter()
                .filter_map(|f| Some(format!("{}: {}", f.path.display(), f.problem.as_ref()?)))
                .collect();
            return Err(file_error(
                path,
                format!("no scan file could be read: {}", problems.join("; ")),
            ));
        }
        Ok(FileScanner::with_files(Some(path.to_path_buf()), files))
    }

    /// Reads again the files that changed (and new ones); a file that no longer reads
    /// keeps its previous content. `Ok(Some(n))`: reloaded, `n` digests.
    pub(crate) fn reload_if_changed(&self) -> Result<Option<usize>, FileScanError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let listed = list_files(path)?;
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let unchanged = listed.len() == files.len()
            && listed
                .iter()
                .zip(files.iter())
                .all(|((p, stamp), f)| *p == f.path && *stamp == f.stamp);
        if unchanged {
            return Ok(None);
        }
        let mut previous: HashMap<PathBuf, ReadFile> =
            files.drain(..).map(|f| (f.path.clone(), f)).collect();
        for (file, stamp) in listed {
            let read = match previous.remove(&file) {
                Some(before) if before.stamp == stamp => before,
                // Remember the failed stamp too, so a broken file is reported once.
                before => ReadFile::read(file, stamp, before.and_then(|b| b.content)),
            };
            files.push(read);
        }
        drop(previous);
        let tables = Tables::merge(&files);
        drop(files);
        let count = tables.by_digest.len();
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tables);
        release_freed_memory();
        Ok(Some(count))
    }

    /// Files that do not read now, and why (those skipped and those serving their
    /// previous content).
    pub fn unreadable(&self) -> Vec<(PathBuf, String)> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|f| Some((f.path.clone(), f.problem.clone()?)))
            .collect()
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
                        "scan files could not be listed; the previous summaries stay in use"
                    ),
                    Err(e) => tracing::warn!(error = %e, "scan file reload task failed"),
                }
            }
        });
    }

    /// Adds a summaries document or a Trivy report (JSON or YAML).
    pub fn add_document(&mut self, text: &str) -> Result<(), ReportError> {
        let content = document::read_document(|| Ok(text.as_bytes()))?;
        let tables = self.tables.get_mut().unwrap_or_else(|e| e.into_inner());
        Arc::make_mut(tables).add(&content);
        Ok(())
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
fn list_files(path: &Path) -> Result<Vec<(PathBuf, Stamp)>, FileScanError> {
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
    Ok(files
        .into_iter()
        .map(|f| {
            // A file gone between listing and reading is read (and reported) as such.
            let stamp = std::fs::metadata(&f)
                .map(|m| (m.modified().ok(), m.len()))
                .unwrap_or((None, 0));
            (f, stamp)
        })
        .collect())
}

/// Reading a large report briefly takes more than its table; glibc keeps freed
/// memory for reuse, which would leave the webhook's RSS at that peak for good.
#[allow(unsafe_code, reason = "libc malloc_trim, see SAFETY")]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no
    // memory the program holds.
    unsafe {
        libc::malloc_trim(0);
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
            .unwrap_err()
            .to_string();
        assert!(e.contains("sha256:<64 hex digits>"), "{e}");
        let e = s
            .add_document("summaries:\n- {digest: x, hihg: 1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither"), "{e}");
        assert!(s.add_document("[1, 2").is_err());
    }

    #[test]
    fn a_finding_repeated_in_one_result_counts_once_keeping_its_fix() {
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
    /// A Trivy report (SchemaVersion 2) of one image with `results` as its Results.
    fn trivy_report(repo_digests: serde_json::Value, results: serde_json::Value) -> String {
        serde_json::json!({
            "SchemaVersion": 2, "CreatedAt": "2026-01-02T03:04:05Z",
            "ArtifactName": "shop/app:1", "ArtifactType": "container_image",
            "Metadata": {"RepoTags": ["shop/app:1"], "RepoDigests": repo_digests},
            "Results": results
        })
        .to_string()
    }

    fn finding(id: &str, pkg: &str, version: &str, path: &str, fixed: &str) -> serde_json::Value {
        serde_json::json!({
            "VulnerabilityID": id, "PkgID": format!("{pkg}@{version}"), "PkgName": pkg,
            "PkgPath": path, "InstalledVersion": version, "FixedVersion": fixed,
            "Severity": "HIGH", "Status": if fixed.is_empty() { "affected" } else { "fixed" }
        })
    }

    async fn summary_of(s: &FileScanner, digest: &str) -> ScanSummary {
        let image = ImageRef::parse("shop/app:1").unwrap();
        s.summary(&ScanTarget {
            image: &image,
            digest,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn trivy_findings_count_as_trivy_counts_them() {
        // One CVE in: openssl at two versions (two binaries), the same jar in two
        // lockfiles, and an exact repeat of one finding, which Trivy itself drops.
        let report = trivy_report(
            serde_json::json!([format!("shop/app@{D1}")]),
            serde_json::json!([
                {"Target": "shop/app:1 (debian 12.5)", "Class": "os-pkgs", "Type": "debian",
                 "Vulnerabilities": [
                    finding("CVE-2024-1", "openssl", "3.0.1", "", "3.0.9"),
                    finding("CVE-2024-1", "openssl", "3.0.1", "", "3.0.9"),
                    finding("CVE-2024-1", "openssl", "1.1.1", "", "")]},
                {"Target": "app/a/pom.xml", "Class": "lang-pkgs", "Type": "jar",
                 "Vulnerabilities": [finding("CVE-2024-2", "log4j", "2.14", "app/a/log4j.jar", "2.17")]},
                {"Target": "app/b/pom.xml", "Class": "lang-pkgs", "Type": "jar",
                 "Vulnerabilities": [finding("CVE-2024-2", "log4j", "2.14", "app/b/log4j.jar", "")]}
            ]),
        );
        let mut s = FileScanner::default();
        s.add_document(&report).unwrap();
        let sum = summary_of(&s, D1).await;
        assert_eq!(sum.counts.high, Some(4), "{sum:?}");
        assert_eq!(sum.vulnerabilities.len(), 4);
        assert_eq!(sum.fixable.and_then(|f| f.high), Some(2), "{sum:?}");
    }

    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[tokio::test]
    async fn a_report_that_cannot_be_read_is_skipped_and_the_others_serve() {
        let dir = tempfile::tempdir().unwrap();
        let high = serde_json::json!([{"Target": "os", "Vulnerabilities": [finding("CVE-1", "a", "1", "", "")]}]);
        write(
            dir.path(),
            "good.json",
            &trivy_report(serde_json::json!([format!("shop/app@{D1}")]), high.clone()),
        );
        // Scanned from a tarball: no RepoDigests.
        write(
            dir.path(),
            "tarball.json",
            &trivy_report(serde_json::json!([]), high),
        );
        let skipped_before = crate::metrics::skipped_files_counter().get();
        let s =
            FileScanner::load(dir.path()).expect("one unreadable report must not stop the scanner");
        assert_eq!(summary_of(&s, D1).await.counts.high, Some(1));
        let problems = s.unreadable();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (file, why) = &problems[0];
        assert!(file.ends_with("tarball.json"), "{file:?}");
        assert!(
            why.contains("no Metadata.RepoDigests") && why.contains("shop/app:1"),
            "{why}"
        );
        assert!(!why.contains("Some("), "no Rust debug text: {why}");
        assert!(crate::metrics::skipped_files_counter().get() > skipped_before);
    }

    #[tokio::test]
    async fn a_report_that_becomes_unreadable_keeps_its_last_good_content() {
        let dir = tempfile::tempdir().unwrap();
        let summaries =
            |d: &str, high: u64| format!("summaries:\n- {{digest: \"{d}\", high: {high}}}\n");
        write(dir.path(), "a.yaml", &summaries(D1, 2));
        write(dir.path(), "b.yaml", &summaries(D2, 1));
        let s = FileScanner::load(dir.path()).unwrap();
        // a.yaml breaks, b.yaml gets a newer scan: b's news is served, a's last good content stays.
        write(dir.path(), "a.yaml", "summaries: [{digest: 12");
        write(dir.path(), "b.yaml", &summaries(D2, 15));
        assert_eq!(s.reload_if_changed().unwrap(), Some(2));
        assert_eq!(summary_of(&s, D1).await.counts.high, Some(2));
        assert_eq!(summary_of(&s, D2).await.counts.high, Some(15));
        assert_eq!(s.unreadable().len(), 1);
    }

    #[test]
    fn start_up_fails_only_when_nothing_can_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = FileScanner::load(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        write(dir.path(), "broken.json", "{\"summaries\": [");
        let e = FileScanner::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("broken.json"), "{e}");
    }
}
