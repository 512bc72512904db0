//! Building the client's response to a generate call: the `x-gemgate-*` headers, the
//! `usageMetadata.gemgate` annotation (on the final SSE event for streams), cost accounting, and
//! learning from usage. [`settle`] is the one place a response's annotation is completed, and
//! so where its final figures are recorded for the spend rollups (`crate::spend`).

use crate::accounting::{Service, Usage};
use crate::caching::{self, Annotation, Plan};
use crate::gemini::sse;
use crate::proxy::{self, BodyMeter};
use crate::spend::{RequestMeta, Served};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

/// The one field of a response body an untouched (bypass) response is read for, read as
/// counts straight from the bytes: the rest of the body is skipped, not built.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageOnly {
    usage_metadata: Option<Usage>,
}

/// A response whose body has already been read.
pub fn buffered(status: u16, headers: HeaderMap, body: Bytes, ann: &Annotation) -> Response {
    buffered_with(status, headers, body, ann, 0)
}

/// [`buffered`], reporting `cached_tokens` in the annotation headers (set once, not twice).
fn buffered_with(status: u16, mut headers: HeaderMap, body: Bytes, ann: &Annotation, cached_tokens: u64) -> Response {
    headers.remove(header::CONTENT_LENGTH);
    ann.set_headers(&mut headers, cached_tokens);
    BodyMeter::RESPONSE.add(body.len());
    let mut out = Body::from(body).into_response();
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *out.headers_mut() = headers;
    out
}

/// Records a response's final figures (those its headers carry) for the spend rollups.
fn record(state: &AppState, plan: &Plan, meta: &RequestMeta, status: u16, usage: Option<&Usage>, ann: &Annotation) {
    let Some(spend) = state.spend() else { return };
    let u = usage.copied().unwrap_or_default();
    let explicit_cache = plan.key.is_some() && matches!(ann.outcome, caching::Outcome::Hit | caching::Outcome::Created);
    let served = Served {
        model: ann.pricing.as_ref().map_or(plan.model.as_str(), |p| p.key.as_str()),
        status,
        outcome: ann.outcome.as_str(),
        tier: ann.tier.map(|(t, _)| t),
        explicit_cache,
        costs: ann.costs,
        overhead_usd: plan.overhead_usd,
        prompt_tokens: u.prompt_tokens,
        cached_tokens: u.cached_tokens,
        output_tokens: u.output_tokens + u.thoughts_tokens,
    };
    spend.record(meta, served);
}

/// Learns from a final usage (when caching is on), completes the annotation with the costs
/// and the prices they used, and records them. `requested` is the tier the request was sent at.
fn settle(state: &AppState, plan: &Plan, meta: &RequestMeta, usage: &Usage, requested: Service) -> Annotation {
    let priced = match state.caching() {
        Some(c) => {
            c.learn(plan, usage);
            c.account(plan, usage, requested)
        }
        None => state
            .catalog()
            .costs(&plan.model, usage, requested, plan.overhead_usd, state.clock().now_ms())
            .map(|(c, p, _)| (c, p)),
    };
    let (costs, pricing) = priced.map_or((None, None), |(c, p)| (Some(c), Some(p)));
    let ann = Annotation { costs, pricing, ..plan.annotation.clone() };
    record(state, plan, meta, 200, Some(usage), &ann);
    ann
}

/// What [`collect_bounded`] read: the whole body, or the part read before it passed the limit
/// and the rest still to come.
enum Gathered {
    Whole(Bytes),
    TooLarge(Bytes, hyper::body::Incoming),
}

/// Reads a response body whole unless it is larger than `limit` bytes; then hands back what it
/// read and the body, so nothing is lost and no more than `limit` (plus a frame) is held.
async fn collect_bounded(mut body: hyper::body::Incoming, limit: usize) -> Result<Gathered, hyper::Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.is_empty() && http_body::Body::is_end_stream(&body) {
                return Ok(Gathered::Whole(data));
            }
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                return Ok(Gathered::TooLarge(buf.freeze(), body));
            }
        }
    }
    Ok(Gathered::Whole(buf.freeze()))
}

