//! The request path: intercepted generate calls (parsed once, cached when it pays, failing open)
//! and everything else (streamed through untouched).

mod respond;

use crate::caching::{self, Outcome, Plan};
use crate::deferral::Tier;
use crate::deferral::marking::TIER_HEADER;
use crate::error::GatewayError;
use crate::gemini::path::{self, Door};
use crate::proxy::{self, UpstreamRequest};
use crate::state::AppState;
use crate::telemetry;
use crate::telemetry::record_upstream_time;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, header};

/// Fallback handler: every path that is not the gateway's own goes through here.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let result = match path::parse(req.uri().path()) {
        _ if proxy::is_upgrade(req.headers()) => {
            proxy::forward_upgrade(state.upstream(), || state.hold_in_flight(), req).await
        }
        Some(p) if p.is_generate() && req.method() == Method::POST => generate(&state, req).await,
        Some(p) if p.door == Door::Upload => {
            let origin = req.uri().query().and_then(|q| state.uploads().origin_for(q));
            proxy::passthrough(state.passthrough(), req, origin).await
        }
        _ => proxy::passthrough(state.passthrough(), req, None).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// generateContent / streamGenerateContent: read and parse the body once, plan caching, send,
/// and on a cache rejection resend the original once.
async fn generate(state: &AppState, req: Request) -> Result<Response, GatewayError> {
    let started = std::time::Instant::now();
    let (mut parts, body) = proxy::read_limited_body(req, state.config().server.max_json_body_bytes).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let uri_path = parts.uri.path().to_string();
    let api = path::parse(&uri_path).ok_or_else(|| GatewayError::Internal("unparsable generate path".into()))?;
    let query = parts.uri.query();
    let meta = crate::spend::RequestMeta::new(&parts.headers, query, api.is_stream(), started);
    // Deferred execution: batch requests are acknowledged from the durable queue and never reach
    // the code below; flex goes on below with `serviceTier`. When the queue is down: standard
    // tier with SQLite, 503 with the shared Redis queue (see `Deferral::refuses_when_unavailable`).
    let mut tier = None;
    if let Some(d) = state.deferral() {
        let scope = d.observe(&parts.headers, query);
        match d.mark(&api, &parts.headers, &uri_path, scope.as_deref()) {
            Err(e) => return Ok(e.into_response()),
            Ok(None) => {}
            Ok(Some(m)) => {
                tier = Some(m.tier);
                if m.tier == Tier::Batch {
                    tier = Some(Tier::Standard);
                    if let (Some(scope), Some(model)) = (&scope, api.model_name()) {
                        // Nothing is queued for a key or model the upstream refuses.
                        if let Some((_, cred)) = crate::deferral::Credential::from_request(&parts.headers, query) {
                            if let Some(refusal) = d.admit(scope, api.version, &model, &cred).await {
                                return Ok(refusal);
                            }
                        }
                        match d.defer(scope, &model, &body, &value, &m).await {
                            Ok(resp) => return Ok(resp),
                            Err(e) if d.refuses_when_unavailable() => {
                                tracing::warn!(error = %e, "deferral queue unavailable; request refused");
                                let msg = "gemgate: the deferral queue is unavailable, so this batch request was \
                                           not accepted; retry later, or send it with x-gemgate-defer: standard";
                                return Ok(crate::gemini::GeminiError::new(503, msg).into_response());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "deferral queue unavailable; serving at standard tier")
                            }
                        }
                    }
                }
            }
        }
    }
    let mut plan = match (state.caching(), value.as_object()) {
        (Some(c), Some(obj)) => c.plan(&api, &parts.headers, query, obj).await,
        _ => Plan::bypass(),
    };
    if plan.model.is_empty() {
        // Every response is priced, the ones caching does not apply to included.
        plan.model = api.model_name().unwrap_or_default();
    }
    // Priority is asked for on the wire; the upstream says in the usage which tier served it.
    let (body, mut plan) = match tier {
        Some(Tier::Priority) => (with_tier(body, Tier::Priority), with_tier_plan(plan, Tier::Priority)),
        _ => (body, plan),
    };
    let mut headers = std::mem::take(&mut parts.headers);
    proxy::strip_request_headers(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    for h in crate::deferral::marking::REQUEST_HEADERS {
        headers.remove(h);
    }
    if state.caching().is_some() {
        // The gateway reads usage from the response, so it asks for it uncompressed.
        headers.remove(header::ACCEPT_ENCODING);
    }
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let flex = tier == Some(Tier::Flex);
    let send = |bytes: Bytes| send(state, &path_and_query, &headers, bytes, flex);

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
                    return Ok(respond::buffered(status, resp_headers, err_body, &plan.annotation));
                }
                // Fail open: the cache is gone or refused; forget it and send the original once.
                if let (Some(c), Some(key)) = (state.caching(), &plan.key) {
                    c.invalidate(key).await;
                }
                metrics::counter!(telemetry::CACHE_RETRIES).increment(1);
                tracing::info!(status, "cache rejected upstream; resending the original request");
                plan.annotation = caching::Annotation::new(Outcome::Error);
                plan.key = None;
                plan.overhead_usd = 0.0;
                send(body.clone()).await?
            }
        }
    };
    let served = tier.filter(|t| *t != Tier::Priority).map(|t| match resp.headers().get(TIER_HEADER) {
        Some(v) if v == "flex" => Tier::Flex,
        Some(_) => Tier::Standard,
        None => t,
    });
    plan.annotation.tier = served.map(|t| (t.as_str(), t.discount()));
    let requested = served.or(tier).map_or(crate::accounting::Service::Standard, Tier::service);
    let sse = api.is_stream() && query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let mut out = respond::respond(state, resp, &plan, &meta, requested, api.is_stream(), sse).await;
    if let Some(t) = served {
        out.headers_mut().insert(TIER_HEADER, http::HeaderValue::from_static(t.as_str()));
    }
    Ok(out)
}

/// `body` with `serviceTier` set to `tier` (unchanged if it is not a JSON object).
fn with_tier(body: Bytes, tier: Tier) -> Bytes {
    crate::deferral::flex::with_tier(&body, tier).map_or(body, Bytes::from)
}

/// The plan with `serviceTier` set on the cache-rewritten body too, when there is one.
fn with_tier_plan(mut plan: Plan, tier: Tier) -> Plan {
    plan.rewritten = plan.rewritten.map(|r| crate::deferral::flex::with_tier(&r, tier).unwrap_or(r));
    plan
}

async fn send(
    state: &AppState,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    flex: bool,
) -> Result<proxy::UpstreamResponse, GatewayError> {
    if flex {
        let cfg = &state.config().deferral;
        return crate::deferral::flex::send(state.upstream(), cfg, path_and_query, headers, body).await;
    }
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
