//! One scan file read into summaries: a plain summaries file keyed by digest, or a
//! Trivy report. Read from the file as a stream, summaries entries straight into the
//! file's table, so a file of 100,000 digests is never held as a whole document.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::KIND;
use super::report_error::ReportError;
use super::trivy::{self, TrivyReport};
use crate::domain::digest_key::DigestKey;
use crate::domain::summary::{ScanStatus, ScanSummary, SeverityCounts};
use crate::image::ImageRef;

/// What one file holds, in file order (a later entry for a digest wins).
#[derive(Debug, Default)]
pub(super) struct FileContent {
    pub(super) summaries: Vec<(DigestKey, Arc<ScanSummary>)>,
    /// `registry/repository:tag` and the digest it names.
    pub(super) tags: Vec<(String, String)>,
}

impl FileContent {
    pub(super) fn add_tag(&mut self, image: &ImageRef, digest: &str) {
        if let Some(tag) = &image.tag {
            self.tags
                .push((format!("{}:{tag}", image.name()), digest.to_string()));
        }
    }
}

/// Reads the file at `path`.
pub(super) fn read_file(path: &Path) -> Result<FileContent, ReportError> {
    read_document(|| std::fs::File::open(path))
}

/// Reads a document from the readers `open` gives: a summaries file is tried first,
/// then, from a fresh reader, a Trivy report.
pub(super) fn read_document<R: Read>(
    open: impl Fn() -> std::io::Result<R>,
) -> Result<FileContent, ReportError> {
    let mut reader = BufReader::with_capacity(64 * 1024, open()?);
    let head = String::from_utf8_lossy(reader.fill_buf()?)
        .chars()
        .take(256)
        .collect::<String>();
    let json = head.trim_start().starts_with('{');
    let mut content = FileContent::default();
    let summaries_error = match read_with(reader, json, SummariesDocument(&mut content)) {
        Ok(()) => return Ok(content),
        Err(e) => e,
    };
    let reader = BufReader::with_capacity(64 * 1024, open()?);
    let trivy_error = match read_with(reader, json, std::marker::PhantomData::<TrivyReport>) {
        Ok(report) => return trivy::into_content(report),
        Err(e) => e,
    };
    // Report the error of the shape the document was meant to have.
    Err(if looks_like_summaries(&head) {
        ReportError::NotSummaries(Box::new(summaries_error))
    } else {
        ReportError::NotTrivy(Box::new(trivy_error))
    })
}

/// One document of `reader`, as JSON or as YAML, through `seed`.
fn read_with<R: Read, S, T>(reader: BufReader<R>, json: bool, seed: S) -> Result<T, ReportError>
where
    S: for<'de> DeserializeSeed<'de, Value = T>,
{
    if json {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    } else {
        // serde-saphyr parses as it deserializes: a whole-file parser would hold every
        // parser event of the file before the first entry is read.
        serde_saphyr::with_deserializer_from_reader_with_options(reader, yaml_options(), |de| {
            seed.deserialize(de)
        })
        .map_err(ReportError::from)
    }
}

/// A scan file is as large as its number of images, far beyond serde-saphyr's
/// defaults for config files; the limits on aliases (billion laughs) stay.
fn yaml_options() -> serde_saphyr::Options {
    const LARGE: usize = 1 << 30;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(LARGE);
    budget.max_events = LARGE;
    budget.max_nodes = LARGE;
    budget.max_total_scalar_bytes = LARGE;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options
}

fn looks_like_summaries(head: &str) -> bool {
    head.trim_start()
        .trim_start_matches('{')
        .trim_start()
        .trim_start_matches('"')
        .starts_with("summaries")
}

pub(super) fn check_digest(d: &str) -> Result<(), ReportError> {
    match d.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(ReportError::Digest(d.to_string())),
    }
}

/// `{summaries: [...]}`, each entry added to the content as it is read.
struct SummariesDocument<'a>(&'a mut FileContent);

impl<'de> DeserializeSeed<'de> for SummariesDocument<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SummariesDocument<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map with one key, summaries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key != "summaries" {
                return Err(A::Error::unknown_field(&key, &["summaries"]));
            }
            if seen {
                return Err(A::Error::duplicate_field("summaries"));
            }
            map.next_value_seed(SummaryEntries(&mut *self.0))?;
            seen = true;
        }
        if !seen {
            return Err(A::Error::missing_field("summaries"));
        }
        Ok(())
    }
}

struct SummaryEntries<'a>(&'a mut FileContent);

impl<'de> DeserializeSeed<'de> for SummaryEntries<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SummaryEntries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of summaries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while let Some(entry) = seq.next_element::<SummaryEntry>()? {
            add_entry(self.0, entry)
                .map_err(|m| A::Error::custom(format!("summaries[{index}]: {m}")))?;
            index += 1;
        }
        Ok(())
    }
}

fn add_entry(content: &mut FileContent, entry: SummaryEntry) -> Result<(), ReportError> {
    check_digest(&entry.digest)?;
    let finished_at =
        match &entry.finished_at {
            Some(t) => Some(OffsetDateTime::parse(t, &Rfc3339).map_err(|source| {
                ReportError::FinishedAt {
                    value: t.clone(),
                    source,
                }
            })?),
            None => None,
        };
    if let Some(image) = &entry.image {
        let parsed = ImageRef::parse(image)?;
        if parsed.tag.is_some() && image.contains(':') {
            content.add_tag(&parsed, &entry.digest);
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
    content
        .summaries
        .push((DigestKey::new(&entry.digest), Arc::new(summary)));
    Ok(())
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
