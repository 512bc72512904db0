//! The dated price table (`config/pricing.toml`): per-model USD rates per 1M tokens, the >200k
//! prompt tier, batch rates, cache storage per token-hour, and how cache creation is billed.
//! `PriceTable::builtin()` compiles the shipped file in, so a gateway without the file still prices.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The shipped table, compiled in.
const BUILTIN: &str = include_str!("../../config/pricing.toml");

/// The model row used when a model is not in the table.
pub const DEFAULT_MODEL: &str = "default";

/// How creating an explicit cache is billed (Google does not say; see the comment in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum CreationBilling {
    /// The cached tokens once, at the input price (the default assumption).
    #[default]
    InputPrice,
    /// The cached tokens once, at the cached-read price.
    CachedPrice,
    /// Nothing: only storage and reads cost.
    Free,
}

impl CreationBilling {
    /// How reports name the assumption.
    pub fn describe(self) -> &'static str {
        match self {
            CreationBilling::InputPrice => "at the input price",
            CreationBilling::CachedPrice => "at the cached-read price",
            CreationBilling::Free => "as free",
        }
    }
}

/// USD per 1M tokens for one prompt-size tier.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub input: f64,
    /// Visible output and thinking tokens.
    pub output: f64,
    /// Tokens served from a cache (explicit or implicit), standard and batch alike.
    pub cached_read: f64,
    pub batch_input: f64,
    pub batch_output: f64,
}

/// One model's prices.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// When these prices were read off the pricing page (`YYYY-MM` or a full date).
    pub as_of: String,
    /// Cache storage, USD per 1M tokens per hour.
    pub storage_per_hour: f64,
    pub standard: Rates,
    /// Prompts larger than this many tokens use `long_context`.
    #[serde(default)]
    pub long_context_above: Option<u64>,
    #[serde(default)]
    pub long_context: Option<Rates>,
}

impl ModelPrice {
    /// The rates for a prompt of `prompt_tokens` tokens (cached tokens included).
    pub fn rates(&self, prompt_tokens: u64) -> &Rates {
        match (self.long_context_above, &self.long_context) {
            (Some(above), Some(long)) if prompt_tokens > above => long,
            _ => &self.standard,
        }
    }

    /// Storage of one token for one millisecond, USD.
    pub fn storage_per_token_ms(&self) -> f64 {
        self.storage_per_hour / 1e6 / 3_600_000.0
    }
}

/// All model rows plus the billing assumptions.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    #[serde(default)]
    pub cache_creation: CreationBilling,
    pub models: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// The table shipped in `config/pricing.toml`.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN).expect("the built-in config/pricing.toml is valid")
    }

    /// Reads and validates a table from a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading price table {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in price table {}", path.display()))
    }

    /// Parses and validates a table from TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let table: PriceTable = toml::from_str(text)?;
        table.validate()?;
        Ok(table)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !self.models.contains_key(DEFAULT_MODEL) {
            problems.push(format!("models.{DEFAULT_MODEL}: missing (used for unknown models)"));
        }
        for (name, m) in &self.models {
            let mut rates = vec![("standard", &m.standard)];
            match (&m.long_context_above, &m.long_context) {
                (Some(_), Some(long)) => rates.push(("long_context", long)),
                (None, None) => {}
                _ => problems.push(format!("models.{name}: long_context_above and long_context go together")),
            }
            let mut values = vec![("storage_per_hour", m.storage_per_hour)];
            for (tier, r) in rates {
                for (k, v) in [
                    ("input", r.input),
                    ("output", r.output),
                    ("cached_read", r.cached_read),
                    ("batch_input", r.batch_input),
                    ("batch_output", r.batch_output),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        problems.push(format!("models.{name}.{tier}.{k}: must be >= 0, got {v}"));
                    }
                }
            }
            values.retain(|(_, v)| !(v.is_finite() && *v >= 0.0));
            for (k, v) in values {
                problems.push(format!("models.{name}.{k}: must be >= 0, got {v}"));
            }
        }
        if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("; ")) }
    }

    /// The row for `model` (`models/` prefix optional): an exact name, else the longest listed
    /// name the model starts with (`gemini-2.5-flash-001` → `gemini-2.5-flash`), else the
    /// `default` row, in which case `fell_back` is true.
    pub fn price_for(&self, model: &str) -> (&ModelPrice, bool) {
        let id = model.strip_prefix("models/").unwrap_or(model);
        if let Some(p) = self.models.get(id) {
            return (p, id == DEFAULT_MODEL);
        }
        let best = self
            .models
            .iter()
            .filter(|(k, _)| k.as_str() != DEFAULT_MODEL && id.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len());
        match best {
            Some((_, p)) => (p, false),
            None => (&self.models[DEFAULT_MODEL], true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_the_documented_rows() {
        let t = PriceTable::builtin();
        assert_eq!(t.cache_creation, CreationBilling::InputPrice);
        let (pro, fb) = t.price_for("models/gemini-2.5-pro");
        assert!(!fb);
        assert_eq!(pro.standard.input, 1.25);
        assert_eq!(pro.rates(200_000).input, 1.25);
        assert_eq!(pro.rates(200_001).input, 2.50);
        assert_eq!(pro.rates(200_001).cached_read, 0.25);
        let (flash, _) = t.price_for("gemini-2.5-flash");
        assert_eq!(flash.standard.cached_read, 0.03);
        assert_eq!(flash.rates(1_000_000).input, 0.30, "flash has one tier");
        assert_eq!(t.price_for("gemini-3-pro-preview").0.storage_per_hour, 4.50);
    }

    #[test]
    fn longest_prefix_then_default_with_fallback_flag() {
        let t = PriceTable::builtin();
        let (lite, fb) = t.price_for("models/gemini-2.5-flash-lite-preview-09-2025");
        assert!(!fb);
        assert_eq!(lite.standard.input, 0.10);
        let (v, fb) = t.price_for("gemini-2.5-flash-001");
        assert!(!fb);
        assert_eq!(v.standard.input, 0.30);
        let (d, fb) = t.price_for("models/some-future-model");
        assert!(fb);
        assert_eq!(d, &t.models[DEFAULT_MODEL]);
    }

    #[test]
    fn rejects_unknown_keys_missing_default_and_bad_tiers() {
        let row = r#"as_of = "2025-10"
storage_per_hour = 1.0
standard = { input = 0.3, output = 2.5, cached_read = 0.03, batch_input = 0.15, batch_output = 1.25 }"#;
        let ok = format!("[models.default]\n{row}\n");
        assert!(PriceTable::parse(&ok).is_ok());
        let typo = format!("[models.default]\n{row}\nstorage_per_hr = 2.0\n");
        assert!(PriceTable::parse(&typo).is_err());
        let no_default = format!("[models.x]\n{row}\n");
        let err = PriceTable::parse(&no_default).unwrap_err().to_string();
        assert!(err.contains("models.default"), "{err}");
        let half_tier = format!("[models.default]\n{row}\nlong_context_above = 10\n");
        assert!(PriceTable::parse(&half_tier).is_err());
        let negative = ok.replace("storage_per_hour = 1.0", "storage_per_hour = -1.0");
        assert!(PriceTable::parse(&negative).is_err());
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, BUILTIN).unwrap();
        assert_eq!(PriceTable::load(&p).unwrap(), PriceTable::builtin());
        let err = PriceTable::load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("missing.toml"));
    }
}
