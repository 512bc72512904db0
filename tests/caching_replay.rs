//! The replay the caching issue must show: 200 requests drawn from 10 distinct 8,000-token system
//! instructions, each with its own short question, sent through the gateway and straight to the
//! emulator. Judged by the emulator's ledger at gemini-2.5-flash prices: billed input tokens
//! (full-rate equivalent, counting creation and storage) through the gateway must be at most 0.25
//! of the direct run, with identical response texts. Prints its figures.

mod support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// gemini-2.5-flash, USD per 1M tokens (docs: config/pricing.toml).
const INPUT: f64 = 0.30;
const CACHED: f64 = 0.03;
const STORAGE_PER_HOUR: f64 = 1.00;

fn system(i: usize) -> String {
    let mut s = format!("You are assistant number {i}. ");
    let mut n = 0;
    while s.len() < 8000 * 4 {
        s.push_str(&format!("Rule {n} for assistant {i}: answer precisely and cite the handbook section {n}. "));
        n += 1;
    }
    s
}

/// Deterministic order: a linear congruential walk over (prefix, question).
fn schedule() -> Vec<(usize, usize)> {
    let mut seed: u64 = 42;
    let mut counts = [0usize; 10];
    let mut out = Vec::new();
    while out.len() < 200 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let p = ((seed >> 33) % 10) as usize;
        if counts[p] < 20 {
            out.push((p, counts[p]));
            counts[p] += 1;
        }
    }
    out
}

fn scope(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The ledger row of one API key (the emulator keys rows by a hash of the key).
fn row<'a>(ledger: &'a Value, key: &str) -> &'a Value {
    let full = scope(key);
    let rows = ledger["keys"].as_object().unwrap_or_else(|| panic!("ledger has no keys: {ledger}"));
    rows.iter()
        .find(|(k, _)| full.starts_with(k.as_str()))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no ledger row for {key}: {ledger}"))
}

fn num(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or(0.0)
}

#[tokio::test]
async fn replay_of_200_requests_costs_at_most_a_quarter_of_direct() {
    let emu = support::emulator().await;
    // The gateway's defaults: the cost policy decides when to create and for how long.
    let cfg = support::config(&emu);
    let gw = support::gateway(cfg).await;
    let systems: Vec<String> = (0..10).map(system).collect();
    let mut identical = 0;
    for (p, q) in schedule() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": systems[p]}]},
            "contents": [{"role": "user", "parts": [{"text": format!("Question {q} for assistant {p}?")}]}]
        });
        let mut texts = Vec::new();
        for (base, key) in [(&emu, "direct-key"), (&gw, "gateway-key")] {
            let r =
                support::post_json(&format!("{base}/v1beta/models/gemini-2.5-flash:generateContent"), key, &body).await;
            texts.push(
                r["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap_or_else(|| panic!("{r}")).to_string(),
            );
        }
        assert_eq!(texts[0], texts[1], "prefix {p} question {q}");
        identical += 1;
    }
    let ledger: Value = support::get_json(&format!("{emu}/emulator/ledger"), None).await;
    let caches: Value = support::get_json(&format!("{gw}/gemgate/v1/caches"), None).await;
    let now = gemgate::clock::system_ms();
    // Storage still to be billed until each live cache expires: counted as if already paid.
    let committed = support::committed_token_seconds(&caches, now);
    let direct = row(&ledger, "direct-key");
    let via = row(&ledger, "gateway-key");
    let direct_input = num(direct, "input_tokens") + num(direct, "cached_tokens");
    let storage_token_hours = (num(via, "cache_storage_token_seconds") + committed) / 3600.0;
    let gw_equiv = num(via, "input_tokens")
        + num(via, "cached_tokens") * CACHED / INPUT
        + num(via, "cache_creation_tokens")
        + storage_token_hours * STORAGE_PER_HOUR / INPUT;
    let ratio = gw_equiv / direct_input;
    println!("replay: 200 requests, 10 prefixes of ~8,000 tokens, gemini-2.5-flash prices");
    println!("  direct : {direct_input:>10.0} input tokens at full rate");
    println!(
        "  gateway: {:>10.0} full-rate + {:>8.0} cached + {:>8.0} creation tokens + {:>7.1} storage token-hours ({} caches)",
        num(via, "input_tokens"),
        num(via, "cached_tokens"),
        num(via, "cache_creation_tokens"),
        storage_token_hours,
        num(via, "cache_creations")
    );
    println!("  gateway full-rate equivalent: {gw_equiv:.0} = {ratio:.3} of direct; identical texts: {identical}/200");
    assert_eq!(num(via, "cache_creations"), 10.0, "one cache per prefix");
    assert!(ratio <= 0.25, "ratio {ratio:.3} above 0.25");
}
