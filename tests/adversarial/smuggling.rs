//! Request smuggling and protocol switching: requests whose framing two parsers could read two
//! ways (Content-Length with Transfer-Encoding, two Content-Lengths, obs-folded headers) and
//! h2c upgrade attempts. The gateway refuses the ambiguous ones, re-frames everything it forwards
//! (so the upstream can never read a request the gateway did not see), and never switches a
//! forwarded connection to anything but a WebSocket.

use crate::support::{self, Recorder, raw};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Sends `bytes` as they are on one connection and returns everything read until it closes.
async fn send_raw(gw: &str, bytes: &str) -> String {
    let mut s = raw::connect(gw).await;
    s.write_all(bytes.as_bytes()).await.unwrap();
    raw::read_until_closed(&mut s, Duration::from_secs(5)).await.0
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_nothing_is_smuggled_upstream() {
    let emu = support::emulator().await;
    let rec = Recorder::start(&emu).await;
    let gw = support::gateway(support::config(&rec.url)).await;
    let host = raw::host_of(&gw);
    let smuggled = format!("GET /v1beta/smuggled HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: k\r\n\r\n");
    let cases = [
        (
            "CL+TE",
            format!(
                "POST /v1beta/models/m:countTokens HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: k\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "TE+CL",
            format!(
                "POST /v1beta/models/m:countTokens HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: k\r\ntransfer-encoding: chunked\r\ncontent-length: 200\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "two Content-Lengths",
            format!(
                "POST /v1beta/models/m:countTokens HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: k\r\ncontent-length: 0\r\ncontent-length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "obs-fold",
            format!(
                "POST /v1beta/models/m:countTokens HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: k\r\ncontent-length:\r\n 0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "TE obfuscated",
            format!(
                "POST /v1beta/models/m:countTokens HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: k\r\ntransfer-encoding: xchunked\r\ncontent-length: 0\r\n\r\n{smuggled}"
            ),
        ),
    ];
    for (name, bytes) in &cases {
        let before = rec.paths().len();
        let resp = send_raw(&gw, bytes).await;
        let answers = resp.matches("HTTP/1.1 ").count();
        let status = raw::status(&resp);
        let forwarded: Vec<String> = rec.paths()[before..].to_vec();
        println!("{name}: status {status}, {answers} answer(s), upstream saw {forwarded:?}");
        // Either refused outright, or read one way only: every request the upstream saw is one
        // the gateway answered on this connection.
        assert!(forwarded.len() <= answers, "{name}: upstream saw {forwarded:?} for {answers} answers: {resp}");
        if status == 400 {
            assert!(resp.contains("\"INVALID_ARGUMENT\""), "{name}: {resp}");
        }
    }
    assert!(
        rec.paths().iter().all(|p| p != "/v1beta/smuggled") || rec.count("GET", "/v1beta/smuggled") <= 1,
        "a smuggled request reached the upstream unseen"
    );
}

#[tokio::test]
async fn h2c_upgrade_attempts_are_answered_as_plain_http() {
    let emu = support::emulator().await;
    let rec = Recorder::start(&emu).await;
    let gw = support::gateway(support::config(&rec.url)).await;
    let host = raw::host_of(&gw);
    for path in ["/v1beta/models", "/v1beta/models/gemini-2.5-flash:generateContent", "/healthz"] {
        let method = if path.contains(':') { "POST" } else { "GET" };
        let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: k\r\nconnection: Upgrade, HTTP2-Settings, close\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let resp = send_raw(&gw, &req).await;
        let status = raw::status(&resp);
        println!("h2c upgrade on {path}: {status}");
        assert_ne!(status, 101, "{path}: switched protocols: {resp}");
        assert_eq!(status, 200, "{path}: served as plain HTTP/1.1: {resp}");
    }
    assert_eq!(rec.containing("h2c"), 0, "the upgrade went upstream");
    assert_eq!(rec.containing("http2-settings"), 0, "the upgrade went upstream");
}
