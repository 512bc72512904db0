//! An upstream that rejects a large streamed body before reading it (answering at once, then
//! closing) must have its own error reach the client, not a 502 about a broken pipe.
//! The upstream connection swallows the write error of a peer that has closed
//! (`proxy::early_answer`), so hyper reads the answer waiting on the socket.

mod support;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request with 400 (Gemini JSON) as soon as the headers are in, then closes.
async fn early_rejecting_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"error":{"code":400,"message":"Request payload size exceeds the limit.","status":"INVALID_ARGUMENT"}}"#;
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                // Dropped with the body unread: the kernel resets the connection.
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_upstreams_early_error_reaches_the_client() {
    let gw = support::gateway(support::config(&early_rejecting_upstream().await)).await;
    let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let stream = futures::stream::iter((0..32).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = support::client()
        .post(format!("{gw}/upload/v1beta/files?upload_id=big&upload_protocol=resumable"))
        .header("x-goog-api-key", "k")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Request payload size exceeds the limit."), "{text}");
}
