//! `gemgate simulate` and a live `gemgate replay` of the same trace agree: the trace is replayed
//! 60× compressed through a gateway in front of the emulator (both clocks at 60×, so TTLs,
//! renewals and storage compress alike), and the ledger's cache creations and input-side cost
//! are compared with what the simulator predicts for the same policy and prices.

mod support;

use gemgate::accounting::PriceTable;
use gemgate::caching::cost_policy::CostPolicyConfig;
use gemgate::config::CachingConfig;
use gemgate::simulate::{Ctx, SWEEP_MS, trace};
use std::fmt::Write as _;
use std::time::Duration;

const SPEED: f64 = 60.0;

/// A 15-minute Mooncake-format trace: four hot 4-block prefixes every ~20 s, a burst on a fifth,
/// and one-off requests that should never be cached.
fn synthetic_trace() -> String {
    let mut lines = Vec::new();
    let mut next_id = 1000u64;
    for t in (0..900_000).step_by(5_000) {
        let p = (t / 5_000) % 4;
        let prefix: Vec<u64> = (0..4).map(|b| p * 10 + b).collect();
        lines.push((t, prefix, 4 * 512 + 300));
        if t % 30_000 == 0 {
            lines.push((t + 1_000, vec![next_id, next_id + 1, next_id + 2], 3 * 512 + 100));
            next_id += 3;
        }
    }
    for i in 0..10 {
        lines.push((300_000 + i * 1_000, vec![500, 501, 502, 503], 4 * 512 + 200));
    }
    lines.sort_by_key(|l| l.0);
    let mut out = String::new();
    for (t, mut ids, len) in lines {
        ids.push(next_id);
        next_id += 1;
        writeln!(out, "{{\"timestamp\": {t}, \"input_length\": {len}, \"output_length\": 20, \"hash_ids\": {ids:?}}}")
            .unwrap();
    }
    out
}

/// What the simulator and a live compressed replay of the same trace made and paid.
struct Compared {
    sim_creations: f64,
    live_creations: f64,
    sim_input_usd: f64,
    live_input_usd: f64,
}

/// Replays `trace` through the simulator and live (gateway in front of the emulator, both clocks
/// at 60×), with implicit caching modelled alike on both sides when `implicit_window` is set.
async fn simulate_and_replay(trace: &str, implicit_window: Option<Duration>) -> Compared {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.jsonl");
    std::fs::write(&path, trace).unwrap();
    let (_, mut reqs) = trace::load(&path, None, "gemini-2.5-flash").unwrap();

    // What the simulator predicts.
    let prices = PriceTable::builtin();
    let ctx = Ctx::new(prices.clone(), CostPolicyConfig::default(), CachingConfig::default().min_tokens);
    if let Some(w) = implicit_window {
        trace::add_implicit(&mut reqs, w.as_millis() as i64, |m| ctx.min_tokens(m));
    }
    let sim = gemgate::simulate::replay::policy(&reqs, &ctx, SWEEP_MS);
    let price = ctx.price("gemini-2.5-flash");
    let output_usd: f64 = reqs.iter().map(|r| r.output_tokens as f64 * price.standard.output * 1e-6).sum();
    let sim_input_usd = sim.total_usd - output_usd;

    // The same trace, live and compressed.
    let mut ecfg = gemgate::emulator::EmulatorConfig::default();
    ecfg.clock.speed = SPEED;
    ecfg.caching.implicit_window = implicit_window.unwrap_or(Duration::ZERO);
    let emu = support::emulator_with(ecfg).await;
    let mut cfg = support::config(&emu);
    cfg.caching.cost = CostPolicyConfig::default(); // the simulator's policy, implicit probes included
    cfg.clock.speed = SPEED;
    cfg.caching.sweep_interval = Duration::from_millis(SWEEP_MS as u64);
    let gw = support::gateway(cfg).await;
    let summary =
        gemgate::replay::run_requests(&reqs, &gw, "replay-key", SPEED, 256, &indicatif::ProgressBar::hidden()).await;
    assert_eq!(summary.by_status.get(&200).copied(), Some(reqs.len()), "{summary:?}");

    let ledger = support::get_json(&format!("{emu}/emulator/ledger"), None).await;
    let caches = support::get_json(&format!("{gw}/gemgate/v1/caches"), None).await;
    let now = gemgate::clock::parse_rfc3339(ledger["now"].as_str().unwrap()).unwrap();
    // Storage still committed until each live cache expires, as the simulator counts it.
    let committed = support::committed_token_seconds(&caches, now);
    let t = &ledger["total"];
    let n = |f: &str| t[f].as_f64().unwrap_or(0.0);
    let r = &price.standard;
    let live_input_usd = (n("input_tokens") * r.input
        + n("cached_tokens") * r.cached_read
        + n("cache_creation_tokens") * r.input
        + (n("cache_storage_token_seconds") + committed) / 3600.0 * price.storage_per_hour)
        * 1e-6;
    let out = Compared {
        sim_creations: sim.creations as f64,
        live_creations: n("cache_creations"),
        sim_input_usd,
        live_input_usd,
    };
    println!(
        "simulate: {} creations, input-side ${:.5}; live replay at {SPEED}x: {} creations, input-side ${:.5}; never-cache ${:.5}",
        out.sim_creations,
        out.sim_input_usd,
        out.live_creations,
        out.live_input_usd,
        gemgate::simulate::replay::never(&reqs, &ctx).total_usd - output_usd
    );
    out
}

