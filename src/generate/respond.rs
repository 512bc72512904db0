//! Building the client's response to a generate call: the `x-gemgate-*` headers, the
//! `usageMetadata.gemgate` annotation (on the final SSE event for streams), cost accounting, and
//! learning from usage.

use crate::app::AppState;
use crate::caching::{self, Annotation, Caching, Plan};
use crate::proxy::{self, BodyMeter};
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

fn set_headers(h: &mut HeaderMap, ann: &Annotation, cached_tokens: u64) {
    h.insert("x-gemgate-cache", HeaderValue::from_static(ann.outcome.as_str()));
    h.insert("x-gemgate-cached-tokens", HeaderValue::from(cached_tokens));
    if let Some(c) = &ann.costs {
        for (name, v) in [
            ("x-gemgate-cost-usd", c.actual_usd),
            ("x-gemgate-cost-as-sent-usd", c.as_sent_usd),
            ("x-gemgate-net-saving-usd", c.net_saving_usd),
        ] {
            if let Ok(v) = HeaderValue::from_str(&format!("{v:.8}")) {
                h.insert(name, v);
            }
        }
    }
}

/// A response whose body has already been read.
pub fn buffered(status: u16, mut headers: HeaderMap, body: Bytes, ann: &Annotation) -> Response {
    headers.remove(header::CONTENT_LENGTH);
    set_headers(&mut headers, ann, 0);
    BodyMeter::RESPONSE.add(body.len());
    let mut out = Body::from(body).into_response();
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    out.headers_mut().extend(headers);
    out
}

/// Learns from a final usage and returns the annotation with its costs.
fn settle(caching: &Caching, plan: &Plan, usage: &Value) -> Annotation {
    caching.learn(plan, usage);
    Annotation { costs: caching.account(plan, usage), ..plan.annotation.clone() }
}

pub async fn respond(state: &AppState, resp: reqwest::Response, plan: &Plan, stream: bool, sse: bool) -> Response {
    let Some(caching) = state.caching().cloned() else {
        if let (Some(tier), false) = (plan.annotation.tier, stream) {
            // Caching is off but a deferred (flex) response still says which tier served it.
            return crate::deferral::flex::annotate(resp, tier).await;
        }
        return proxy::relay_response(resp);
    };
    let annotate = caching.config().annotate_usage_metadata;
    let status = resp.status();
    let untouched = plan.annotation.outcome == caching::Outcome::Bypass && plan.annotation.tier.is_none();
    if !status.is_success() || (stream && !sse) || untouched {
        // Errors pass through untouched; JSON-array streams are relayed as they are; so are the
        // responses to requests caching does not apply to (the header says `bypass`).
        // A JSON-array stream served from a cache reports the cache's tokens like an SSE one.
        let cached = if status.is_success() && stream { plan.annotation.prefix_tokens } else { 0 };
        let mut out = proxy::relay_response(resp);
        set_headers(out.headers_mut(), &plan.annotation, cached);
        return out;
    }
    let mut headers = HeaderMap::new();
    proxy::copy_response_headers(resp.headers(), &mut headers);
    headers.remove(header::CONTENT_LENGTH);

    if !stream {
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return crate::error::GatewayError::UpstreamUnreachable(e.without_url().to_string()).into_response();
            }
        };
        let Ok(mut parsed) = serde_json::from_slice::<Value>(&body) else {
            return buffered(status.as_u16(), headers, body, &plan.annotation);
        };
        let Some(usage) = parsed.get("usageMetadata").cloned() else {
            return buffered(status.as_u16(), headers, body, &plan.annotation);
        };
        let ann = settle(&caching, plan, &usage);
        let cached = usage.get("cachedContentTokenCount").and_then(Value::as_u64).unwrap_or(0);
        let body = if annotate && ann.apply(&mut parsed) {
            Bytes::from(serde_json::to_vec_pretty(&parsed).unwrap_or_default())
        } else {
            body
        };
        let mut out = buffered(status.as_u16(), headers, body, &ann);
        set_headers(out.headers_mut(), &ann, cached);
        return out;
    }

    // SSE: relay event by event; the final event (with finishReason) is parsed for usage and,
    // when configured, annotated. No event is held back.
    let head = plan.annotation.clone();
    let plan = plan.clone();
    let events = caching::sse_events(resp.bytes_stream()).map(move |r| {
        r.map(|event| {
            let out = match caching::is_final_event(&event).then(|| caching::parse_event(&event)).flatten() {
                Some(mut v) => match v.get("usageMetadata").cloned() {
                    Some(usage) => {
                        let ann = settle(&caching, &plan, &usage);
                        if annotate && ann.apply(&mut v) { caching::encode_event(&v) } else { event }
                    }
                    None => event,
                },
                None => event,
            };
            BodyMeter::RESPONSE.add(out.len());
            out
        })
    });
    let mut out = Body::from_stream(events).into_response();
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    set_headers(out.headers_mut(), &head, head.prefix_tokens);
    out
}
