//! What the gateway did, told to the client: `x-gemgate-*` headers and a `gemgate` object inside
//! `usageMetadata` (on the final event of a stream). The official SDKs ignore the extra field.

pub use crate::accounting::{Costs, Pricing};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::reason::Reason;

/// What happened to a request, as the `x-gemgate-cache` header says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served through an existing gateway-made cache.
    Hit,
    /// This request's prefix was just put into a new cache, which served it.
    Created,
    /// Eligible, but no cache was used (not hot yet, too small, cooling down, still creating).
    Miss,
    /// Not a caching candidate (the client's own cache, no credential, tuned model, disabled).
    Bypass,
    /// A cache was tried and failed; the request went as it came.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Created => "created",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
            Outcome::Error => "error",
        }
    }
}

/// The annotation for one response.
#[derive(Debug, Clone)]
pub struct Annotation {
    pub outcome: Outcome,
    pub cache_name: Option<String>,
    pub prefix_tokens: u64,
    pub costs: Option<Costs>,
    pub pricing: Option<Pricing>,
    /// The tier that served a deferred (flex) request, and its discount.
    pub tier: Option<(&'static str, f64)>,
    /// Why the request was or was not served from a gateway cache (`x-gemgate-cache-reason`).
    pub reason: Option<Reason>,
}

/// USD figures are rounded to a millionth of a cent.
fn usd(v: f64) -> Value {
    json!((v * 1e8).round() / 1e8)
}

impl Annotation {
    pub fn new(outcome: Outcome) -> Self {
        // The outcomes that say their own reason carry it; a miss or bypass is told by the planner.
        let reason = match outcome {
            Outcome::Hit => Some(Reason::Hit),
            Outcome::Created => Some(Reason::Created),
            Outcome::Error => Some(Reason::FailedOpen),
            Outcome::Miss | Outcome::Bypass => None,
        };
        Annotation { outcome, cache_name: None, prefix_tokens: 0, costs: None, pricing: None, tier: None, reason }
    }

    /// The annotation with this reason.
    pub fn because(self, reason: Reason) -> Self {
        Annotation { reason: Some(reason), ..self }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"cache": self.outcome.as_str()});
        if let Some(r) = self.reason {
            v["cacheReason"] = json!(r.as_str());
        }
        if let Some(n) = &self.cache_name {
            v["cacheName"] = json!(n);
        }
        if self.prefix_tokens > 0 {
            v["prefixTokens"] = json!(self.prefix_tokens);
        }
        if let Some(c) = &self.costs {
            v["costUsd"] = usd(c.actual_usd);
            v["costAsSentUsd"] = usd(c.as_sent_usd);
            v["netSavingUsd"] = usd(c.net_saving_usd);
        }
        if let Some(p) = &self.pricing {
            v["priceSource"] = json!(p.source.as_str());
            v["priceRow"] = json!(p.row);
            v["pricedTier"] = json!(p.service.as_str());
        }
        if let Some((tier, discount)) = self.tier {
            v["tier"] = json!(tier);
            v["discount"] = json!(discount);
        }
        v
    }

    /// The `x-gemgate-*` headers of a response: what happened to the cache, the tokens served
    /// from it, and (once the usage is known) the costs and where their prices came from.
    pub fn set_headers(&self, h: &mut HeaderMap, cached_tokens: u64) {
        // Names built at compile time: every generate response carries these.
        const CACHE: HeaderName = HeaderName::from_static("x-gemgate-cache");
        const REASON: HeaderName = HeaderName::from_static("x-gemgate-cache-reason");
        const CACHED_TOKENS: HeaderName = HeaderName::from_static("x-gemgate-cached-tokens");
        const COST: HeaderName = HeaderName::from_static("x-gemgate-cost-usd");
        const COST_AS_SENT: HeaderName = HeaderName::from_static("x-gemgate-cost-as-sent-usd");
        const NET_SAVING: HeaderName = HeaderName::from_static("x-gemgate-net-saving-usd");
        const PRICE_SOURCE: HeaderName = HeaderName::from_static("x-gemgate-price-source");
        const PRICE_ROW: HeaderName = HeaderName::from_static("x-gemgate-price-row");
        h.reserve(8);
        h.insert(CACHE, HeaderValue::from_static(self.outcome.as_str()));
        if let Some(r) = self.reason {
            h.insert(REASON, HeaderValue::from_static(r.as_str()));
        }
        h.insert(CACHED_TOKENS, HeaderValue::from(cached_tokens));
        if let Some(c) = &self.costs {
            for (name, v) in [(COST, c.actual_usd), (COST_AS_SENT, c.as_sent_usd), (NET_SAVING, c.net_saving_usd)] {
                if let Ok(v) = HeaderValue::try_from(usd_fixed8(v)) {
                    h.insert(name, v);
                }
            }
        }
        if let Some(p) = &self.pricing {
            h.insert(PRICE_SOURCE, HeaderValue::from_static(p.source.as_str()));
            if let Ok(v) = HeaderValue::from_str(&p.row) {
                h.insert(PRICE_ROW, v);
            }
        }
    }

    /// An annotation read back from its JSON (`to_json`), as stored with a deferred result: its
    /// outcome and costs, enough to give the result's response the same headers.
    pub fn from_json(v: &Value) -> Self {
        let outcome = match v["cache"].as_str() {
            Some("hit") => Outcome::Hit,
            Some("created") => Outcome::Created,
            Some("miss") => Outcome::Miss,
            Some("error") => Outcome::Error,
            _ => Outcome::Bypass,
        };
        let costs = match (v["costUsd"].as_f64(), v["costAsSentUsd"].as_f64(), v["netSavingUsd"].as_f64()) {
            (Some(actual_usd), Some(as_sent_usd), Some(net_saving_usd)) => {
                Some(Costs { actual_usd, as_sent_usd, net_saving_usd })
            }
            _ => None,
        };
        let reason = v["cacheReason"].as_str().and_then(Reason::parse);
        let ann = Self::new(outcome);
        let reason = reason.or(ann.reason);
        Annotation { costs, reason, prefix_tokens: v["prefixTokens"].as_u64().unwrap_or(0), ..ann }
    }

    /// Inserts the annotation into a parsed response that has `usageMetadata`.
    pub fn apply(&self, response: &mut Value) -> bool {
        match response.get_mut("usageMetadata").and_then(Value::as_object_mut) {
            Some(usage) => {
                usage.insert("gemgate".into(), self.to_json());
                true
            }
            None => false,
        }
    }
}

