//! Random bodies on every route the gateway parses: 20,000 per route with
//! `GEMGATE_ADVERSARIAL_SLOW=1` (2,000 otherwise), from a fixed seed so a failure replays. Bodies
//! are random JSON in Gemini's vocabulary, then damaged at random. No answer may take over 10 s,
//! every error must be Gemini's error JSON, and the gateway must serve normally afterwards.

use crate::support;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEYS: [&str; 16] = [
    "contents",
    "role",
    "parts",
    "text",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "cachedContent",
    "generationConfig",
    "inlineData",
    "functionCall",
    "requests",
    "request",
    "messages",
    "model",
];

fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 5 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random_range(-1e12..1e12)),
        3 => json!(["user", "model", "system", "", "\u{0}", "é\u{ffff}", "cachedContents/x"][rng.random_range(0..7)]),
        4 | 5 => {
            let n = rng.random_range(0..5);
            Value::Object(
                (0..n).map(|_| (KEYS[rng.random_range(0..KEYS.len())].to_string(), value(rng, depth + 1))).collect(),
            )
        }
        _ => Value::Array((0..rng.random_range(0..4)).map(|_| value(rng, depth + 1)).collect()),
    }
}

fn body(rng: &mut StdRng) -> Vec<u8> {
    let mut top = serde_json::Map::new();
    top.insert("contents".into(), json!([{"role": "user", "parts": [{"text": "hi"}]}]));
    for _ in 0..rng.random_range(0..4) {
        top.insert(KEYS[rng.random_range(0..KEYS.len())].into(), value(rng, 0));
    }
    let mut b = serde_json::to_vec(&Value::Object(top)).unwrap();
    if rng.random_bool(0.4) {
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..3) {
                0 => b[at] = rng.random(),
                1 => b.truncate(at.max(1)),
                _ => b.insert(at, b"{}[]\",:\\"[rng.random_range(0..8)]),
            }
        }
    }
    b
}

/// A status and body, or why there was no answer.
type Answer = Result<(u16, bytes::Bytes), String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_on_every_parsed_route_get_answers_in_time_and_gemini_errors() {
    let per_route = if crate::slow() { 20_000 } else { 2_000 };
    let gw = support::gateway(support::config(&support::emulator().await)).await;
    let client = support::client();
    let routes: [(&str, Option<&str>); 5] = [
        ("/v1beta/models/gemini-2.5-flash:generateContent", None),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", None),
        ("/v1beta/models/gemini-2.5-flash:countTokens", None),
        ("/v1beta/models/gemini-2.5-flash:batchGenerateContent", None),
        ("/v1beta/models/gemini-2.5-flash:generateContent", Some("flex")),
    ];
    for (r, (path, defer)) in routes.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(1000 + r as u64);
        let bodies: Vec<Vec<u8>> = (0..per_route).map(|_| body(&mut rng)).collect();
        let started = Instant::now();
        let results: Vec<(Duration, Answer)> = futures::stream::iter(bodies)
            .map(|b| {
                let mut req = client
                    .post(format!("{gw}{path}"))
                    .header("x-goog-api-key", "fuzz-key")
                    .header("content-type", "application/json")
                    .timeout(Duration::from_secs(10))
                    .body(b);
                if let Some(d) = defer {
                    req = req.header("x-gemgate-defer", *d);
                }
                async move {
                    let t = Instant::now();
                    let r = match req.send().await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            resp.bytes().await.map(|b| (status, b)).map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    (t.elapsed(), r)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let slowest = results.iter().map(|(t, _)| *t).max().unwrap_or_default();
        let failed: Vec<&String> = results.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
        let errors = results.iter().filter_map(|(_, r)| r.as_ref().ok()).filter(|(s, _)| *s >= 400).count();
        let not_gemini: Vec<String> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .filter(|(s, b)| *s >= 400 && !support::is_gemini_error(b))
            .map(|(s, b)| format!("{s}: {}", String::from_utf8_lossy(b)))
            .collect();
        println!(
            "{path} {defer:?}: {per_route} bodies in {:.1} s, {errors} errors, slowest {slowest:?}",
            started.elapsed().as_secs_f64()
        );
        assert!(failed.is_empty(), "{path}: {} requests got no answer (first: {})", failed.len(), failed[0]);
        assert!(slowest < Duration::from_secs(10), "{path}: slowest answer {slowest:?}");
        assert!(
            not_gemini.is_empty(),
            "{path}: {} answers were not Gemini errors, first: {}",
            not_gemini.len(),
            not_gemini[0]
        );
    }
    let ok = client
        .post(format!("{gw}{}", routes[0].0))
        .header("x-goog-api-key", "fuzz-key")
        .body(r#"{"contents":[{"role":"user","parts":[{"text":"hello"}]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "a valid request still works after the fuzzing");
}
