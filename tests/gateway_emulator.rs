//! Router tests against the emulator on port 0: every response through the gateway equals, byte
//! for byte, the one the emulator gives directly (status, body, content type), including streams
//! in both framings, errors, and uploads (whose URL must point at the gateway). That events are
//! relayed before a stream ends is shown against a scripted upstream in gateway_passthrough.rs.

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

async fn setup() -> (String, String) {
    let emu = support::emulator().await;
    let mut cfg = support::config(&emu);
    cfg.caching.annotate_usage_metadata = false;
    (emu.clone(), support::gateway(cfg).await)
}

struct Raw {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn call(method: &str, url: &str, key: Option<&str>, body: Option<&Value>) -> Raw {
    let c = support::client();
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(k) = key {
        req = req.header("x-goog-api-key", k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    Raw { status, content_type, body: resp.bytes().await.unwrap().to_vec() }
}

async fn same(method: &str, emu: &str, gw: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Raw {
    let direct = call(method, &format!("{emu}{path}"), key, body.as_ref()).await;
    let via = call(method, &format!("{gw}{path}"), key, body.as_ref()).await;
    assert_eq!(via.status, direct.status, "{method} {path}");
    assert_eq!(via.content_type, direct.content_type, "{method} {path}");
    assert_eq!(String::from_utf8_lossy(&via.body), String::from_utf8_lossy(&direct.body), "{method} {path}");
    via
}

fn prompt(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}], "generation_config": {"max_output_tokens": 40}})
}

#[tokio::test]
async fn responses_through_the_gateway_equal_direct_ones_byte_for_byte() {
    let (emu, gw) = setup().await;
    let k = Some("key-1");
    for v in ["v1", "v1beta", "v1alpha"] {
        let r = same(
            "POST",
            &emu,
            &gw,
            &format!("/{v}/models/gemini-2.5-flash:generateContent"),
            k,
            Some(prompt(&format!("hello {v}"))),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = same(
            "POST",
            &emu,
            &gw,
            &format!("/{v}/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
            k,
            Some(prompt("stream")),
        )
        .await;
        assert!(r.body.starts_with(b"data: ") && r.body.ends_with(b"\r\n\r\n"));
        let r = same(
            "POST",
            &emu,
            &gw,
            &format!("/{v}/models/gemini-2.5-flash:streamGenerateContent"),
            k,
            Some(prompt("array")),
        )
        .await;
        assert!(r.body.starts_with(b"["));
        same("POST", &emu, &gw, &format!("/{v}/models/gemini-2.5-flash:countTokens"), k, Some(prompt("count me")))
            .await;
        same("GET", &emu, &gw, &format!("/{v}/models"), k, None).await;
        same("GET", &emu, &gw, &format!("/{v}/models/gemini-2.5-pro"), k, None).await;
        same(
            "POST",
            &emu,
            &gw,
            &format!("/{v}/models/gemini-embedding-001:embedContent"),
            k,
            Some(json!({"content": {"parts": [{"text": "e"}]}})),
        )
        .await;
    }
    // Errors the upstream raises pass through untouched.
    let r = same("POST", &emu, &gw, "/v1beta/models/gemini-nope:generateContent", k, Some(prompt("x"))).await;
    assert_eq!(r.status, 404);
    let r = same("GET", &emu, &gw, "/v1beta/models", None, None).await;
    assert_eq!(r.status, 403);
    let r = same("GET", &emu, &gw, "/v1beta/cachedContents/missing", k, None).await;
    assert_eq!(r.status, 403);
    let r = same("GET", &emu, &gw, "/v1beta/no/such/path", k, None).await;
    assert!(r.status >= 400);
    // The ?key= form works like the header.
    same("GET", &emu, &gw, "/v1/models?key=key-2", None, None).await;
}

#[tokio::test]
async fn an_upstream_error_in_the_middle_of_a_stream_reaches_the_client() {
    let (emu, gw) = setup().await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let send = |base: String| async move {
        let resp = support::client()
            .post(format!("{base}{path}"))
            .header("x-goog-api-key", "k")
            .header("x-emulator-fault", "midstream-error")
            .json(&prompt("this stream breaks"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap())
    };
    let (ds, direct) = send(emu).await;
    let (vs, via) = send(gw).await;
    assert_eq!((ds, vs), (200, 200));
    assert_eq!(via, direct);
    let text = String::from_utf8_lossy(&via);
    assert!(text.contains("data: {\"error\""), "{text}");
}

#[tokio::test]
async fn a_dropped_upstream_connection_ends_the_client_stream_with_an_error() {
    let (_, gw) = setup().await;
    let resp = support::client()
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", "k")
        .header("x-emulator-fault", "drop")
        .header("x-emulator-stream-chunks", "4")
        .json(&prompt("this connection is cut after the first event"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut failed = false;
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                failed = true;
            }
        }
    })
    .await;
    assert!(result.is_ok(), "the client stream must end, not hang");
    assert!(failed, "a cut upstream must not look like a complete stream");
}

#[tokio::test]
async fn resumable_upload_through_the_gateway_points_at_the_gateway() {
    let (emu, gw) = setup().await;
    let c = support::client();
    let start = c
        .post(format!("{gw}/upload/v1beta/files"))
        .header("x-goog-api-key", "k")
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-length", "11")
        .header("x-goog-upload-header-content-type", "text/plain")
        .json(&json!({"file": {"display_name": "note"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    let url = start.headers()["x-goog-upload-url"].to_str().unwrap().to_string();
    assert!(url.starts_with(&gw), "{url} must point at the gateway {gw}");
    assert!(!url.contains(&emu[7..]));
    let done = c
        .post(&url)
        .header("x-goog-upload-command", "upload, finalize")
        .header("x-goog-upload-offset", "0")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(done.headers()["x-goog-upload-status"], "final");
    let file: Value = done.json().await.unwrap();
    let name = file["file"]["name"].as_str().unwrap();
    assert_eq!(file["file"]["sizeBytes"], "11");
    let got: Value = support::get_json(&format!("{gw}/v1beta/{name}"), Some("k")).await;
    assert_eq!(got["name"], name);
}
