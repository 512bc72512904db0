//! Bodies built to hurt: gzip bombs sent by a client (inflated only up to the body limit, then
//! refused) and by an upstream (never inflated by the gateway, relayed byte for byte, memory
//! bounded), and JSON nested 100,000 levels deep on every route the gateway parses.

use crate::support::{self, binary};
use futures::StreamExt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const MIB: u64 = 1024 * 1024;

/// A gzip stream of `inflated` zero bytes, compressed lazily a MiB at a time; `sent` counts the
/// compressed bytes handed out.
fn bomb(
    inflated: u64,
    sent: Arc<AtomicU64>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    futures::stream::unfold((enc, 0u64, false), move |(mut enc, done, finished)| {
        let sent = sent.clone();
        async move {
            if finished {
                return None;
            }
            let zeros = [0u8; 1 << 20];
            let last = done + MIB >= inflated;
            enc.write_all(&zeros).unwrap();
            let out = if last {
                enc.try_finish().unwrap();
                std::mem::take(enc.get_mut())
            } else {
                enc.flush().unwrap();
                std::mem::take(enc.get_mut())
            };
            sent.fetch_add(out.len() as u64, Ordering::Relaxed);
            Some((Ok(bytes::Bytes::from(out)), (enc, done + MIB, last)))
        }
    })
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn a_client_gzip_bomb_is_inflated_only_up_to_the_body_limit() {
    let inflated: u64 = if crate::slow() { 10 * 1024 * MIB } else { 1024 * MIB };
    let emu = support::emulator().await;
    let (gw_proc, gw) = binary::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--upstream", &emu],
        &[("GEMGATE_STORE__BACKEND", "memory"), ("RUST_LOG", "error"), ("GEMGATE_SERVER__MAX_BODY_BYTES", "67108864")],
    );
    let pid = gw_proc.id();
    let http = support::client();
    for path in ["/v1beta/models/gemini-2.5-flash:generateContent", "/upload/v1beta/files?upload_protocol=raw"] {
        let before = metric(
            &reqwest::get(format!("{gw}/metrics")).await.unwrap().text().await.unwrap(),
            "gemgate_request_bytes_total",
        );
        let rss_before = binary::rss_kib(pid);
        let sent = Arc::new(AtomicU64::new(0));
        let resp = http
            .post(format!("{gw}{path}"))
            .header("x-goog-api-key", "k")
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(reqwest::Body::wrap_stream(bomb(inflated, sent.clone())))
            .send()
            .await;
        let after = metric(
            &reqwest::get(format!("{gw}/metrics")).await.unwrap().text().await.unwrap(),
            "gemgate_request_bytes_total",
        );
        let (status, text) = match resp {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            // The gateway may close before the client has finished sending: the refusal is the close.
            Err(e) => (0, e.to_string()),
        };
        let rss_after = binary::rss_kib(pid);
        println!(
            "{path}: gzip bomb of {} MiB inflated; client sent {} KiB compressed; gateway read {:.1} MiB inflated before refusing ({status}); RSS {rss_before} -> {rss_after} KiB",
            inflated / MIB,
            sent.load(Ordering::Relaxed) / 1024,
            (after - before) / MIB as f64,
        );
        assert!(status == 413 || status == 0, "refused as too large: {status} {text}");
        if status == 413 {
            crate::assert_gemini_error(status, &text, 413);
        }
        assert!(after - before <= (64 * MIB + 2 * MIB) as f64, "inflated {} bytes, past the limit", after - before);
        assert!(rss_after < rss_before + 200 * 1024, "RSS grew {rss_before} -> {rss_after} KiB");
    }
    assert_eq!(reqwest::get(format!("{gw}/healthz")).await.unwrap().status(), 200);
}

/// A gzip stream of `inflated` zero bytes made of one 64 MiB member repeated (a valid multi-member
/// gzip file, RFC 1952), so ten gigabytes cost no compression time.
fn member_bomb(
    inflated: u64,
    sent: Arc<AtomicU64>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..64 {
        enc.write_all(&[0u8; 1 << 20]).unwrap();
    }
    let member = bytes::Bytes::from(enc.finish().unwrap());
    futures::stream::iter(0..inflated.div_ceil(64 * MIB)).map(move |_| {
        sent.fetch_add(member.len() as u64, Ordering::Relaxed);
        Ok(member.clone())
    })
}

