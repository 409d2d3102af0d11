//! Values that flow from forms, users and targets into queries, and secrets that must never
//! be printed.

use provflow_ir::ValueType;
use std::fmt;

/// A secret (`GuardedString`). `Debug` and `Display` print a mask, so a secret that ends up
/// in a log line, an error or a plan by mistake still does not leak.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

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
#[error("`{text}` is not a {expected}")]
pub struct TypeMismatch {
    /// The offending text; never a secret (secrets are not parsed).
    pub text: String,
    pub expected: &'static str,
}

/// Converts text (a form field, a user attribute, a literal) to a value of `ty`.
pub fn typed(ty: ValueType, text: &str) -> Result<Value, TypeMismatch> {
    let mismatch = |expected| TypeMismatch { text: text.to_string(), expected };
    match ty {
        ValueType::String => Ok(Value::Text(text.to_string())),
        ValueType::GuardedString => Ok(Value::Secret(Secret::new(text))),
        ValueType::Long | ValueType::Integer => {
            let n: i64 = text.trim().parse().map_err(|_| mismatch(ty.as_str()))?;
            if ty == ValueType::Integer && i32::try_from(n).is_err() {
                return Err(mismatch("Integer (32-bit)"));
            }
            Ok(Value::Int(n))
        }
        ValueType::Double => text.trim().parse::<f64>().map(Value::Double).map_err(|_| mismatch("Double")),
        ValueType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "n" => Ok(Value::Bool(false)),
            _ => Err(mismatch("Boolean (true or false)")),
        },
        ValueType::Date => {
            parse_date(text).ok_or_else(|| mismatch("Date (YYYY-MM-DD)"))?;
            Ok(Value::Text(text.trim().to_string()))
        }
        ValueType::Timestamp => {
            let t = text.trim();
            let date = t.get(..10).unwrap_or(t);
            parse_date(date).ok_or_else(|| mismatch("Timestamp (YYYY-MM-DDTHH:MM:SS)"))?;
            Ok(Value::Text(t.to_string()))
        }
    }
}

/// Parses `YYYY-MM-DD` into (year, month, day), checking the day exists.
pub fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let t = text.trim();
    let mut parts = t.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&d).then_some((y, m, d))
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
            (ValueType::Double, "1.5", Some(Value::Double(1.5))),
        ];
        for (ty, text, want) in cases {
            assert_eq!(typed(*ty, text).ok(), *want, "{ty:?} {text}");
        }
    }
}
