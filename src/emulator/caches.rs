//! cachedContents: create / get / list / patch / delete, lazy expiry on the emulator clock,
//! per-key scoping, the per-model minimum size, and storage token-seconds for the ledger.

use super::auth::Caller;
use super::clock::{delta, seconds_between};
use super::http::{json_ok, paginate, parse_proto_duration, parse_timestamp, random_id, timestamp};
use super::prompt::{CACHE_NOT_FOUND, system_of};
pub use super::records::CacheEntry;
use super::state::{EmulatorState, Store};
use super::tokens::prompt_counts;
use crate::gemini::GeminiError;
use crate::gemini::canonical::{get, is_empty};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

impl CacheEntry {
    /// The resource as get/list/create return it (INPUT_ONLY fields left out).
    pub fn to_json(&self) -> Value {
        json!({
            "name": format!("cachedContents/{}", self.id),
            "model": self.model,
            "createTime": timestamp(self.create),
            "updateTime": timestamp(self.update),
            "expireTime": timestamp(self.expire),
            "displayName": self.display_name,
            "usageMetadata": {"totalTokenCount": self.counts.total()},
        })
    }

    /// Token-seconds of storage from creation (or the last ledger reset) to `until`, capped at expiry.
    fn storage_until(&self, until: DateTime<Utc>, since: Option<DateTime<Utc>>) -> f64 {
        let end = until.min(self.expire);
        let start = since.map_or(self.create, |s| s.max(self.create));
        seconds_between(start, end).max(0.0) * self.counts.total() as f64
    }
}

impl Store {
    /// Drops expired caches, charging their storage up to expiry.
    pub fn sweep_caches(&mut self, now: DateTime<Utc>) {
        let expired: Vec<String> = self.caches.values().filter(|c| c.expire <= now).map(|c| c.id.clone()).collect();
        for id in expired {
            if let Some(c) = self.caches.remove(&id) {
                let secs = c.storage_until(c.expire, self.ledger.since);
                self.ledger.account(&c.owner.0).cache_storage_token_seconds += secs;
            }
        }
    }

    /// Storage token-seconds accrued so far by live caches, per owner.
    pub fn live_storage(&self, now: DateTime<Utc>) -> HashMap<String, f64> {
        let mut out: HashMap<String, f64> = HashMap::new();
        for c in self.caches.values() {
            *out.entry(c.owner.0.clone()).or_default() += c.storage_until(now, self.ledger.since);
        }
        out
    }

    fn own_cache(&mut self, caller: &Caller, id: &str, now: DateTime<Utc>) -> Result<&mut CacheEntry, GeminiError> {
        self.sweep_caches(now);
        self.caches
            .get_mut(id)
            .filter(|c| &c.owner == caller)
            .ok_or_else(|| GeminiError::permission_denied(CACHE_NOT_FOUND))
    }
}

const ONEOF_TTL: &str =
    "Invalid value at 'cached_content' (oneof), oneof field 'expiration' is already set. Cannot set 'ttl'";

