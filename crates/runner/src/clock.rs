//! Time, injectable so that tests of retries never sleep.

use provflow_lex::time;
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
/// pass (retries due after `period_minutes`) without waiting: seconds since the Unix epoch,
/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` (any offset instead of `Z` too; see
/// [`parse_instant`]). Unset, commands use the system clock. `provflow resume --wait` under a
/// fixed clock would wait forever, so tests run plain `resume` at later instants.
pub const NOW_ENV: &str = "PROVFLOW_NOW";

/// The clock of a command: [`NOW_ENV`] when set, else the system clock.
pub struct CommandClock;

impl CommandClock {
    fn fixed() -> &'static Result<Option<Instant>, String> {
        static FIXED: std::sync::OnceLock<Result<Option<Instant>, String>> = std::sync::OnceLock::new();
        FIXED.get_or_init(|| match std::env::var(NOW_ENV) {
            Ok(text) if !text.trim().is_empty() => parse_instant(&text)
                .map(Some)
                .map_err(|why| format!("{NOW_ENV} must be {}, got `{text}`: {why}", time::INSTANT_FORMS)),
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

/// Reads an instant: seconds since the epoch, `YYYY-MM-DD` (midnight UTC), or a timestamp with
/// `Z` or an offset, checked whole ([`provflow_lex::time::parse_instant`]); the error says why.
pub fn parse_instant(text: &str) -> Result<Instant, String> {
    time::parse_instant(text)
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

/// `YYYY-MM-DD` of an instant (UTC).
pub fn date(at: Instant) -> String {
    time::date_of(at)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of an instant.
pub fn timestamp(at: Instant) -> String {
    time::timestamp_of(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The formats themselves are tested in provflow-lex; these pin what the runner relies on.
    #[test]
    fn formats_and_reads_instants() {
        assert_eq!(timestamp(1_709_164_800 + 3661), "2024-02-29T01:01:01Z");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(parse_instant(&timestamp(1_709_164_800)), Ok(1_709_164_800));
        assert_eq!(parse_instant("2000-02-29"), Ok(951_782_400));
        assert!(parse_instant("2024-01-01T00:00:00Zjunk").is_err());
    }
}
