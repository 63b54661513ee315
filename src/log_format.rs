//! `log.format: json`: one JSON object per line, written straight into the line
//! buffer. tracing-subscriber's own JSON formatter builds each line through
//! serde_json and a span lookup, which cost a review as much as judging two images;
//! this writes the same keys (`timestamp`, `level`, the event's fields flattened,
//! `target`) directly.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line format of the server's logs.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("{\"timestamp\":\"")?;
        writer.write_str(&timestamp(time::OffsetDateTime::now_utc()))?;
        write!(writer, "\",\"level\":\"{}\"", event.metadata().level())?;
        let mut fields = FieldWriter {
            writer: &mut writer,
            log_target: None,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        // Records bridged from the `log` crate carry their real target as a field.
        let target = fields
            .log_target
            .as_deref()
            .unwrap_or_else(|| event.metadata().target());
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, target)?;
        writer.write_str("}\n")
    }
}

/// `2026-12-02T07:04:08.123456Z`, written digit by digit: the formatting machinery
/// took longer than the rest of the line's fixed part.
fn timestamp(now: time::OffsetDateTime) -> TimestampText {
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            if let Some(digit) = text.get_mut(i) {
                *digit = b'0' + (value % 10) as u8;
            }
            value /= 10;
        }
    };
    // Years outside 0..=9999 cannot come from the system clock of a running server.
    put(0, 4, now.year().clamp(0, 9999) as u32);
    put(5, 2, u8::from(now.month()).into());
    put(8, 2, now.day().into());
    put(11, 2, now.hour().into());
    put(14, 2, now.minute().into());
    put(17, 2, now.second().into());
    put(20, 6, now.microsecond());
    TimestampText(text)
}

struct TimestampText([u8; 27]);

impl std::ops::Deref for TimestampText {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

struct FieldWriter<'a, 'w> {
    writer: &'a mut Writer<'w>,
    log_target: Option<String>,
    result: fmt::Result,
}

impl FieldWriter<'_, '_> {
    /// `,"name":` then the value written by `value`; `log.*` fields of bridged
    /// records are metadata, not fields.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = (|| {
            self.writer.write_char(',')?;
            write_string(self.writer, field.name())?;
            self.writer.write_char(':')?;
            value(self.writer)
        })();
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_string());
            return;
        }
        self.field(field, |w| write_string(w, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.field(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                write_string(w, &value.to_string())
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaping(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// A JSON string: quoted and escaped.
fn write_string(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaping(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string.
struct Escaping<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain_from = 0;
        for (i, b) in s.bytes().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain_from..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain_from = i + 1;
        }
        self.0.write_str(&s[plain_from..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_writer::Captured;

    fn lines_of(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let at = time::macros::datetime!(2026-02-03 04:05:06.000789 UTC);
        assert_eq!(&*timestamp(at), "2026-02-03T04:05:06.000789Z");
        let at = time::macros::datetime!(1999-12-31 23:59:59.999999 UTC);
        assert_eq!(&*timestamp(at), "1999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn every_kind_of_field_makes_valid_json() {
        let hostile = "quote \" backslash \\ newline \n tab \t bell \u{7} é 日本";
        let lines = lines_of(|| {
            tracing::info!(
                uid = %hostile,
                kind = "Pod",
                count = 3u64,
                delta = -2i64,
                ok = true,
                ratio = 0.5f64,
                nan = f64::NAN,
                list = ?vec!["a", "b"],
                "review {}", "done"
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "review done");
        assert_eq!(line["uid"], hostile);
        assert_eq!(line["kind"], "Pod");
        assert_eq!(line["count"], 3);
        assert_eq!(line["delta"], -2);
        assert_eq!(line["ok"], true);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["nan"], "NaN");
        assert_eq!(line["list"], "[\"a\", \"b\"]");
        assert_eq!(line["target"], module_path!());
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{timestamp}"
        );
    }
}
