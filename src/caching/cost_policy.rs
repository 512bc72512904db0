//! The cost-driven caching rule: per prefix boundary, decide from prices and observed arrivals
//! whether an explicit cache pays, for how long to keep it, and when to let it go. Pure and
//! clock-injected (times are `i64` ms passed in), so the live engine and `gemgate simulate` run
//! the same code. The rule and its worst-case bound are explained in `docs/cost-policy.md`.
//!
//! Per boundary of `T` tokens, with `d` = what one hit saves on the tokens not already served at
//! the cached rate, `C` = creating the cache and `S` = storing it per ms:
//! * **Create** (ski rental): keep `regret` = the most money a cache kept alive since some past
//!   arrival would have saved so far, net of its storage (`max(0, regret + d − S·gap)` per
//!   arrival, Kadane-style). Create once `regret ≥ create_margin × (C − d + S·ttl)`: the money
//!   already lost by not caching pays for creating the cache (less what this request then saves
//!   by reading it) and storing it for one TTL. Prefixes that implicit caching already serves
//!   have `d ≈ 0` and need `implicit_evidence ×` more.
//! * **TTL**: a high quantile of the gap between arrivals (EWMA mean + `ttl_deviations` × EWMA
//!   deviation, at least `ttl_mean_factor` × the mean), clamped to `[min_ttl, max_ttl]` and never
//!   above `min(d, C)/S`: storing across a longer gap costs more than the miss it prevents.
//! * **Renew** on a use when less than `renew_below × ttl` remains; **Delete** (from the sweeper)
//!   once idle for a whole predicted TTL while at least `min_delete_remaining` of paid storage
//!   remains; otherwise **LetExpire**.

use crate::accounting::{CreationBilling, ModelPrice, PriceTable, creation_usd};
pub use crate::config::CostPolicyConfig;

/// What to do for one prefix boundary now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No cache: send the request as it came.
    Observe,
    /// Create a cache with this TTL and use it; then call [`PrefixStats::on_created`].
    Create { ttl_ms: i64 },
    /// Use the existing cache.
    Use,
    /// Use the existing cache and set its TTL to this; then [`PrefixStats::on_renewed`].
    Renew { ttl_ms: i64 },
    /// Leave the cache alone until its expireTime (past it: forget it, [`PrefixStats::on_gone`]).
    LetExpire,
    /// Delete the cache now; then [`PrefixStats::on_gone`].
    Delete,
}

/// The explicit cache a boundary currently has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheState {
    pub created_ms: i64,
    pub expire_ms: i64,
    pub last_used_ms: i64,
}

/// What the policy keeps per prefix boundary (about 80 bytes; the caller owns it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefixStats {
    pub arrivals: u64,
    pub last_arrival_ms: Option<i64>,
    /// Moving mean and mean absolute deviation of inter-arrival gaps (ms).
    pub gap_mean_ms: f64,
    pub gap_dev_ms: f64,
    pub gaps: u64,
    /// Money (USD) a cache would already have saved, net of its storage (see the module doc).
    pub regret_usd: f64,
    /// Moving share of this prefix's tokens served at the cached rate without its own cache.
    pub implicit_share: f64,
    pub cache: Option<CacheState>,
    /// Storage was paid up to here by a cache that lapsed (its expiry or deletion time).
    pub paid_until_ms: i64,
    /// No creation before this time, after a failed one.
    pub cooldown_until_ms: i64,
    /// This boundary was first seen as a request's own (longest) prefix: its return, if any,
    /// teaches the tenant's return rate (of this first-sight class).
    pub first_as_longest: bool,
    pub first_class: u8,
    /// Uses of the current cache, and of the last one (for rewarm).
    pub hits: u64,
    pub last_cache_hits: u64,
    /// Why the last decision on this boundary was what it was (the admin listings show it).
    pub reason: super::reason::Reason,
}

impl PrefixStats {
    /// The cache the last `Create` asked for now exists, expiring at `expire_ms`.
    pub fn on_created(&mut self, now_ms: i64, expire_ms: i64) {
        self.cache = Some(CacheState { created_ms: now_ms, expire_ms, last_used_ms: now_ms });
        self.regret_usd = 0.0;
    }

    /// The cache's expiry moved (a renewal succeeded).
    pub fn on_renewed(&mut self, expire_ms: i64) {
        if let Some(c) = &mut self.cache {
            c.expire_ms = expire_ms;
        }
    }

