//! Bounded HTTP fuzzing of a running gateway (in front of the emulator): mutated generate bodies,
//! mutated paths and odd methods, from a fixed seed so a failure replays. Every error answer must
//! be Gemini's error JSON, and the gateway must be healthy afterwards.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: usize = 2_000;
const VALID: &str = r#"{"systemInstruction":{"parts":[{"text":"be brief"}]},"contents":[{"role":"user","parts":[{"text":"hello"}]}],"generationConfig":{"temperature":0.5}}"#;

fn mutate_body(rng: &mut StdRng) -> Vec<u8> {
    let mut b = VALID.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..b.len().max(1));
        match rng.random_range(0..5) {
            0 => b[at] = rng.random(),
            1 => b.truncate(at),
            2 => b.insert(at, b"{}[]\",:0-e\\"[rng.random_range(0..11)]),
            3 => b
                .splice(at..at, br#"{"cachedContent":"cachedContents/x","x":[1,2,{"y":null}]}"#.iter().copied())
                .for_each(drop),
            _ => b.splice(at..at, "\u{0}\u{ffff}é".bytes()).for_each(drop),
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

fn mutate_path(rng: &mut StdRng) -> String {
    let pieces = [
        "/v1beta",
        "/v1",
        "/upload/v1beta",
        "/models",
        "/gemini-2.5-flash",
        ":generateContent",
        ":streamGenerateContent",
        "/cachedContents",
        "/..",
        "/.",
        "/%2e%2E",
        "/%2f",
        "/%5C",
        "//",
        "/x:y",
        "/gemgate/v1/caches",
        "/gemgate/v1/operations",
        "/metrics",
        "/%",
        "/%zz",
        "/é",
        "/batches",
    ];
    let mut p = String::new();
    for _ in 0..rng.random_range(1..6) {
        p.push_str(pieces[rng.random_range(0..pieces.len())]);
    }
    if rng.random_bool(0.3) {
        p.push_str(["?alt=sse", "?key=fuzz", "?%6Bey=x&alt=", "?&&=&"][rng.random_range(0..4)]);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_get_gemini_errors_and_leave_the_gateway_healthy() {
    let gw = support::gateway(support::config(&support::emulator().await)).await;
    let client = support::client();
    let mut rng = StdRng::seed_from_u64(17);
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "FUZZ", "OPTIONS"];
    let mut bad = Vec::new();
    for i in 0..CASES {
        let (method, path, body) = if i % 2 == 0 {
            ("POST".to_string(), "/v1beta/models/gemini-2.5-flash:generateContent".to_string(), mutate_body(&mut rng))
        } else {
            let m = methods[rng.random_range(0..methods.len())].to_string();
            let body = if rng.random_bool(0.5) { mutate_body(&mut rng) } else { Vec::new() };
            (m, mutate_path(&mut rng), body)
        };
        let url = format!("{gw}{path}");
        let Ok(url) = reqwest::Url::parse(&url) else { continue };
        let resp = client
            .request(http::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .header("x-goog-api-key", "fuzz-key")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("case {i}: {method} {path}: no answer: {e}"));
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        if (status.is_client_error() || status.is_server_error()) && !support::is_gemini_error(&bytes) {
            bad.push(format!("{method} {path} → {status}: {}", String::from_utf8_lossy(&bytes)));
        }
    }
    assert!(bad.is_empty(), "{} answers were not Gemini errors:\n{}", bad.len(), bad.join("\n"));
    let health = client.get(format!("{gw}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ok = client
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", "fuzz-key")
        .body(VALID)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "a valid request still works after the fuzzing");
}
