//! Cache-aware batch jobs through the gateway in front of the emulator: 60 deferred requests over
//! three shared ~12k-token documents (one per system instruction, each request its own question)
//! are answered once each with the same text as a direct call, and the emulator's ledger shows
//! what the batch cost with one cache per document against the same batch sent uncached.

mod support;

use gemgate::accounting::{CreationBilling, PriceTable, creation_usd};
use gemgate::emulator::{EmulatorConfig, EmulatorState};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-batch-cache";
const MODEL: &str = "gemini-2.5-flash";
const DOCS: usize = 3;
const REQUESTS: usize = 60;

/// A ~12k-token document (the emulator counts a token per 4 bytes), different for each `d`.
fn document(d: usize) -> String {
    let mut s = format!("Document {d}: the handbook of product line {d}.\n");
    let mut i = 0;
    while s.len() < 48_000 {
        s.push_str(&format!(
            "Section {d}.{i}: item {i} of line {d} ships in {} days and costs {} euros. ",
            i % 9 + 1,
            (i * 7 + d) % 500
        ));
        i += 1;
    }
    s
}

fn request(i: usize, docs: &[String]) -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": docs[i % DOCS]}]},
        "contents": [{"role": "user", "parts": [{"text": format!("Question {i}: how long does item {i} take to ship?")}]}]
    })
}

struct Run {
    emu: String,
    gw: String,
}

async fn run(cache: bool) -> Run {
    let mut ecfg = EmulatorConfig::default();
    ecfg.batch.processing_delay = Duration::from_millis(300);
    let emu = format!("http://{}", support::serve(gemgate::emulator::router(EmulatorState::new(ecfg))).await);
    let mut cfg = support::fast_deferral_config(&emu);
    let d = &mut cfg.deferral;
    d.max_age = Duration::from_secs(3);
    d.max_items_per_job = 100;
    d.cache_shared_prefixes = cache;
    let gw = support::gateway(cfg).await;
    Run { emu, gw }
}

