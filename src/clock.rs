//! The one source of time for policy, TTLs and renewals, so tests and the simulator can run on
//! virtual time. Times are milliseconds since the Unix epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub enum Clock {
    /// Wall-clock time.
    System,
    /// Wall-clock time running `speed` times faster from `start` (for compressed replays; the
    /// emulator must run at the same speed).
    Scaled { origin_ms: i64, started: Instant, speed: f64 },
    /// Time that moves only when told to (tests, simulation).
    Manual(Arc<AtomicI64>),
}

pub fn system_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Clock {
    pub fn scaled(speed: f64) -> Self {
        if (speed - 1.0).abs() < f64::EPSILON {
            Clock::System
        } else {
            Clock::Scaled { origin_ms: system_ms(), started: Instant::now(), speed }
        }
    }

    pub fn manual(start_ms: i64) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(start_ms)))
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_ms(),
            Clock::Scaled { origin_ms, started, speed } => {
                origin_ms + (started.elapsed().as_secs_f64() * 1000.0 * speed) as i64
            }
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; no effect on real clocks.
    pub fn advance_ms(&self, ms: i64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// How long a virtual duration lasts in real time (for sleeping background loops).
    pub fn real_duration(&self, virtual_ms: i64) -> std::time::Duration {
        let ms = match self {
            Clock::Scaled { speed, .. } => (virtual_ms as f64 / speed).max(1.0),
            _ => virtual_ms.max(1) as f64,
        };
        std::time::Duration::from_millis(ms as u64)
    }
}

/// RFC 3339 with a `Z`, as Google prints timestamps.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp (any offset) to epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = Clock::manual(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance_ms(500);
        assert_eq!(c.now_ms(), 1_500);
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(parse_rfc3339(&rfc3339(1_700_000_000_123)), Some(1_700_000_000_123));
        assert_eq!(parse_rfc3339("2030-01-01T00:00:00+00:00"), Some(1_893_456_000_000));
    }
}
