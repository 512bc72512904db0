//! Application state, the route table and the layer stack: the two places structure is declared.

pub use crate::state::{AppState, InFlight};
use crate::telemetry;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, StatusCode};
use std::time::{Duration, Instant};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the gateway's router.
///
/// Layers, outermost first (a request passes them top to bottom, a response bottom to top):
/// 1. `SetRequestId`: gives every request an `x-request-id` (the client's, or a new UUID) before
///    anything logs, so every line of a request carries the same id.
/// 2. `observe`: the request span, access log, request/latency/overhead metrics and the in-flight
///    gauge. It sits outside the handlers so gateway errors are measured like any response, and
///    inside the id layer so it can log the id.
/// 3. `PropagateRequestId`: copies the id onto the response for the client to quote.
/// 4. `refuse_unsafe_paths`: 400 for paths with `.`/`..` segments or encoded separators, before
///    any handler or the upstream could resolve them into another path.
/// 5. request decompression (gzip), so every handler reads plain bytes.
/// 6. `admin_token::guard`: the admin token on `/gemgate/...` and `/metrics` when configured
///    (the static `/gemgate/ui` files excepted: they hold no data).
///
/// Body limits are enforced in the handlers, not by a layer, because the limit depends on the
/// route (parsed JSON vs streamed uploads) and the error must be Gemini's JSON, not plain text.
pub fn build_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/gemgate/v1/caches", get(crate::admin::list_caches))
        .route("/gemgate/v1/operations", get(crate::deferral::list_operations))
        .route(
            "/gemgate/v1/operations/{id}",
            get(crate::deferral::get_operation).delete(crate::deferral::cancel_operation),
        )
        .route("/gemgate/v1/spend", get(crate::spend::spend))
        .route("/gemgate/v1/requests", get(crate::spend::recent))
        .route("/gemgate/v1/queue", get(crate::spend::queue))
        .route("/gemgate/ui", get(crate::spend::ui_page))
        .route("/gemgate/ui/{asset}", get(crate::spend::ui_asset))
        .fallback(crate::generate::dispatch)
        .method_not_allowed_fallback(|req: Request| async move {
            let msg = format!("gemgate: {} is not allowed on {}", req.method(), req.uri().path());
            crate::gemini::GeminiError::new(405, msg).into_response()
        })
        .with_state(state.clone())
        // Outside the routes, so every `/gemgate/...` route is covered. axum applies a layer to the
        // routes added before it: add new routes above this line.
        .layer(middleware::from_fn_with_state(state.clone(), crate::admin_token::guard))
        .layer(middleware::from_fn(refuse_unsafe_paths))
        // gzip request bodies are inflated before any handler reads them; body limits apply to
        // the inflated bytes. Other encodings pass through to the upstream untouched.
        .layer(
            tower::ServiceBuilder::new()
                .layer(RequestDecompressionLayer::new().pass_through_unaccepted(true))
                .map_request(|req: http::Request<_>| req.map(Body::new)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// Refuses paths that URL resolution would turn into another path (see `path::check_safe`),
/// before any route, guard or forwarding sees them.
async fn refuse_unsafe_paths(req: Request, next: Next) -> Response {
    match crate::gemini::path::check_safe(req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(what) => {
            let msg = format!("Invalid request path: it contains {what}, which the gateway does not forward.");
            crate::gemini::GeminiError::invalid_argument(msg).into_response()
        }
    }
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.cancel_token().is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "shutting down"})))
            .into_response();
    }
    // The store and the deferral queue are reported, but their outage does not make the replica
    // unready: caching fails open and standard traffic still flows, so taking every replica out
    // of rotation during a Redis outage would turn a degraded service into none.
    let describe = |r: Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    let store = describe(state.store().ping().await.map_err(|e| e.to_string()));
    let queue = match state.deferral() {
        Some(d) => describe(d.queue().ping().await.map_err(|e| e.to_string())),
        None => "disabled".to_string(),
    };
    let status = if store == "ok" && matches!(queue.as_str(), "ok" | "disabled") { "ready" } else { "degraded" };
    // A stale price table makes every reported cost doubtful, not the gateway unready.
    let pricing = state.price_staleness().map_or_else(|| "ok".to_string(), |w| format!("stale: {w}"));
    let body = serde_json::json!({"status": status, "store": store, "deferral_queue": queue, "pricing": pricing});
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match state.metrics() {
        Some(h) if state.config().telemetry.metrics => h.render().into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

pub use crate::telemetry::record_upstream_time;

async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = crate::gemini::path::method_label(req.method());
    let route = match crate::gemini::path::parse(req.uri().path()) {
        Some(p) => p.route_label(),
        None if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") => req.uri().path()[1..].to_string(),
        None if req.uri().path().starts_with("/gemgate/") => "gemgate".into(),
        None if req.uri().path().starts_with("/ws/") => "ws".into(),
        None => "other".into(),
    };
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let path = telemetry::redact_path_and_query(req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let in_flight = state.hold_in_flight();
    let limit = state.config().server.max_in_flight;
    let (resp, upstream) = if limit > 0 && in_flight.count > limit {
        // Shed load rather than queue without bound: a clear, retryable 503 now beats memory
        // growing until the process dies.
        (crate::error::GatewayError::Overloaded(limit).into_response(), Duration::ZERO)
    } else {
        telemetry::with_upstream_time(next.run(req)).instrument(span.clone()).await
    };
    let total = started.elapsed();
    let status = resp.status().as_u16();
    metrics::counter!(telemetry::REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string()).increment(1);
    metrics::histogram!(telemetry::REQUEST_DURATION, "route" => route).record(total.as_secs_f64());
    if !upstream.is_zero() {
        metrics::histogram!(telemetry::OVERHEAD).record(total.saturating_sub(upstream).as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(path = %path, status, ms = millis(total), upstream_ms = millis(upstream), "served");
    });
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::new(GuardedBody { inner: body, _guard: in_flight }))
}

/// Milliseconds rounded to the microsecond, so logs carry `12.345`, not float noise.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

struct GuardedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
