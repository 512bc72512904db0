//! Building the client's response to a generate call: the `x-gemgate-*` headers, the
//! `usageMetadata.gemgate` annotation (final SSE event for streams), and learning from usage.

use crate::app::AppState;
use crate::caching::{self, Annotation, Plan};
use crate::proxy::{self, BodyMeter};
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};

fn set_headers(h: &mut HeaderMap, ann: &Annotation, cached_tokens: u64) {
    h.insert(
        "x-gemgate-cache",
        HeaderValue::from_static(ann.outcome.as_str()),
    );
    h.insert("x-gemgate-cached-tokens", HeaderValue::from(cached_tokens));
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

pub async fn respond(
    state: &AppState,
    resp: reqwest::Response,
    plan: &Plan,
    ann: Annotation,
    stream: bool,
    sse: bool,
) -> Response {
    let Some(caching) = state.caching().cloned() else {
        return proxy::relay_response(resp);
    };
    let annotate = caching.config().annotate_usage_metadata;
    let status = resp.status();
    if !status.is_success() || (stream && !sse) {
        // Errors pass through untouched; JSON-array streams are relayed as they are.
        let mut out = proxy::relay_response(resp);
        set_headers(out.headers_mut(), &ann, 0);
        return out;
    }
    let mut headers = HeaderMap::new();
    proxy::copy_response_headers(resp.headers(), &mut headers);
    headers.remove(header::CONTENT_LENGTH);

    if !stream {
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return crate::error::GatewayError::UpstreamUnreachable(
                    e.without_url().to_string(),
                )
                .into_response();
            }
        };
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let usage = parsed.as_ref().and_then(|v| v.get("usageMetadata"));
        if let Some(u) = usage {
            caching.learn(plan, u);
        }
        let cached = usage
            .and_then(|u| u.get("cachedContentTokenCount"))
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let body = match parsed {
            Some(mut v) if annotate => {
                if ann.apply(&mut v) {
                    Bytes::from(serde_json::to_vec_pretty(&v).unwrap_or_default())
                } else {
                    body
                }
            }
            _ => body,
        };
        let mut out = buffered(status.as_u16(), headers, body, &ann);
        set_headers(out.headers_mut(), &ann, cached);
        return out;
    }

    // SSE: relay event by event; the final event (with finishReason) is parsed for usage and,
    // when configured, annotated.
    let plan = plan.clone();
    let ann2 = ann.clone();
    let events = caching::sse_events(resp.bytes_stream()).map(move |r| {
        r.map(|event| {
            let out = if caching::is_final_event(&event) {
                match caching::parse_event(&event) {
                    Some(mut v) => {
                        if let Some(u) = v.get("usageMetadata") {
                            caching.learn(&plan, u);
                        }
                        if annotate && ann2.apply(&mut v) {
                            caching::encode_event(&v)
                        } else {
                            event
                        }
                    }
                    None => event,
                }
            } else {
                event
            };
            BodyMeter::RESPONSE.add(out.len());
            out
        })
    });
    let mut out = Body::from_stream(events).into_response();
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    set_headers(out.headers_mut(), &ann, ann.prefix_tokens);
    out
}