/// Annotates a non-streaming JSON body; `None` if it is not a response with usage (it is then
/// passed on unchanged).
pub fn annotate_body(body: &[u8], ann: &Annotation) -> Option<(Vec<u8>, Value)> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    if !ann.apply(&mut v) {
        return None;
    }
    let out = serde_json::to_vec_pretty(&v).ok()?;
    Some((out, v))
}

/// `v` with 8 decimals, exactly as `format!("{v:.8}")` writes it. Every generate response
/// carries three amounts, so the usual ones (under 90 USD and not within a hair of a rounding
/// tie, where the scaled float could round the other way) skip the float formatter.
fn usd_fixed8(v: f64) -> String {
    let scaled = v.abs() * 1e8;
    if scaled.is_nan() || scaled >= 9e9 || (scaled - scaled.floor() - 0.5).abs() < 1e-6 {
        return format!("{v:.8}");
    }
    let units = scaled.round() as u64;
    let mut out = String::with_capacity(20);
    if v.is_sign_negative() {
        out.push('-');
    }
    let (whole, frac) = (units / 100_000_000, units % 100_000_000);
    out.push_str(&whole.to_string());
    out.push('.');
    let digits = frac.to_string();
    out.extend(std::iter::repeat_n('0', 8 - digits.len()));
    out.push_str(&digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_as_the_float_formatter_writes_them() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = vec![0.0, -0.0, 1e-9, -1e-9, 5e-9, 1.5e-8, 2.5e-8, 0.123456785, 89.99999999, 90.5, -3.2, 1e12];
        values.extend([f64::NAN, f64::INFINITY, f64::MIN_POSITIVE]);
        for _ in 0..100_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mantissa = (x >> 11) as f64 / (1u64 << 53) as f64;
            let scale = [1e-7, 1e-5, 1e-3, 0.1, 10.0, 100.0][(x % 6) as usize];
            values.push(if x & 1 == 1 { -mantissa * scale } else { mantissa * scale });
            // Exact ties at the 9th decimal, where a naive rounding would differ.
            values.push(((x % 1_000_000) as f64 + 0.5) / 1e8);
        }
        for v in values {
            assert_eq!(usd_fixed8(v), format!("{v:.8}"), "{v:e}");
        }
    }

    #[test]
    fn annotation_goes_inside_usage_metadata() {
        let ann = Annotation {
            cache_name: Some("cachedContents/x".into()),
            prefix_tokens: 8000,
            costs: Some(Costs { actual_usd: 0.001, as_sent_usd: 0.0025, net_saving_usd: 0.0015 }),
            ..Annotation::new(Outcome::Hit)
        };
        let (bytes, v) = annotate_body(br#"{"candidates":[],"usageMetadata":{"promptTokenCount":9}}"#, &ann).unwrap();
        assert_eq!(v["usageMetadata"]["gemgate"]["cache"], "hit");
        assert_eq!(v["usageMetadata"]["promptTokenCount"], 9);
        assert!(String::from_utf8(bytes).unwrap().contains("\"prefixTokens\": 8000"));
        assert!(annotate_body(b"{\"error\":{}}", &ann).is_none());
    }
}
