//! Accepted vulnerabilities: `CVE-2024-1234, CVE-2023-9999 until 2026-12-31`.

use time::macros::format_description;
use time::Date;

use super::Source;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub id: String,
    /// The last day the entry holds; afterwards the vulnerability counts again.
    pub until: Option<Date>,
    pub source: Source,
}

impl AllowEntry {
    pub fn is_active(&self, today: Date) -> bool {
        self.until.is_none_or(|until| today <= until)
    }
}

/// Parses one entry: an id, optionally followed by `until YYYY-MM-DD`.
pub fn parse_entry(text: &str) -> Result<(String, Option<Date>), String> {
    let mut words = text.split_whitespace();
    let id = words.next().ok_or("empty entry")?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(format!("{id:?} is not a vulnerability id"));
    }
    let until = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some("until"), Some(date), None) => Some(
            Date::parse(date, format_description!("[year]-[month]-[day]"))
                .map_err(|_| format!("{date:?} after {id} is not a date (YYYY-MM-DD)"))?,
        ),
        _ => {
            return Err(format!(
                "{text:?}: expected \"ID\" or \"ID until YYYY-MM-DD\""
            ))
        }
    };
    Ok((id.to_ascii_uppercase(), until))
}

/// Parses a list separated by commas or new lines; bad entries are returned as problems.
pub fn parse_list(text: &str, source: &Source) -> (Vec<AllowEntry>, Vec<String>) {
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
