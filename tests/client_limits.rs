//! Slow clients: a half-sent header block, a body that stops, a body that trickles. Each is cut
//! off (the connection closed, bodies answered 408 in Gemini's format) and counted.

mod support;

use std::time::Duration;
use support::raw;
use tokio::io::AsyncWriteExt;

async fn gateway() -> String {
    let upstream = support::emulator().await;
    let mut cfg = support::config(&upstream);
    cfg.server.header_read_timeout = Duration::from_secs(1);
    cfg.server.body_idle_timeout = Duration::from_secs(1);
    cfg.server.min_body_rate = 200;
    support::gateway(cfg).await
}

async fn timeouts_counted(gw: &str, kind: &str) -> f64 {
    support::counted(gw, "gemgate_client_timeouts_total", kind).await
}

#[tokio::test]
async fn a_half_sent_header_block_is_closed() {
    let gw = gateway().await;
    let mut s = raw::connect(&gw).await;
    s.write_all(b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: k\r\n").await.unwrap();
    let (_, took, closed) = raw::read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "still open after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(timeouts_counted(&gw, "header").await >= 1.0);
}

#[tokio::test]
async fn a_body_that_stops_gets_408_and_a_closed_connection() {
    let gw = gateway().await;
    let mut s = raw::connect(&gw).await;
    let head = "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\n\
                x-goog-api-key: k\r\ncontent-length: 1000\r\n\r\n{\"contents\":";
    s.write_all(head.as_bytes()).await.unwrap();
    let (resp, took, closed) = raw::read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(raw::status(&resp), 408, "{resp}");
    assert!(resp.contains("\"DEADLINE_EXCEEDED\""), "{resp}");
    assert!(closed && took < Duration::from_secs(5), "closed={closed} after {took:?}");
    assert!(timeouts_counted(&gw, "body_idle").await >= 1.0);
}

#[tokio::test]
async fn a_trickling_body_gets_408_even_when_streamed_through() {
    let gw = gateway().await;
    let mut s = raw::connect(&gw).await;
    let head = "POST /v1beta/cachedContents HTTP/1.1\r\nhost: x\r\n\
                x-goog-api-key: k\r\ncontent-length: 100000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    // One byte every 100 ms: never idle for a second, but 10 bytes/s against a floor of 200.
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if s.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut s = writer.await.unwrap();
    let (resp, _, closed) = raw::read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(raw::status(&resp), 408, "{resp}");
    assert!(closed);
    assert!(timeouts_counted(&gw, "body_rate").await >= 1.0);
}

#[tokio::test]
async fn the_real_binary_closes_a_half_sent_header_block_within_45_s_by_default() {
    let upstream = support::emulator().await;
    let (_running, gw) = tokio::task::spawn_blocking(move || {
        support::binary::spawn(
            &["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream],
            &[("GEMGATE_STORE__BACKEND", "memory"), ("RUST_LOG", "error")],
        )
    })
    .await
    .unwrap();
    let mut s = raw::connect(&gw).await;
    s.write_all(b"GET /v1beta/models HTTP/1.1\r\nhost: x\r\nx-goog-api-").await.unwrap();
    let (_, took, closed) = raw::read_until_closed(&mut s, Duration::from_secs(60)).await;
    println!("half-sent header block closed by the default configuration after {:.1} s", took.as_secs_f64());
    assert!(closed && took < Duration::from_secs(45), "closed={closed} after {took:?}");
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_gemini_errors() {
    let gw = gateway().await;
    let huge = "h".repeat(512 * 1024);
    let cases = [
        (400, "GET /v1beta/models HTTP/1.1\r\nhost: x\r\nthis line has no colon\r\n\r\n".to_string()),
        (431, format!("GET /v1beta/models HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n")),
    ];
    for (code, request) in cases {
        let mut s = raw::connect(&gw).await;
        let _ = s.write_all(request.as_bytes()).await;
        let (resp, _, _) = raw::read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert_eq!(raw::status(&resp), code, "{resp}");
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"));
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}
