//! The worker's log: one line per event on standard error, `key=value` text for people or
//! JSON for machines. Every text value passes through [`credentials::scrub_known`]: a driver
//! error that quotes a connection string never shows its password.

use std::io::Write;
use std::sync::Mutex;

use crate::credentials;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-27T15:04:05Z INFO claimed worker=w1 tasks=3`
    #[default]
    Text,
    /// `{"ts":"2026-11-27T15:04:05Z","level":"info","event":"claimed","worker":"w1","tasks":3}`
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A field's value.
#[derive(Debug, Clone)]
pub enum Field {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Field {
    fn from(s: &str) -> Self {
        Field::Text(s.to_string())
    }
}
impl From<String> for Field {
    fn from(s: String) -> Self {
        Field::Text(s)
    }
}
impl From<i64> for Field {
    fn from(n: i64) -> Self {
        Field::Int(n)
    }
}
impl From<usize> for Field {
    fn from(n: usize) -> Self {
        Field::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Field {
    fn from(n: u32) -> Self {
        Field::Int(i64::from(n))
    }
}
impl From<f64> for Field {
    fn from(n: f64) -> Self {
        Field::Float(n)
    }
}
impl From<bool> for Field {
    fn from(b: bool) -> Self {
        Field::Bool(b)
    }
}

/// The worker's log; shared by its threads.
pub struct Log {
    format: LogFormat,
    worker: String,
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Log {
    /// A log on standard error.
    pub fn stderr(format: LogFormat, worker: &str) -> Self {
        Self::to(format, worker, Box::new(std::io::stderr()))
    }

    pub fn to(format: LogFormat, worker: &str, sink: Box<dyn Write + Send>) -> Self {
        Log { format, worker: worker.to_string(), sink: Mutex::new(sink) }
    }

    pub fn info(&self, event: &str, fields: &[(&str, Field)]) {
        self.write(Level::Info, event, fields);
    }

    pub fn warn(&self, event: &str, fields: &[(&str, Field)]) {
        self.write(Level::Warn, event, fields);
    }

    pub fn error(&self, event: &str, fields: &[(&str, Field)]) {
        self.write(Level::Error, event, fields);
    }

    /// Writes one line. A log that cannot be written is not worth stopping the work for.
    pub fn write(&self, level: Level, event: &str, fields: &[(&str, Field)]) {
        let line = self.line(jiff::Timestamp::now(), level, event, fields);
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
    }

    fn line(&self, at: jiff::Timestamp, level: Level, event: &str, fields: &[(&str, Field)]) -> String {
        let ts = at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let scrub = |s: &str| credentials::scrub_known(s).into_owned();
        match self.format {
            LogFormat::Json => {
                let mut map = serde_json::Map::new();
                map.insert("ts".into(), ts.into());
                map.insert("level".into(), level.as_str().into());
                map.insert("event".into(), event.into());
                map.insert("worker".into(), self.worker.clone().into());
                for (k, v) in fields {
                    let v = match v {
                        Field::Text(s) => serde_json::Value::from(scrub(s)),
                        Field::Int(n) => (*n).into(),
                        Field::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
                        Field::Bool(b) => (*b).into(),
                    };
                    map.insert((*k).to_string(), v);
                }
                let mut out = serde_json::Value::Object(map).to_string();
                out.push('\n');
                out
            }
            LogFormat::Text => {
                let mut out =
                    format!("{ts} {:<5} {event} worker={}", level.as_str().to_uppercase(), quoted(&self.worker));
                for (k, v) in fields {
                    let v = match v {
                        Field::Text(s) => quoted(&scrub(s)),
                        Field::Int(n) => n.to_string(),
                        Field::Float(f) => format!("{f:.3}"),
                        Field::Bool(b) => b.to_string(),
                    };
                    out.push_str(&format!(" {k}={v}"));
                }
                out.push('\n');
                out
            }
        }
    }
}

/// A text value as one `key=value` token: quoted (JSON style) when it has spaces, quotes,
/// `=` or control characters, so that a line always splits the same way.
fn quoted(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=');
    if plain {
        s.to_string()
    } else {
        serde_json::Value::from(s).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> jiff::Timestamp {
        "2026-11-27T15:04:05Z".parse().unwrap()
    }

    #[test]
    fn text_lines_split_the_same_way_whatever_the_values() {
        let log = Log::to(LogFormat::Text, "w 1", Box::new(std::io::sink()));
        let line = log.line(at(), Level::Warn, "fenced", &[("task", 7i64.into()), ("note", "a b=\"c\"\n".into())]);
        assert_eq!(line, "2026-11-27T15:04:05.000Z WARN  fenced worker=\"w 1\" task=7 note=\"a b=\\\"c\\\"\\n\"\n");
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let log = Log::to(LogFormat::Json, "w1", Box::new(std::io::sink()));
        let line = log.line(at(), Level::Info, "claimed", &[("tasks", 3usize.into()), ("rescue", true.into())]);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "claimed");
        assert_eq!(v["tasks"], 3);
        assert_eq!(v["rescue"], true);
        assert_eq!(v["worker"], "w1");
        assert_eq!(v["level"], "info");
    }

    #[test]
    fn passwords_of_known_connection_strings_never_reach_a_line() {
        credentials::remember("postgres://app:Sw0rdf1sh-log@db.internal/provflow");
        let log = Log::to(LogFormat::Json, "w1", Box::new(std::io::sink()));
        let line = log.line(
            at(),
            Level::Error,
            "store_error",
            &[("error", "cannot reach postgres://app:Sw0rdf1sh-log@db.internal/provflow".into())],
        );
        assert!(!line.contains("Sw0rdf1sh-log"), "{line}");
    }
}
