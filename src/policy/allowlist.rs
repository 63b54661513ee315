//! Accepted vulnerabilities: `CVE-2024-1234, CVE-2023-9999 until 2026-12-31`.

use time::Date;

use super::Source;
use crate::domain::accepted::parse_entry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub id: String,
    /// The last day the entry holds; afterwards the vulnerability counts again.
    pub until: Option<Date>,
    pub source: Source,
}

impl AllowEntry {
    pub(crate) fn is_active(&self, today: Date) -> bool {
        self.until.is_none_or(|until| today <= until)
    }
}

/// Parses a list separated by commas or new lines; bad entries are returned as problems.
pub(crate) fn parse_list(text: &str, source: &Source) -> (Vec<AllowEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for part in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
    {
        match parse_entry(part) {
            Ok((id, until)) => entries.push(AllowEntry {
                id,
                until,
                source: source.clone(),
            }),
            Err(e) => problems.push(format!(
                "accepted vulnerability in {source}: {e}; that entry is ignored"
            )),
        }
    }
    (entries, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn entries_with_and_without_expiry() {
        let (entries, problems) = parse_list(
            "CVE-2024-1234, cve-2023-9999 until 2026-12-31,\nGHSA-xxxx-yyyy, bad entry here, CVE-1 until tomorrow",
            &Source::ClusterDefault,
        );
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].id, "CVE-2023-9999");
        assert_eq!(entries[1].until, Some(date!(2026 - 12 - 31)));
        assert!(entries[1].is_active(date!(2026 - 12 - 31)));
        assert!(!entries[1].is_active(date!(2027 - 01 - 01)));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
