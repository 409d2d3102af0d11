//! Typed values: how a text becomes a value of a parameter type, dates and times included.
//!
//! [`parse`] is the one reading of a text as a parameter type. The compiler checks `literal:`
//! values and target properties with it, the runner checks form values, user attributes, CSV
//! rows and every value it binds with it, so the two can never disagree.
//!
//! Accepted forms (surrounding whitespace is ignored for every type except `String` and
//! `GuardedString`, whose text is kept exactly as given and never read):
//!
//! | type | accepted | canonical |
//! |---|---|---|
//! | `Long` | digits with an optional sign, -9223372036854775808 to 9223372036854775807 | `42` |
//! | `Integer` | the same, -2147483648 to 2147483647 | `42` |
//! | `Double` | a finite decimal number, optional exponent (`1.5`, `-2e3`, `.5`) | Rust's shortest form |
//! | `Boolean` | `true`/`false`, `yes`/`no`, `y`/`n`, `1`/`0`, any case | `true`, `false` |
//! | `Date` | `YYYY-MM-DD`, year 0001 to 9999 | `2024-02-29` |
//! | `Timestamp` | `YYYY-MM-DD` then `T`, `t` or a space, then `HH:MM:SS`, an optional fraction of 1 to 9 digits, an optional `Z`, `z` or `±HH:MM`; or a bare `YYYY-MM-DD` | see below |
//!
//! A `Double` is refused when it is NaN or infinite, written so (`NaN`, `inf`) or overflowing
//! (`1e400`): MariaDB has no such values, PostgreSQL has them only for some column types, and
//! SQLite turns infinities into NULL, so the same value would land differently per target.
//!
//! A `Timestamp` written **with** `Z` or an offset is an exact instant; its canonical form is
//! that instant in UTC: `2024-01-01T10:00:00+02:00` becomes `2024-01-01T08:00:00Z`. Written
//! **without** an offset it is a wall-clock date and time that provflow passes on as written,
//! applying no time zone (`2024-01-01 10:00:00` becomes `2024-01-01T10:00:00`); the target reads
//! it as its own column type says (a PostgreSQL `timestamptz` in the session's `TimeZone`). A
//! bare date is midnight of that day, without an offset, so that a `Date` can feed a
//! `Timestamp`. Fractions keep up to nanoseconds, printed without trailing zeros. Hours go to
//! 23 (`24:00` is refused: write `00:00` of the next day), and a leap second (`:60`) is
//! refused because targets disagree about it (PostgreSQL rolls it over, MariaDB refuses it).
//!
//! Syntax is checked here against a fixed template (which character goes where); every
//! calendar and clock rule (days in a month, leap years, offsets, conversion to UTC, printing)
//! is `jiff`'s.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::Offset;
use provflow_ir::ValueType;
use std::fmt;

/// A text read as a value of a parameter type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Typed<'t> {
    /// `String` and `GuardedString`: the text exactly as given.
    Text(&'t str),
    /// `Long` and `Integer`.
    Int(i64),
    /// A finite `Double`.
    Double(f64),
    Boolean(bool),
    Date(Date),
    Timestamp(Stamp),
}

/// A `Timestamp` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Written without an offset: a wall-clock date and time, passed on as written.
    Civil(DateTime),
    /// Written with `Z` or an offset: an exact instant.
    Instant(jiff::Timestamp),
}

impl Stamp {
    /// The wall-clock date and time: as written, or the instant's in UTC.
    pub fn civil(self) -> DateTime {
        match self {
            Stamp::Civil(dt) => dt,
            Stamp::Instant(ts) => Offset::UTC.to_datetime(ts),
        }
    }
}

impl fmt::Display for Stamp {
    /// The canonical form: `YYYY-MM-DDTHH:MM:SS[.fraction]`, with `Z` for an instant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stamp::Civil(dt) => write!(f, "{dt}"),
            Stamp::Instant(ts) => write!(f, "{ts}"),
        }
    }
}

impl fmt::Display for Typed<'_> {
    /// The canonical text of the value (a `Text` as given).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Typed::Text(t) => f.write_str(t),
            Typed::Int(i) => write!(f, "{i}"),
            Typed::Double(d) => write!(f, "{d}"),
            Typed::Boolean(b) => write!(f, "{b}"),
            Typed::Date(d) => write!(f, "{d}"),
            Typed::Timestamp(s) => write!(f, "{s}"),
        }
    }
}

