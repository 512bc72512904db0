//! A tiny stand-in upstream for developing the harness without the emulator: generateContent
//! answers a fixed ~1 KB JSON, streamGenerateContent streams N SSE events, countTokens and
//! cachedContents.create answer minimal valid bodies. Not used for published figures.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn answer_text() -> String {
    "lorem ipsum dolor sit amet ".repeat(30)
}

fn generate_json(prompt_tokens: u64, cached: bool) -> String {
    let mut usage = serde_json::json!({
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": 200,
        "totalTokenCount": prompt_tokens + 200,
    });
    if cached {
        usage["cachedContentTokenCount"] = serde_json::json!(8000);
    }
    serde_json::json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": answer_text()}]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": usage,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "fake-response-id"
    })
    .to_string()
}

fn full(status: u16, ctype: &str, body: String) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("response")
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let chunks: usize = req
        .headers()
        .get("x-emulator-stream-chunks")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(20);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let cached = memchr(&body, b"cachedContent");
    let prompt_tokens = body.len() as u64 / 4;
    let resp = if path.ends_with(":generateContent") {
        full(
            200,
            "application/json",
            generate_json(prompt_tokens, cached),
        )
    } else if path.ends_with(":countTokens") {
        full(
            200,
            "application/json",
            format!("{{\"totalTokens\": {prompt_tokens}}}"),
        )
    } else if path.ends_with(":streamGenerateContent") {
        let events: Vec<Result<Frame<Bytes>, Infallible>> = (0..chunks)
            .map(|i| {
                let v = if i + 1 == chunks {
                    serde_json::json!({
                        "candidates": [{"content": {"role": "model", "parts": [{"text": "end."}]}, "finishReason": "STOP", "index": 0}],
                        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 200, "totalTokenCount": prompt_tokens + 200}
                    })
                } else {
                    serde_json::json!({
                        "candidates": [{"content": {"role": "model", "parts": [{"text": "lorem ipsum dolor "}]}, "index": 0}]
                    })
                };
                Ok(Frame::data(Bytes::from(format!("data: {v}\r\n\r\n"))))
            })
            .collect();
        hyper::Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(StreamBody::new(futures_iter(events)).boxed())
            .expect("response")
    } else if path.ends_with("/cachedContents") {
        let id = hex::encode(&sha2_digest(&body)[..8]);
        full(
            200,
            "application/json",
            serde_json::json!({
                "name": format!("cachedContents/{id}"),
                "model": "models/gemini-2.5-flash",
                "usageMetadata": {"totalTokenCount": prompt_tokens},
                "expireTime": "2099-01-01T00:00:00Z"
            })
            .to_string(),
        )
    } else {
        full(
            404,
            "application/json",
            r#"{"error":{"code":404,"message":"fake upstream: not found","status":"NOT_FOUND"}}"#
                .into(),
        )
    };
    Ok(resp)
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn futures_iter<T: Send + Unpin + 'static>(
    items: Vec<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    IterStream(items.into_iter())
}

struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

/// Serves until the process is stopped; prints `fake upstream listening on http://ADDR`.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "fake upstream listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