/// Sends the 60 requests deferred and waits for every result; returns them in request order.
async fn batch(r: &Run, docs: &[String]) -> Vec<Value> {
    let http = support::client();
    let url = format!("{}/v1beta/models/{MODEL}:generateContent", r.gw);
    let ids: Vec<String> = futures::future::join_all((0..REQUESTS).map(|i| {
        let (http, url) = (&http, &url);
        async move {
            let resp = http
                .post(url)
                .header("x-goog-api-key", KEY)
                .header("x-gemgate-defer", "batch")
                .json(&request(i, docs))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            let op: Value = resp.json().await.unwrap();
            op["name"].as_str().unwrap().trim_start_matches("operations/").to_string()
        }
    }))
    .await;
    let until = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    for id in &ids {
        loop {
            let op = support::get_json(&format!("{}/gemgate/v1/operations/{id}", r.gw), Some(KEY)).await;
            if op["done"] == true {
                assert!(op["response"]["candidates"].is_array(), "{op}");
                out.push(op["response"].clone());
                break;
            }
            assert!(Instant::now() < until, "operation {id} never finished: {op}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    out
}

/// Input-side dollars of the ledger: batch input, cached reads (at the batch rate), cache
/// creation and storage; and the same plus output.
fn dollars(l: &Value) -> (f64, f64) {
    let prices = PriceTable::builtin();
    let p = prices.price_for(MODEL).0;
    let r = p.rates(12_000);
    let (b_in, b_cached) = (r.input * prices.tiers.batch.input, r.cached_read * prices.tiers.batch.cached_read);
    let n = |k: &str| l[k].as_f64().unwrap_or(0.0);
    let creation = creation_usd(p, CreationBilling::InputPrice, l["cache_creation_tokens"].as_u64().unwrap());
    let storage = n("cache_storage_token_seconds") * 1000.0 * p.storage_per_token_ms();
    let input = (n("batch_input_tokens") * b_in + n("cached_tokens") * b_cached) * 1e-6 + creation + storage;
    let output = n("batch_output_tokens") * r.output * prices.tiers.batch.output * 1e-6;
    (input, input + output)
}

fn text(v: &Value) -> String {
    v["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_batch_requests_over_three_documents_pay_for_each_document_once() {
    let docs: Vec<String> = (0..DOCS).map(document).collect();
    let (cached, uncached) = (run(true).await, run(false).await);
    let (with_cache, without) = tokio::join!(batch(&cached, &docs), batch(&uncached, &docs));
    let ledger = |r: &Run| {
        let url = format!("{}/emulator/ledger", r.emu);
        async move { support::get_json(&url, None).await["total"].clone() }
    };
    let (lc, lu) = (ledger(&cached).await, ledger(&uncached).await);

    // One cache per document, made for the job and deleted when it ended; nothing left behind.
    assert_eq!(lc["batch_requests"], REQUESTS, "{lc}");
    assert_eq!(lc["cache_creations"], DOCS, "{lc}");
    assert_eq!(lc["cache_deletions"], DOCS, "{lc}");
    assert_eq!(lc["input_tokens"], 0, "nothing billed at the standard rate: {lc}");
    let left = support::get_json(&format!("{}/v1beta/cachedContents", cached.emu), Some(KEY)).await;
    assert!(left["cachedContents"].as_array().is_none_or(Vec::is_empty), "caches left behind: {left}");
    assert_eq!(lu["cache_creations"], 0);
    assert_eq!(lu["batch_requests"], REQUESTS);

    // Same answers as a direct call, and as the uncached batch.
    let http = support::client();
    for (i, (c, u)) in with_cache.iter().zip(&without).enumerate() {
        assert!(c["usageMetadata"]["cachedContentTokenCount"].as_u64().unwrap_or(0) >= 11_000, "{i}: {c}");
        let direct: Value = http
            .post(format!("{}/v1beta/models/{MODEL}:generateContent", cached.emu))
            .header("x-goog-api-key", "direct-caller")
            .json(&request(i, &docs))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(!text(&direct).is_empty());
        assert_eq!(text(c), text(&direct), "request {i}");
        assert_eq!(text(u), text(&direct), "request {i}");
    }

    // Each result carries its dollars in the same shape as a cached response: the cost at the
    // batch tier, as sent at the standard tier, and the net saving after its share of the caches.
    let sum = |v: &[Value], k: &str| v.iter().map(|r| r["usageMetadata"]["gemgate"][k].as_f64().unwrap()).sum::<f64>();
    for r in with_cache.iter().chain(&without) {
        let g = &r["usageMetadata"]["gemgate"];
        assert_eq!(g["tier"], "batch", "{g}");
        assert!(g["costUsd"].as_f64().unwrap() < g["costAsSentUsd"].as_f64().unwrap(), "{g}");
        assert!(g["netSavingUsd"].as_f64().unwrap() > 0.0, "{g}");
    }
    assert!(with_cache.iter().all(|r| r["usageMetadata"]["gemgate"]["cache"] == "hit"));
    let (cost_c, sent_c, net_c) =
        (sum(&with_cache, "costUsd"), sum(&with_cache, "costAsSentUsd"), sum(&with_cache, "netSavingUsd"));
    let (cost_u, net_u) = (sum(&without, "costUsd"), sum(&without, "netSavingUsd"));
    println!(
        "reported by the gateway: cache-aware cost ${cost_c:.6} as sent ${sent_c:.6} net saving ${net_c:.6}; \
         uncached cost ${cost_u:.6} net saving ${net_u:.6}"
    );
    assert!(net_c > net_u, "the caches saved more than the batch discount alone");

    let ((ci, ct), (ui, ut)) = (dollars(&lc), dollars(&lu));
    println!(
        "cached batch: batch_input_tokens={} cached_tokens={} cache_creation_tokens={} cache_storage_token_seconds={:.1} \
         batch_output_tokens={} jobs={}",
        lc["batch_input_tokens"],
        lc["cached_tokens"],
        lc["cache_creation_tokens"],
        lc["cache_storage_token_seconds"].as_f64().unwrap(),
        lc["batch_output_tokens"],
        lc["batch_jobs_submitted"]
    );
    println!(
        "uncached batch: batch_input_tokens={} batch_output_tokens={} jobs={}",
        lu["batch_input_tokens"], lu["batch_output_tokens"], lu["batch_jobs_submitted"]
    );
    println!(
        "input side: cached ${ci:.6} vs uncached ${ui:.6} = {:.3}x; with output: ${ct:.6} vs ${ut:.6} = {:.3}x",
        ci / ui,
        ct / ut
    );
    assert!(ci / ui <= 0.40, "cached batch cost {:.3}x the uncached one", ci / ui);
}

/// The upstream's clock an hour behind the gateway's: a job cache's expiry is kept on the
/// gateway's clock (send time + the lifetime granted), so a running job's caches are not taken
/// for expiring on every poll and extended over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_caches_expire_on_the_gateways_clock_when_the_upstreams_is_skewed() {
    let docs: Vec<String> = (0..DOCS).map(document).collect();
    let mut ecfg = EmulatorConfig::default();
    ecfg.batch.processing_delay = Duration::from_millis(2000);
    let behind = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let clock = gemgate::emulator::clock::Clock::starting_at(behind, 1.0);
    let emu =
        format!("http://{}", support::serve(gemgate::emulator::router(EmulatorState::with_clock(ecfg, clock))).await);
    let rec = support::Recorder::start(&emu).await;
    let mut cfg = support::fast_deferral_config(&rec.url);
    cfg.deferral.max_age = Duration::from_secs(3);
    cfg.deferral.max_items_per_job = 100;
    cfg.deferral.cache_shared_prefixes = true;
    let r = Run { emu, gw: support::gateway(cfg).await };
    let results = batch(&r, &docs).await;
    assert!(results.iter().all(|v| v["usageMetadata"]["gemgate"]["cache"] == "hit"));
    assert_eq!(rec.count("POST", "/cachedContents"), DOCS);
    assert_eq!(rec.count("PATCH", ""), 0, "job caches extended while nowhere near their expiry");
}
