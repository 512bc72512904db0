//! The layer stack on its own, around a router with a handler that panics, served over loopback
//! the way `gemgate serve` serves: a panic becomes a Gemini 500 that still carries the request id,
//! the in-flight slot is released, and the server goes on answering.

mod support;

use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn serve(app: gemgate::app::App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = gemgate::listener::ClientLimits {
        header_read: Duration::from_secs(5),
        first_byte: Duration::from_secs(5),
        max_connections: 0,
        body: gemgate::listener::BodyLimits { idle: Duration::from_secs(5), min_rate: 0 },
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(gemgate::listener::serve(listener, app, limits, cancel));
    format!("http://{addr}")
}

fn server(max_in_flight: usize) -> gemgate::config::ServerConfig {
    gemgate::config::ServerConfig { max_in_flight, ..Default::default() }
}

/// Waits (up to a second) for the count to fall to zero: a slot is released when the server has
/// dropped the response body, which can be a moment after the client has read its last byte.
async fn settles_to_zero(in_flight: &AtomicUsize) -> bool {
    for _ in 0..100 {
        if in_flight.load(Ordering::Relaxed) == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn panics() -> &'static str {
    panic!("secret request text in a panic message")
}

#[tokio::test]
async fn a_panicking_handler_answers_gemini_500_with_the_request_id_and_frees_its_slot() {
    let router = axum::Router::new().route("/panic", get(panics)).route("/ok", get(|| async { "fine" }));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let gw = serve(gemgate::layers::stack(router, in_flight.clone(), &server(10))).await;
    let c = support::client();

    let resp = c.get(format!("{gw}/panic")).header("x-request-id", "panic-1").send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-request-id"], "panic-1");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 500);
    assert_eq!(body["error"]["status"], "INTERNAL");
    assert!(!body.to_string().contains("secret request text"), "the panic message leaked: {body}");

    // The connection and the server survive; every slot taken has been given back.
    let resp = c.get(format!("{gw}/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"), "a fresh id is generated");
    assert_eq!(resp.text().await.unwrap(), "fine");
    assert!(settles_to_zero(&in_flight).await, "{} slots still held", in_flight.load(Ordering::Relaxed));
}

#[tokio::test]
async fn beyond_the_limit_the_stack_sheds_before_the_router_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let router = axum::Router::new().route(
        "/slow",
        get(move || {
            seen.fetch_add(1, Ordering::Relaxed);
            async { tokio::time::sleep(Duration::from_millis(500)).await }
        }),
    );
    let in_flight = Arc::new(AtomicUsize::new(0));
    let gw = serve(gemgate::layers::stack(router, in_flight.clone(), &server(1))).await;
    let c = support::client();
    let first = tokio::spawn({
        let (c, url) = (c.clone(), format!("{gw}/slow"));
        async move { c.get(url).send().await.unwrap().status() }
    });
    while in_flight.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = c.get(format!("{gw}/slow")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAVAILABLE");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(calls.load(Ordering::Relaxed), 1, "the shed request never reached the router");
    assert!(settles_to_zero(&in_flight).await, "{} slots still held", in_flight.load(Ordering::Relaxed));
}
