//! What the shared tier stores, as JSON: a scan summary (with its vulnerability
//! list when the scanner kept one) and a tag -> digest resolution.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::summary::{
    ExtraCount, ScanStatus, ScanSummary, Severity, SeverityCounts, Vulnerability,
};
use crate::resolve::Resolved;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryWire {
    scanner: String,
    status: String,
    counts: CountsWire,
    #[serde(default)]
    fixable: Option<CountsWire>,
    #[serde(default)]
    extra: BTreeMap<String, u64>,
    /// RFC 3339.
    #[serde(default)]
    finished_at: Option<String>,
    #[serde(default)]
    vulnerabilities: Vec<VulnWire>,
    /// What an unfinished scan's response adds to its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsWire {
    critical: Option<u64>,
    high: Option<u64>,
    medium: Option<u64>,
    low: Option<u64>,
    unknown: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VulnWire {
    id: String,
    severity: String,
    fixable: Option<bool>,
    #[serde(default)]
    published: Option<String>,
}

impl From<&SeverityCounts> for CountsWire {
    fn from(c: &SeverityCounts) -> Self {
        CountsWire {
            critical: c.critical,
            high: c.high,
            medium: c.medium,
            low: c.low,
            unknown: c.unknown,
        }
    }
}

impl From<CountsWire> for SeverityCounts {
    fn from(c: CountsWire) -> Self {
        SeverityCounts {
            critical: c.critical,
            high: c.high,
            medium: c.medium,
            low: c.low,
            unknown: c.unknown,
        }
    }
}

pub(crate) fn encode_summary(summary: &ScanSummary) -> String {
    let wire = SummaryWire {
        scanner: summary.scanner.to_string(),
        status: summary.status.as_str().to_string(),
        counts: (&summary.counts).into(),
        fixable: summary.fixable.as_ref().map(CountsWire::from),
        extra: summary
            .extra
            .iter()
            .map(|(k, v)| (k.key().to_string(), *v))
            .collect(),
        finished_at: summary.finished_at.map(rfc3339),
        vulnerabilities: summary
            .vulnerabilities
            .iter()
            .map(|v| VulnWire {
                id: v.id.clone(),
                severity: v.severity.as_str().to_string(),
                fixable: v.fixable,
                published: v.published.map(rfc3339),
            })
            .collect(),
        note: summary.note.clone(),
    };
    // Plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_string(&wire).unwrap_or_default()
}

/// A summary of the route's scanner `kind` from its JSON; `None` for anything this
/// version would not have written, or a summary of another scanner.
pub(crate) fn decode_summary(text: &str, kind: &'static str) -> Option<Arc<ScanSummary>> {
    let wire: SummaryWire = serde_json::from_str(text).ok()?;
    let scanner = (wire.scanner == kind).then_some(kind)?;
    let status = [
        ScanStatus::Complete,
        ScanStatus::Scanning,
        ScanStatus::NotScanned,
        ScanStatus::Failed,
    ]
    .into_iter()
    .find(|s| s.as_str() == wire.status)?;
    let mut extra = BTreeMap::new();
    for (key, value) in wire.extra {
        let kind = ExtraCount::ALL.into_iter().find(|k| k.key() == key)?;
        extra.insert(kind, value);
    }
    let mut vulnerabilities = Vec::with_capacity(wire.vulnerabilities.len());
    for v in wire.vulnerabilities {
        let severity = Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == v.severity)?;
        vulnerabilities.push(Vulnerability {
            id: v.id,
            severity,
            fixable: v.fixable,
            published: parse_time(v.published)?,
        });
    }
    Some(Arc::new(ScanSummary {
        scanner,
        status,
        counts: wire.counts.into(),
        fixable: wire.fixable.map(SeverityCounts::from),
        extra,
        finished_at: parse_time(wire.finished_at)?,
        vulnerabilities,
        note: wire.note,
    }))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `Some(None)` when absent, `None` when present but not a time.
fn parse_time(text: Option<String>) -> Option<Option<OffsetDateTime>> {
    match text {
        None => Some(None),
        Some(t) => OffsetDateTime::parse(&t, &Rfc3339).ok().map(Some),
    }
}

/// A tag resolution: `{"digest": ..., "platforms": [[platform, digest], ...]}`, the
/// platforms present only for an index.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolvedWire {
    digest: String,
    #[serde(default)]
    platforms: Option<Vec<(String, String)>>,
}

