//! The requests the scenarios send.

use crate::client::RequestSpec;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde_json::json;

pub const API_KEY: &str = "bench-key-0001";
pub const MODEL: &str = "gemini-2.5-flash";

/// Deterministic prose-like text of about `chars` characters.
pub fn text(chars: usize, seed: u64) -> String {
    const WORDS: [&str; 32] = [
        "the",
        "gateway",
        "forwards",
        "every",
        "request",
        "to",
        "upstream",
        "model",
        "and",
        "streams",
        "answers",
        "back",
        "while",
        "caching",
        "long",
        "shared",
        "prefixes",
        "of",
        "system",
        "instructions",
        "tools",
        "documents",
        "contracts",
        "with",
        "clauses",
        "about",
        "payment",
        "terms",
        "delivery",
        "schedules",
        "penalties",
        "reviews",
    ];
    let mut s = String::with_capacity(chars + 16);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while s.len() < chars {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s.push_str(WORDS[(x >> 59) as usize]);
        s.push(if (x >> 20) % 17 == 0 { '.' } else { ' ' });
    }
    s.truncate(chars);
    s
}

fn headers(extra: &[(&'static str, &'static str)]) -> Vec<(HeaderName, HeaderValue)> {
    let mut h = vec![
        (
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("application/json"),
        ),
        (
            HeaderName::from_static("x-goog-api-key"),
            HeaderValue::from_static(API_KEY),
        ),
    ];
    for (k, v) in extra {
        h.push((HeaderName::from_static(k), HeaderValue::from_static(v)));
    }
    h
}

fn post(
    path: String,
    body: serde_json::Value,
    extra: &[(&'static str, &'static str)],
) -> RequestSpec {
    RequestSpec {
        method: Method::POST,
        path,
        headers: headers(extra),
        body: Bytes::from(serde_json::to_vec(&body).expect("json")),
        expect: None,
    }
}

fn single_turn(chars: usize) -> serde_json::Value {
    json!({
        "contents": [{"role": "user", "parts": [{"text": text(chars, 1)}]}],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256}
    })
}

/// ~1 KB generateContent: one user turn, no system instruction, so the gateway has no cacheable
/// boundary (outcome `bypass` after fingerprinting): the plain passthrough of a generate call.
pub fn small_generate() -> RequestSpec {
    post(
        format!("/v1beta/models/{MODEL}:generateContent"),
        single_turn(900),
        &[],
    )
}

/// ~1 KB countTokens: not intercepted by the gateway, streamed straight through.
pub fn small_count_tokens() -> RequestSpec {
    post(
        format!("/v1beta/models/{MODEL}:countTokens"),
        json!({"contents": [{"role": "user", "parts": [{"text": text(900, 1)}]}]}),
        &[],
    )
}

/// ~200 KB generateContent (single turn: parsed and fingerprinted by the gateway, not cached).
pub fn large_generate() -> RequestSpec {
    post(
        format!("/v1beta/models/{MODEL}:generateContent"),
        single_turn(200 * 1024),
        &[],
    )
}

/// 20-event SSE stream of a ~1 KB request.
pub fn stream20() -> RequestSpec {
    post(
        format!("/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"),
        single_turn(900),
        &[("x-emulator-stream-chunks", "20")],
    )
}

/// 8,000-token (~32 KB) system instruction shared by every request plus one short user turn:
/// through the gateway (caching on) every request after the first is a cache hit and is sent
/// upstream rewritten to reference the cache.
pub fn cache_hit() -> RequestSpec {
    let mut s = post(
        format!("/v1beta/models/{MODEL}:generateContent"),
        json!({
            "systemInstruction": {"parts": [{"text": text(32_000, 7)}]},
            "contents": [{"role": "user", "parts": [{"text": "Summarise the payment terms in two sentences."}]}],
            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256}
        }),
        &[],
    );
    s.expect = None;
    s
}
