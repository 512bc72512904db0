//! The request path: intercepted generate calls (parsed once, cached when it pays, failing open)
//! and everything else (streamed through untouched).

mod call;
mod respond;

use crate::caching::Plan;
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
use call::Call;
use http::{HeaderMap, Method, header};

/// Fallback handler: every path that is not the gateway's own goes through here.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    // The gateway's own paths are answered here or nowhere: an unknown one is never forwarded.
    if crate::admin_token::is_owned_path(req.uri().path()) {
        return GatewayError::NoGatewayEndpoint(req.uri().path().to_string()).into_response();
    }
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

/// generateContent / streamGenerateContent, as a sequence of steps over one [`Call`]: read it,
/// defer it (batch), plan caching, send (flex, fail-open resend), respond.
async fn generate(state: &AppState, req: Request) -> Result<Response, GatewayError> {
    let mut call = Call::read(state, req).await?;
    if let Some(answer) = defer(state, &call).await? {
        return Ok(answer);
    }
    let tier = tier_to_send(&call);
    let plan = match &call.body {
        call::Body::Parsed(body) => {
            Plan::for_call(state.caching(), &call.api(), call.scope(), call.credential(), body).await
        }
        call::Body::Unread(plan) => Plan::clone(plan),
    };
    // Nothing after this reads the client's headers: they are edited into the upstream's.
    let headers = upstream_headers(state, std::mem::take(&mut call.parts.headers));
    let (resp, plan, served) = match send_planned(state, &call, headers, plan, tier).await? {
        Sent::Upstream(resp, plan, served) => (resp, *plan, served),
        Sent::Answered(resp) => return Ok(resp),
    };
    let plan = plan.served_at(served.map(|t| (t.as_str(), t.discount())));
    let requested = served.or(tier).map_or(crate::accounting::Service::Standard, Tier::service);
    let mut out = respond::respond(state, resp, &plan, &call.meta, requested, call.stream, call.sse).await;
    if let Some(t) = served {
        out.headers_mut().insert(TIER_HEADER, http::HeaderValue::from_static(t.as_str()));
    }
    Ok(out)
}

/// Deferred execution: a batch-marked call is acknowledged from the durable queue (or refused,
/// for a key or model the upstream refuses) and goes no further. `None`: it goes on below.
/// When the queue is down: standard tier with SQLite, 503 with the shared Redis queue (see
/// `Deferral::refuses_when_unavailable`).
async fn defer(state: &AppState, call: &Call) -> Result<Option<Response>, GatewayError> {
    let (Some(d), Some(m)) = (state.deferral(), &call.marking) else { return Ok(None) };
    let Some((scope, cred)) = call.tenant.as_ref().filter(|_| m.tier == Tier::Batch && !call.model.is_empty()) else {
        return Ok(None);
    };
    if let Some(refusal) = d.admit(scope, call.api().version, &call.model, cred).await {
        return Ok(Some(refusal));
    }
    let body = call.value()?;
    match d.defer(scope, &call.model, &call.raw, &body, m).await {
        Ok(resp) => Ok(Some(resp)),
        Err(e) if d.refuses_when_unavailable() => {
            tracing::warn!(error = %e, "deferral queue unavailable; request refused");
            Err(GatewayError::BatchNotAccepted)
        }
        Err(e) => {
            tracing::warn!(error = %e, "deferral queue unavailable; serving at standard tier");
            Ok(None)
        }
    }
}

/// The tier a call that was not deferred goes at: batch falls back to standard.
fn tier_to_send(call: &Call) -> Option<Tier> {
    call.marking.as_ref().map(|m| if m.tier == Tier::Batch { Tier::Standard } else { m.tier })
}

/// What sending a call came to.
enum Sent {
    /// The upstream's response, the plan it was answered under, and the tier that served it
    /// (for marked calls; priority is reported by the upstream itself, in the usage).
    Upstream(proxy::UpstreamResponse, Box<Plan>, Option<Tier>),
    /// An upstream error for the cache-rewritten call that is not about the cache, answered as is.
    Answered(Response),
}

