//! The Flex tier: the request goes synchronously with `serviceTier: "flex"`; when the upstream
//! sheds it (429/503) it is retried, then sent standard or answered with the shed error, per
//! config. [`send`] returns the tier that served it, which the client's response reports
//! (`x-gemgate-tier`).

use super::marking::Tier;
use crate::config::DeferralConfig;
use crate::error::GatewayError;
use crate::gemini::canonical;
use crate::proxy::{Upstream, UpstreamRequest};
use crate::telemetry;
use bytes::Bytes;
use http::{HeaderMap, Method};

/// The body with the top-level `serviceTier` set to `tier` (lowercase, as the API spells it;
/// either spelling of an existing field replaced). `None` if the body is not a JSON object.
pub fn with_tier(body: &[u8], tier: Tier) -> Option<Vec<u8>> {
    canonical::with_service_tier(body, tier.as_str())
}

/// [`with_tier`] for flex.
pub fn with_flex(body: &[u8]) -> Option<Vec<u8>> {
    with_tier(body, Tier::Flex)
}

/// Whether an answer to a flex request is a shed (capacity) answer.
pub fn is_shed(status: u16) -> bool {
    status == 429 || status == 503
}

/// Sends a request at the flex tier with the configured fallback. Returns the upstream response
/// with `x-gemgate-tier` set to the tier that served it.
pub async fn send(
    upstream: &Upstream,
    cfg: &DeferralConfig,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(crate::proxy::UpstreamResponse, Tier), GatewayError> {
    let request = |bytes: Bytes| UpstreamRequest {
        method: Method::POST,
        path_and_query: path_and_query.to_string(),
        headers: headers.clone(),
        body: bytes.into(),
    };
    let Some(flex_body) = with_flex(&body).map(Bytes::from) else {
        return Ok((upstream.send(request(body)).await?, Tier::Standard));
    };
    let mut attempt = 0;
    loop {
        let started = std::time::Instant::now();
        let resp = upstream.send(request(flex_body.clone())).await;
        crate::telemetry::record_upstream_time(started.elapsed());
        let resp = resp?;
        if !is_shed(resp.status().as_u16()) {
            metrics::counter!(telemetry::DEFER_FLEX, "outcome" => "served").increment(1);
            return Ok((resp, Tier::Flex));
        }
        metrics::counter!(telemetry::DEFER_FLEX, "outcome" => "shed").increment(1);
        if attempt >= cfg.flex_retries {
            if cfg.flex_on_shed == "standard" {
                metrics::counter!(telemetry::DEFER_FLEX, "outcome" => "fallback_standard").increment(1);
                tracing::info!(attempts = attempt + 1, "flex request shed; sending it standard");
                let started = std::time::Instant::now();
                let resp = upstream.send(request(body)).await;
                crate::telemetry::record_upstream_time(started.elapsed());
                return Ok((resp?, Tier::Standard));
            }
            return Ok((resp, Tier::Flex));
        }
        attempt += 1;
        tokio::time::sleep(cfg.flex_retry_delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_set_in_either_spelling() {
        let out = with_flex(br#"{"contents":[],"service_tier":"standard"}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["serviceTier"], "flex");
        assert!(v.get("service_tier").is_none());
        assert!(with_flex(b"[1]").is_none());
    }
}
