//! Tuning of the caching engine's cost policy (`[caching.cost]`); the rule itself lives in the
//! caching module, its configuration here beside the rest.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Tuning of the cost policy (`[caching]` in the gateway config). Every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostPolicyConfig {
    /// Shortest TTL given to a cache.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Longest TTL given to a cache (the break-even `min(d, C)/S` may cap it lower).
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// TTL used before any gap between arrivals has been seen.
    #[serde(with = "humantime_serde")]
    pub first_ttl: Duration,
    /// Weight of a new gap in the moving mean and deviation of inter-arrival gaps.
    pub gap_weight: f64,
    /// TTL = mean gap + this many deviations (a high quantile of the next gap)...
    pub ttl_deviations: f64,
    /// ...but at least this many mean gaps (steady traffic has no deviation to go by).
    pub ttl_mean_factor: f64,
    /// Renew on a use when less than this fraction of the target TTL remains.
    pub renew_below: f64,
    /// Multiplies the creation threshold (1 = classic ski rental; > 1 waits for more evidence;
    /// 2 by default, see docs/cost-policy.md for why and what it does to the bound).
    pub create_margin: f64,
    /// A prefix counts as served by implicit caching once this share of its tokens comes back
    /// cached on uncached requests (moving average).
    pub implicit_share: f64,
    /// Evidence multiplier for prefixes implicit caching already serves.
    pub implicit_evidence: f64,
    /// A cache this close to its expiry is not used (the request could arrive after it).
    #[serde(with = "humantime_serde")]
    pub expiry_margin: Duration,
    /// Delete an idle cache only if at least this much paid TTL would be saved.
    #[serde(with = "humantime_serde")]
    pub min_delete_remaining: Duration,
    /// Create a cache for a request's own prefix at first sight when this tenant's prefixes
    /// usually come back (conversations: each turn extends the last); see `speculate.rs`.
    pub speculate: bool,
    /// First-sight creation needs `p × saving ≥ speculate_margin × its cost`.
    pub speculate_margin: f64,
    /// First sight only for classes whose own prefixes came back (within the TTL) at least this
    /// often: below it, which sightings return is a guess that costs more than it earns.
    pub speculate_min_rate: f64,
    /// First sight values a cache at up to this many reads (`p/(1 − p)`, the reads of a chain
    /// that goes on with probability `p`) instead of one read with probability `p` (0).
    pub speculate_reads: f64,
    /// First sightings observed before the return rate is trusted.
    pub speculate_min_evidence: u64,
    /// Returns (requests repeating a prefix seen before) sent without a gateway cache before
    /// anything is created for a tenant and model: until then nothing says whether the
    /// upstream's implicit caching already serves them for free.
    pub implicit_probes: u64,
    /// Supersede guard: while a shorter cache serves the request, a longer boundary is created
    /// only if it adds at least this share of its tokens (0 = no guard).
    pub supersede_share: f64,
    /// Rewarm: a prefix whose last cache was read at least this many times gets a new one at its
    /// first arrival after that cache lapsed (0 = never).
    pub rewarm_hits: u64,
    /// A gap longer than this many break-evens (`min(d, C)/S`) is an idle period: it does not
    /// teach the TTL (0 = every gap does).
    pub idle_gap_break_evens: f64,
    /// The TTL is at most `sqrt(break-even × ttl_evidence × arrivals)` (and never above the
    /// break-even `min(d, C)/S`): a prefix seen twice is not waited for as long as one that has
    /// kept coming back, and cheap storage buys a longer wait, but less than in proportion
    /// (0 = the break-even alone).
    #[serde(with = "humantime_serde")]
    pub ttl_evidence: Duration,
    /// First-sight return rates are learned per class of request (a new conversation, or one
    /// that continues a prefix seen before) instead of one rate per tenant and model.
    pub first_sight_classes: bool,
    /// A continuation whose shared prefix was seen within this long is its own class.
    #[serde(with = "humantime_serde")]
    pub first_sight_quick: Duration,
}

impl Default for CostPolicyConfig {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            first_ttl: Duration::from_secs(300),
            gap_weight: 0.25,
            ttl_deviations: 4.0,
            ttl_mean_factor: 10.0,
            renew_below: 0.75,
            create_margin: 2.0,
            implicit_share: 0.8,
            implicit_evidence: 4.0,
            expiry_margin: Duration::from_secs(5),
            min_delete_remaining: Duration::from_secs(60),
            speculate: true,
            speculate_margin: 1.2,
            speculate_min_rate: 0.5,
            speculate_reads: 2.0,
            speculate_min_evidence: 20,
            implicit_probes: 5,
            supersede_share: 0.25,
            rewarm_hits: 2,
            idle_gap_break_evens: 1.0,
            ttl_evidence: Duration::from_secs(40),
            first_sight_classes: true,
            first_sight_quick: Duration::from_secs(120),
        }
    }
}

impl CostPolicyConfig {
    /// The tuning before policy v2, kept so `simulate` can show what v2 changed.
    pub fn v1() -> Self {
        Self {
            ttl_mean_factor: 2.0,
            speculate_min_rate: 0.0,
            speculate_reads: 0.0,
            supersede_share: 0.0,
            rewarm_hits: 0,
            idle_gap_break_evens: 0.0,
            ttl_evidence: Duration::ZERO,
            first_sight_classes: false,
            ..Self::default()
        }
    }
}
