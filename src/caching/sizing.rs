//! How big a prefix is in tokens, and how big it must be.
//!
//! Sizes are estimated from canonical bytes with a bytes-per-token ratio learned per model from
//! the upstream's own `usageMetadata.promptTokenCount` (free: every response carries it), rather
//! than by calling countTokens (an extra round trip and quota per new prefix on the request path).
//! A cache's exact size comes back from its creation. Minimums start from the config table and
//! are overridden by what the upstream reports in "Cached content is too small" errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

pub struct Sizer {
    table: BTreeMap<String, u32>,
    initial_ratio: f64,
    ratios: Mutex<HashMap<String, f64>>,
    learned_min: Mutex<HashMap<String, u32>>,
}

/// Weight of a new observation in the moving average of the ratio.
const ALPHA: f64 = 0.2;

fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

impl Sizer {
    pub fn new(table: BTreeMap<String, u32>, initial_ratio: f64) -> Self {
        Self { table, initial_ratio, ratios: Mutex::default(), learned_min: Mutex::default() }
    }

    pub fn bytes_per_token(&self, model: &str) -> f64 {
        let ratios = self.ratios.lock().expect("poisoned");
        ratios.get(model_id(model)).copied().unwrap_or(self.initial_ratio)
    }

    pub fn estimate_tokens(&self, model: &str, bytes: u64) -> u64 {
        (bytes as f64 / self.bytes_per_token(model)).ceil() as u64
    }

    /// Learns from a response: the whole prompt was `bytes` canonical bytes and cost
    /// `prompt_tokens` tokens.
    pub fn observe(&self, model: &str, bytes: u64, prompt_tokens: u64) {
        if prompt_tokens < 16 || bytes == 0 {
            return; // too small to say anything about the ratio
        }
        let sample = bytes as f64 / prompt_tokens as f64;
        let mut ratios = self.ratios.lock().expect("poisoned");
        let r = ratios.entry(model_id(model).to_string()).or_insert(sample);
        *r = (1.0 - ALPHA) * *r + ALPHA * sample;
    }

    /// The minimum cache size for a model: learned, else the longest matching table prefix, else
    /// the table's `default`.
    pub fn min_tokens(&self, model: &str) -> u32 {
        let id = model_id(model);
        if let Some(m) = self.learned_min.lock().expect("poisoned").get(id) {
            return *m;
        }
        self.table
            .iter()
            .filter(|(k, _)| k.as_str() != "default" && id.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .or_else(|| self.table.get_key_value("default"))
            .map(|(_, v)| *v)
            .unwrap_or(1024)
    }

    pub fn learn_min(&self, model: &str, min: u32) {
        self.learned_min.lock().expect("poisoned").insert(model_id(model).to_string(), min);
    }
}

/// Parses `Cached content is too small. total_token_count=N, min_total_token_count=M`.
pub fn parse_too_small(message: &str) -> Option<(u64, u32)> {
    let num_after = |tag: &str| -> Option<u64> {
        let start = message.find(tag)? + tag.len();
        let digits: String = message[start..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let min = num_after("min_total_token_count=")?;
    let total = num_after(" total_token_count=").or_else(|| num_after("total_token_count="))?;
    Some((total, min as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizer() -> Sizer {
        let table =
            [("default", 1024), ("gemini-2.5-flash", 1024), ("gemini-2.5-pro", 4096), ("gemini-2.5-flash-lite", 2048)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        Sizer::new(table, 4.0)
    }

    #[test]
    fn longest_table_prefix_wins_and_learning_overrides() {
        let s = sizer();
        assert_eq!(s.min_tokens("models/gemini-2.5-pro"), 4096);
        assert_eq!(s.min_tokens("models/gemini-2.5-flash-lite"), 2048);
        assert_eq!(s.min_tokens("models/gemini-2.5-flash-001"), 1024);
        assert_eq!(s.min_tokens("models/unknown"), 1024);
        s.learn_min("models/gemini-2.5-flash", 2048);
        assert_eq!(s.min_tokens("models/gemini-2.5-flash"), 2048);
    }

    #[test]
    fn ratio_moves_towards_observations() {
        let s = sizer();
        assert_eq!(s.estimate_tokens("models/m", 4000), 1000);
        for _ in 0..50 {
            s.observe("models/m", 5000, 1000);
        }
        assert!((s.bytes_per_token("models/m") - 5.0).abs() < 0.01);
        assert_eq!(s.bytes_per_token("models/other"), 4.0);
    }

    #[test]
    fn parses_the_too_small_error() {
        let msg = "Cached content is too small. total_token_count=653, min_total_token_count=1024";
        assert_eq!(parse_too_small(msg), Some((653, 1024)));
        assert_eq!(parse_too_small("something else"), None);
    }
}
