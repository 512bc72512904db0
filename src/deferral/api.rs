//! `/gemgate/v1/operations`: get, list and cancel deferred requests. A caller sees only the
//! operations of its own credential scope (others are "not found"), and every call refreshes the
//! in-memory credential, so polling alone lets a restarted gateway resume the tenant's work.

use super::delivery::operation;
use super::queue::Item;
use super::{Deferral, ItemResult};
use crate::error::GatewayError;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;
use std::collections::HashMap;

fn not_found(id: &str) -> Response {
    GatewayError::OperationNotFound(id.to_string()).into_response()
}

/// The queue did not answer (Redis down, a timeout): transient, so 503 and the client retries.
fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "deferral queue unavailable");
    GatewayError::QueueUnavailable.into_response()
}

/// What the operations API needs from the gateway's state: the deferral handle, when enabled.
#[derive(Clone)]
pub struct DeferralState(pub Option<Deferral>);

/// The deferral handle and the caller's scope, or the response to give instead.
fn caller(state: &DeferralState, headers: &HeaderMap, query: Option<&str>) -> Result<(Deferral, String), GatewayError> {
    let Some(d) = &state.0 else {
        return Err(GatewayError::Disabled("deferred execution is disabled"));
    };
    match d.observe(headers, query) {
        Some(scope) => Ok((d.clone(), scope)),
        None => Err(GatewayError::Unregistered),
    }
}

/// The caller's operation `id` (with or without the `operations/` prefix), or the response to
/// give instead: another scope's operation is "not found", exactly like a missing one.
async fn own_item(
    state: &DeferralState,
    headers: &HeaderMap,
    query: Option<&str>,
    id: &str,
) -> Result<(Deferral, Item), Response> {
    let (d, scope) = caller(state, headers, query).map_err(IntoResponse::into_response)?;
    let id = strip(id);
    match d.queue().item(id).await {
        Ok(Some(item)) if item.scope == scope => Ok((d, item)),
        Ok(_) => Err(not_found(id)),
        Err(e) => Err(unavailable(e)),
    }
}

fn json_ok(v: &serde_json::Value) -> Response {
    let mut r = (http::StatusCode::OK, serde_json::to_vec_pretty(v).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json; charset=UTF-8"));
    r
}

fn strip(id: &str) -> &str {
    id.strip_prefix("operations/").unwrap_or(id)
}

/// `GET /gemgate/v1/operations/{id}`
pub async fn get_operation(
    State(state): State<DeferralState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match own_item(&state, &headers, q.as_deref(), &id).await {
        Ok((d, item)) => json_ok(&super::delivery::with_expected_completion(&d.0, operation(&item), &item)),
        Err(r) => r,
    }
}

/// `DELETE /gemgate/v1/operations/{id}`: the request's result becomes CANCELLED unless it already
/// has one; a submitted job whose requests are all cancelled is cancelled upstream.
pub async fn cancel_operation(
    State(state): State<DeferralState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (d, item) = match own_item(&state, &headers, q.as_deref(), &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let id = item.id.as_str();
    let now = d.0.clock.now_ms();
    let cancelled = ItemResult::error(499, "gemgate: the request was cancelled by the client");
    match d.queue().resolve(id, &cancelled, now).await {
        Ok(true) => {
            metrics::counter!(crate::telemetry::DEFER_ITEMS, "outcome" => "cancelled").increment(1);
            super::results_changed(&d.0);
            d.0.poke.notify_one();
        }
        Ok(false) => {}
        Err(e) => return unavailable(e),
    }
    match d.queue().item(id).await {
        Ok(Some(item)) => json_ok(&operation(&item)),
        Ok(None) => not_found(id),
        Err(e) => unavailable(e),
    }
}

/// `GET /gemgate/v1/operations?pageSize=&pageToken=`: the caller's operations, newest first.
pub async fn list_operations(
    State(state): State<DeferralState>,
    Query(params): Query<HashMap<String, String>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (d, scope) = match caller(&state, &headers, q.as_deref()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let size = params.get("pageSize").and_then(|s| s.parse::<usize>().ok()).unwrap_or(50).clamp(1, 1000);
    let after = params.get("pageToken").filter(|t| !t.is_empty());
    match d.queue().items_of_scope(&scope, size, after.map(String::as_str)).await {
        Ok(items) => {
            let ops: Vec<_> =
                items.iter().map(|i| super::delivery::with_expected_completion(&d.0, operation(i), i)).collect();
            let mut body = json!({"operations": ops});
            if items.len() == size {
                if let Some(last) = items.last() {
                    body["nextPageToken"] = json!(last.id);
                }
            }
            json_ok(&body)
        }
        Err(e) => unavailable(e),
    }
}