pub async fn respond(
    state: &AppState,
    resp: proxy::UpstreamResponse,
    plan: &Plan,
    meta: &RequestMeta,
    requested: Service,
    stream: bool,
    sse: bool,
) -> Response {
    let annotate = state.config().caching.annotate_usage_metadata;
    let status = resp.status();
    // A request gemgate did nothing to keeps its body byte for byte; its cost goes in headers.
    let untouched = plan.annotation.outcome == caching::Outcome::Bypass
        && plan.annotation.tier.is_none()
        && requested == Service::Standard;
    if !status.is_success() || (stream && !sse) || (stream && untouched) {
        // Errors pass through untouched; JSON-array streams are relayed as they are; so are
        // untouched streams (their headers leave before the usage arrives).
        // A JSON-array stream served from a cache reports the cache's tokens like an SSE one.
        let cached = if status.is_success() && stream { plan.annotation.prefix_tokens } else { 0 };
        if !status.is_success() {
            record(state, plan, meta, status.as_u16(), None, &plan.annotation);
        }
        let mut out = proxy::relay_response(resp);
        plan.annotation.set_headers(out.headers_mut(), cached);
        return out;
    }
    // The upstream's own header map, edited in place: no copy.
    let (parts, body) = resp.into_parts();
    let mut headers = parts.headers;
    proxy::strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);

    if !stream {
        let limit = state.config().server.max_json_body_bytes as usize;
        let body = match collect_bounded(body, limit).await {
            Ok(Gathered::Whole(b)) => b,
            Ok(Gathered::TooLarge(read, rest)) => {
                // Larger than the gateway parses: relayed as it comes, unread and unannotated.
                tracing::warn!(limit, "upstream response larger than server.max_json_body_bytes; relayed unread");
                let whole =
                    futures::stream::once(async move { Ok::<_, hyper::Error>(read) }).chain(rest.into_data_stream());
                let mut out =
                    Body::new(proxy::Metered::new(Body::from_stream(whole), BodyMeter::RESPONSE)).into_response();
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                plan.annotation.set_headers(out.headers_mut(), 0);
                return out;
            }
            Err(e) => {
                return crate::error::GatewayError::UpstreamUnreachable(e.to_string()).into_response();
            }
        };
        if untouched {
            // Only the usage is needed: the rest of the body is skipped, not built.
            let usage = serde_json::from_slice::<UsageOnly>(&body).ok().and_then(|u| u.usage_metadata);
            let Some(usage) = usage else {
                return buffered(status.as_u16(), headers, body, &plan.annotation);
            };
            let ann = settle(state, plan, meta, &usage, requested);
            return buffered_with(status.as_u16(), headers, body, &ann, usage.cached_tokens);
        }
        let Ok(mut parsed) = serde_json::from_slice::<Value>(&body) else {
            return buffered(status.as_u16(), headers, body, &plan.annotation);
        };
        let Some(usage) = parsed.get("usageMetadata").map(Usage::from_usage_metadata) else {
            return buffered(status.as_u16(), headers, body, &plan.annotation);
        };
        let ann = settle(state, plan, meta, &usage, requested);
        let cached = usage.cached_tokens;
        let body = if annotate && ann.apply(&mut parsed) {
            Bytes::from(serde_json::to_vec_pretty(&parsed).unwrap_or_default())
        } else {
            body
        };
        return buffered_with(status.as_u16(), headers, body, &ann, cached);
    }

    // SSE: relay event by event; the final event (with finishReason) is parsed for usage and,
    // when configured, annotated. No event is held back.
    let head = plan.annotation.clone();
    let plan = plan.clone();
    let meta = meta.clone();
    let state = state.clone();
    let events = sse::sse_events(body.into_data_stream()).map(move |r| {
        r.map(|event| {
            let out = match sse::is_final_event(&event).then(|| sse::parse_event(&event)).flatten() {
                Some(mut v) => match v.get("usageMetadata").map(Usage::from_usage_metadata) {
                    Some(usage) => {
                        let ann = settle(&state, &plan, &meta, &usage, requested);
                        if annotate && ann.apply(&mut v) { sse::encode_event(&v) } else { event }
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
    head.set_headers(out.headers_mut(), head.prefix_tokens);
    out
}
