//! The dated price schedule (`config/pricing.toml`): per model, one row per price period (USD per
//! 1M tokens, the >200k prompt tier, cache storage per token-hour), tier multipliers (batch, flex,
//! priority), aliases, family patterns and the named default row; plus how cache creation is
//! billed. `PriceTable::builtin()` compiles the shipped file in, so a gateway without it still
//! prices. Model ids are matched by `catalog::ids` (the same rule every model table uses).

use super::ids::{self, Matched};
use anyhow::{Context, bail};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The shipped table, compiled in.
const BUILTIN: &str = include_str!("../../config/pricing.toml");

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

/// USD per 1M tokens for one prompt-size tier, at the Standard service tier.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub input: f64,
    /// Visible output and thinking tokens.
    pub output: f64,
    /// Tokens served from a cache (explicit or implicit).
    pub cached_read: f64,
}

/// Multipliers on the Standard rates for one service tier.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Multipliers {
    pub input: f64,
    pub output: f64,
    pub cached_read: f64,
}

impl Multipliers {
    const fn all(x: f64) -> Self {
        Multipliers { input: x, output: x, cached_read: x }
    }
}

/// The tier multipliers (`[tiers]`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tiers {
    pub batch: Multipliers,
    pub flex: Multipliers,
    pub priority: Multipliers,
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers { batch: Multipliers::all(0.5), flex: Multipliers::all(0.5), priority: Multipliers::all(1.8) }
    }
}

/// One model's prices for one period.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// First day these prices apply (UTC).
    pub effective_from: NaiveDate,
    /// When the row was last checked against the pricing page (`YYYY-MM` or a full date).
    pub as_of: String,
    /// Cache storage, USD per 1M tokens per hour (0 for models without explicit caching).
    pub storage_per_hour: f64,
    pub standard: Rates,
    /// Prompts larger than this many tokens use `long_context`.
    #[serde(default)]
    pub long_context_above: Option<u64>,
    #[serde(default)]
    pub long_context: Option<Rates>,
    /// The table's tier multipliers, copied in when the table is read.
    #[serde(skip)]
    pub tiers: Tiers,
    /// `key@effective_from`, written when the table is read (every response names its row).
    #[serde(skip)]
    pub name: String,
}

impl ModelPrice {
    /// The Standard rates for a prompt of `prompt_tokens` tokens (cached tokens included).
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

    /// The cached-read price as a share of the input price (0.10 on 2.x/3.x, 0.05 on Gemini 4).
    pub fn cached_share(&self) -> f64 {
        if self.standard.input > 0.0 { self.standard.cached_read / self.standard.input } else { 0.0 }
    }
}

/// Where a price came from, as responses and metrics say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// The model (or an alias of it) has its own row.
    Table,
    /// A versioned id of a listed model, or a family pattern.
    Family,
    /// Nothing matched: the named default row.
    Default,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Table => "table",
            PriceSource::Family => "family",
            PriceSource::Default => "default",
        }
    }
}

/// A resolved price: the row in force, the model key it belongs to, and how it was found.
#[derive(Debug, Clone, Copy)]
pub struct Priced<'a> {
    pub row: &'a ModelPrice,
    pub key: &'a str,
    pub source: PriceSource,
}

impl Priced<'_> {
    /// `gemini-3.8-flash@2026-09-01`: the model key and the row's first day.
    pub fn row_name(&self) -> String {
        if self.row.name.is_empty() {
            format!("{}@{}", self.key, self.row.effective_from)
        } else {
            self.row.name.clone()
        }
    }
}

/// The whole schedule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    #[serde(default)]
    pub cache_creation: CreationBilling,
    /// The model key used when nothing else matches.
    pub default: String,
    #[serde(default)]
    pub tiers: Tiers,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Pattern (with `*`) → model key.
    #[serde(default)]
    pub families: BTreeMap<String, String>,
    /// Model key → its rows, sorted by `effective_from`.
    pub models: BTreeMap<String, Vec<ModelPrice>>,
}

/// Today, UTC.
pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// The UTC day of a millisecond timestamp.
pub fn day_of_ms(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(today, |t| t.date_naive())
}

