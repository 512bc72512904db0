//! `/emulator/*` admin endpoints (no auth, never faulted): the billing ledger, a debug listing of
//! caches, and the virtual clock.

use super::caches;
use super::http::{json_ok, parse_query, timestamp};
use super::state::EmulatorState;
use crate::gemini::GeminiError;
use axum::response::{IntoResponse, Response};
use http::Method;
use serde_json::json;
use std::time::Duration;

/// The ledger JSON (`{"keys":{hash:{…}},"total":{…},"now":…}`), after settling batches and
/// expiring caches so every figure is current.
pub fn ledger_json(state: &EmulatorState) -> serde_json::Value {
    let now = state.clock().now();
    let mut store = state.store();
    store.settle_batches(state.config(), now);
    store.sweep_caches(now);
    let live = store.live_storage(now);
    let mut v = store.ledger.to_json(&live);
    v["now"] = json!(timestamp(now));
    v
}

impl EmulatorState {
    /// The ledger as `GET /emulator/ledger` returns it (for in-process tests).
    pub fn ledger(&self) -> serde_json::Value {
        ledger_json(self)
    }

    /// Clears the ledger, as `POST /emulator/ledger/reset`.
    pub fn reset_ledger(&self) {
        let now = self.clock().now();
        let mut store = self.store();
        store.settle_batches(self.config(), now);
        store.sweep_caches(now);
        store.ledger.reset(now);
    }
}

pub fn handle(state: &EmulatorState, method: &Method, path: &str, query: Option<&str>) -> Response {
    let q = parse_query(query);
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "/emulator/ledger") => json_ok(&ledger_json(state)),
        ("POST", "/emulator/ledger/reset") | ("DELETE", "/emulator/ledger") => {
            state.reset_ledger();
            json_ok(&json!({}))
        }
        ("GET", "/emulator/caches") => json_ok(&caches::debug_list(state)),
        ("GET", "/emulator/clock") => {
            json_ok(&json!({"now": timestamp(state.clock().now()), "speed": state.clock().speed()}))
        }
        ("POST", "/emulator/clock/advance") => {
            let secs = q
                .get("seconds")
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0);
            match secs {
                Some(s) => {
                    state.clock().advance(Duration::from_secs_f64(s));
                    json_ok(&json!({"now": timestamp(state.clock().now())}))
                }
                None => {
                    GeminiError::invalid_argument("seconds=N (N >= 0) is required").into_response()
                }
            }
        }
        ("GET", "/emulator/health") => json_ok(&json!({"status": "ok"})),
        _ => GeminiError::not_found(format!("No emulator admin endpoint {method} {path}"))
            .into_response(),
    }
}
