//! The billing ledger: what the real API would bill, per API key (hashed) and in total.
//! Savings claims are checked against these figures, not against the gateway's word.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Price category of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Standard,
    Flex,
    Batch,
    Priority,
}

impl Tier {
    /// As `serviceTier` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Flex => "flex",
            Tier::Batch => "batch",
            Tier::Priority => "priority",
        }
    }
}

/// What one generation bills at the list price in force on `now`'s day (the built-in price
/// schedule, `config/pricing.toml`): fresh input, cached reads at the model's cached-read price
/// (implicit hits included) and output, at the tier that served it.
pub fn list_price_usd(model: &str, tier: Tier, u: Usage, now: chrono::DateTime<chrono::Utc>) -> f64 {
    use crate::accounting::{PriceTable, Service, actual_usd};
    static PRICES: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
    let prices = PRICES.get_or_init(PriceTable::builtin);
    let row = prices.price_at(model, now.date_naive()).row;
    let usage = crate::accounting::Usage {
        prompt_tokens: u.prompt,
        cached_tokens: u.cached,
        output_tokens: u.candidates,
        thoughts_tokens: u.thoughts,
        ..Default::default()
    };
    let service = match tier {
        Tier::Standard => Service::Standard,
        Tier::Flex => Service::Flex,
        Tier::Batch => Service::Batch,
        Tier::Priority => Service::Priority,
    };
    actual_usd(row, &usage, service)
}

/// Billed quantities for one API key. Output categories include thinking tokens (billed at the
/// output rate); `thinking_tokens` repeats that subset across tiers for information.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Account {
    pub requests: u64,
    pub generate_calls: BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
    pub batch_input_tokens: u64,
    pub batch_output_tokens: u64,
    pub batch_requests: u64,
    pub flex_input_tokens: u64,
    pub flex_output_tokens: u64,
    pub flex_shed: u64,
    pub priority_input_tokens: u64,
    pub priority_output_tokens: u64,
    /// Generations at the list price in force on the emulator's day (see `list_price_usd`).
    pub generation_usd: f64,
    pub cache_storage_token_seconds: f64,
    pub cache_creations: u64,
    pub cache_creation_tokens: u64,
    pub cache_ttl_updates: u64,
    pub cache_deletions: u64,
    pub batch_jobs_submitted: u64,
}

/// Token figures of one successful generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub cached: u64,
    pub candidates: u64,
    pub thoughts: u64,
}

impl Account {
    /// Bills one generation: fresh input at the tier's input rate, cached tokens at the cache rate
    /// (whatever the tier), candidates + thoughts at the tier's output rate.
    pub fn bill(&mut self, tier: Tier, u: Usage) {
        let fresh = u.prompt.saturating_sub(u.cached);
        let out = u.candidates + u.thoughts;
        self.cached_tokens += u.cached;
        self.thinking_tokens += u.thoughts;
        match tier {
            Tier::Standard => {
                self.input_tokens += fresh;
                self.output_tokens += out;
            }
            Tier::Flex => {
                self.flex_input_tokens += fresh;
                self.flex_output_tokens += out;
            }
            Tier::Batch => {
                self.batch_input_tokens += fresh;
                self.batch_output_tokens += out;
                self.batch_requests += 1;
            }
            Tier::Priority => {
                self.priority_input_tokens += fresh;
                self.priority_output_tokens += out;
            }
        }
    }

    pub fn call(&mut self, method: &str) {
        self.requests += 1;
        *self.generate_calls.entry(method.to_string()).or_default() += 1;
    }

