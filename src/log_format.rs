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

use crate::json_text::plain_len;

/// The JSON line format of the server's logs.
pub(crate) struct JsonLines;

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
        // The line is built in a String of this thread's and handed over whole:
        // `Writer` writes through a `dyn Write`, one call per piece otherwise.
        LINE.with(|held| {
            // Busy only for an event logged while formatting one (from a field's Display).
            let (mut held, mut fresh) = (held.try_borrow_mut(), String::new());
            let line = match &mut held {
                Ok(line) => {
                    line.clear();
                    &mut **line
                }
                Err(_) => &mut fresh,
            };
            format_line(line, event)?;
            writer.write_str(line)
        })
    }
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn format_line(line: &mut String, event: &Event<'_>) -> fmt::Result {
    line.push_str("{\"timestamp\":\"");
    line.push_str(&timestamp(time::OffsetDateTime::now_utc()));
    line.push_str("\",\"level\":\"");
    line.push_str(event.metadata().level().as_str());
    line.push('"');
    let mut fields = FieldWriter {
        line,
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
    line.push_str(",\"target\":");
    write_string(line, target)?;
    line.push_str("}\n");
    Ok(())
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

struct FieldWriter<'a> {
    line: &'a mut String,
    log_target: Option<String>,
    result: fmt::Result,
}

impl FieldWriter<'_> {
    /// `,"name":` then the value written by `value`; `log.*` fields of bridged
    /// records are metadata, not fields.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.line.push_str(",\"");
        self.result = Escaping(&mut *self.line)
            .write_str(field.name())
            .and_then(|()| {
                self.line.push_str("\":");
                value(self.line)
            });
    }
}

impl Visit for FieldWriter<'_> {
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
            w.push('"');
            write!(Escaping(&mut *w), "{value:?}")?;
            w.push('"');
            Ok(())
        });
    }
}

/// A JSON string: quoted and escaped.
fn write_string(w: &mut String, s: &str) -> fmt::Result {
    w.push('"');
    Escaping(&mut *w).write_str(s)?;
    w.push('"');
    Ok(())
}

/// Escapes what it is given as the inside of a JSON string.
struct Escaping<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        loop {
            // Every byte that needs escaping is ASCII: the split is at a char boundary.
            let Some((plain, tail)) = rest.split_at_checked(plain_len(rest.as_bytes())) else {
                return self.0.write_str(rest);
            };
            self.0.write_str(plain)?;
            let Some(&b) = tail.as_bytes().first() else {
                return Ok(());
            };
            match b {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                _ => write!(self.0, "\\u{b:04x}")?,
            }
            rest = tail.get(1..).unwrap_or("");
        }
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
    fn escaped_strings_read_back_whatever_the_special_bytes_position() {
        let base = "a-long-plain-run-of-text-é-日本-and-more-text-to-cross-chunks";
        let mut inputs = vec![String::new(), base.to_string()];
        for special in ["\"", "\\", "\n", "\r", "\t", "\u{1}", "\u{1f}"] {
            for at in (0..=base.len()).filter(|&i| base.is_char_boundary(i)) {
                inputs.push(format!("{}{special}{}", &base[..at], &base[at..]));
            }
            inputs.push(special.repeat(40));
        }
        for input in inputs {
            let mut out = String::new();
            write_string(&mut out, &input).unwrap();
            let back: String = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
            assert_eq!(back, input, "{out}");
        }
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
