//! Against the real binary: what a client can make the gateway remember stays bounded. Distinct
//! made-up API keys must not grow memory without end, and made-up paths and methods must not add
//! metric series. Each test prints its figure.

mod support;

use futures::StreamExt;
use support::binary::{rss_kib, spawn};

/// An upstream that refuses every key, as Google does for made-up ones.
async fn refusing_upstream() -> String {
    let router = axum::Router::new().fallback(|| async {
        let body = r#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#;
        (http::StatusCode::BAD_REQUEST, [("content-type", "application/json")], body)
    });
    format!("http://{}", support::serve(router).await)
}

async fn gateway(upstream: &str, db: &std::path::Path) -> (support::binary::Running, String) {
    let (up, db) = (upstream.to_string(), db.to_str().unwrap().to_string());
    tokio::task::spawn_blocking(move || {
        spawn(
            &["serve", "--listen", "127.0.0.1:0", "--upstream", &up],
            &[("GEMGATE_STORE__SQLITE_PATH", &db), ("RUST_LOG", "error")],
        )
    })
    .await
    .unwrap()
}

/// Sends `n` requests, 32 at a time; `make` builds request `i`.
async fn send_many(n: usize, make: impl Fn(usize) -> reqwest::RequestBuilder) {
    futures::stream::iter((0..n).map(|i| make(i).send()))
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.expect("the gateway answers");
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_thousand_made_up_keys_grow_rss_by_less_than_60_mb() {
    let up = refusing_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (running, gw) = gateway(&up, &dir.path().join("g.sqlite")).await;
    let client = reqwest::Client::new();
    let url = format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent");
    let body = r#"{"systemInstruction":{"parts":[{"text":"be brief"}]},"contents":[{"parts":[{"text":"hi"}]}]}"#;
    // Each request also carries a 16 KiB header: a stored credential that kept the request's
    // header buffer alive would keep this too (30,000 × 16 KiB = 480 MB).
    let padding = "p".repeat(16 * 1024);
    let make = |i: usize| {
        client
            .post(&url)
            .header("x-goog-api-key", format!("made-up-key-{i:08}-{}", i * 7919))
            .header("x-padding", &padding)
            .body(body)
    };
    send_many(1_000, &make).await;
    let before = rss_kib(running.id());
    send_many(30_000, |i| make(i + 1_000)).await;
    let after = rss_kib(running.id());
    let grown_mb = after.saturating_sub(before) as f64 / 1024.0;
    println!(
        "RSS after 1,000 warm-up requests: {before} KiB; after 30,000 distinct keys: {after} KiB (+{grown_mb:.1} MB)"
    );
    assert!(grown_mb < 60.0, "RSS grew by {grown_mb:.1} MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_made_up_paths_and_methods_add_few_metric_lines() {
    let up = refusing_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (_running, gw) = gateway(&up, &dir.path().join("g.sqlite")).await;
    let client = reqwest::Client::new();
    let lines = |text: String| text.lines().count();
    let before = lines(client.get(format!("{gw}/metrics")).send().await.unwrap().text().await.unwrap());
    let paths = [
        |i: usize| format!("/v1beta/made-up-{i}/x:y{i}"),
        |i: usize| format!("/v1/models/m-{i}:method{i}"),
        |i: usize| format!("/upload/v1beta/c{i}/{i}"),
        |i: usize| format!("/v1beta/openai/endpoint-{i}/x"),
        |i: usize| format!("/not-gemini/{i}"),
    ];
    send_many(20_000, |i| {
        let method = http::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        let method = if i % 2 == 0 { method } else { http::Method::GET };
        client.request(method, format!("{gw}{}", paths[i % paths.len()](i)))
    })
    .await;
    let after = lines(client.get(format!("{gw}/metrics")).send().await.unwrap().text().await.unwrap());
    println!("/metrics lines before: {before}; after 20,000 made-up paths and methods: {after} (+{})", after - before);
    assert!(after - before < 300, "/metrics grew by {} lines", after - before);
}
