//! Batch submission that keeps failing with a transient error is retried with backoff up to
//! `deferral.max_submit_attempts`, then the job fails and its requests get an error result,
//! instead of being retried forever.

mod support;

use axum::extract::Request;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An upstream that answers everything with 503 and counts the batch calls (creations, and the
/// look-ups that precede a retry).
async fn unavailable_batches() -> (String, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    let router = axum::Router::new().fallback(move |req: Request| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_string();
            if path.ends_with(":batchGenerateContent") || path.contains("/batches") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            let body = json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}});
            (http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    });
    (format!("http://{}", support::serve(router).await), attempts)
}

#[tokio::test]
async fn transient_submission_errors_are_retried_a_bounded_number_of_times() {
    let (up, attempts) = unavailable_batches().await;
    let mut cfg = support::config(&up);
    cfg.caching.enabled = false;
    let d = &mut cfg.deferral;
    d.tick = Duration::from_millis(20);
    d.max_age = Duration::from_millis(50);
    d.poll_initial = Duration::from_millis(50);
    d.poll_max = Duration::from_millis(100);
    d.max_submit_attempts = 3;
    let gw = support::gateway(cfg).await;
    let client = support::client();
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "later is fine"}]}]});
    let resp = client
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", "k")
        .header("x-gemgate-defer", "batch")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let op: Value = resp.json().await.unwrap();
    let name = op["name"].as_str().unwrap().to_string();
    let started = Instant::now();
    let done = loop {
        let op: Value = support::get_json(&format!("{gw}/gemgate/v1/{name}"), Some("k")).await;
        if op["done"] == true {
            break op;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still not done: {op}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["error"]["code"], 503, "{done}");
    assert!(done["error"]["message"].as_str().unwrap().contains("3 attempts"), "{done}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "three attempts (a creation, then two look-ups), then no more");
}
