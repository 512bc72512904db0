//! `[pricing]` and `[catalog]`: where prices come from, when they count as stale, and how model
//! capabilities are learned (see `crate::catalog`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// Price schedule file; empty: `caching.pricing_file` if set, else the built-in table (the
    /// same as config/pricing.toml).
    pub file: PathBuf,
    /// Warn (log at start-up, `/readyz` detail) when the table's newest `as_of` is older than this.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self { file: PathBuf::new(), stale_after: Duration::from_secs(120 * 86_400) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Learn each model's capabilities from `GET /{v}/models/{id}` in the background.
    pub discover: bool,
    /// How long a learned capability is kept before it is fetched again.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// (credential scope, model) pairs remembered at most.
    pub max_entries: u64,
    /// Models without explicit caching until the upstream says otherwise (ids or `*` patterns).
    pub implicit_only: Vec<String>,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            discover: true,
            ttl: Duration::from_secs(3600),
            max_entries: 10_000,
            implicit_only: vec!["gemini-4-*".into()],
        }
    }
}
