//! How big a prefix is in tokens.
//!
//! Sizes are estimated from canonical bytes with a bytes-per-token ratio learned per model from
//! the upstream's own `usageMetadata.promptTokenCount` (free: every response carries it), rather
//! than by calling countTokens (an extra round trip and quota per new prefix on the request path).
//! A cache's exact size comes back from its creation. Minimum sizes are the catalog's
//! (`crate::catalog::Minimums`). Ratios are kept for a bounded number of model strings.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct Sizer {
    initial_ratio: f64,
    ratios: Mutex<HashMap<String, f64>>,
}

/// Model strings whose ratio is kept at most; beyond it a new model keeps the initial ratio.
const MAX_MODELS: usize = 1_000;

/// Weight of a new observation in the moving average of the ratio.
const ALPHA: f64 = 0.2;

fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

impl Sizer {
    pub fn new(initial_ratio: f64) -> Self {
        Self { initial_ratio, ratios: Mutex::default() }
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
        if ratios.len() >= MAX_MODELS && !ratios.contains_key(model_id(model)) {
            return;
        }
        let r = ratios.entry(model_id(model).to_string()).or_insert(sample);
        *r = (1.0 - ALPHA) * *r + ALPHA * sample;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizer() -> Sizer {
        Sizer::new(4.0)
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
}
