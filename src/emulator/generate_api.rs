//! Handlers of generateContent, streamGenerateContent and countTokens: parse, apply flex
//! shedding, build the effective prompt, generate, bill, respond.

use super::auth::Caller;
use super::faults::{self, Plan};
use super::generate;
use super::http::{header_str, json_ok};
use super::ledger::Tier;
use super::prompt;
use super::state::EmulatorState;
use super::stream::{self, Framing};
use super::tokens::{self, Counts};
use crate::gemini::GeminiError;
use crate::gemini::canonical::get;
use axum::response::Response;
use http::HeaderMap;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub const CHUNKS_HEADER: &str = "x-emulator-stream-chunks";

/// The tier a body asks for (`serviceTier` / `service_tier`, lowercase or the enum spelling).
pub fn asked_tier(body: &Map<String, Value>) -> Tier {
    let t = get(body, "serviceTier").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    match t.trim_start_matches("service_tier_") {
        "flex" => Tier::Flex,
        "priority" => Tier::Priority,
        _ => Tier::Standard,
    }
}

/// Everything a generate call needs besides the body.
pub struct Call<'a> {
    pub state: &'a EmulatorState,
    pub caller: &'a Caller,
    /// `models/x` or `tunedModels/x`.
    pub model: String,
    pub stream: bool,
    pub headers: &'a HeaderMap,
    pub query: &'a HashMap<String, String>,
    pub plan: Plan,
}

pub fn generate(call: Call<'_>, body: &Value) -> Result<Response, GeminiError> {
    let state = call.state;
    let obj = body.as_object().cloned().unwrap_or_default();
    let mut tier = asked_tier(&obj);
    let flex = tier == Tier::Flex;
    if tier == Tier::Priority && state.chance(state.config().priority.downgrade_rate) {
        tier = Tier::Standard;
    }
    if flex && state.chance(state.config().flex.shed_rate) {
        state.store().ledger.account(&call.caller.0).flex_shed += 1;
        return Err(faults::error_for(state.config().flex.shed_status, state.config().faults.retry_delay));
    }
    let now = state.clock().now();
    let p = {
        let mut store = state.store();
        let mut p = prompt::build(&mut store, now, call.caller, &call.model, &obj)?;
        let window = state.config().caching.implicit_window;
        if !window.is_zero() {
            let min = state.config().min_cache_tokens(call.model.trim_start_matches("models/"));
            let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
            store.implicit.apply(&mut p, call.caller, now, window, min);
        }
        p
    };
    // Hashing and generating happen outside the store lock so concurrent requests don't queue.
    let mut out = generate::generate(&state.config().generation, &p);
    out.service_tier = tier.as_str();
    let method = if call.stream { "streamGenerateContent" } else { "generateContent" };
    let faulted = call.plan.drop || (call.stream && call.plan.midstream_error);
    {
        let mut store = state.store();
        let acct = store.ledger.account(&call.caller.0);
        acct.call(method);
        if !faulted {
            acct.bill(tier, out.usage());
            acct.generation_usd += super::ledger::list_price_usd(&call.model, tier, out.usage(), now);
        }
    }
    if !call.stream {
        if call.plan.drop {
            return Ok(stream::dropped());
        }
        return Ok(json_ok(&out.response_json()));
    }
    let chunks = header_str(call.headers, CHUNKS_HEADER)
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(state.config().generation.stream_chunks);
    let framing = if call.query.get("alt").is_some_and(|a| a == "sse") { Framing::Sse } else { Framing::JsonArray };
    Ok(stream::respond(framing, out.stream_events(chunks), state.config().generation.chunk_delay, &call.plan))
}

/// `countTokens`, in its `contents` form or its `generateContentRequest` form.
pub fn count_tokens(
    state: &EmulatorState,
    caller: &Caller,
    model: &str,
    body: &Value,
) -> Result<Response, GeminiError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let nested = get(&obj, "generateContentRequest").and_then(Value::as_object);
    let (prompt_counts, cached) = match nested {
        Some(_) if get(&obj, "contents").is_some() => {
            return Err(GeminiError::invalid_argument(
                "GenerateContentRequest and contents can not be both set. Please set only one of them.",
            ));
        }
        Some(req) => {
            let inner_model = get(req, "model")
                .and_then(Value::as_str)
                .map_or(model.to_string(), |m| if m.contains('/') { m.to_string() } else { format!("models/{m}") });
            let now = state.clock().now();
            let mut store = state.store();
            let p = prompt::build(&mut store, now, caller, &inner_model, req)?;
            (p.counts, p.cached)
        }
        None => {
            let contents = get(&obj, "contents").and_then(Value::as_array).cloned().unwrap_or_default();
            (tokens::prompt_counts(None, None, None, &contents), Counts::default())
        }
    };
    let mut out = Map::new();
    if prompt_counts.total() > 0 {
        out.insert("totalTokens".into(), json!(prompt_counts.total()));
    }
    if cached.total() > 0 {
        out.insert("cachedContentTokenCount".into(), json!(cached.total()));
    }
    let pd = prompt_counts.details();
    if !pd.is_empty() {
        out.insert("promptTokensDetails".into(), Value::Array(pd));
    }
    let cd = cached.details();
    if !cd.is_empty() {
        out.insert("cacheTokensDetails".into(), Value::Array(cd));
    }
    Ok(json_ok(&Value::Object(out)))
}