/// New expiry from `ttl` or `expireTime`; `Ok(None)` when neither is given.
fn expiration(body: &Map<String, Value>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, GeminiError> {
    let ttl = get(body, "ttl");
    let expire = get(body, "expireTime");
    match (ttl, expire) {
        (Some(_), Some(_)) => Err(GeminiError::invalid_argument(ONEOF_TTL)),
        (Some(t), None) => {
            let d = t.as_str().and_then(parse_proto_duration).ok_or_else(|| {
                GeminiError::invalid_argument(format!(
                    "Invalid value at 'cached_content.ttl' (type.googleapis.com/google.protobuf.Duration), {t}"
                ))
            })?;
            Ok(Some(now + delta(d)))
        }
        (None, Some(e)) => {
            let t = e.as_str().and_then(parse_timestamp).ok_or_else(|| {
                GeminiError::invalid_argument(format!(
                    "Invalid value at 'cached_content.expire_time' (type.googleapis.com/google.protobuf.Timestamp), {e}"
                ))
            })?;
            Ok(Some(t))
        }
        (None, None) => Ok(None),
    }
}

/// `POST /{v}/cachedContents`.
pub fn create(state: &EmulatorState, caller: &Caller, version: &str, body: &Value) -> Result<Response, GeminiError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let model_raw = get(&obj, "model").and_then(Value::as_str).unwrap_or("");
    if model_raw.is_empty() {
        return Err(GeminiError::invalid_argument(
            "* CreateCachedContentRequest.cached_content.model: model is required\n",
        ));
    }
    let id = model_raw.strip_prefix("models/").unwrap_or(model_raw);
    let known = state.config().model(id).is_some_and(|m| m.supports("createCachedContent"));
    if !known {
        return Err(GeminiError::not_found(format!(
            "models/{id} is not found for API version {version}, or is not supported for createCachedContent. Call ListModels to see the list of available models and their supported methods."
        )));
    }
    let now = state.clock().now();
    let expire = expiration(&obj, now)?.unwrap_or(now + delta(state.config().caching.default_ttl));
    let system = system_of(&obj);
    let tools = get(&obj, "tools").filter(|v| !is_empty(Some(v))).cloned();
    let tool_config = get(&obj, "toolConfig").filter(|v| !is_empty(Some(v))).cloned();
    let contents: Vec<Value> = get(&obj, "contents").and_then(Value::as_array).cloned().unwrap_or_default();
    let counts = prompt_counts(system.as_ref(), tools.as_ref(), tool_config.as_ref(), &contents);
    let min = state.config().min_cache_tokens(id);
    if counts.total() < min {
        return Err(GeminiError::invalid_argument(format!(
            "Cached content is too small. total_token_count={}, min_total_token_count={min}",
            counts.total()
        )));
    }
    let entry = CacheEntry {
        owner: caller.clone(),
        id: random_id(12),
        model: format!("models/{id}"),
        display_name: get(&obj, "displayName").and_then(Value::as_str).unwrap_or("").to_string(),
        system,
        tools,
        tool_config,
        contents,
        counts,
        create: now,
        update: now,
        expire,
    };
    let json = entry.to_json();
    let mut store = state.store();
    let acct = store.ledger.account(&caller.0);
    acct.cache_creations += 1;
    acct.cache_creation_tokens += counts.total();
    store.caches.insert(entry.id.clone(), entry);
    Ok(json_ok(&json))
}

pub fn get_one(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    Ok(json_ok(&store.own_cache(caller, id, now)?.to_json()))
}

pub fn list(state: &EmulatorState, caller: &Caller, q: &HashMap<String, String>) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    store.sweep_caches(now);
    let mut mine: Vec<&CacheEntry> = store.caches.values().filter(|c| &c.owner == caller).collect();
    mine.sort_by(|a, b| (a.create, &a.id).cmp(&(b.create, &b.id)));
    let (page, next) = paginate(mine.into_iter().map(CacheEntry::to_json).collect(), q, 100, 1000);
    let mut out = Map::new();
    if !page.is_empty() {
        out.insert("cachedContents".into(), Value::Array(page));
    }
    if let Some(n) = next {
        out.insert("nextPageToken".into(), json!(n));
    }
    Ok(json_ok(&Value::Object(out)))
}

/// `PATCH /{v}/cachedContents/{id}`: only the expiration can change; no updateMask needed.
pub fn patch(state: &EmulatorState, caller: &Caller, id: &str, body: &Value) -> Result<Response, GeminiError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    if obj.contains_key("name") {
        return Err(GeminiError::invalid_argument(
            "Invalid value at 'cached_content' (oneof), oneof field '_name' is already set. Cannot set 'name'",
        ));
    }
    let now = state.clock().now();
    let new_expire = expiration(&obj, now)?;
    let mut store = state.store();
    let entry = store.own_cache(caller, id, now)?;
    if let Some(e) = new_expire {
        entry.expire = e;
        entry.update = now;
    }
    let json = entry.to_json();
    if new_expire.is_some() {
        store.ledger.account(&caller.0).cache_ttl_updates += 1;
    }
    store.sweep_caches(now);
    Ok(json_ok(&json))
}

pub fn delete(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    store.own_cache(caller, id, now)?;
    if let Some(c) = store.caches.remove(id) {
        let secs = c.storage_until(now, store.ledger.since);
        let acct = store.ledger.account(&caller.0);
        acct.cache_storage_token_seconds += secs;
        acct.cache_deletions += 1;
    }
    Ok(json_ok(&json!({})))
}

/// `GET /emulator/caches`: every live cache, owners hashed.
pub fn debug_list(state: &EmulatorState) -> Value {
    let now = state.clock().now();
    let mut store = state.store();
    store.sweep_caches(now);
    let mut all: Vec<Value> = store
        .caches
        .values()
        .map(|c| {
            let mut j = c.to_json();
            j["owner"] = json!(c.owner.0);
            j
        })
        .collect();
    all.sort_by(|a, b| a["createTime"].as_str().cmp(&b["createTime"].as_str()));
    json!({"cachedContents": all, "now": timestamp(now)})
}
