//! Emulator time: the wall clock scaled by a speed factor, plus a manual offset for tests.
//!
//! Every TTL, expiry, storage token-second and batch delay in the emulator reads this clock, so a
//! trace can be replayed compressed (`clock.speed = 60` runs virtual time 60× faster).

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Virtual time = start + (real elapsed × speed) + manual offset.
#[derive(Debug)]
pub struct Clock {
    origin_real: Instant,
    origin_virtual: DateTime<Utc>,
    speed: f64,
    offset_ns: AtomicI64,
}

impl Clock {
    /// A clock starting at the current wall time that runs `speed` times faster than real time.
    pub fn new(speed: f64) -> Self {
        Self::starting_at(Utc::now(), speed)
    }

    /// A clock starting at `start` (useful for reproducible replays).
    pub fn starting_at(start: DateTime<Utc>, speed: f64) -> Self {
        Self {
            origin_real: Instant::now(),
            origin_virtual: start,
            speed,
            offset_ns: AtomicI64::new(0),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = self.origin_real.elapsed().as_secs_f64() * self.speed;
        let offset = self.offset_ns.load(Ordering::Relaxed);
        self.origin_virtual
            + TimeDelta::nanoseconds((elapsed * 1e9) as i64)
            + TimeDelta::nanoseconds(offset)
    }

    /// Jumps virtual time forward by `by` (tests and `POST /emulator/clock/advance`).
    pub fn advance(&self, by: Duration) {
        let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.offset_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }
}

/// Seconds between two instants as a float (negative when `to` is before `from`).
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .num_nanoseconds()
        .map_or_else(|| (to - from).num_seconds() as f64, |n| n as f64 / 1e9)
}

/// A std duration as a chrono delta (saturating).
pub fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_scales_elapsed_time() {
        let c = Clock::new(1000.0);
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(20));
        let secs = seconds_between(t0, c.now());
        assert!(
            secs >= 19.0,
            "virtual time should run 1000x faster, got {secs}s"
        );
    }

    #[test]
    fn advance_moves_time_forward() {
        let c = Clock::new(1.0);
        let t0 = c.now();
        c.advance(Duration::from_secs(3600));
        let secs = seconds_between(t0, c.now());
        assert!((3600.0..3601.0).contains(&secs), "{secs}");
    }
}