    fn add(&mut self, o: &Account) {
        self.requests += o.requests;
        for (k, v) in &o.generate_calls {
            *self.generate_calls.entry(k.clone()).or_default() += v;
        }
        self.input_tokens += o.input_tokens;
        self.cached_tokens += o.cached_tokens;
        self.output_tokens += o.output_tokens;
        self.thinking_tokens += o.thinking_tokens;
        self.batch_input_tokens += o.batch_input_tokens;
        self.batch_output_tokens += o.batch_output_tokens;
        self.batch_requests += o.batch_requests;
        self.flex_input_tokens += o.flex_input_tokens;
        self.flex_output_tokens += o.flex_output_tokens;
        self.flex_shed += o.flex_shed;
        self.priority_input_tokens += o.priority_input_tokens;
        self.priority_output_tokens += o.priority_output_tokens;
        self.generation_usd += o.generation_usd;
        self.cache_storage_token_seconds += o.cache_storage_token_seconds;
        self.cache_creations += o.cache_creations;
        self.cache_creation_tokens += o.cache_creation_tokens;
        self.cache_ttl_updates += o.cache_ttl_updates;
        self.cache_deletions += o.cache_deletions;
        self.batch_jobs_submitted += o.batch_jobs_submitted;
    }
}

/// All accounts, keyed by the caller hash.
#[derive(Debug, Default)]
pub struct Ledger {
    pub accounts: HashMap<String, Account>,
    /// Time of the last reset: storage of caches alive then accrues from it.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

impl Ledger {
    /// Forgets every figure; storage of live caches accrues again from `now`.
    pub fn reset(&mut self, now: chrono::DateTime<chrono::Utc>) {
        self.accounts.clear();
        self.since = Some(now);
    }

    pub fn account(&mut self, caller: &str) -> &mut Account {
        self.accounts.entry(caller.to_string()).or_default()
    }

    /// The ledger as JSON; `live_storage` adds token-seconds of caches still alive (computed on read).
    pub fn to_json(&self, live_storage: &HashMap<String, f64>) -> serde_json::Value {
        let mut keys: BTreeMap<String, Account> = self.accounts.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, secs) in live_storage {
            keys.entry(k.clone()).or_default().cache_storage_token_seconds += secs;
        }
        let mut total = Account::default();
        for a in keys.values() {
            total.add(a);
        }
        serde_json::json!({"keys": keys, "total": total})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_are_billed_apart_from_fresh_input() {
        let mut a = Account::default();
        a.bill(Tier::Standard, Usage { prompt: 1100, cached: 1000, candidates: 20, thoughts: 5 });
        assert_eq!((a.input_tokens, a.cached_tokens, a.output_tokens, a.thinking_tokens), (100, 1000, 25, 5));
        a.bill(Tier::Batch, Usage { prompt: 1100, cached: 1000, candidates: 20, thoughts: 0 });
        assert_eq!((a.batch_input_tokens, a.cached_tokens, a.batch_output_tokens), (100, 2000, 20));
    }

    #[test]
    fn implicit_hits_are_billed_at_each_models_cached_read_share() {
        let day = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().to_utc();
        let hit = Usage { prompt: 1_000_000, cached: 1_000_000, candidates: 0, thoughts: 0 };
        let fresh = Usage { cached: 0, ..hit };
        for (model, share) in [("gemini-4-carbon", 0.05), ("gemini-3.8-flash", 0.10), ("gemini-2.5-flash", 0.10)] {
            let ratio =
                list_price_usd(model, Tier::Standard, hit, day) / list_price_usd(model, Tier::Standard, fresh, day);
            assert!((ratio - share).abs() < 1e-9, "{model}: {ratio}");
        }
        // 1M fresh tokens of Carbon: $2 until 2026-12-01, $4 from then.
        let dec = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap().to_utc();
        assert!((list_price_usd("gemini-4-carbon", Tier::Standard, fresh, day) - 2.0).abs() < 1e-9);
        assert!((list_price_usd("gemini-4-carbon", Tier::Standard, fresh, dec) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn total_sums_keys_and_live_storage() {
        let mut l = Ledger::default();
        l.account("a").cache_storage_token_seconds = 10.0;
        l.account("b").call("generateContent");
        let live = HashMap::from([("a".to_string(), 5.0)]);
        let j = l.to_json(&live);
        assert_eq!(j["total"]["cache_storage_token_seconds"], 15.0);
        assert_eq!(j["total"]["generate_calls"]["generateContent"], 1);
    }
}