/// Why a text is not a value of a type. Neither part quotes the text, so the error is safe to
/// show whatever the text was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    ty: ValueType,
    reason: String,
}

impl Invalid {
    fn new(ty: ValueType, reason: impl Into<String>) -> Self {
        Invalid { ty, reason: reason.into() }
    }

    /// The type that was expected.
    pub fn ty(&self) -> ValueType {
        self.ty
    }

    /// What the type looks like, e.g. "a Date (YYYY-MM-DD)".
    pub fn expected(&self) -> &'static str {
        expected(self.ty)
    }

    /// What is wrong with the text, e.g. "there is no month 13".
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Invalid {
    /// `not a Date (YYYY-MM-DD): there is no day 29 in 2023-02, which has 28 days`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not {}: {}", self.expected(), self.reason)
    }
}

impl std::error::Error for Invalid {}

/// What a value of `ty` looks like, with its article, for messages: "a Date (YYYY-MM-DD)".
pub fn expected(ty: ValueType) -> &'static str {
    match ty {
        ValueType::String => "a String",
        ValueType::GuardedString => "a GuardedString",
        ValueType::Long => "a Long (a whole number from -9223372036854775808 to 9223372036854775807)",
        ValueType::Integer => "an Integer (a whole number from -2147483648 to 2147483647)",
        ValueType::Double => "a Double (a finite number such as 1.5 or -2e3)",
        ValueType::Boolean => "a Boolean (true or false; also yes/no, y/n, 1/0)",
        ValueType::Date => "a Date (YYYY-MM-DD)",
        ValueType::Timestamp => "a Timestamp (YYYY-MM-DDTHH:MM:SS with an optional offset or Z)",
    }
}

/// Reads `text` as a value of `ty`: the value, or why it is not one.
pub fn parse(ty: ValueType, text: &str) -> Result<Typed<'_>, Invalid> {
    match ty {
        ValueType::String | ValueType::GuardedString => Ok(Typed::Text(text)),
        ValueType::Long => whole(ty, text.trim(), i64::MIN, i64::MAX).map(Typed::Int),
        ValueType::Integer => whole(ty, text.trim(), i32::MIN.into(), i32::MAX.into()).map(Typed::Int),
        ValueType::Double => double(text.trim()).map(Typed::Double),
        ValueType::Boolean => boolean(text.trim()).map(Typed::Boolean),
        ValueType::Date => date(ValueType::Date, text.trim()).map(Typed::Date),
        ValueType::Timestamp => timestamp(text.trim()).map(Typed::Timestamp),
    }
}

/// The canonical text of `text` as a value of `ty` (`String` and `GuardedString` as given).
pub fn canonical(ty: ValueType, text: &str) -> Result<String, Invalid> {
    parse(ty, text).map(|v| v.to_string())
}

fn whole(ty: ValueType, text: &str, min: i64, max: i64) -> Result<i64, Invalid> {
    use std::num::IntErrorKind;
    if text.is_empty() {
        return Err(Invalid::new(ty, "the value is empty"));
    }
    let n = text.parse::<i64>().map_err(|e| {
        Invalid::new(
            ty,
            match e.kind() {
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "out of range",
                _ => "not a whole number (digits with an optional sign)",
            },
        )
    })?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(Invalid::new(ty, "out of range"))
    }
}

fn double(text: &str) -> Result<f64, Invalid> {
    let ty = ValueType::Double;
    if text.is_empty() {
        return Err(Invalid::new(ty, "the value is empty"));
    }
    let d = text.parse::<f64>().map_err(|_| Invalid::new(ty, "not a number"))?;
    if d.is_finite() {
        return Ok(d);
    }
    let word = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    Err(Invalid::new(
        ty,
        if word.starts_with("inf") || word.starts_with("nan") {
            "NaN and infinities are refused: targets store them differently or not at all"
        } else {
            "out of range: it overflows a 64-bit float"
        },
    ))
}

fn boolean(text: &str) -> Result<bool, Invalid> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Ok(true),
        "false" | "no" | "n" | "0" => Ok(false),
        _ => Err(Invalid::new(ValueType::Boolean, "not one of the Boolean words")),
    }
}