pub(crate) fn encode_resolved(resolved: &Resolved) -> String {
    let wire = match resolved {
        Resolved::Manifest { digest } => ResolvedWire {
            digest: digest.clone(),
            platforms: None,
        },
        Resolved::Index { digest, platforms } => ResolvedWire {
            digest: digest.clone(),
            platforms: Some(platforms.clone()),
        },
    };
    serde_json::to_string(&wire).unwrap_or_default()
}

/// A resolution from its JSON; `None` unless every digest is `sha256:` and 64 hex.
pub(crate) fn decode_resolved(text: &str) -> Option<Resolved> {
    let wire: ResolvedWire = serde_json::from_str(text).ok()?;
    let is_digest = |d: &str| {
        d.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if !is_digest(&wire.digest) {
        return None;
    }
    match wire.platforms {
        None => Some(Resolved::Manifest {
            digest: wire.digest,
        }),
        Some(platforms) if platforms.iter().all(|(_, d)| is_digest(d)) => Some(Resolved::Index {
            digest: wire.digest,
            platforms,
        }),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_survive_the_round_trip_and_bad_digests_are_not_read() {
        let d = |c: &str| format!("sha256:{}", c.repeat(64));
        let index = Resolved::Index {
            digest: d("a"),
            platforms: vec![("linux/amd64".into(), d("b"))],
        };
        let manifest = Resolved::Manifest { digest: d("c") };
        for r in [&index, &manifest] {
            assert_eq!(decode_resolved(&encode_resolved(r)).as_ref(), Some(r));
        }
        let bad = encode_resolved(&manifest).replace(&d("c"), "sha256:zz");
        assert!(decode_resolved(&bad).is_none());
    }

    #[test]
    fn a_summary_with_its_list_survives_the_round_trip() {
        let mut s = ScanSummary::status_only("harbor", ScanStatus::Complete);
        s.counts = SeverityCounts::zero();
        s.counts.critical = Some(5);
        s.fixable = Some(SeverityCounts::zero());
        s.extra.insert(ExtraCount::MaliciousFiles, 2);
        s.finished_at = Some(time::macros::datetime!(2026-01-02 03:04:05 UTC));
        s.vulnerabilities.push(Vulnerability {
            id: "CVE-2024-1".into(),
            severity: Severity::Critical,
            fixable: Some(true),
            published: None,
        });
        let back = decode_summary(&encode_summary(&s), "harbor").expect("decodes");
        assert_eq!(*back, s);
    }

    #[test]
    fn an_unfinished_scan_keeps_its_note() {
        let mut s = ScanSummary::status_only("sas", ScanStatus::NotScanned);
        s.note = Some("no scan was asked for: the limit of scans per hour is reached".into());
        let back = decode_summary(&encode_summary(&s), "sas").expect("decodes");
        assert_eq!(back.note, s.note);
    }

    #[test]
    fn unknown_scanners_statuses_and_fields_are_not_read() {
        let s = ScanSummary::status_only("acr", ScanStatus::Scanning);
        let text = encode_summary(&s);
        assert!(decode_summary(&text, "acr").is_some());
        assert!(
            decode_summary(&text, "sas").is_none(),
            "another scanner's summary"
        );
        assert!(decode_summary(&text.replace("scanning", "done"), "acr").is_none());
        let extra = text.replace("{\"scanner\"", "{\"x\":1,\"scanner\"");
        assert!(decode_summary(&extra, "acr").is_none());
        assert!(decode_summary("not json", "acr").is_none());
    }
}