/// The first day of an `as_of` value (`YYYY-MM` or `YYYY-MM-DD`).
fn as_of_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok())
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
        let mut table: PriceTable = toml::from_str(text)?;
        table.validate()?;
        let tiers = table.tiers;
        for (key, rows) in table.models.iter_mut() {
            rows.sort_by_key(|r| r.effective_from);
            for r in rows {
                r.tiers = tiers;
                r.name = format!("{key}@{}", r.effective_from);
            }
        }
        Ok(table)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let known = |k: &str| self.models.get(k).is_some_and(|rows| !rows.is_empty());
        if !known(&self.default) {
            problems.push(format!("default: {:?} is not a model of the table", self.default));
        }
        for (kind, map) in [("aliases", &self.aliases), ("families", &self.families)] {
            for (k, target) in map {
                if !known(target) {
                    problems.push(format!("{kind}.{k}: {target:?} is not a model of the table"));
                }
            }
        }
        for (tier, m) in [("batch", self.tiers.batch), ("flex", self.tiers.flex), ("priority", self.tiers.priority)] {
            for (k, v) in [("input", m.input), ("output", m.output), ("cached_read", m.cached_read)] {
                if !(v.is_finite() && v >= 0.0) {
                    problems.push(format!("tiers.{tier}.{k}: must be >= 0, got {v}"));
                }
            }
        }
        for (name, rows) in &self.models {
            if name.contains('*') {
                problems.push(format!("models.{name}: patterns belong in [families]"));
            }
            if rows.is_empty() {
                problems.push(format!("models.{name}: no rows"));
            }
            let mut days: Vec<NaiveDate> = rows.iter().map(|r| r.effective_from).collect();
            days.sort();
            if days.windows(2).any(|w| w[0] == w[1]) {
                problems.push(format!("models.{name}: two rows with the same effective_from"));
            }
            for m in rows {
                let at = format!("models.{name}@{}", m.effective_from);
                if as_of_day(&m.as_of).is_none() {
                    problems.push(format!("{at}.as_of: YYYY-MM or YYYY-MM-DD, got {:?}", m.as_of));
                }
                let mut tiers = vec![("standard", &m.standard)];
                match (&m.long_context_above, &m.long_context) {
                    (Some(_), Some(long)) => tiers.push(("long_context", long)),
                    (None, None) => {}
                    _ => problems.push(format!("{at}: long_context_above and long_context go together")),
                }
                let mut values = vec![("storage_per_hour".to_string(), m.storage_per_hour)];
                for (tier, r) in tiers {
                    for (k, v) in [("input", r.input), ("output", r.output), ("cached_read", r.cached_read)] {
                        values.push((format!("{tier}.{k}"), v));
                    }
                }
                for (k, v) in values.into_iter().filter(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
                    problems.push(format!("{at}.{k}: must be >= 0, got {v}"));
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("; ")) }
    }

    /// The model key `model` is priced under, and how it was found: an alias or an own row
    /// (`table`), a versioned id or a family pattern (`family`), else the default.
    pub fn key_for(&self, model: &str) -> (&str, PriceSource) {
        let id = ids::bare(model);
        if let Some(target) = self.aliases.get(id) {
            return (target.as_str(), PriceSource::Table);
        }
        if let Some((k, _, how)) = ids::lookup(&self.models, id) {
            let source = if how == Matched::Exact { PriceSource::Table } else { PriceSource::Family };
            return (k, source);
        }
        if let Some((_, target, _)) = ids::lookup(&self.families, id) {
            return (target.as_str(), PriceSource::Family);
        }
        (self.default.as_str(), PriceSource::Default)
    }

    /// The price of `model` in force on `day`: the row with the latest `effective_from` on or
    /// before it (a day before a model's first row gets its first row).
    pub fn price_at(&self, model: &str, day: NaiveDate) -> Priced<'_> {
        let (key, source) = self.key_for(model);
        let (key, rows) = self.models.get_key_value(key).expect("validated: every key resolves to rows");
        let row = rows.iter().rev().find(|r| r.effective_from <= day).unwrap_or(&rows[0]);
        Priced { row, key, source }
    }

    /// The price in force today, and whether it fell back to the default row.
    pub fn price_for(&self, model: &str) -> (&ModelPrice, bool) {
        let p = self.price_at(model, today());
        (p.row, p.source == PriceSource::Default)
    }

    /// The newest `as_of` of any row.
    pub fn newest_as_of(&self) -> Option<NaiveDate> {
        self.models.values().flatten().filter_map(|r| as_of_day(&r.as_of)).max()
    }

    /// A warning when the newest `as_of` is more than `stale_after` before `today`.
    pub fn staleness(&self, today: NaiveDate, stale_after: std::time::Duration) -> Option<String> {
        let newest = self.newest_as_of()?;
        let age = (today - newest).num_days();
        let limit = (stale_after.as_secs() / 86_400) as i64;
        (age > limit).then(|| {
            format!(
                "price table is {age} days old (newest as_of {newest}, pricing.stale_after {limit} days): check \
                 Google's pricing page and update it"
            )
        })
    }
}

#[cfg(test)]
#[path = "pricing_tests.rs"]
mod tests;