/// An upstream that answers every generate call with a gzip bomb, with or without saying so in
/// `Content-Encoding`, as JSON or as an SSE stream.
async fn bombing_upstream(inflated: u64) -> (String, Arc<AtomicU64>) {
    use axum::extract::Request;
    use axum::response::IntoResponse;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let router = axum::Router::new().fallback(move |req: Request| {
        let counter = counter.clone();
        async move {
            let labelled = req.uri().query().is_some_and(|q| q.contains("labelled"));
            let sse = req.uri().query().is_some_and(|q| q.contains("alt=sse"));
            let mut resp = axum::body::Body::from_stream(member_bomb(inflated, counter)).into_response();
            let ct = if sse { "text/event-stream" } else { "application/json; charset=UTF-8" };
            resp.headers_mut().insert("content-type", ct.parse().unwrap());
            if labelled {
                resp.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            }
            resp
        }
    });
    (format!("http://{}", support::serve(router).await), sent)
}

#[tokio::test]
async fn an_upstream_gzip_bomb_is_relayed_unread_with_bounded_memory() {
    let inflated: u64 = if crate::slow() { 10 * 1024 * MIB } else { 1024 * MIB };
    let (up, sent) = bombing_upstream(inflated).await;
    let (gw_proc, gw) = binary::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--upstream", &up],
        // Under the bomb's compressed size: the non-streamed answers take the relay-unread path.
        &[
            ("GEMGATE_STORE__BACKEND", "memory"),
            ("RUST_LOG", "error"),
            ("GEMGATE_SERVER__MAX_JSON_BODY_BYTES", "262144"),
        ],
    );
    let pid = gw_proc.id();
    let rss_before = binary::rss_kib(pid);
    let http = support::client();
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    for query in ["labelled", "unlabelled", "alt=sse&labelled", "alt=sse"] {
        let method = if query.contains("sse") { "streamGenerateContent" } else { "generateContent" };
        sent.store(0, Ordering::Relaxed);
        let resp = http
            .post(format!("{gw}/v1beta/models/gemini-2.5-flash:{method}?{query}"))
            .header("x-goog-api-key", "k")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let mut got = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            got += chunk.unwrap().len() as u64;
        }
        println!(
            "{method}?{query}: {status}; upstream sent {} KiB of gzip ({} MiB inflated); client got {} KiB; gateway peak RSS {} KiB",
            sent.load(Ordering::Relaxed) / 1024,
            inflated / MIB,
            got / 1024,
            binary::peak_rss_kib(pid)
        );
        assert_eq!(status, 200);
        assert_eq!(got, sent.load(Ordering::Relaxed), "relayed byte for byte, never inflated");
    }
    let peak = binary::peak_rss_kib(pid);
    assert!(peak < rss_before + 200 * 1024, "peak RSS {peak} KiB against {rss_before} KiB at start");
}

/// `[[[[…]]]]` `depth` levels deep inside a generate body.
fn nested(depth: usize) -> String {
    format!(r#"{{"contents":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn json_nested_a_hundred_thousand_levels_is_refused_on_every_parsed_route() {
    let emu = support::emulator().await;
    let mut cfg = support::config(&emu);
    cfg.server.max_json_body_bytes = 4 * MIB;
    let gw = support::gateway(cfg).await;
    let http = support::client();
    let routes = [
        ("/v1beta/models/gemini-2.5-flash:generateContent", None),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", None),
        ("/v1/models/gemini-2.5-flash:generateContent", None),
        ("/v1beta/models/gemini-2.5-flash:generateContent", Some("batch")),
        ("/v1beta/models/gemini-2.5-flash:generateContent", Some("flex")),
        ("/v1beta/models/gemini-2.5-flash:countTokens", None),
        ("/v1beta/models/gemini-2.5-flash:batchGenerateContent", None),
        ("/v1beta/cachedContents", None),
        ("/v1beta/openai/chat/completions", None),
    ];
    for depth in [100_000usize, 1_000] {
        let body = nested(depth);
        for (path, defer) in routes {
            let mut req = http.post(format!("{gw}{path}")).header("x-goog-api-key", "deep").body(body.clone());
            if let Some(d) = defer {
                req = req.header("x-gemgate-defer", d);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert!((400..500).contains(&status), "{path} {defer:?} depth {depth}: {status} {text}");
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
            assert!(v["error"]["code"].is_number(), "{path}: {text}");
        }
        println!("JSON nested {depth} levels: refused with a 4xx Gemini error on {} routes", routes.len());
    }
    assert_eq!(http.get(format!("{gw}/healthz")).send().await.unwrap().status(), 200);
}
