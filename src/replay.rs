//! `gemgate replay`: sends a trace as real HTTP requests, on its own schedule (optionally
//! compressed), so live behaviour can be measured against the emulator's ledger and compared with
//! `gemgate simulate` on the same trace.
//!
//! Each cacheable boundary of a trace request becomes one `contents[]` turn whose text is derived
//! from the boundary's key, `4 × tokens` ASCII bytes long (the emulator counts UTF-8 bytes / 4, so
//! it bills exactly the trace's tokens). Shared leading boundaries therefore become shared leading
//! turns. The tail (the request's own part) is derived from the request's index. Roles alternate
//! user/model from the start; the last turn is always `user`.

use crate::cli::ReplayArgs;
use crate::simulate::{self, SimRequest};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Deterministic ASCII text of exactly `bytes` bytes, derived from `seed`.
pub fn block_text(seed: &str, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 32);
    let mut n = 0u64;
    while out.len() < bytes {
        out.push_str(&format!("{seed}-{n} "));
        n += 1;
    }
    out.truncate(bytes);
    out
}

/// The generateContent body for one trace request.
pub fn request_body(r: &SimRequest, index: usize) -> Value {
    let mut contents = Vec::with_capacity(r.boundaries.len() + 1);
    let mut prev = 0u64;
    for (i, (key, tokens)) in r.boundaries.iter().enumerate() {
        let role = if i % 2 == 0 { "user" } else { "model" };
        let text = block_text(&format!("b{key}"), ((tokens - prev) * 4) as usize);
        contents.push(json!({"role": role, "parts": [{"text": text}]}));
        prev = *tokens;
    }
    let tail = r.prompt_tokens.saturating_sub(prev).max(1);
    contents.push(json!({"role": "user", "parts": [{"text": block_text(&format!("q{index}"), (tail * 4) as usize)}]}));
    json!({"contents": contents, "generationConfig": {"maxOutputTokens": r.output_tokens.max(1)}})
}

/// What a replay saw.
#[derive(Debug, Default, Serialize)]
pub struct ReplaySummary {
    pub requests: usize,
    pub by_status: BTreeMap<u16, usize>,
    /// `x-gemgate-cache` outcomes (absent when the target is not a gateway).
    pub by_cache_outcome: BTreeMap<String, usize>,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub transport_errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub wall_seconds: f64,
}

struct Outcome {
    status: Option<u16>,
    cache: Option<String>,
    prompt: u64,
    cached: u64,
    ms: f64,
}

async fn send_one(client: &reqwest::Client, url: &str, key: &str, body: Value) -> Outcome {
    let started = Instant::now();
    let resp = client.post(url).header("x-goog-api-key", key).json(&body).send().await;
    let mut out = Outcome { status: None, cache: None, prompt: 0, cached: 0, ms: 0.0 };
    if let Ok(resp) = resp {
        out.status = Some(resp.status().as_u16());
        out.cache = resp.headers().get("x-gemgate-cache").and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Ok(v) = resp.json::<Value>().await {
            let usage = crate::gemini::usage::Usage::of_response(&v);
            (out.prompt, out.cached) = (usage.prompt_tokens, usage.cached_tokens);
        }
    }
    out.ms = started.elapsed().as_secs_f64() * 1e3;
    out
}

/// Sends `reqs` to `target`, each at `(t - t0) / speedup` after the start (open loop: a slow
/// response never delays later requests), with at most `concurrency` in flight.
pub async fn run_requests(
    reqs: &[SimRequest],
    target: &str,
    key: &str,
    speedup: f64,
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> ReplaySummary {
    let client = reqwest::Client::new();
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let t0 = reqs.first().map_or(0, |r| r.t_ms);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(reqs.len());
    for (i, r) in reqs.iter().enumerate() {
        let due = Duration::from_secs_f64(((r.t_ms - t0).max(0) as f64 / 1000.0) / speedup);
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + due)).await;
        let model = r.model.trim_start_matches("models/");
        let url = format!("{}/v1beta/models/{model}:generateContent", target.trim_end_matches('/'));
        let (client, key, body, limit) = (client.clone(), key.to_string(), request_body(r, i), limit.clone());
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let out = send_one(&client, &url, &key, body).await;
            progress.inc(1);
            out
        }));
    }
    let mut summary = ReplaySummary { requests: reqs.len(), ..Default::default() };
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        let Ok(o) = t.await else { continue };
        match o.status {
            Some(s) => *summary.by_status.entry(s).or_default() += 1,
            None => summary.transport_errors += 1,
        }
        if let Some(c) = o.cache {
            *summary.by_cache_outcome.entry(c).or_default() += 1;
        }
        summary.prompt_tokens += o.prompt;
        summary.cached_tokens += o.cached;
        latencies.push(o.ms);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    summary.p50_ms = pct(0.5);
    summary.p99_ms = pct(0.99);
    summary.wall_seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    summary
}

/// The `replay` subcommand.
pub async fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let (_, mut reqs) = simulate::trace::load(&args.trace, args.model.as_deref(), simulate::DEFAULT_MODEL)?;
    if let Some(n) = args.limit {
        reqs.truncate(n);
    }
    let show = crate::progress::wanted(args.json);
    if show {
        eprintln!("replaying {} requests to {} at {}x", reqs.len(), args.target, args.speedup);
    }
    let bar = crate::progress::bar(reqs.len() as u64, "replay", show);
    let summary = run_requests(&reqs, &args.target, &args.key, args.speedup, args.concurrency, &bar).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("requests        {}", summary.requests);
        println!("statuses        {:?}", summary.by_status);
        println!("cache outcomes  {:?}", summary.by_cache_outcome);
        println!("transport errs  {}", summary.transport_errors);
        println!("prompt tokens   {} ({} served from cache)", summary.prompt_tokens, summary.cached_tokens);
        println!("latency         p50 {:.1} ms, p99 {:.1} ms", summary.p50_ms, summary.p99_ms);
        println!("wall time       {:.1} s", summary.wall_seconds);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_text_is_exact_and_deterministic() {
        assert_eq!(block_text("b7", 2048).len(), 2048);
        assert_eq!(block_text("b7", 100), block_text("b7", 100));
        assert_ne!(block_text("b7", 100), block_text("b8", 100));
    }

    #[test]
    fn shared_boundaries_become_shared_leading_turns() {
        let a = SimRequest {
            t_ms: 0,
            model: "gemini-2.5-flash".into(),
            prompt_tokens: 1600,
            output_tokens: 5,
            boundaries: vec![("0".into(), 512), ("1".into(), 1024)],
            implicit_cached_tokens: 0,
        };
        let b = SimRequest { prompt_tokens: 1100, boundaries: vec![("0".into(), 512)], ..a.clone() };
        let (ba, bb) = (request_body(&a, 0), request_body(&b, 1));
        assert_eq!(ba["contents"][0], bb["contents"][0]);
        assert_eq!(ba["contents"].as_array().unwrap().len(), 3);
        assert_eq!(ba["contents"][2]["role"], "user");
        let text = ba["contents"][1]["parts"][0]["text"].as_str().unwrap();
        assert_eq!(text.len(), 512 * 4);
    }
}
