//! Time, injectable so that tests of retries never sleep.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, UTC.
pub type Instant = i64;

pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
}

/// The environment variable that fixes the clock of a command, for tests that need time to
/// pass (retries due after `period_minutes`) without waiting: seconds since the Unix epoch or
/// `YYYY-MM-DDTHH:MM:SSZ`. Unset, commands use the system clock. `provflow resume --wait`
/// under a fixed clock would wait forever, so tests run plain `resume` at later instants.
pub const NOW_ENV: &str = "PROVFLOW_NOW";

/// The clock of a command: [`NOW_ENV`] when set, else the system clock.
pub struct CommandClock;

impl CommandClock {
    fn fixed() -> &'static Result<Option<Instant>, String> {
        static FIXED: std::sync::OnceLock<Result<Option<Instant>, String>> = std::sync::OnceLock::new();
        FIXED.get_or_init(|| match std::env::var(NOW_ENV) {
            Ok(text) if !text.trim().is_empty() => parse_instant(text.trim()).map(Some).ok_or_else(|| {
                format!("{NOW_ENV} must be seconds since the Unix epoch or YYYY-MM-DDTHH:MM:SSZ, got `{text}`")
            }),
            _ => Ok(None),
        })
    }

    /// Refuses a malformed [`NOW_ENV`] (a command checks this before it starts).
    pub fn check() -> Result<(), String> {
        Self::fixed().as_ref().map(|_| ()).map_err(Clone::clone)
    }
}

impl Clock for CommandClock {
    fn now(&self) -> Instant {
        match Self::fixed() {
            Ok(Some(at)) => *at,
            _ => SystemClock.now(),
        }
    }
}

/// Parses seconds since the epoch or `YYYY-MM-DDTHH:MM:SSZ` (also `YYYY-MM-DD`).
pub fn parse_instant(text: &str) -> Option<Instant> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let (day, time) = text.split_once('T').unwrap_or((text, "00:00:00Z"));
    let mut d = day.splitn(3, '-');
    let (y, m, dd) = (d.next()?.parse::<i64>().ok()?, d.next()?.parse::<u32>().ok()?, d.next()?.parse::<u32>().ok()?);
    let time = time.strip_suffix('Z')?;
    let mut t = time.splitn(3, ':');
    let (h, mi, se) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, m, dd);
    (civil(days) == (y, m, dd)).then_some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A clock that moves only when told to.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Instant) -> Self {
        ManualClock(AtomicI64::new(at))
    }

    pub fn advance_minutes(&self, minutes: i64) {
        self.0.fetch_add(minutes * 60, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.load(Ordering::SeqCst)
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` of an instant (UTC).
pub fn date(at: Instant) -> String {
    let (y, m, d) = civil(at.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of an instant.
pub fn timestamp(at: Instant) -> String {
    let secs = at.rem_euclid(86_400);
    format!("{}T{:02}:{:02}:{:02}Z", date(at), secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_instants() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_709_164_800 + 3661), "2024-02-29T01:01:01Z");
        assert_eq!(date(951_782_400), "2000-02-29");
    }

    #[test]
    fn parses_instants_back() {
        for at in [0, 951_782_400, 1_709_164_800 + 3661, 4_102_444_799] {
            assert_eq!(parse_instant(&timestamp(at)), Some(at), "{}", timestamp(at));
        }
        assert_eq!(parse_instant("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_instant("1234"), Some(1234));
        for bad in
            ["2001-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "soon", "2024-01-01T00:00:00"]
        {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }
}
