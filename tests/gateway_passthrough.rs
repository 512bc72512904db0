//! Router tests for faithful forwarding, against a scripted upstream on port 0: what the client
//! sends is what the upstream receives, and what the upstream answers is what the client gets.

mod support;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// What the scripted upstream can be asked to do, chosen by path.
#[derive(Clone, Default)]
struct Script {
    release_second_event: Arc<Notify>,
    stream_dropped: Arc<AtomicBool>,
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn upstream_handler(script: Script, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path.ends_with(":streamGenerateContent") {
        let notify = script.release_second_event.clone();
        let flag = DropFlag(script.stream_dropped.clone());
        let stream = async_stream::stream! {
            let _flag = flag;
            yield Ok::<_, std::io::Error>(Bytes::from_static(b"data: {\"n\":1}\r\n\r\n"));
            notify.notified().await;
            yield Ok(Bytes::from_static(b"data: {\"n\":2}\r\n\r\n"));
        };
        return ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response();
    }
    if path == "/upload/v1beta/files" && req.uri().query().is_none() {
        let host = req.headers()["host"].to_str().unwrap().to_string();
        let url = format!("http://{host}/upload/v1beta/files?upload_id=UP1&upload_protocol=resumable");
        return ([("x-goog-upload-url", url.as_str()), ("x-goog-upload-status", "active")], "").into_response();
    }
    if path.ends_with("slow:generateContent") {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if path.ends_with("quota:generateContent") {
        let body = "{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"quota\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n";
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "application/json; charset=UTF-8"), ("retry-after", "9")],
            body,
        )
            .into_response();
    }
    // Echo: report what arrived, with a body digest so large uploads need not be echoed.
    let method = req.method().to_string();
    let pq = req.uri().path_and_query().unwrap().to_string();
    let headers: serde_json::Map<String, Value> =
        req.headers().iter().map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("")))).collect();
    let mut body = req.into_body().into_data_stream();
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    let mut first = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len();
        if first.len() < 4096 {
            first.extend_from_slice(&chunk[..chunk.len().min(4096 - first.len())]);
        }
        hasher.update(&chunk);
    }
    let echo = json!({
        "method": method, "pq": pq, "headers": headers, "len": len,
        "sha256": hex::encode(hasher.finalize()), "head": String::from_utf8_lossy(&first),
    });
    (StatusCode::IM_A_TEAPOT, [("x-upstream", "yes")], echo.to_string()).into_response()
}

async fn start() -> (String, String, Script) {
    let script = Script::default();
    let s = script.clone();
    let upstream =
        support::serve(axum::Router::new().fallback(move |req: Request| upstream_handler(s.clone(), req))).await;
    let upstream = format!("http://{upstream}");
    let gw = support::gateway(support::config(&upstream)).await;
    (gw, upstream, script)
}

#[tokio::test]
async fn method_path_query_headers_body_and_status_pass_through() {
    let (gw, _, _) = start().await;
    let c = support::client();
    let paths = [
        "/v1/models/gemini-2.5-flash:countTokens?key=K1&alt=json",
        "/v1beta/cachedContents/abc?updateMask=ttl",
        "/v1alpha/batches/xyz:cancel",
        "/download/v1beta/files/batch-1:download?alt=media",
        "/v1beta/openai/chat/completions",
        "/some/unknown/path?x=1",
    ];
    for pq in paths {
        let resp = c
            .patch(format!("{gw}{pq}"))
            .header("x-goog-api-key", "secret-key")
            .header("authorization", "Bearer tok")
            .header("x-custom", "1")
            .header("connection", "keep-alive")
            .body("{\"a\": 1}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 418, "{pq}");
        assert_eq!(resp.headers()["x-upstream"], "yes");
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["method"], "PATCH");
        assert_eq!(echo["pq"], pq);
        assert_eq!(echo["head"], "{\"a\": 1}");
        assert_eq!(echo["headers"]["x-goog-api-key"], "secret-key");
        assert_eq!(echo["headers"]["authorization"], "Bearer tok");
        assert_eq!(echo["headers"]["x-custom"], "1");
        assert!(echo["headers"]["x-request-id"].is_string(), "request id is forwarded");
    }
}

