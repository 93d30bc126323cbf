//! Logging: `RUST_LOG` filters, human-readable or JSON lines on stderr, and an in-memory ring of
//! the most recent lines for `GET /logs`.
//!
//! One [`log::Log`] wraps env_logger (which does the filtering and the writing): every record that
//! passes the filter is also formatted into the ring. The ring is process-global because `log`'s
//! logger is; several servers in one process (tests) share it.
//!
//! Nothing secret goes through here by construction: call sites log redacted ids
//! ([`DeviceId::redacted`](crate::ids::DeviceId::redacted)), never SDP, tokens or addresses.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use log::kv::{self, Key, VisitSource};
use log::{Log, Metadata, Record};
use pretty_env_logger::env_logger;
use serde::Serialize;

/// Lines the ring keeps: enough for the story of a reported problem a few minutes back, small
/// enough (a few hundred KiB) to keep on the smallest VM.
pub const RING_LINES: usize = 1000;

/// A line longer than this is cut in the ring (not on stderr), so one huge message cannot take
/// the ring's whole memory.
const RING_LINE_MAX_BYTES: usize = 4096;

/// The filter when `RUST_LOG` is unset: the server's own info lines.
const DEFAULT_FILTER: &str = "info";

/// The most recent log lines, oldest first.
static RING: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

pub use crate::config::LogFormat;

/// Installs the logger: `RUST_LOG` (default `info`) filters, `format` decides the lines.
/// Does nothing if a logger is already installed.
pub fn init(format: LogFormat) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_owned());
    let _ = try_init(format, &filter, true);
}

/// Installs the logger with an explicit filter; `write` false keeps lines in the ring only
/// (quiet tests that still read `GET /logs`).
pub fn try_init(format: LogFormat, filter: &str, write: bool) -> Result<(), log::SetLoggerError> {
    let mut builder = match format {
        LogFormat::Text => pretty_env_logger::formatted_timed_builder(),
        LogFormat::Json => {
            let mut b = env_logger::Builder::new();
            b.format(|buf, record| writeln!(buf, "{}", json_line(record, Utc::now())));
            b
        }
    };
    builder.parse_filters(filter);
    let output = builder.build();
    let max = output.filter();
    log::set_boxed_logger(Box::new(RingLogger {
        output,
        format,
        write,
    }))?;
    log::set_max_level(max);
    Ok(())
}

struct RingLogger {
    output: env_logger::Logger,
    format: LogFormat,
    write: bool,
}

impl Log for RingLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.output.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.output.matches(record) {
            return;
        }
        let now = Utc::now();
        let line = match self.format {
            LogFormat::Text => text_line(record, now),
            LogFormat::Json => json_line(record, now),
        };
        push_line(line);
        if self.write {
            self.output.log(record);
        }
    }

    fn flush(&self) {
        self.output.flush();
    }
}

/// Appends a line to the ring, dropping the oldest beyond [`RING_LINES`].
pub fn push_line(mut line: String) {
    if line.len() > RING_LINE_MAX_BYTES {
        let mut cut = RING_LINE_MAX_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" [cut]");
    }
    let mut ring = RING.lock().unwrap();
    if ring.len() >= RING_LINES {
        ring.pop_front();
    }
    ring.push_back(line);
}

