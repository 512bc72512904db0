//! Minimum explicit-cache sizes per model: the configured table (`caching.min_tokens`, matched by
//! `catalog::ids` after aliases), overridden by what the upstream's "too small" answers state. The
//! learned part is keyed by model strings clients send, so it is bounded.

use crate::accounting::ids;
use std::collections::BTreeMap;

/// Learned minimums kept at most (least recently used go first).
const MAX_LEARNED: u64 = 10_000;

pub struct Minimums {
    table: BTreeMap<String, u32>,
    aliases: BTreeMap<String, String>,
    learned: moka::sync::Cache<String, u32>,
}

impl Minimums {
    /// `table` holds model ids, versionless ids and `*` patterns, plus `default`.
    pub fn new(table: BTreeMap<String, u32>, aliases: BTreeMap<String, String>) -> Self {
        Minimums { table, aliases, learned: moka::sync::Cache::new(MAX_LEARNED) }
    }

    fn id<'a>(&'a self, model: &'a str) -> &'a str {
        let id = ids::bare(model);
        self.aliases.get(id).map_or(id, String::as_str)
    }

    /// The minimum for a model: learned, else the table's match, else its `default` (else 4,096,
    /// the 2026 documented minimum of current models).
    pub fn min_tokens(&self, model: &str) -> u32 {
        let id = self.id(model);
        if let Some(m) = self.learned.get(id) {
            return m;
        }
        let listed = ids::resolve(self.table.keys().map(String::as_str).filter(|k| *k != "default"), id);
        listed.and_then(|(k, _)| self.table.get(k)).or_else(|| self.table.get("default")).copied().unwrap_or(4096)
    }

    /// Records the minimum the upstream stated for a model.
    pub fn learn(&self, model: &str, min: u32) {
        self.learned.insert(self.id(model).to_string(), min);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimums() -> Minimums {
        let cfg = crate::config::CachingConfig::default();
        let aliases = crate::accounting::PriceTable::builtin().aliases;
        Minimums::new(cfg.min_tokens, aliases)
    }

    #[test]
    fn defaults_follow_the_2026_documentation() {
        let m = minimums();
        for (model, min) in [
            ("models/gemini-2.5-flash", 1024),
            ("gemini-2.5-flash-001", 1024),
            ("gemini-2.5-flash-lite", 2048),
            ("gemini-2.5-flash-lite-preview-09-2025", 2048),
            ("gemini-2.5-pro", 2048),
            ("gemini-3.8-flash", 4096),
            ("gemini-3.1-pro-preview-11-2026", 4096),
            ("gemini-4-carbon", 4096),
            ("gemini-flash-latest", 4096),
            ("something-else", 4096),
        ] {
            assert_eq!(m.min_tokens(model), min, "{model}");
        }
    }

    #[test]
    fn a_stated_minimum_overrides_the_table_for_that_model_only() {
        let m = minimums();
        m.learn("models/gemini-2.5-pro", 4096);
        assert_eq!(m.min_tokens("gemini-2.5-pro"), 4096);
        assert_eq!(m.min_tokens("gemini-2.5-flash"), 1024);
    }
}