    /// The cache is gone (deleted at `now_ms`, expired, or rejected by the upstream).
    pub fn on_gone(&mut self, now_ms: i64) {
        if let Some(c) = self.cache.take() {
            self.paid_until_ms = c.expire_ms.min(now_ms).max(self.paid_until_ms);
            self.last_cache_hits = std::mem::take(&mut self.hits);
        }
    }

    /// Creation failed: do not try again before `now_ms + cooldown_ms`.
    pub fn on_create_failed(&mut self, now_ms: i64, cooldown_ms: i64) {
        self.cooldown_until_ms = now_ms + cooldown_ms;
    }

    fn learn_gap(&mut self, gap_ms: f64, w: f64) {
        learn_gap(&mut self.gap_mean_ms, &mut self.gap_dev_ms, &mut self.gaps, gap_ms, w);
    }
}

/// Folds one inter-arrival gap into a moving mean and mean absolute deviation (weight `w`).
pub(crate) fn learn_gap(mean: &mut f64, dev: &mut f64, gaps: &mut u64, gap_ms: f64, w: f64) {
    if *gaps == 0 {
        *mean = gap_ms;
        *dev = gap_ms / 2.0;
    } else {
        *dev = (1.0 - w) * *dev + w * (gap_ms - *mean).abs();
        *mean = (1.0 - w) * *mean + w * gap_ms;
    }
    *gaps += 1;
}

/// The policy for one model: its config and that model's price row.
#[derive(Debug, Clone, PartialEq)]
pub struct CostPolicy {
    pub cfg: CostPolicyConfig,
    pub price: ModelPrice,
    pub creation: CreationBilling,
}

impl CostPolicy {
    /// The policy for `model` at today's prices; `fell_back` is true when the table had no row
    /// for it.
    pub fn new(cfg: CostPolicyConfig, prices: &PriceTable, model: &str) -> (Self, bool) {
        Self::at(cfg, prices, model, crate::accounting::today())
    }

    /// The policy for `model` at the prices in force on `day`.
    pub fn at(cfg: CostPolicyConfig, prices: &PriceTable, model: &str, day: chrono::NaiveDate) -> (Self, bool) {
        let p = prices.price_at(model, day);
        let policy = CostPolicy { cfg, price: p.row.clone(), creation: prices.cache_creation };
        (policy, p.source == crate::accounting::PriceSource::Default)
    }

    /// What one hit saves on a `tokens` prefix of which `covered` are served cached anyway.
    pub fn hit_saving_usd(&self, tokens: u64, covered: u64) -> f64 {
        let r = self.price.rates(tokens);
        tokens.saturating_sub(covered) as f64 * (r.input - r.cached_read).max(0.0) * 1e-6
    }

    /// Creating a cache of `tokens`.
    pub fn creation_usd(&self, tokens: u64) -> f64 {
        creation_usd(&self.price, self.creation, tokens)
    }

    /// Storing `tokens` for one ms.
    pub fn storage_per_ms(&self, tokens: u64) -> f64 {
        tokens as f64 * self.price.storage_per_token_ms()
    }

    /// The longest gap a cache of `tokens` pays to be kept across: `min(d, C)/S`.
    pub fn break_even_ms(&self, tokens: u64) -> f64 {
        let s = self.storage_per_ms(tokens);
        if s > 0.0 { self.hit_saving_usd(tokens, 0).min(self.creation_usd(tokens)) / s } else { f64::INFINITY }
    }

    /// The TTL to give this prefix's cache now (see the module doc).
    pub fn ttl_ms(&self, st: &PrefixStats, tokens: u64) -> i64 {
        let cfg = &self.cfg;
        let predicted = if st.gaps == 0 {
            cfg.first_ttl.as_millis() as f64
        } else {
            (st.gap_mean_ms + cfg.ttl_deviations * st.gap_dev_ms).max(cfg.ttl_mean_factor * st.gap_mean_ms)
        };
        let min = cfg.min_ttl.as_millis() as f64;
        predicted.clamp(min, self.ttl_cap_ms(tokens, st.arrivals).max(min)).round() as i64
    }

    /// The longest TTL for a prefix seen `arrivals` times (see `ttl_evidence`).
    pub fn ttl_cap_ms(&self, tokens: u64, arrivals: u64) -> f64 {
        let break_even = self.break_even_ms(tokens);
        let evidence = self.cfg.ttl_evidence.as_millis() as f64;
        let cap = if evidence > 0.0 { (break_even * evidence * arrivals.max(1) as f64).sqrt() } else { break_even };
        (self.cfg.max_ttl.as_millis() as f64).min(break_even).min(cap)
    }