/// Whether `text` has the shape of `template`, where `9` stands for an ASCII digit and every
/// other character for itself.
fn shaped(text: &str, template: &str) -> bool {
    text.len() == template.len()
        && text.bytes().zip(template.bytes()).all(|(t, p)| if p == b'9' { t.is_ascii_digit() } else { t == p })
}

/// The number written at `range` of a text already checked against a template.
fn number<T: std::str::FromStr + Default>(text: &str, range: std::ops::Range<usize>) -> T {
    text.get(range).and_then(|s| s.parse().ok()).unwrap_or_default()
}

/// `YYYY-MM-DD`; `ty` names the type in errors (a Timestamp's date part is checked here too).
fn date(ty: ValueType, text: &str) -> Result<Date, Invalid> {
    if !shaped(text, "9999-99-99") {
        return Err(Invalid::new(ty, "expected YYYY-MM-DD (a 4-digit year, 2-digit month and 2-digit day)"));
    }
    let (year, month, day): (i16, i8, i8) = (number(text, 0..4), number(text, 5..7), number(text, 8..10));
    if year == 0 {
        return Err(Invalid::new(ty, "there is no year 0000 (years go from 0001 to 9999)"));
    }
    if !(1..=12).contains(&month) {
        return Err(Invalid::new(ty, format!("there is no month {month:02}")));
    }
    Date::new(year, month, day).map_err(|_| {
        let days = Date::new(year, month, 1).map(|d| d.days_in_month()).unwrap_or(31);
        Invalid::new(ty, format!("there is no day {day:02} in {year:04}-{month:02}, which has {days} days"))
    })
}

