//! `[spend]`: the spend rollups behind `/gemgate/ui` and `/gemgate/v1/spend` (see `crate::spend`),
//! and how far what clients send there (tags, tenants) may grow.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpendConfig {
    /// Record each generate response's figures into hourly rollups and the recent-request list.
    pub enabled: bool,
    /// Distinct `x-gemgate-tag` values kept per hour; later new ones count as `other`.
    pub max_tags: usize,
    /// Distinct tenants (credential scopes) kept per hour; later new ones count as `other`.
    pub max_tenants: usize,
    /// Recent requests listed (metadata only), newest first.
    pub recent_requests: usize,
    /// Rollup hours older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often figures gathered in memory are written to the store (reads write them first).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Friendly tenant names: tenant id (the first 16 hex digits of the key's SHA-256, as the
    /// page and API show it) → name.
    pub tenant_names: BTreeMap<String, String>,
}

impl Default for SpendConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_tags: 50,
            max_tenants: 1000,
            recent_requests: 1000,
            retention: Duration::from_secs(90 * 86_400),
            flush_interval: Duration::from_secs(5),
            tenant_names: BTreeMap::new(),
        }
    }
}

impl SpendConfig {
    pub(super) fn validate(&self, errors: &mut super::ConfigErrors) {
        if self.max_tags == 0 || self.max_tags > 10_000 {
            errors.push("spend.max_tags", "must be between 1 and 10000".into());
        }
        if self.max_tenants == 0 || self.max_tenants > 100_000 {
            errors.push("spend.max_tenants", "must be between 1 and 100000".into());
        }
        if self.recent_requests > 100_000 {
            errors.push("spend.recent_requests", "must be at most 100000".into());
        }
        if self.retention < Duration::from_secs(3600) {
            errors.push("spend.retention", "must be at least 1h".into());
        }
        if self.flush_interval.is_zero() {
            errors.push("spend.flush_interval", "must be greater than 0".into());
        }
        for id in self.tenant_names.keys() {
            if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                errors.push(format!("spend.tenant_names.{id}"), "must be 16 lowercase hex digits".into());
            }
        }
    }
}
