//! gzip-encoded request bodies: generate calls are inflated and served (with the gateway's
//! caching and accounting), not refused; a body that is not valid gzip gets Gemini's 400.

mod support;

use std::io::Write;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn gzip_generate_bodies_are_served() {
    let gw = support::gateway(support::config(&support::emulator().await)).await;
    let url = format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent");
    let body = serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]});
    let resp = support::client()
        .post(&url)
        .header("x-goog-api-key", "k")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["candidates"][0]["content"].is_object(), "{v}");

    let resp = support::client()
        .post(&url)
        .header("x-goog-api-key", "k")
        .header("content-encoding", "gzip")
        .body("this is not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
}
