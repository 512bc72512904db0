//! A `cachedContents.create` that hangs must not slow the requests that share its prefix: they
//! wait at most `caching.create_wait` from the creation's start, then go uncached at once; and
//! the creation itself gives up after `caching.create_timeout`, not `upstream.timeout`.

mod support;

use axum::extract::Request;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// In front of the emulator: `POST .../cachedContents` never answers; the rest is forwarded.
async fn hanging_creates(emulator: &str) -> (String, Arc<AtomicUsize>) {
    let creates = Arc::new(AtomicUsize::new(0));
    let (seen, emulator, http) = (creates.clone(), emulator.to_string(), reqwest::Client::new());
    let router = axum::Router::new().fallback(move |req: Request| {
        let (seen, emulator, http) = (seen.clone(), emulator.clone(), http.clone());
        async move {
            let (parts, body) = req.into_parts();
            if parts.method == http::Method::POST && parts.uri.path().ends_with("/cachedContents") {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut headers = parts.headers.clone();
            headers.remove("host");
            let pq = parts.uri.path_and_query().unwrap().as_str();
            let resp = http.request(parts.method, format!("{emulator}{pq}")).headers(headers).body(body);
            let resp = resp.send().await.unwrap();
            (resp.status(), resp.bytes().await.unwrap())
        }
    });
    (format!("http://{}", support::serve(router).await), creates)
}

#[tokio::test]
async fn a_hung_creation_delays_requests_only_within_create_wait() {
    let emulator = support::emulator().await;
    let (upstream, creates) = hanging_creates(&emulator).await;
    let mut cfg = support::config(&upstream);
    cfg.caching.policy = "hits".into();
    cfg.caching.min_hits = 1;
    cfg.caching.create_wait = Duration::from_millis(500);
    cfg.caching.create_timeout = Duration::from_secs(2);
    let gw = support::gateway(cfg).await;
    let system = "A long shared instruction that is worth caching. ".repeat(200);
    let body = json!({
        "systemInstruction": {"parts": [{"text": system}]},
        "contents": [{"role": "user", "parts": [{"text": "question"}]}]
    });
    let send = || async {
        let started = Instant::now();
        let resp = support::client()
            .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
            .header("x-goog-api-key", "tenant")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let cache = resp.headers().get("x-gemgate-cache").unwrap().to_str().unwrap().to_string();
        (cache, started.elapsed())
    };
    let (first, took) = send().await;
    assert_eq!(creates.load(Ordering::SeqCst), 1, "the first request started the creation");
    assert_eq!(first, "miss");
    assert!(took >= Duration::from_millis(450), "the first request waited create_wait: {took:?}");
    // The creation is still hanging: later requests do not wait for it at all.
    for _ in 0..5 {
        let (cache, took) = send().await;
        assert_eq!(cache, "miss");
        assert!(took < Duration::from_millis(300), "a request waited {took:?} behind a hung creation");
    }
    assert_eq!(creates.load(Ordering::SeqCst), 1, "single flight");
    // After create_timeout the creation has failed (cooldown): requests still flow, uncached.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, took) = send().await;
    assert!(took < Duration::from_millis(300), "{took:?}");
    assert_eq!(creates.load(Ordering::SeqCst), 1, "no new attempt during the cooldown");
}