/// The ring's lines, oldest first, newest last, each ending in a newline.
pub fn recent() -> String {
    // Copy out under the lock, join outside it: a slow reader never holds up logging.
    let lines: Vec<String> = RING.lock().unwrap().iter().cloned().collect();
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// The human-readable line: `2026-11-24T12:00:00.123Z INFO  target > message key=value`.
pub fn text_line(record: &Record<'_>, at: DateTime<Utc>) -> String {
    let mut line = format!(
        "{} {:<5} {} > {}",
        at.to_rfc3339_opts(SecondsFormat::Millis, true),
        record.level(),
        record.target(),
        record.args()
    );
    for (key, value) in fields(record) {
        let _ = write!(line, " {key}={value}");
    }
    line
}

#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    level: &'a str,
    target: &'a str,
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

/// The JSON line: `{"timestamp","level","target","message","fields"}`, where `fields` holds the
/// record's key-values (numbers and booleans as such, anything else as a string).
pub fn json_line(record: &Record<'_>, at: DateTime<Utc>) -> String {
    let line = JsonLine {
        timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
        level: record.level().as_str(),
        target: record.target(),
        message: record.args().to_string(),
        fields: fields(record).into_iter().collect(),
    };
    // Strings, numbers and a map of them: serialising cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// A record's key-values as JSON values, in order.
fn fields(record: &Record<'_>) -> Vec<(String, serde_json::Value)> {
    struct Collect(Vec<(String, serde_json::Value)>);
    impl<'kvs> VisitSource<'kvs> for Collect {
        fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
            use serde_json::Value;
            let json = if let Some(b) = value.to_bool() {
                Value::Bool(b)
            } else if let Some(i) = value.to_i64() {
                Value::from(i)
            } else if let Some(u) = value.to_u64() {
                Value::from(u)
            } else if let Some(f) = value.to_f64() {
                Value::from(f)
            } else {
                Value::String(value.to_string())
            };
            self.0.push((key.as_str().to_owned(), json));
            Ok(())
        }
    }
    let mut collect = Collect(Vec::new());
    let _ = record.key_values().visit(&mut collect);
    collect.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;
    use serde_json::{Value, json};

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn json_lines_carry_the_five_fields_and_nothing_else() {
        let line = json_line(
            &Record::builder()
                .args(format_args!("room {} deleted \"now\"", "ab…cd"))
                .level(Level::Warn)
                .target("signalpost::api::pairing")
                .build(),
            at(),
        );
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({
                "timestamp": "2026-11-24T12:00:00.123Z",
                "level": "WARN",
                "target": "signalpost::api::pairing",
                "message": "room ab…cd deleted \"now\"",
                "fields": {}
            })
        );
        assert!(line.starts_with(r#"{"timestamp":"#), "{line}");
    }

    #[test]
    fn json_lines_keep_key_values_with_their_types() {
        let kvs = [
            ("count", kv::Value::from(3_u64)),
            ("ok", kv::Value::from(true)),
            ("ended", kv::Value::from("left")),
        ];
        let line = json_line(
            &Record::builder()
                .args(format_args!("swept"))
                .level(Level::Info)
                .target("t")
                .key_values(&kvs)
                .build(),
            at(),
        );
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value["fields"],
            json!({"count": 3, "ok": true, "ended": "left"})
        );
    }

    #[test]
    fn text_lines_read_like_the_terminal_output() {
        let line = text_line(
            &Record::builder()
                .args(format_args!("listening"))
                .level(Level::Info)
                .target("signalpost::server")
                .build(),
            at(),
        );
        assert_eq!(
            line,
            "2026-11-24T12:00:00.123Z INFO  signalpost::server > listening"
        );
    }

    #[test]
    fn the_ring_keeps_the_newest_lines_last_and_cuts_huge_ones() {
        let marker = format!("ring-test-{}", uuid::Uuid::new_v4());
        for i in 0..(RING_LINES + 5) {
            push_line(format!("{marker} {i}"));
        }
        push_line(format!("{marker} {}", "x".repeat(RING_LINE_MAX_BYTES * 2)));
        let text = recent();
        let ours: Vec<&str> = text.lines().filter(|l| l.starts_with(&marker)).collect();
        // Other tests log concurrently, so only the order and the bounds are certain.
        assert!(ours.len() <= RING_LINES);
        assert!(!text.contains(&format!("{marker} 0\n")));
        assert!(ours.last().unwrap().ends_with(" [cut]"));
        assert!(text.lines().count() <= RING_LINES);
    }
}
