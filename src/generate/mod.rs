//! The request path: intercepted generate calls (parsed once, cached when it pays, failing open)
//! and everything else (streamed through untouched).

mod respond;

use crate::app::{AppState, record_upstream_time};
use crate::caching::{self, Outcome, Plan};
use crate::error::GatewayError;
use crate::gemini::path::{self, Door};
use crate::proxy::{self, UpstreamRequest};
use crate::telemetry;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, header};

/// Fallback handler: every path that is not the gateway's own goes through here.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let result = match path::parse(req.uri().path()) {
        Some(p) if p.is_generate() && req.method() == Method::POST => generate(&state, req).await,
        Some(p) if p.door == Door::Upload => {
            let origin = req
                .uri()
                .query()
                .and_then(|q| state.uploads().origin_for(q));
            proxy::passthrough(&state, req, origin).await
        }
        _ => proxy::passthrough(&state, req, None).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// generateContent / streamGenerateContent: read and parse the body once, plan caching, send,
/// and on a cache rejection resend the original once.
async fn generate(state: &AppState, req: Request) -> Result<Response, GatewayError> {
    let (parts, body) =
        proxy::read_limited_body(req, state.config().server.max_json_body_bytes).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let uri_path = parts.uri.path().to_string();
    let api = path::parse(&uri_path)
        .ok_or_else(|| GatewayError::Internal("unparsable generate path".into()))?;
    let query = parts.uri.query();
    let plan = match (state.caching(), value.as_object()) {
        (Some(c), Some(obj)) => c.plan(&api, &parts.headers, query, obj).await,
        _ => Plan {
            annotation: caching::Annotation {
                outcome: Outcome::Bypass,
                cache_name: None,
                prefix_tokens: 0,
            },
            rewritten: None,
            key: None,
            model: String::new(),
            total_bytes: 0,
        },
    };
    let mut headers = proxy::copy_request_headers(&parts.headers);
    headers.remove(header::CONTENT_LENGTH);
    if state.caching().is_some() {
        // The gateway reads usage from the response, so it asks for it uncompressed.
        headers.remove(header::ACCEPT_ENCODING);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let send = |bytes: Bytes| send(state, &path_and_query, &headers, bytes);

    let mut annotation = plan.annotation.clone();
    let resp = match &plan.rewritten {
        None => send(body.clone()).await?,
        Some(rewritten) => {
            let resp = send(Bytes::from(rewritten.clone())).await?;
            if resp.status().is_success() {
                resp
            } else {
                let status = resp.status().as_u16();
                let mut resp_headers = HeaderMap::new();
                proxy::copy_response_headers(resp.headers(), &mut resp_headers);
                let err_body = resp.bytes().await.unwrap_or_default();
                if !caching::is_cache_rejection(status, &err_body) {
                    return Ok(respond::buffered(
                        status,
                        resp_headers,
                        err_body,
                        &annotation,
                    ));
                }
                // Fail open: the cache is gone or refused; forget it and send the original once.
                if let (Some(c), Some(key)) = (state.caching(), &plan.key) {
                    c.invalidate(key).await;
                }
                metrics::counter!(telemetry::CACHE_RETRIES).increment(1);
                tracing::info!(
                    status,
                    "cache rejected upstream; resending the original request"
                );
                annotation = caching::Annotation {
                    outcome: Outcome::Error,
                    cache_name: None,
                    prefix_tokens: 0,
                };
                send(body.clone()).await?
            }
        }
    };
    let sse = api.is_stream() && query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    Ok(respond::respond(state, resp, &plan, annotation, api.is_stream(), sse).await)
}

async fn send(
    state: &AppState,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<reqwest::Response, GatewayError> {
    let started = std::time::Instant::now();
    let req = UpstreamRequest {
        method: Method::POST,
        path_and_query: path_and_query.to_string(),
        headers: headers.clone(),
        body: body.into(),
    };
    let result = state.upstream().send(req).await;
    record_upstream_time(started.elapsed());
    result
}
