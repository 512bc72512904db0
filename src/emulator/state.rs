//! Shared emulator state: config, clock, the in-memory store (caches, files, uploads, batches,
//! ledger) behind one mutex, and the seeded random generator behind fault injection.

use super::clock::Clock;
use super::config::EmulatorConfig;
use super::ledger::Ledger;
use super::records::{BatchJob, CacheEntry, FileEntry, ImplicitPrefixes, UploadSession};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Everything the emulator keeps. Never held across an `.await`.
#[derive(Debug, Default)]
pub struct Store {
    pub caches: HashMap<String, CacheEntry>,
    pub files: HashMap<String, FileEntry>,
    pub uploads: HashMap<String, UploadSession>,
    pub batches: HashMap<String, BatchJob>,
    pub ledger: Ledger,
    pub implicit: ImplicitPrefixes,
}

#[derive(Debug)]
pub struct Inner {
    pub config: EmulatorConfig,
    pub clock: Clock,
    store: Mutex<Store>,
    rng: Mutex<StdRng>,
}

/// Cheap-to-clone handle on the emulator's state.
#[derive(Debug, Clone)]
pub struct EmulatorState(Arc<Inner>);

impl EmulatorState {
    pub fn new(config: EmulatorConfig) -> Self {
        let clock = Clock::new(config.clock.speed);
        Self::with_clock(config, clock)
    }

    /// An emulator whose clock is `clock` (a test's skewed or replay-aligned one).
    pub fn with_clock(config: EmulatorConfig, clock: Clock) -> Self {
        let rng = StdRng::seed_from_u64(config.faults.seed);
        Self(Arc::new(Inner { config, clock, store: Mutex::new(Store::default()), rng: Mutex::new(rng) }))
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.0.config
    }

    /// The emulator's (virtual) clock.
    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.0.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True with probability `p`, from the seeded generator.
    pub(crate) fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut rng = self.0.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.random::<f64>() < p
    }

    /// Uniform integer in `0..=max` from the seeded generator.
    pub(crate) fn uniform(&self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut rng = self.0.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.random_range(0..=max)
    }
}