#[tokio::test]
async fn generate_body_bytes_are_forwarded_unchanged() {
    let (gw, _, _) = start().await;
    // Odd spacing and key order must survive: nothing is re-serialised when nothing is rewritten.
    let body = "{ \"contents\" : [ {\"parts\":[{\"text\":\"hi\"}], \"role\":\"user\"} ],\n \"generation_config\":{} }";
    let resp = support::client()
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent?key=K"))
        .body(body)
        .send()
        .await
        .unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["head"], body);
    assert_eq!(echo["pq"], "/v1beta/models/gemini-2.5-flash:generateContent?key=K");
}

#[tokio::test]
async fn sse_events_arrive_before_the_stream_ends() {
    let (gw, _, script) = start().await;
    let resp = support::client()
        .post(format!("{gw}/v1beta/models/m:streamGenerateContent?alt=sse"))
        .body("{\"contents\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("first event not relayed while the stream is open");
    assert_eq!(&first.unwrap().unwrap()[..], b"data: {\"n\":1}\r\n\r\n");
    script.release_second_event.notify_one();
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(&second[..], b"data: {\"n\":2}\r\n\r\n");
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let (gw, _, script) = start().await;
    let resp = support::client()
        .post(format!("{gw}/v1/models/m:streamGenerateContent?alt=sse"))
        .body("{\"contents\":[]}")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    for _ in 0..50 {
        if script.stream_dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the upstream stream was still open 5 s after the client went away");
}

#[tokio::test]
async fn upload_url_points_back_at_the_gateway_and_chunks_are_forwarded() {
    let (gw, upstream, _) = start().await;
    let c = support::client();
    let resp = c
        .post(format!("{gw}/upload/v1beta/files"))
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .body("{\"file\":{\"display_name\":\"a\"}}")
        .send()
        .await
        .unwrap();
    let url = resp.headers()["x-goog-upload-url"].to_str().unwrap().to_string();
    assert_eq!(url, format!("{gw}/upload/v1beta/files?upload_id=UP1&upload_protocol=resumable"));
    assert!(!url.contains(&upstream[7..]));
    let chunk = c.post(&url).header("x-goog-upload-command", "upload, finalize").body("hello").send().await.unwrap();
    let echo: Value = chunk.json().await.unwrap();
    assert_eq!(echo["pq"], "/upload/v1beta/files?upload_id=UP1&upload_protocol=resumable");
    assert_eq!(echo["len"], 5);
}

#[tokio::test]
async fn large_streamed_upload_arrives_intact() {
    let (gw, _, _) = start().await;
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    let n = 48;
    let mut expected = Sha256::new();
    for _ in 0..n {
        expected.update(&chunk);
    }
    let stream = futures::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = support::client()
        .post(format!("{gw}/upload/v1beta/files?upload_id=big"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["len"], n << 20);
    assert_eq!(echo["sha256"], hex::encode(expected.finalize()));
}

#[tokio::test]
async fn upstream_errors_pass_through_untouched() {
    let (gw, upstream, _) = start().await;
    let c = support::client();
    let direct = c.post(format!("{upstream}/v1beta/models/quota:generateContent")).body("{}").send().await.unwrap();
    let via = c.post(format!("{gw}/v1beta/models/quota:generateContent")).body("{}").send().await.unwrap();
    assert_eq!(via.status(), 429);
    assert_eq!(via.headers()["retry-after"], "9");
    assert_eq!(via.headers()["content-type"], "application/json; charset=UTF-8");
    assert_eq!(direct.bytes().await.unwrap(), via.bytes().await.unwrap());
}

async fn gemini_error(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("gateway errors are JSON");
    assert_eq!(body["error"]["code"], status, "{body}");
    assert!(body["error"]["message"].is_string() && body["error"]["status"].is_string(), "{body}");
    (status, body)
}

#[tokio::test]
async fn gateway_errors_are_gemini_json_with_fitting_status() {
    let (gw, upstream, _) = start().await;
    let c = support::client();

    let resp = c.post(format!("{gw}/v1beta/models/m:generateContent")).body("{\"contents\": [").send().await.unwrap();
    let (status, body) = gemini_error(resp).await;
    assert_eq!((status, body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")));

    let mut cfg = support::config(&upstream);
    cfg.server.max_json_body_bytes = 1000;
    let small = support::gateway(cfg).await;
    let resp = c.post(format!("{small}/v1/models/m:generateContent")).body(vec![b' '; 5000]).send().await.unwrap();
    assert_eq!(gemini_error(resp).await.0, 413);

    let mut cfg = support::config(&upstream);
    cfg.upstream.timeout = Duration::from_millis(300);
    let impatient = support::gateway(cfg).await;
    let resp = c.post(format!("{impatient}/v1/models/slow:generateContent")).body("{}").send().await.unwrap();
    assert_eq!(gemini_error(resp).await.0, 504);

    // A port that was just free: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let down = support::gateway(support::config(&format!("http://{dead}"))).await;
    let resp = c.get(format!("{down}/v1beta/models?key=SECRET-KEY-1")).send().await.unwrap();
    let (status, body) = gemini_error(resp).await;
    assert_eq!(status, 502);
    assert!(!body.to_string().contains("SECRET-KEY-1"), "the key leaked into an error: {body}");
}

#[tokio::test]
async fn beyond_max_in_flight_the_gateway_sheds_load_with_a_503() {
    let script = Script::default();
    let s = script.clone();
    let upstream =
        support::serve(axum::Router::new().fallback(move |req: Request| upstream_handler(s.clone(), req))).await;
    let mut cfg = support::config(&format!("http://{upstream}"));
    cfg.server.max_in_flight = 2;
    let gw = support::gateway(cfg).await;
    let c = support::client();
    let mut open = Vec::new();
    for _ in 0..2 {
        let resp = c.post(format!("{gw}/v1/models/m:streamGenerateContent?alt=sse")).body("{}").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        open.push(resp);
    }
    let resp = c.get(format!("{gw}/v1beta/models")).send().await.unwrap();
    let (status, body) = gemini_error(resp).await;
    assert_eq!((status, body["error"]["status"].as_str()), (503, Some("UNAVAILABLE")));
    drop(open);
    // Once the streams are gone, requests are served again.
    let mut served = false;
    for _ in 0..50 {
        if c.get(format!("{gw}/v1beta/models")).send().await.unwrap().status() == 418 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served);
}

async fn errors_counted(gw: &str, kind: &str) -> f64 {
    support::counted(gw, "gemgate_gateway_errors_total", kind).await
}

#[tokio::test]
async fn every_error_the_gateway_makes_up_is_gemini_json_and_counted() {
    let (gw, _, _) = start().await;
    let c = support::client();
    let cases: [(reqwest::RequestBuilder, u16, &str); 5] = [
        (c.delete(format!("{gw}/healthz")), 405, "method_not_allowed"),
        (c.get(format!("{gw}/v1beta/models/a%2Fb")), 400, "unsafe_path"),
        (c.get(format!("{gw}/gemgate/ui/no-such-file.js")), 404, "not_found"),
        (c.get(format!("{gw}/gemgate/v1/operations/x?key=k")), 404, "not_found"),
        (c.get(format!("{gw}/gemgate/v1/operations/x")), 403, "unregistered"),
    ];
    for (req, want, kind) in cases {
        let before = errors_counted(&gw, kind).await;
        let (status, body) = gemini_error(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{kind}: {body}");
        assert!(errors_counted(&gw, kind).await > before, "{kind} was answered but not counted");
    }
    // hyper's own answer to a request it cannot parse is rewritten below the router, and counted too.
    let before = errors_counted(&gw, "unparsable_http").await;
    let mut s = support::raw::connect(&gw).await;
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /v1beta/models HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n")
        .await
        .unwrap();
    let (resp, _, _) = support::raw::read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(support::raw::status(&resp), 400, "{resp}");
    assert!(resp.contains("\"INVALID_ARGUMENT\""), "{resp}");
    assert!(errors_counted(&gw, "unparsable_http").await > before);
}
