//! Instants as text: an instant is whole seconds since the Unix epoch (UTC), the runner's
//! clock unit (a mail's `Date` header takes it as is). Dates and timestamps the runner writes
//! (`system.date`, notes) and reads (`PROVFLOW_NOW`) come from here; every calendar rule is
//! `jiff`'s.

use crate::values::{self, Stamp, Typed};
use jiff::tz::Offset;
use jiff::Timestamp;
use provflow_ir::ValueType;

/// The instant, clamped to the years -9999 to 9999 that `jiff` represents (a clock far
/// outside them is a broken clock; it still gets a date instead of a panic).
fn instant(unix_seconds: i64) -> Timestamp {
    Timestamp::from_second(unix_seconds).unwrap_or(if unix_seconds < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// `YYYY-MM-DD` of an instant, in UTC.
pub fn date_of(unix_seconds: i64) -> String {
    Offset::UTC.to_datetime(instant(unix_seconds)).date().to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of an instant.
pub fn timestamp_of(unix_seconds: i64) -> String {
    instant(unix_seconds).to_string()
}

/// The forms [`parse_instant`] accepts, for messages.
pub const INSTANT_FORMS: &str =
    "seconds since the Unix epoch, YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM:SS with Z or an offset";

/// Reads an instant: whole seconds since the Unix epoch, a date (midnight UTC), or a
/// [`ValueType::Timestamp`] with `Z` or an offset (a fraction of a second is dropped). A
/// timestamp without an offset is refused: it names no instant. The error says why.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    match values::parse(ValueType::Timestamp, text).map_err(|e| e.reason().to_string())? {
        Typed::Timestamp(Stamp::Instant(ts)) => Ok(ts.as_second()),
        Typed::Timestamp(Stamp::Civil(dt)) if values::parse(ValueType::Date, text).is_ok() => {
            Offset::UTC.to_timestamp(dt).map(Timestamp::as_second).map_err(|e| e.to_string())
        }
        _ => Err("a date and time without Z or an offset names no instant: add Z for UTC".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_instants() {
        assert_eq!(timestamp_of(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp_of(1_709_164_800 + 3661), "2024-02-29T01:01:01Z");
        assert_eq!(timestamp_of(-1), "1969-12-31T23:59:59Z");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(date_of(951_782_400 - 1), "2000-02-28");
        // A broken clock still gets a text, never a panic.
        assert!(date_of(i64::MAX).starts_with("9999-12-"));
        assert!(date_of(i64::MIN).starts_with("-009999-01-"));
    }

    #[test]
    fn parses_instants_back() {
        for at in [0, 951_782_400, 1_709_164_800 + 3661, 4_102_444_799, -86_400] {
            assert_eq!(parse_instant(&timestamp_of(at)), Ok(at), "{}", timestamp_of(at));
        }
        assert_eq!(parse_instant("2000-02-29"), Ok(951_782_400));
        assert_eq!(parse_instant(" 1234 "), Ok(1234));
        assert_eq!(parse_instant("2024-01-01T02:00:00+02:00"), Ok(1_704_067_200));
        assert_eq!(parse_instant("2024-01-01T00:00:00.9Z"), Ok(1_704_067_200));
        for (bad, why) in [
            ("2001-02-29T00:00:00Z", "no day 29"),
            ("2024-13-01T00:00:00Z", "no month 13"),
            ("2024-01-01T24:00:00Z", "hours go"),
            ("2024-01-01T00:00:00Zjunk", "expected"),
            ("soon", "expected"),
            ("2024-01-01T00:00:00", "names no instant"),
        ] {
            let got = parse_instant(bad);
            assert!(got.as_ref().is_err_and(|e| e.contains(why)), "{bad}: {got:?}");
        }
    }
}