fn assert_agree(c: &Compared) {
    let creations_gap = (c.live_creations - c.sim_creations).abs();
    assert!(
        creations_gap <= 2.0 + 0.2 * c.sim_creations,
        "creations differ: live {}, sim {}",
        c.live_creations,
        c.sim_creations
    );
    let cost_gap = (c.live_input_usd - c.sim_input_usd).abs() / c.sim_input_usd;
    assert!(cost_gap <= 0.10, "input-side cost differs by {:.1} %", cost_gap * 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_and_live_replay_agree() {
    assert_agree(&simulate_and_replay(&synthetic_trace(), None).await);
}

/// Eight 8-block prefixes, each sent every 40 s for 12 minutes: with a 3-minute implicit window
/// every return is served implicitly, which the live engine learns only from responses.
fn implicitly_served_trace() -> String {
    let mut out = String::new();
    for (i, t) in (0..720_000u64).step_by(5_000).enumerate() {
        let p = (t / 5_000) % 8;
        let mut ids: Vec<u64> = (0..8).map(|b| p * 100 + b).collect();
        ids.push(10_000 + i as u64); // the request's own turn
        let len = 8 * 512 + 300;
        writeln!(out, "{{\"timestamp\": {t}, \"input_length\": {len}, \"output_length\": 20, \"hash_ids\": {ids:?}}}")
            .unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_and_live_replay_agree_when_implicit_caching_serves_returns() {
    let c = simulate_and_replay(&implicitly_served_trace(), Some(Duration::from_secs(180))).await;
    assert_agree(&c);
}

#[tokio::test]
async fn the_gateway_records_a_trace_that_simulate_reads_without_any_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.jsonl");
    let emu = support::emulator().await;
    let mut cfg = support::config(&emu);
    cfg.caching.trace_file = path.clone();
    let gw = support::gateway(cfg).await;
    let secret_text = "TOP-SECRET-DOCUMENT ".repeat(400);
    for q in ["first question", "second question", "third question"] {
        let body = serde_json::json!({
            "systemInstruction": {"parts": [{"text": secret_text}]},
            "contents": [{"role": "user", "parts": [{"text": q}]}]
        });
        let r =
            support::post(&format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"), "trace-key", &body).await;
        assert_eq!(r.status(), 200);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains("TOP-SECRET") && !text.contains("question") && !text.contains("trace-key"));
    let (format, reqs) = trace::load(&path, None, "gemini-2.5-flash").unwrap();
    assert_eq!(format, trace::TraceFormat::Gemgate);
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].boundaries.len(), 1, "the system instruction is one boundary");
    assert_eq!(reqs[0].boundaries[0].0, reqs[2].boundaries[0].0, "the shared prefix has one key");
    assert!(reqs[0].boundaries[0].1 > 1500, "token estimate recorded: {:?}", reqs[0].boundaries);
    assert!(reqs[0].prompt_tokens > reqs[0].boundaries[0].1);
}
