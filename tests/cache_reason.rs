//! Why a request was or was not served from a gateway cache, told over real HTTP against the
//! emulator: the `x-gemgate-cache-reason` header, `usageMetadata.gemgate.cacheReason`, and the
//! policy's per-prefix state in `/gemgate/v1/prefixes` and `/gemgate/v1/caches`.

mod support;

use futures::StreamExt;
use gemgate::config::Config;
use serde_json::{Value, json};

const MODEL: &str = "gemini-2.5-flash";

fn request(system: &str, question: &str) -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": system}], "role": "user"},
        "contents": [{"role": "user", "parts": [{"text": question}]}]
    })
}

async fn gateway(tune: impl FnOnce(&mut Config)) -> String {
    let emu = support::emulator().await;
    let mut cfg = support::config(&emu);
    tune(&mut cfg);
    support::gateway(cfg).await
}

/// Sends one generateContent; returns (status, x-gemgate-cache, x-gemgate-cache-reason, body).
async fn generate(gw: &str, key: &str, body: &Value) -> (u16, String, String, Value) {
    let resp = support::post(&format!("{gw}/v1beta/models/{MODEL}:generateContent"), key, body).await;
    let header = |name: &str| resp.headers().get(name).map_or(String::new(), |v| v.to_str().unwrap().to_string());
    let (cache, reason) = (header("x-gemgate-cache"), header("x-gemgate-cache-reason"));
    (resp.status().as_u16(), cache, reason, resp.json().await.unwrap())
}

async fn reason(gw: &str, key: &str, body: &Value) -> String {
    let (status, _, reason, v) = generate(gw, key, body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usageMetadata"]["gemgate"]["cacheReason"], reason, "the body says what the header says");
    reason
}

#[tokio::test]
async fn each_request_says_why_it_was_or_was_not_served_from_a_cache() {
    let gw = gateway(|_| {}).await;
    let system = support::document("reasons", 9_000);
    assert_eq!(reason(&gw, "k", &request("be brief", "hi")).await, "below-minimum");
    let mut seq = Vec::new();
    for i in 0..4 {
        seq.push(reason(&gw, "k", &request(&system, &format!("Question {i}?"))).await);
    }
    assert_eq!(seq, ["first-sight", "created", "hit", "hit"]);

    // A stream says it in its headers, before any event.
    let resp = support::post(
        &format!("{gw}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"),
        "k",
        &request(&system, "Streamed?"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-gemgate-cache-reason"], "hit");
    let mut events = resp.bytes_stream();
    while events.next().await.is_some() {}

    // The client's own cache is left alone, and said so (the emulator refuses the made-up name).
    let mut own = request(&system, "mine");
    own["cachedContent"] = json!("cachedContents/made-up");
    let (_, cache, why, _) = generate(&gw, "k", &own).await;
    assert_eq!((cache.as_str(), why.as_str()), ("bypass", "client-cache"));
}

#[tokio::test]
async fn repeats_wait_while_implicit_caching_is_measured_and_caching_off_says_so() {
    // The default number of probes: nothing is created before two returns went out uncached.
    let gw = gateway(|c| c.caching.cost.implicit_probes = 2).await;
    let system = support::document("probes", 9_000);
    let mut seen = Vec::new();
    for i in 0..4 {
        seen.push(reason(&gw, "k", &request(&system, &format!("Q{i}"))).await);
    }
    assert_eq!(seen, ["first-sight", "probing-implicit", "probing-implicit", "created"]);

    let off = gateway(|c| c.caching.enabled = false).await;
    let (status, cache, why, _) = generate(&off, "k", &request(&system, "Q")).await;
    assert_eq!((status, cache.as_str(), why.as_str()), (200, "bypass", "caching-off"));
}

#[tokio::test]
async fn the_prefix_listing_shows_the_policys_state_without_prompt_text_or_keys() {
    let token = "admin-secret";
    let gw = gateway(|c| c.server.admin_token = token.into()).await;
    let system = support::document("listing", 9_000);
    let key = "listing-api-key-123";
    for i in 0..3 {
        reason(&gw, key, &request(&system, &format!("Q{i}"))).await;
    }
    // Another tenant's prefix, seen once.
    reason(&gw, "other-key", &request(&support::document("other", 6_000), "Q")).await;

    let admin = |path: &str| support::client().get(format!("{gw}{path}")).bearer_auth(token);
    let prefixes: Value = admin("/gemgate/v1/prefixes").send().await.unwrap().json().await.unwrap();
    let text = prefixes.to_string();
    assert!(!text.contains("Clause") && !text.contains(key) && !text.contains("other-key"), "{text}");
    let list = prefixes["prefixes"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{prefixes}");
    let (newest, cached) = (&list[0], &list[1]);
    assert_eq!((newest["sightings"].as_u64(), newest["reason"].as_str()), (Some(1), Some("first-sight")));
    assert!(newest["cache"].is_null());
    assert_eq!((cached["sightings"].as_u64(), cached["reason"].as_str()), (Some(3), Some("hit")), "{cached}");
    assert!(cached["tokens"].as_u64().unwrap() > 8_000, "{cached}");
    assert_eq!(cached["cache"]["hits"], 1, "created on the 2nd request, read on the 3rd");
    assert!(cached["lastSeenTime"].as_str().unwrap().ends_with('Z'));

    // The cache listing names the same prefix, with the same reason.
    let caches: Value = admin("/gemgate/v1/caches").send().await.unwrap().json().await.unwrap();
    assert_eq!(caches["caches"][0]["prefixKey"], cached["prefixKey"]);
    assert_eq!(caches["caches"][0]["reason"], "hit");

    // Bounded by `limit` (1..=1,000); anything else is a Gemini-style error.
    let one: Value = admin("/gemgate/v1/prefixes?limit=1").send().await.unwrap().json().await.unwrap();
    assert_eq!(one["prefixes"].as_array().unwrap().len(), 1);
    for bad in ["0", "1001", "many"] {
        let r = admin(&format!("/gemgate/v1/prefixes?limit={bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!((e["error"]["code"].as_u64(), e["error"]["status"].as_str()), (Some(400), Some("INVALID_ARGUMENT")));
    }
    // Behind the admin token like the other admin endpoints.
    let r = support::client().get(format!("{gw}/gemgate/v1/prefixes")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
