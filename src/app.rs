//! Application state, the route table and the layer stack: the two places structure is declared.

pub use crate::state::{AppState, InFlight};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;

pub use crate::layers::record_upstream_time;

/// The router inside the gateway's layer stack: what `serve` runs for every request.
pub type App = crate::layers::Stack<Router>;

/// Builds the gateway: the route table inside the layer stack ([`crate::layers::stack`], where
/// the order of the layers and the reason for each is written down).
///
/// Body limits are enforced in the handlers, not by a layer, because the limit depends on the
/// route (parsed JSON vs streamed uploads) and the error must be Gemini's JSON, not plain text.
pub fn build_app(state: AppState) -> App {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/gemgate/v1/caches", get(crate::admin::list_caches))
        .route("/gemgate/v1/prefixes", get(crate::admin::list_prefixes))
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
            let (method, path) = (req.method().to_string(), req.uri().path().to_string());
            crate::error::GatewayError::MethodNotAllowed { method, path }.into_response()
        })
        .with_state(state.clone());
    crate::layers::stack(router, state.in_flight_counter(), &state.config().server)
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
    let queue = match (state.deferral(), state.deferral_unusable()) {
        (Some(d), _) => describe(d.queue().ping().await.map_err(|e| e.to_string())),
        (None, Some(reason)) => format!("unavailable: {reason}"),
        (None, None) => "disabled".to_string(),
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
        _ => crate::error::GatewayError::Disabled("metrics are off (telemetry.metrics = false)").into_response(),
    }
}
