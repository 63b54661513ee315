//! One accepted-vulnerability entry: `CVE-2024-1234` or `CVE-2024-1234 until 2026-12-31`.

use time::Date;
use time::macros::format_description;

/// Parses one entry: an id, optionally followed by `until YYYY-MM-DD`.
pub(crate) fn parse_entry(text: &str) -> Result<(String, Option<Date>), String> {
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
            ));
        }
    };
    Ok((id.to_ascii_uppercase(), until))
}
