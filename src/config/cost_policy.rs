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
    /// First sightings observed before the return rate is trusted.
    pub speculate_min_evidence: u64,
    /// Returns (requests repeating a prefix seen before) sent without a gateway cache before
    /// anything is created for a tenant and model: until then nothing says whether the
    /// upstream's implicit caching already serves them for free.
    pub implicit_probes: u64,
}

impl Default for CostPolicyConfig {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            first_ttl: Duration::from_secs(300),
            gap_weight: 0.25,
            ttl_deviations: 4.0,
            ttl_mean_factor: 2.0,
            renew_below: 0.75,
            create_margin: 2.0,
            implicit_share: 0.8,
            implicit_evidence: 4.0,
            expiry_margin: Duration::from_secs(5),
            min_delete_remaining: Duration::from_secs(60),
            speculate: true,
            speculate_margin: 1.2,
            speculate_min_evidence: 20,
            implicit_probes: 5,
        }
    }
}
