//! The gateway's own API under `/gemgate/v1/`: the cache registry and the prefixes the caching
//! policy tracks (scopes and prefixes shown as hashes only, never prompt text or keys).

use crate::clock::rfc3339;
use crate::gemini::GeminiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Most prefixes one `/gemgate/v1/prefixes` answer lists.
const MAX_PREFIXES: usize = 1_000;

/// `GET /gemgate/v1/caches`: the caches the gateway made and still tracks.
pub async fn list_caches(State(state): State<AppState>) -> Json<Value> {
    let caching = state.caching();
    let mut entries = caching.map(|c| c.entries()).unwrap_or_default();
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
                // The policy's reason for its current decision on this prefix, when this
                // replica tracks it.
                "reason": caching.and_then(|c| c.reason(&e.key)).map(|r| r.as_str()),
            })
        })
        .collect();
    Json(json!({ "caches": caches }))
}

/// `GET /gemgate/v1/prefixes?limit=`: the prefix boundaries the caching policy tracks on this
/// replica, most recently seen first (default 100, at most 1,000): tokens, sightings, when last
/// seen, the cache the policy knows of, and the reason for its current decision.
pub async fn list_prefixes(State(state): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if (1..=MAX_PREFIXES).contains(&l) => l,
        Some(_) => {
            return GeminiError::new(400, format!("gemgate: limit must be between 1 and {MAX_PREFIXES}"))
                .into_response();
        }
    };
    let prefixes: Vec<Value> = state
        .caching()
        .map(|c| c.prefixes(limit))
        .unwrap_or_default()
        .iter()
        .map(|p| {
            json!({
                "prefixKey": p.key,
                "tokens": p.tokens,
                "sightings": p.sightings,
                "lastSeenTime": p.last_seen_ms.map(rfc3339),
                "cache": p.cache_expire_ms.map(|e| json!({"expireTime": rfc3339(e), "hits": p.cache_hits})),
                "reason": p.reason.as_str(),
            })
        })
        .collect();
    Json(json!({ "prefixes": prefixes })).into_response()
}