/// Sends the call as planned; when the upstream rejects the cache the plan used, sends the
/// original once more (fail open).
async fn send_planned(
    state: &AppState,
    call: &Call,
    headers: HeaderMap,
    plan: Plan,
    tier: Option<Tier>,
) -> Result<Sent, GatewayError> {
    // Priority is asked for on the wire; the upstream says in the usage which tier served it.
    let (body, plan) = match tier {
        Some(Tier::Priority) => (with_tier(call.raw.clone(), Tier::Priority), plan.with_service_tier("priority")),
        _ => (call.raw.clone(), plan),
    };
    let flex = tier == Some(Tier::Flex);
    let send = |headers: HeaderMap, bytes: Bytes| send(state, call.path_and_query(), headers, bytes, flex);
    let served = |flex_tier: Option<Tier>| tier.filter(|t| *t != Tier::Priority).map(|t| flex_tier.unwrap_or(t));

    let Some(rewritten) = &plan.rewritten else {
        let (resp, flex_tier) = send(headers, body).await?;
        return Ok(Sent::Upstream(resp, Box::new(plan), served(flex_tier)));
    };
    let (resp, flex_tier) = send(headers.clone(), Bytes::from(rewritten.clone())).await?;
    if resp.status().is_success() {
        return Ok(Sent::Upstream(resp, Box::new(plan), served(flex_tier)));
    }
    let status = resp.status().as_u16();
    let mut resp_headers = HeaderMap::new();
    proxy::copy_response_headers(resp.headers(), &mut resp_headers);
    let err_body = resp.bytes().await.unwrap_or_default();
    if !proxy::UpstreamFailure::from_answer(status, &err_body).is_cache_rejection() {
        return Ok(Sent::Answered(respond::buffered(status, resp_headers, err_body, &plan.annotation)));
    }
    // Fail open: the cache is gone or refused; forget it and send the original once.
    let plan = match state.caching() {
        Some(c) => c.rejected(plan).await,
        None => plan,
    };
    metrics::counter!(telemetry::CACHE_RETRIES).increment(1);
    tracing::info!(status, "cache rejected upstream; resending the original request");
    let (resp, flex_tier) = send(headers, body).await?;
    Ok(Sent::Upstream(resp, Box::new(plan), served(flex_tier)))
}

/// The client's headers made into the upstream's, in place: without hop-by-hop ones and the
/// gateway's own controls, and asking for an uncompressed answer when caching reads the usage
/// from it.
fn upstream_headers(state: &AppState, mut headers: HeaderMap) -> HeaderMap {
    proxy::strip_request_headers(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    if state.caching().is_some() {
        headers.remove(header::ACCEPT_ENCODING);
    }
    headers
}

/// `body` with `serviceTier` set to `tier` (unchanged if it is not a JSON object).
fn with_tier(body: Bytes, tier: Tier) -> Bytes {
    crate::deferral::flex::with_tier(&body, tier).map_or(body, Bytes::from)
}

/// One upstream call; the flex sender's answer carries the tier that served it.
async fn send(
    state: &AppState,
    path_and_query: &str,
    headers: HeaderMap,
    body: Bytes,
    flex: bool,
) -> Result<(proxy::UpstreamResponse, Option<Tier>), GatewayError> {
    if flex {
        let cfg = &state.config().deferral;
        let (resp, tier) = crate::deferral::flex::send(state.upstream(), cfg, path_and_query, &headers, body).await?;
        return Ok((resp, Some(tier)));
    }
    let started = std::time::Instant::now();
    let req = UpstreamRequest {
        method: Method::POST,
        path_and_query: path_and_query.to_string(),
        headers,
        body: body.into(),
    };
    let result = state.upstream().send(req).await;
    record_upstream_time(started.elapsed());
    Ok((result?, None))
}
