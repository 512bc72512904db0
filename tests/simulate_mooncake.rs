//! The simulator on the real production trace (`testdata/traces/mooncake-conversation.jsonl`,
//! gemini-2.5-flash prices): what the cost engine must show there, under each reading of how
//! Google bills cache creation (it does not say; `config/pricing.toml` defaults to the input price).
//!
//! Under the default reading gemgate must beat both baselines but does not reach 80 % of the
//! oracle's savings: most of those savings need a cache made at a prefix's first sighting, and
//! whether a first sighting comes back is not predictable online on this trace
//! (`scripts/first-sight-predictability`, docs/cost-policy.md). The test pins the share it does
//! reach from below so that a regression shows, and checks the 80 % where creation is cheap.

use gemgate::accounting::{CreationBilling, PriceTable};
use gemgate::caching::cost_policy::CostPolicyConfig;
use gemgate::config::CachingConfig;
use gemgate::simulate::{Ctx, StrategyResult, simulate_rows, trace};
use std::path::Path;

const TRACE: &str = "testdata/traces/mooncake-conversation.jsonl";
/// The figures below are at 2.5 Flash prices (the simulator's default model is now 3.8 Flash).
const MODEL: &str = "gemini-2.5-flash";

/// The rows these claims need (the hindsight baseline is left to `gemgate simulate`: it replays
/// a few hundred rules, which a debug build does slowly).
const ROWS: [&str; 5] = ["never", "always", "gemgate", "clairvoyant", "oracle"];

fn run_at(model: &str, day: Option<&str>, billing: CreationBilling, rows: &[&str]) -> Vec<StrategyResult> {
    let mut prices = PriceTable::builtin();
    prices.cache_creation = billing;
    let mut ctx = Ctx::new(prices, CostPolicyConfig::default(), CachingConfig::default().min_tokens);
    if let Some(d) = day {
        ctx = ctx.at(d.parse().unwrap());
    }
    let (_, reqs) = trace::load(Path::new(TRACE), Some(model), model).expect("vendored trace loads");
    assert_eq!(reqs.len(), 12_031);
    let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    simulate_rows(&reqs, &ctx, &rows, &indicatif::ProgressBar::hidden())
}

fn run(billing: CreationBilling) -> Vec<StrategyResult> {
    run_at(MODEL, None, billing, &ROWS)
}

fn usd(rs: &[StrategyResult], name: &str) -> f64 {
    rs.iter().find(|r| r.strategy.starts_with(name)).unwrap().total_usd
}

/// Share of the oracle's savings over never-cache that `name` captures.
fn share(rs: &[StrategyResult], name: &str) -> f64 {
    let never = usd(rs, "never");
    (never - usd(rs, name)) / (never - usd(rs, "oracle"))
}

#[test]
fn default_creation_billing_beats_both_baselines() {
    let rs = run(CreationBilling::InputPrice);
    let (never, always, gem) = (usd(&rs, "never"), usd(&rs, "always"), usd(&rs, "gemgate"));
    assert!(gem < never && gem < always, "gemgate {gem} vs never {never}, always {always}");
    assert!(usd(&rs, "oracle") <= usd(&rs, "clairvoyant"), "the lower bound is above a feasible schedule");
    let captured = share(&rs, "gemgate");
    // 14.2 % with policy v1, 15.6 % with v2; the clairvoyant greedy schedule itself gets 83 %.
    assert!(captured > 0.15, "gemgate captures {:.1} % of the oracle's savings", 100.0 * captured);
    // Policy v2's target at 2.5 Flash prices (v1 saved 1.55 USD here).
    assert!(never - gem >= 1.69, "gemgate saves {:.3} USD", never - gem);
}

#[test]
fn policy_v2_saves_ten_dollars_at_3_8_flash_prices() {
    // 3.8 Flash on 2026-11-27: storage is 67 % of the input price per hour (333 % on 2.5 Flash).
    let rs = run_at("gemini-3.8-flash", Some("2026-11-27"), CreationBilling::InputPrice, &["never", "gemgate"]);
    let saving = usd(&rs, "never") - usd(&rs, "gemgate");
    // v1 saved 8.60 USD here.
    assert!(saving >= 10.0, "gemgate saves {saving:.3} USD");
}

#[test]
fn cheap_creation_readings_capture_most_of_the_oracles_savings() {
    for billing in [CreationBilling::CachedPrice, CreationBilling::Free] {
        let rs = run(billing);
        let captured = share(&rs, "gemgate");
        assert!(captured >= 0.8, "{billing:?}: gemgate captures {:.1} %", 100.0 * captured);
        assert!(usd(&rs, "gemgate") < usd(&rs, "always"), "{billing:?}");
    }
}

/// `gemgate simulate` as a user runs it: 3.8 Flash on a pinned day, the rows it used named.
fn simulate_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gemgate"))
        .args(["simulate", "--trace", TRACE, "--rows", "never"])
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn simulate_prices_3_8_flash_by_the_schedule_and_names_the_rows() {
    // Never caching costs every input token at the input price and every output token at the
    // output price: computed here from the trace itself.
    let (mut input, mut output) = (0u64, 0u64);
    for line in std::fs::read_to_string(TRACE).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        input += v["input_length"].as_u64().unwrap();
        output += v["output_length"].as_u64().unwrap();
    }
    for (day, rates, row) in [
        ("2026-11-27", (0.75, 3.75), "gemini-3.8-flash@2026-09-01"),
        ("2027-01-01", (1.50, 7.50), "gemini-3.8-flash@2027-01-01"),
    ] {
        let text = simulate_cli(&["--model", "gemini-3.8-flash", "--at", day]);
        let stated = format!("prices on {day}: row {row} (table): input {} / output {}", rates.0, rates.1);
        assert!(text.contains(&stated), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&simulate_cli(&["--model", "gemini-3.8-flash", "--at", day, "--json"])).unwrap();
        assert_eq!(json["price_row"], row);
        let never = json["results"][0]["total_usd"].as_f64().unwrap();
        let expected = (input as f64 * rates.0 + output as f64 * rates.1) * 1e-6;
        assert!((never - expected).abs() < 1e-6, "{day}: never-cache {never} vs {expected}");
        println!("{day}: never-cache {never:.4} USD at {row}");
    }
    // Without --model a Mooncake trace is priced as 3.8 Flash.
    assert!(simulate_cli(&["--at", "2026-11-27"]).contains("model gemini-3.8-flash,"));
}
