//! `--log-format json`: one JSON object per line on standard error, for log collectors.
//!
//! Each object has `time` (RFC 3339, UTC), `level`, `target`, `message`, the fields of the
//! spans the event happened in (outermost first: a session's `peer` and `user`), then the
//! event's own fields, which win over a span's of the same name. Security events carry
//! `event` (see `ferry_core::events`), `protocol`, `peer` and, where known, `user`.
//!
//! What clients chose (user names, paths) can't forge a line or hide in it: JSON escapes
//! quotes and controls, and every other control, bidirectional or invisible character is
//! written as a `\uXXXX` escape too.

use std::fmt;
use std::io::Write;

use serde::Deserialize;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How the log is written (`--log-format`, `log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Lines for people: time, level, spans, message, fields.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The event formatter of `--log-format json`.
pub(crate) struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut object = Map::new();
        object.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        object.insert("level".into(), meta.level().as_str().into());
        object.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    object.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut object));
        let line = json_escaped(&Value::Object(object).to_string());
        writeln!(writer, "{line}")
    }
}

/// An event's fields into a JSON object (`message` for the text).
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// `json` (serialized by serde_json, so with no raw controls below U+0020) with every other
/// hidden character written as a JSON `\uXXXX` escape (a surrogate pair above U+FFFF).
fn json_escaped(json: &str) -> String {
    if !json.chars().any(ferry_proto::text::is_hidden) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    let mut units = [0u16; 2];
    for c in json.chars() {
        if ferry_proto::text::is_hidden(c) {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Standard error, one event per write (the formatter writes each event whole).
pub(crate) struct JsonWriter;

impl Write for JsonWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_become_json_escapes() {
        let json = Value::from("a\u{202e}b\u{85}c\nd\u{e0001}").to_string();
        let shown = json_escaped(&json);
        assert_eq!(shown, r#""a\u202eb\u0085c\nd\udb40\udc01""#);
        let back: Value = serde_json::from_str(&shown).unwrap_or_default();
        assert_eq!(back, Value::from("a\u{202e}b\u{85}c\nd\u{e0001}"));
    }
}
