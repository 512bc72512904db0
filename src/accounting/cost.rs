//! What one response cost, from the upstream's own `usageMetadata`, and what the cache saved.
//! Pure arithmetic over a [`ModelPrice`] row: `promptTokenCount` includes
//! `cachedContentTokenCount`; thoughts are billed as output; the tier is picked by prompt size.

use super::pricing::{CreationBilling, ModelPrice, PriceSource};

pub use crate::gemini::usage::{Service, Usage};

const PER_TOKEN: f64 = 1e-6;

/// Input, output and cached-read rates for this usage's prompt size at the tier `svc`.
pub fn rates_for(p: &ModelPrice, u: &Usage, svc: Service) -> (f64, f64, f64) {
    let r = p.rates(u.prompt_tokens);
    let m = match svc {
        Service::Standard => return (r.input, r.output, r.cached_read),
        Service::Batch => p.tiers.batch,
        Service::Flex => p.tiers.flex,
        Service::Priority => p.tiers.priority,
    };
    (r.input * m.input, r.output * m.output, r.cached_read * m.cached_read)
}

/// What the response cost as served: fresh prompt and tool-use tokens at the input rate, cached
/// tokens at the cached-read rate, output plus thoughts at the output rate.
pub fn actual_usd(p: &ModelPrice, u: &Usage, svc: Service) -> f64 {
    let (input, output, cached) = rates_for(p, u, svc);
    let fresh = u.prompt_tokens - u.billed_cached() + u.tool_use_prompt_tokens;
    (fresh as f64 * input + u.billed_cached() as f64 * cached + (u.output_tokens + u.thoughts_tokens) as f64 * output)
        * PER_TOKEN
}

/// What the same response would have cost with no cache at all: every prompt token at the input
/// rate.
pub fn as_sent_usd(p: &ModelPrice, u: &Usage, svc: Service) -> f64 {
    let (input, output, _) = rates_for(p, u, svc);
    ((u.prompt_tokens + u.tool_use_prompt_tokens) as f64 * input
        + (u.output_tokens + u.thoughts_tokens) as f64 * output)
        * PER_TOKEN
}

/// `as_sent − actual − amortised_overhead_usd`, where the caller passes this request's share of
/// the cache's creation and storage. Negative when the cache cost more than it saved.
pub fn net_saving_usd(p: &ModelPrice, u: &Usage, svc: Service, amortised_overhead_usd: f64) -> f64 {
    as_sent_usd(p, u, svc) - actual_usd(p, u, svc) - amortised_overhead_usd
}

/// Creating an explicit cache of `tokens` tokens (priced at the tier its size falls in).
pub fn creation_usd(p: &ModelPrice, billing: CreationBilling, tokens: u64) -> f64 {
    let r = p.rates(tokens);
    let rate = match billing {
        CreationBilling::InputPrice => r.input,
        CreationBilling::CachedPrice => r.cached_read,
        CreationBilling::Free => 0.0,
    };
    tokens as f64 * rate * PER_TOKEN
}

/// Keeping `tokens` tokens in a cache for `ms` milliseconds.
pub fn storage_usd(p: &ModelPrice, tokens: u64, ms: i64) -> f64 {
    tokens as f64 * ms.max(0) as f64 * p.storage_per_token_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::PriceTable;
    use serde_json::json;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    fn flash() -> ModelPrice {
        PriceTable::builtin().price_for("gemini-2.5-flash").0.clone()
    }

    #[test]
    fn reads_usage_metadata_with_omitted_zeros() {
        let u = Usage::from_usage_metadata(&json!({
            "promptTokenCount": 326, "candidatesTokenCount": 63, "totalTokenCount": 543,
            "cachedContentTokenCount": 173, "thoughtsTokenCount": 154}));
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 326,
                cached_tokens: 173,
                output_tokens: 63,
                thoughts_tokens: 154,
                tool_use_prompt_tokens: 0,
                served: None,
            }
        );
        assert_eq!(Usage::from_usage_metadata(&json!({})), Usage::default());
    }

    #[test]
    fn flash_with_a_cache_hit_hand_computed() {
        // 2,000 fresh × $0.30 + 8,000 cached × $0.03 + (500 + 200 thoughts) × $2.50, per 1M.
        let u = Usage {
            prompt_tokens: 10_000,
            cached_tokens: 8_000,
            output_tokens: 500,
            thoughts_tokens: 200,
            tool_use_prompt_tokens: 0,
            served: None,
        };
        let p = flash();
        close(actual_usd(&p, &u, Service::Standard), 0.00259);
        close(as_sent_usd(&p, &u, Service::Standard), 0.00475);
        close(net_saving_usd(&p, &u, Service::Standard, 0.0005), 0.00166);
        // Batch and flex halve every rate; priority multiplies them by 1.8.
        close(actual_usd(&p, &u, Service::Batch), 0.001295);
        close(actual_usd(&p, &u, Service::Flex), 0.001295);
        close(as_sent_usd(&p, &u, Service::Batch), 0.002375);
        close(actual_usd(&p, &u, Service::Priority), 0.00259 * 1.8);
    }

    #[test]
    fn pro_long_context_tier_is_picked_by_whole_prompt_size() {
        let t = PriceTable::builtin();
        let p = t.price_for("gemini-2.5-pro").0;
        let u = Usage { prompt_tokens: 250_000, cached_tokens: 200_000, output_tokens: 1_000, ..Usage::default() };
        // 50,000 × $2.50 + 200,000 × $0.25 + 1,000 × $15, per 1M.
        close(actual_usd(p, &u, Service::Standard), 0.19);
        close(as_sent_usd(p, &u, Service::Standard), 0.64);
        let small = Usage { prompt_tokens: 1_000, tool_use_prompt_tokens: 100, ..Usage::default() };
        close(actual_usd(p, &small, Service::Standard), 1_100.0 * 1.25e-6);
    }

    #[test]
    fn wire_names_of_the_tiers() {
        assert_eq!(Service::from_wire("flex"), Some(Service::Flex));
        assert_eq!(Service::from_wire("SERVICE_TIER_PRIORITY"), Some(Service::Priority));
        assert_eq!(Service::from_wire("unspecified"), Some(Service::Standard));
        assert_eq!(Service::from_wire("gold"), None);
    }

    #[test]
    fn creation_and_storage_follow_the_billing_assumption() {
        let p = flash();
        close(creation_usd(&p, CreationBilling::InputPrice, 100_000), 0.03);
        close(creation_usd(&p, CreationBilling::CachedPrice, 100_000), 0.003);
        close(creation_usd(&p, CreationBilling::Free, 100_000), 0.0);
        // 100k tokens for 30 minutes at $1 per 1M per hour.
        close(storage_usd(&p, 100_000, 1_800_000), 0.05);
        close(storage_usd(&p, 100_000, -5), 0.0);
    }
}

/// What one response cost (USD), computed from the upstream's own usage and the price table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// As served.
    pub actual_usd: f64,
    /// Had it been sent as it came (every prompt token at the input rate).
    pub as_sent_usd: f64,
    /// `as_sent − actual`, less the creation and storage this request committed.
    pub net_saving_usd: f64,
}

/// Which prices a response's costs were computed with.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// The price table's model key (`gemini-3.8-flash`).
    pub key: String,
    /// The row in force: `key@effective_from`.
    pub row: String,
    /// `table`, `family` or `default` (a guess: the model is not in the table).
    pub source: PriceSource,
    /// The service tier priced (the one the upstream says served the request, if it says).
    pub service: Service,
}
