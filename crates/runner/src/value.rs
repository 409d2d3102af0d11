//! Values that flow from forms, users and targets into queries, and secrets that must never
//! be printed.

use provflow_ir::ValueType;
use provflow_lex::values::{self, Typed};
use std::fmt;

/// A secret (`GuardedString`). `Debug` and `Display` print a mask, so a secret that ends up
/// in a log line, an error or a plan by mistake still does not leak; its bytes are wiped when
/// it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// What every secret looks like when shown.
pub const MASK: &str = "********";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text, for the one place that needs it: binding it into a target call.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A typed value bound into a query or read back from one.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Secret(Secret),
}

impl Value {
    /// The value as shown to people: secrets masked.
    pub fn display(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Secret(_) => MASK.into(),
        }
    }

    /// The value as text, for response codes and form storage. `None` for a secret.
    pub fn as_plain_text(&self) -> Option<String> {
        match self {
            Value::Secret(_) => None,
            other => Some(other.display()),
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, Value::Secret(_))
    }

    /// A JSON rendering for output; secrets masked.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Double(d) => serde_json::Value::from(*d),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Secret(_) => serde_json::Value::String(MASK.into()),
        }
    }
}

/// Why a text could not become a value of a declared type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{text}` is not {expected}: {reason}")]
pub struct TypeMismatch {
    /// The offending text; never a secret (secrets are not parsed).
    pub text: String,
    /// What the type looks like, e.g. "a Date (YYYY-MM-DD)".
    pub expected: &'static str,
    /// What is wrong with the text, e.g. "there is no month 13".
    pub reason: String,
}

/// Converts text (a form field, a user attribute, a CSV cell, a literal) to a value of `ty`
/// by the rules of [`provflow_lex::values`], the same the compiler checks literals with.
/// Dates and timestamps become their canonical text.
pub fn typed(ty: ValueType, text: &str) -> Result<Value, TypeMismatch> {
    let parsed = values::parse(ty, text).map_err(|e| TypeMismatch {
        text: text.to_string(),
        expected: e.expected(),
        reason: e.reason().to_string(),
    })?;
    Ok(match parsed {
        Typed::Text(t) if ty.is_secret() => Value::Secret(Secret::new(t)),
        Typed::Text(t) => Value::Text(t.to_string()),
        Typed::Int(i) => Value::Int(i),
        Typed::Double(d) => Value::Double(d),
        Typed::Boolean(b) => Value::Bool(b),
        date @ (Typed::Date(_) | Typed::Timestamp(_)) => Value::Text(date.to_string()),
    })
}

/// A `Date` or `Timestamp` text as a wall-clock date and time (an instant's in UTC), to put
/// dates in order; `None` when the text is neither.
pub fn wall_clock(text: &str) -> Option<jiff::civil::DateTime> {
    match values::parse(ValueType::Timestamp, text) {
        Ok(Typed::Timestamp(stamp)) => Some(stamp.civil()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let v = Value::Secret(Secret::new("hunter2"));
        assert_eq!(format!("{v:?}"), "Secret(********)");
        assert_eq!(v.display(), MASK);
        assert_eq!(v.to_json(), serde_json::json!(MASK));
        assert_eq!(v.as_plain_text(), None);
    }

    #[test]
    fn typed_values() {
        let cases: &[(ValueType, &str, Option<Value>)] = &[
            (ValueType::Long, "42", Some(Value::Int(42))),
            (ValueType::Long, "4x", None),
            (ValueType::Integer, "3000000000", None),
            (ValueType::Boolean, "TRUE", Some(Value::Bool(true))),
            (ValueType::Boolean, "maybe", None),
            (ValueType::Date, "2024-02-29", Some(Value::Text("2024-02-29".into()))),
            (ValueType::Date, "2023-02-29", None),
            (ValueType::Date, "2023-2-1", None),
            (ValueType::Timestamp, "2024-01-01garbage", None),
            (ValueType::Timestamp, "2024-01-01 10:00:00+02:00", Some(Value::Text("2024-01-01T08:00:00Z".into()))),
            (ValueType::Double, "1.5", Some(Value::Double(1.5))),
            (ValueType::Double, "1e400", None),
            (ValueType::String, " as is ", Some(Value::Text(" as is ".into()))),
            (ValueType::GuardedString, " pw ", Some(Value::Secret(Secret::new(" pw ")))),
        ];
        for (ty, text, want) in cases {
            assert_eq!(typed(*ty, text).ok(), *want, "{ty:?} {text}");
        }
    }

    #[test]
    fn mismatches_say_what_and_why() {
        let e = typed(ValueType::Date, "2024-13-01").err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("`2024-13-01` is not a Date (YYYY-MM-DD): there is no month 13"));
    }
}
