//! Operations on existing batch jobs: get, list (inline responses left out), cancel, delete.

use super::BatchJob;
use super::BatchState;
use crate::emulator::auth::Caller;
use crate::emulator::http::{json_ok, paginate};
use crate::emulator::state::{EmulatorState, Store};
use crate::gemini::GeminiError;
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

fn not_found() -> GeminiError {
    GeminiError::not_found("Requested entity was not found.")
}

fn own<'a>(
    store: &'a mut Store,
    caller: &Caller,
    id: &str,
) -> Result<&'a mut BatchJob, GeminiError> {
    store
        .batches
        .get_mut(id)
        .filter(|j| &j.owner == caller)
        .ok_or_else(not_found)
}

pub fn get_one(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let mut store = state.store();
    store.settle_batches(state.config(), state.clock().now());
    Ok(json_ok(&own(&mut store, caller, id)?.to_json(true)))
}

pub fn list(state: &EmulatorState, caller: &Caller, q: &HashMap<String, String>) -> Response {
    let mut store = state.store();
    store.settle_batches(state.config(), state.clock().now());
    let mut mine: Vec<&BatchJob> = store
        .batches
        .values()
        .filter(|j| &j.owner == caller)
        .collect();
    mine.sort_by(|a, b| (b.create, &b.id).cmp(&(a.create, &a.id)));
    let (page, next) = paginate(
        mine.into_iter().map(|j| j.to_json(false)).collect(),
        q,
        50,
        1000,
    );
    let mut out = Map::new();
    if !page.is_empty() {
        out.insert("operations".into(), Value::Array(page));
    }
    if let Some(n) = next {
        out.insert("nextPageToken".into(), json!(n));
    }
    json_ok(&Value::Object(out))
}

pub fn cancel(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    store.settle_batches(state.config(), now);
    let job = own(&mut store, caller, id)?;
    if !job.state.done() {
        job.state = BatchState::Cancelled;
        job.update = now;
        job.end = Some(now);
    }
    Ok(json_ok(&json!({})))
}

pub fn delete(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let mut store = state.store();
    store.settle_batches(state.config(), state.clock().now());
    own(&mut store, caller, id)?;
    store.batches.remove(id);
    Ok(json_ok(&json!({})))
}