/// The forms of [`Stamp`]; see the module documentation.
fn timestamp(text: &str) -> Result<Stamp, Invalid> {
    let ty = ValueType::Timestamp;
    const SHAPE: &str =
        "expected YYYY-MM-DD, then T or a space, then HH:MM:SS, an optional fraction of 1 to 9 digits, \
                         and an optional Z or ±HH:MM offset";
    let (day, rest) = text.split_at_checked(10).ok_or_else(|| Invalid::new(ty, SHAPE))?;
    let day = date(ty, day)?;
    if rest.is_empty() {
        return Ok(Stamp::Civil(day.to_datetime(Time::midnight())));
    }
    let rest = rest.strip_prefix(['T', 't', ' ']).ok_or_else(|| Invalid::new(ty, SHAPE))?;
    let (clock, rest) = rest.split_at_checked(8).ok_or_else(|| Invalid::new(ty, SHAPE))?;
    if !shaped(clock, "99:99:99") {
        return Err(Invalid::new(ty, SHAPE));
    }
    let (hour, minute, second): (i8, i8, i8) = (number(clock, 0..2), number(clock, 3..5), number(clock, 6..8));
    let (fraction, offset) = match rest.strip_prefix('.') {
        Some(f) => f.split_at_checked(f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len())).unwrap_or((f, "")),
        None => ("", rest),
    };
    if rest.starts_with('.') && !(1..=9).contains(&fraction.len()) {
        return Err(Invalid::new(ty, "a fraction of a second has 1 to 9 digits"));
    }
    if hour > 23 {
        return Err(Invalid::new(ty, "hours go from 00 to 23 (for 24:00, write 00:00 of the next day)"));
    }
    if minute > 59 {
        return Err(Invalid::new(ty, "minutes go from 00 to 59"));
    }
    if second == 60 {
        return Err(Invalid::new(ty, "a leap second (:60) is refused: targets disagree about it"));
    }
    if second > 59 {
        return Err(Invalid::new(ty, "seconds go from 00 to 59"));
    }
    // `fraction` is 1 to 9 digits (or empty): nanoseconds once padded to 9.
    let nanos: i32 = format!("{fraction:0<9}").parse().unwrap_or(0);
    let time = Time::new(hour, minute, second, nanos).map_err(|_| Invalid::new(ty, SHAPE))?;
    let civil = day.to_datetime(time);
    let offset = match offset {
        "" => return Ok(Stamp::Civil(civil)),
        "Z" | "z" => Offset::UTC,
        o if shaped(o.get(1..).unwrap_or(""), "99:99") && (o.starts_with('+') || o.starts_with('-')) => {
            let (hours, minutes): (i32, i32) = (number(o, 1..3), number(o, 4..6));
            if hours > 23 || minutes > 59 {
                return Err(Invalid::new(ty, "an offset goes from -23:59 to +23:59"));
            }
            let seconds = (hours * 60 + minutes) * 60;
            Offset::from_seconds(if o.starts_with('-') { -seconds } else { seconds })
                .map_err(|_| Invalid::new(ty, "an offset goes from -23:59 to +23:59"))?
        }
        _ => return Err(Invalid::new(ty, SHAPE)),
    };
    let instant = offset.to_timestamp(civil).map_err(|_| Invalid::new(ty, "out of range once converted to UTC"))?;
    let year = Offset::UTC.to_datetime(instant).year();
    if !(1..=9999).contains(&year) {
        return Err(Invalid::new(ty, "out of range once converted to UTC (years go from 0001 to 9999)"));
    }
    Ok(Stamp::Instant(instant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValueType as V;

    /// (type, text, canonical text or `Err(part of the reason)`).
    const CASES: &[(ValueType, &str, Result<&str, &str>)] = &[
        // String and GuardedString: anything, as given.
        (V::String, "", Ok("")),
        (V::String, "  padded  ", Ok("  padded  ")),
        (V::String, "2024-01-01garbage", Ok("2024-01-01garbage")),
        (V::GuardedString, " pw'\"\\ ", Ok(" pw'\"\\ ")),
        // Long
        (V::Long, "42", Ok("42")),
        (V::Long, " -42 ", Ok("-42")),
        (V::Long, "+7", Ok("7")),
        (V::Long, "007", Ok("7")),
        (V::Long, "9223372036854775807", Ok("9223372036854775807")),
        (V::Long, "-9223372036854775808", Ok("-9223372036854775808")),
        (V::Long, "9223372036854775808", Err("out of range")),
        (V::Long, "-9223372036854775809", Err("out of range")),
        (V::Long, "99999999999999999999999999999", Err("out of range")),
        (V::Long, "4x", Err("not a whole number")),
        (V::Long, "1.0", Err("not a whole number")),
        (V::Long, "1e3", Err("not a whole number")),
        (V::Long, "1_000", Err("not a whole number")),
        (V::Long, "0x10", Err("not a whole number")),
        (V::Long, "4 2", Err("not a whole number")),
        (V::Long, "", Err("empty")),
        (V::Long, "   ", Err("empty")),
        // Integer
        (V::Integer, "2147483647", Ok("2147483647")),
        (V::Integer, "-2147483648", Ok("-2147483648")),
        (V::Integer, "2147483648", Err("out of range")),
        (V::Integer, "3000000000", Err("out of range")),
        (V::Integer, "-2147483649", Err("out of range")),
        (V::Integer, "twelve", Err("not a whole number")),
        // Double
        (V::Double, "1.5", Ok("1.5")),
        (V::Double, " -2e3 ", Ok("-2000")),
        (V::Double, ".5", Ok("0.5")),
        (V::Double, "42", Ok("42")),
        (V::Double, "1E-3", Ok("0.001")),
        (V::Double, "1e400", Err("overflows")),
        (V::Double, "-1e400", Err("overflows")),
        (V::Double, "NaN", Err("NaN and infinities")),
        (V::Double, "nan", Err("NaN and infinities")),
        (V::Double, "inf", Err("NaN and infinities")),
        (V::Double, "-Infinity", Err("NaN and infinities")),
        (V::Double, "1,5", Err("not a number")),
        (V::Double, "1.5kg", Err("not a number")),
        (V::Double, "", Err("empty")),
        // Boolean
        (V::Boolean, "true", Ok("true")),
        (V::Boolean, " TRUE ", Ok("true")),
        (V::Boolean, "Yes", Ok("true")),
        (V::Boolean, "y", Ok("true")),
        (V::Boolean, "1", Ok("true")),
        (V::Boolean, "false", Ok("false")),
        (V::Boolean, "NO", Ok("false")),
        (V::Boolean, "n", Ok("false")),
        (V::Boolean, "0", Ok("false")),
        (V::Boolean, "maybe", Err("Boolean words")),
        (V::Boolean, "on", Err("Boolean words")),
        (V::Boolean, "2", Err("Boolean words")),
        (V::Boolean, "", Err("Boolean words")),
        // Date
        (V::Date, "2024-01-31", Ok("2024-01-31")),
        (V::Date, " 2024-01-31\n", Ok("2024-01-31")),
        (V::Date, "2024-02-29", Ok("2024-02-29")),
        (V::Date, "2000-02-29", Ok("2000-02-29")),
        (V::Date, "0001-01-01", Ok("0001-01-01")),
        (V::Date, "9999-12-31", Ok("9999-12-31")),
        (V::Date, "2023-02-29", Err("there is no day 29 in 2023-02, which has 28 days")),
        (V::Date, "1900-02-29", Err("there is no day 29 in 1900-02, which has 28 days")),
        (V::Date, "2024-02-30", Err("there is no day 30 in 2024-02, which has 29 days")),
        (V::Date, "2024-04-31", Err("which has 30 days")),
        (V::Date, "2024-01-00", Err("there is no day 00")),
        (V::Date, "2024-13-01", Err("there is no month 13")),
        (V::Date, "2024-00-10", Err("there is no month 00")),
        (V::Date, "0000-01-01", Err("there is no year 0000")),
        (V::Date, "2024-01-01garbage", Err("expected YYYY-MM-DD")),
        (V::Date, "2024-01-01T00:00:00", Err("expected YYYY-MM-DD")),
        (V::Date, "2024-1-1", Err("expected YYYY-MM-DD")),
        (V::Date, "20240101", Err("expected YYYY-MM-DD")),
        (V::Date, "+002024-01-01", Err("expected YYYY-MM-DD")),
        (V::Date, "24-01-01", Err("expected YYYY-MM-DD")),
        (V::Date, "2024/01/01", Err("expected YYYY-MM-DD")),
        (V::Date, "２０２４-01-01", Err("expected YYYY-MM-DD")),
        (V::Date, "", Err("expected YYYY-MM-DD")),
        // Timestamp
        (V::Timestamp, "2024-01-31T12:34:56", Ok("2024-01-31T12:34:56")),
        (V::Timestamp, "2024-01-31 12:34:56", Ok("2024-01-31T12:34:56")),
        (V::Timestamp, "2024-01-31t12:34:56z", Ok("2024-01-31T12:34:56Z")),
        (V::Timestamp, " 2024-01-31T12:34:56Z ", Ok("2024-01-31T12:34:56Z")),
        (V::Timestamp, "2024-01-31", Ok("2024-01-31T00:00:00")),
        (V::Timestamp, "2024-02-29T23:59:59", Ok("2024-02-29T23:59:59")),
        (V::Timestamp, "2024-01-31T12:34:56.5", Ok("2024-01-31T12:34:56.5")),
        (V::Timestamp, "2024-01-31T12:34:56.500000", Ok("2024-01-31T12:34:56.5")),
        (V::Timestamp, "2024-01-31T12:34:56.123456789Z", Ok("2024-01-31T12:34:56.123456789Z")),
        (V::Timestamp, "2024-01-01T10:00:00+02:00", Ok("2024-01-01T08:00:00Z")),
        (V::Timestamp, "2024-01-01T01:00:00+02:00", Ok("2023-12-31T23:00:00Z")),
        (V::Timestamp, "2024-02-28T23:30:00-01:00", Ok("2024-02-29T00:30:00Z")),
        (V::Timestamp, "2024-01-01T10:00:00-00:00", Ok("2024-01-01T10:00:00Z")),
        (V::Timestamp, "2024-01-01T10:00:00+05:45", Ok("2024-01-01T04:15:00Z")),
        (V::Timestamp, "2024-01-01garbage", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01Tgarbage", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00:00garbage", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00:00Zgarbage", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00:00+02", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00:00+0200", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00:00[Europe/Paris]", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00:00 Z", Err("expected YYYY-MM-DD, then T")),
        (V::Timestamp, "2024-01-01T10:00:00.", Err("1 to 9 digits")),
        (V::Timestamp, "2024-01-01T10:00:00.1234567891", Err("1 to 9 digits")),
        (V::Timestamp, "20240101T100000Z", Err("expected YYYY-MM-DD")),
        (V::Timestamp, "2024-02-30T00:00:00", Err("there is no day 30 in 2024-02")),
        (V::Timestamp, "2023-02-29", Err("there is no day 29 in 2023-02")),
        (V::Timestamp, "2024-13-01T00:00:00Z", Err("there is no month 13")),
        (V::Timestamp, "2024-01-01T24:00:00", Err("hours go from 00 to 23")),
        (V::Timestamp, "2024-01-01T10:60:00", Err("minutes go from 00 to 59")),
        (V::Timestamp, "2024-01-01T23:59:60Z", Err("leap second")),
        (V::Timestamp, "2024-01-01T23:59:61Z", Err("seconds go from 00 to 59")),
        (V::Timestamp, "2024-01-01T10:00:00+24:00", Err("an offset goes from")),
        (V::Timestamp, "2024-01-01T10:00:00+02:60", Err("an offset goes from")),
        (V::Timestamp, "0001-01-01T00:30:00+01:00", Err("out of range once converted to UTC")),
        (V::Timestamp, "9999-12-31T23:30:00-01:00", Err("out of range once converted to UTC")),
        (V::Timestamp, "", Err("expected YYYY-MM-DD, then T")),
    ];

    #[test]
    fn every_type_valid_and_invalid() {
        for (ty, text, want) in CASES {
            let got = canonical(*ty, text);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{ty:?} {text:?}"),
                (Err(w), Err(e)) => {
                    assert!(e.reason().contains(w), "{ty:?} {text:?}: `{}` should contain `{w}`", e.reason());
                    assert_eq!(e.ty(), *ty);
                    assert!(text.trim().len() < 5 || !e.reason().contains(text.trim()), "{e} quotes the text");
                }
                _ => panic!("{ty:?} {text:?}: expected {want:?}, got {got:?}"),
            }
        }
        // Every type has cases.
        for ty in [V::String, V::GuardedString, V::Long, V::Integer, V::Double, V::Boolean, V::Date, V::Timestamp] {
            assert!(CASES.iter().any(|(t, _, w)| *t == ty && w.is_ok()), "{ty:?} valid");
            if !matches!(ty, V::String | V::GuardedString) {
                assert!(CASES.iter().any(|(t, _, w)| *t == ty && w.is_err()), "{ty:?} invalid");
            }
        }
    }

    #[test]
    fn canonical_text_reads_back_the_same() {
        for (ty, text, want) in CASES {
            if let Ok(c) = canonical(*ty, text) {
                assert_eq!(canonical(*ty, &c).as_deref(), Ok(c.as_str()), "{ty:?} {text:?}");
                assert!(want.is_ok());
            }
        }
    }

    #[test]
    fn timestamps_tell_instants_from_wall_clock_times() {
        let Ok(Typed::Timestamp(Stamp::Instant(ts))) = parse(V::Timestamp, "2024-01-01T10:00:00+02:00") else {
            panic!("an offset makes an instant");
        };
        assert_eq!(ts.as_second(), 1_704_096_000);
        let Ok(Typed::Timestamp(local @ Stamp::Civil(_))) = parse(V::Timestamp, "2024-01-01 10:00:00") else {
            panic!("no offset: a wall-clock time");
        };
        assert_eq!(local.civil().to_string(), "2024-01-01T10:00:00");
        assert_eq!(Stamp::Instant(ts).civil().to_string(), "2024-01-01T08:00:00");
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = parse(V::Timestamp, "2024-01-01garbage").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(
                "not a Timestamp (YYYY-MM-DDTHH:MM:SS with an optional offset or Z): expected YYYY-MM-DD, then T or \
                 a space, then HH:MM:SS, an optional fraction of 1 to 9 digits, and an optional Z or ±HH:MM offset"
            )
        );
        let e = parse(V::Date, "2023-02-29").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("not a Date (YYYY-MM-DD): there is no day 29 in 2023-02, which has 28 days")
        );
    }

    #[test]
    fn never_panics_on_odd_text() {
        for text in ["é", "2024-01-01Té", "2024-01-01T10:00:00.é", "2024-01-01T10:00:00+é", "\0", "-", "+"] {
            for ty in [V::Long, V::Integer, V::Double, V::Boolean, V::Date, V::Timestamp] {
                assert!(parse(ty, text).is_err(), "{ty:?} {text:?}");
            }
        }
    }
}