    /// A request whose prefix includes this boundary (`tokens` long) arrives at `now_ms`.
    /// `implicit_cached_tokens`: how much of these tokens the request gets at the cached rate
    /// without this boundary's own cache — the upstream's `cachedContentTokenCount` last seen on
    /// an uncached request of this prefix (implicit caching), or the size of a shorter explicit
    /// cache the request uses, whichever is larger. Records the arrival and decides.
    pub fn on_request(&self, st: &mut PrefixStats, now_ms: i64, tokens: u64, implicit_cached_tokens: u64) -> Decision {
        let cfg = &self.cfg;
        let prev = st.last_arrival_ms;
        if let Some(p) = prev {
            let gap = (now_ms - p).max(0) as f64;
            // An idle period says nothing about how long the next run of arrivals keeps coming.
            let idle = cfg.idle_gap_break_evens > 0.0 && gap > cfg.idle_gap_break_evens * self.break_even_ms(tokens);
            if !idle {
                st.learn_gap(gap, cfg.gap_weight);
            }
        }
        st.arrivals += 1;
        st.last_arrival_ms = Some(now_ms);
        let share = implicit_cached_tokens.min(tokens) as f64 / tokens.max(1) as f64;
        st.implicit_share =
            if st.arrivals == 1 { share } else { (1.0 - cfg.gap_weight) * st.implicit_share + cfg.gap_weight * share };

        if let Some(c) = st.cache {
            if c.expire_ms > now_ms + cfg.expiry_margin.as_millis() as i64 {
                st.regret_usd = 0.0;
                st.hits += 1;
                let ttl = self.ttl_ms(st, tokens);
                if let Some(c) = &mut st.cache {
                    c.last_used_ms = now_ms;
                }
                let remaining = c.expire_ms - now_ms;
                return if (remaining as f64) < cfg.renew_below * ttl as f64 {
                    Decision::Renew { ttl_ms: ttl }
                } else {
                    Decision::Use
                };
            }
            st.on_gone(now_ms);
        }

        let d = self.hit_saving_usd(tokens, implicit_cached_tokens);
        let s = self.storage_per_ms(tokens);
        st.regret_usd = match prev {
            Some(p) => {
                let unpaid = (now_ms - p.max(st.paid_until_ms)).max(0) as f64;
                (st.regret_usd + d - s * unpaid).max(0.0)
            }
            None => 0.0,
        };
        if now_ms < st.cooldown_until_ms || d <= 0.0 {
            return Decision::Observe;
        }
        let ttl = self.ttl_ms(st, tokens);
        // Rewarm: the last cache was read often enough that the prefix is worth one again now.
        let implicit = st.implicit_share >= cfg.implicit_share;
        if cfg.rewarm_hits > 0 && st.last_cache_hits >= cfg.rewarm_hits && !implicit {
            st.last_cache_hits = 0;
            return Decision::Create { ttl_ms: ttl };
        }
        // Creating now costs C, but this request then reads the prefix cached instead of paying
        // for it fresh, so the price of buying now is C − d plus storage for one TTL.
        let buy = (self.creation_usd(tokens) - d + s * ttl as f64).max(0.0);
        let mut threshold = cfg.create_margin * buy;
        if implicit {
            threshold *= cfg.implicit_evidence;
        }
        if st.regret_usd >= threshold { Decision::Create { ttl_ms: ttl } } else { Decision::Observe }
    }

    /// The periodic sweep for a boundary (`tokens` long) at `now_ms`: `Observe` without a
    /// cache, otherwise `Delete` or `LetExpire`.
    pub fn on_tick(&self, st: &PrefixStats, now_ms: i64, tokens: u64) -> Decision {
        let Some(c) = st.cache else {
            return Decision::Observe;
        };
        let remaining = c.expire_ms - now_ms;
        let idle = now_ms - c.last_used_ms;
        if remaining >= self.cfg.min_delete_remaining.as_millis() as i64 && idle >= self.ttl_ms(st, tokens) {
            Decision::Delete
        } else {
            Decision::LetExpire
        }
    }
}

#[cfg(test)]
#[path = "cost_policy_tests.rs"]
mod tests;
