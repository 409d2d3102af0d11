//! Wakes idle slots: a generation counter under a condition variable, so that a wake-up that
//! comes between a slot's empty claim and its sleep is not lost.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub(super) struct Wake {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Wake {
    /// Wakes every slot that sleeps.
    pub(super) fn notify(&self) {
        if let Ok(mut g) = self.generation.lock() {
            *g = g.wrapping_add(1);
        }
        self.changed.notify_all();
    }

    /// The current generation: pass it to [`Wake::wait_past`] after looking for work.
    pub(super) fn generation(&self) -> u64 {
        self.generation.lock().map(|g| *g).unwrap_or(0)
    }

    /// Sleeps until a wake-up after `seen`, or `timeout`.
    pub(super) fn wait_past(&self, seen: u64, timeout: Duration) {
        let Ok(guard) = self.generation.lock() else { return };
        let _ = self.changed.wait_timeout_while(guard, timeout, |g| *g == seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_wake_up_before_the_sleep_is_not_lost() {
        let w = Wake::default();
        let seen = w.generation();
        w.notify();
        let started = std::time::Instant::now();
        w.wait_past(seen, Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_sleeper_wakes_when_notified() {
        let w = Arc::new(Wake::default());
        let seen = w.generation();
        let other = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.notify();
        });
        let started = std::time::Instant::now();
        w.wait_past(seen, Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }
}
