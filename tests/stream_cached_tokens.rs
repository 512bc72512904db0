//! A JSON-array stream (`streamGenerateContent` without `alt=sse`) served from a cache reports
//! the cached tokens in `x-gemgate-cached-tokens`, like the SSE and unary forms.

mod support;

use serde_json::json;

#[tokio::test]
async fn a_json_array_stream_from_a_cache_reports_its_cached_tokens() {
    let mut cfg = support::config(&support::emulator().await);
    cfg.caching.policy = "hits".into();
    cfg.caching.min_hits = 1;
    let gw = support::gateway(cfg).await;
    let system = "Rules of the house that every answer follows, stated at length. ".repeat(120);
    let body = |q: &str| json!({"systemInstruction": {"parts": [{"text": system}]}, "contents": [{"role": "user", "parts": [{"text": q}]}]});
    let send = |path: &'static str, q: &'static str| {
        support::client()
            .post(format!("{gw}/v1beta/models/gemini-2.5-flash:{path}"))
            .header("x-goog-api-key", "tenant")
            .json(&body(q))
            .send()
    };
    let first = send("generateContent", "first").await.unwrap();
    assert_eq!(first.headers()["x-gemgate-cache"], "created");
    let unary = send("generateContent", "second").await.unwrap();
    let unary_cached: u64 = unary.headers()["x-gemgate-cached-tokens"].to_str().unwrap().parse().unwrap();
    assert!(unary_cached > 0);
    let stream = send("streamGenerateContent", "third").await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["x-gemgate-cache"], "hit");
    let cached: u64 = stream.headers()["x-gemgate-cached-tokens"].to_str().unwrap().parse().unwrap();
    assert_eq!(cached, unary_cached);
    let chunks: serde_json::Value = stream.json().await.unwrap();
    let last = chunks.as_array().unwrap().last().unwrap();
    assert_eq!(last["usageMetadata"]["cachedContentTokenCount"].as_u64(), Some(cached), "{last}");
}
