//! The gateway's own API under `/gemgate/v1/`: the cache registry (scopes shown as hashes only).

use crate::clock::rfc3339;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// `GET /gemgate/v1/caches`: the caches the gateway made and still tracks.
pub async fn list_caches(State(state): State<AppState>) -> Json<Value> {
    let mut entries = state.caching().map(|c| c.entries()).unwrap_or_default();
    entries.sort_by_key(|e| std::cmp::Reverse(e.last_used_ms));
    let caches: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "model": e.model,
                "scope": &e.scope[..e.scope.len().min(16)],
                "prefixKey": e.key,
                "tokens": e.tokens,
                "contents": e.contents,
                "createTime": rfc3339(e.created_ms),
                "expireTime": rfc3339(e.expire_ms),
                "lastUsedTime": rfc3339(e.last_used_ms),
                "hits": e.hits,
            })
        })
        .collect();
    Json(json!({ "caches": caches }))
}
