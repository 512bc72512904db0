//! Today's lineup through the gateway in front of the emulator, with a recording proxy between
//! them counting every upstream call: no cache is ever attempted for a Gemini 4 model or below a
//! model's minimum, a long shared prefix on 3.8 Flash is cached and hit, every response carries
//! its cost at the list price in force, and the price source says when a price is a guess.

mod support;

use gemgate::config::Config;
use gemgate::emulator::{EmulatorConfig, ModelConfig};
use serde_json::{Value, json};
use support::Recorder;

struct World {
    emu: String,
    rec: Recorder,
    gw: String,
}

async fn world(emu: impl FnOnce(&mut EmulatorConfig), gw: impl FnOnce(&mut Config)) -> World {
    let mut ecfg = EmulatorConfig::default();
    emu(&mut ecfg);
    let emu = support::emulator_with(ecfg).await;
    let rec = Recorder::start(&emu).await;
    let mut cfg = support::config(&rec.url);
    gw(&mut cfg);
    let gw = support::gateway(cfg).await;
    World { emu, rec, gw }
}

/// About `tokens` tokens of deterministic text (the emulator counts UTF-8 bytes / 4).
fn text(seed: &str, tokens: usize) -> String {
    let mut s = format!("Handbook {seed}. ");
    let mut i = 0;
    while s.len() < tokens * 4 {
        s.push_str(&format!("Section {i} of {seed} states a policy the assistant applies. "));
        i += 1;
    }
    s
}

fn request(system: &str, question: &str) -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": system}]},
        "contents": [{"role": "user", "parts": [{"text": question}]}],
    })
}

struct Reply {
    headers: http::HeaderMap,
    raw: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap()
    }
    /// The body without gemgate's own `usageMetadata.gemgate`.
    fn upstream_part(&self) -> Value {
        let mut v = self.json();
        v["usageMetadata"].as_object_mut().unwrap().shift_remove("gemgate");
        v
    }
}

async fn generate(base: &str, model: &str, key: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = support::client()
        .post(format!("{base}/v1beta/models/{model}:generateContent"))
        .header("x-goog-api-key", key)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    Reply { headers, raw: resp.bytes().await.unwrap().to_vec() }
}

/// List prices (USD per 1M input, output tokens) of 3.8 Flash in force today.
fn flash_38_today() -> (f64, f64) {
    let today = chrono::Utc::now().date_naive();
    if today < chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap() { (0.75, 3.75) } else { (1.50, 7.50) }
}

fn creates(w: &World) -> usize {
    w.rec.count("POST", "/cachedContents")
}

#[tokio::test]
async fn gemini_4_gets_no_create_upstream_and_the_same_answers_as_direct() {
    let w = world(|_| {}, |_| {}).await;
    let system = text("carbon", 10_000);
    for i in 0..30 {
        let body = request(&system, &format!("Question {i}: which section applies?"));
        let via = generate(&w.gw, "gemini-4-carbon", "k4", &body, &[]).await;
        let direct = generate(&w.emu, "gemini-4-carbon", "k4-direct", &body, &[]).await;
        assert_eq!(via.upstream_part(), direct.json(), "request {i}");
        assert!(via.header("x-gemgate-cost-usd").parse::<f64>().unwrap() > 0.0);
        assert_eq!(via.header("x-gemgate-price-source"), "table");
    }
    assert_eq!(creates(&w), 0, "no cachedContents.create may reach the upstream for Gemini 4");
    // Its capabilities were asked for once, in the background.
    assert_eq!(w.rec.count("GET", "/models/gemini-4-carbon"), 1);
    println!("gemini-4-carbon: 30 requests with a ~10k-token shared system instruction, {} creates", creates(&w));
}

#[tokio::test]
async fn flash_3_8_caches_a_10k_prefix_but_never_tries_a_3k_one() {
    let w = world(|_| {}, |_| {}).await;
    let short = text("short", 3_000);
    for i in 0..30 {
        let r = generate(&w.gw, "gemini-3.8-flash", "k38", &request(&short, &format!("Short {i}?")), &[]).await;
        assert_ne!(r.header("x-gemgate-cache"), "hit");
    }
    assert_eq!(creates(&w), 0, "a 3k-token prefix is below 3.8 Flash's 4,096-token minimum");
    let long = text("long", 10_000);
    let mut hits = 0;
    for i in 0..30 {
        let body = request(&long, &format!("Long {i}?"));
        let via = generate(&w.gw, "gemini-3.8-flash", "k38", &body, &[]).await;
        hits += usize::from(via.header("x-gemgate-cache") == "hit");
        let direct = generate(&w.emu, "gemini-3.8-flash", "k38-direct", &body, &[]).await;
        assert_eq!(via.json()["candidates"], direct.json()["candidates"], "request {i}");
    }
    let made = creates(&w);
    assert!(made >= 1 && hits >= 20, "creates {made}, hits {hits}");
    println!("gemini-3.8-flash: 3k prefix x30 -> 0 creates; 10k prefix x30 -> {made} create(s), {hits} hits");
}

#[tokio::test]
async fn every_response_carries_its_cost_at_todays_list_price() {
    let w = world(|_| {}, |_| {}).await;
    let (input, output) = flash_38_today();
    // A short request (a bypass: the body must stay the upstream's, byte for byte) and an
    // uncached long one.
    let short = json!({"contents": [{"role": "user", "parts": [{"text": "What is a gateway?"}]}]});
    let long = request(&text("once", 6_000), "Only once.");
    for (body, outcome) in [(short, "bypass"), (long, "miss")] {
        let via = generate(&w.gw, "gemini-3.8-flash", "kc", &body, &[]).await;
        assert_eq!(via.header("x-gemgate-cache"), outcome);
        let u = &via.json()["usageMetadata"];
        let n = |f: &str| u[f].as_f64().unwrap_or(0.0);
        let list =
            (n("promptTokenCount") * input + (n("candidatesTokenCount") + n("thoughtsTokenCount")) * output) * 1e-6;
        let cost: f64 = via.header("x-gemgate-cost-usd").parse().unwrap();
        assert!((cost - list).abs() <= 0.02 * list, "{outcome}: header {cost} vs list {list}");
        assert_eq!(via.header("x-gemgate-price-source"), "table");
        println!(
            "{outcome}: x-gemgate-cost-usd {cost:.8} vs list price {list:.8} ({:+.3} %)",
            100.0 * (cost / list - 1.0)
        );
        if outcome == "bypass" {
            let direct = generate(&w.emu, "gemini-3.8-flash", "kc", &body, &[]).await;
            assert_eq!(via.raw, direct.raw, "a bypass body is the upstream's, byte for byte");
        }
    }
}

#[tokio::test]
async fn price_source_says_when_a_price_is_a_guess() {
    let extra = |id: &str| ModelConfig {
        id: id.into(),
        display_name: None,
        input_token_limit: 1_048_576,
        output_token_limit: 65_536,
        methods: None,
    };
    let w = world(
        |e| e.models.extend([extra("gemini-3.8-flash-002"), extra("gemini-9-experimental")]),
        |c| c.pricing.stale_after = std::time::Duration::from_secs(86_400),
    )
    .await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    for (model, source) in [("gemini-3.8-flash-002", "family"), ("gemini-9-experimental", "default")] {
        let r = generate(&w.gw, model, "kp", &body, &[]).await;
        assert_eq!(r.header("x-gemgate-price-source"), source, "{model}");
    }
    let metrics = support::client().get(format!("{}/metrics", w.gw)).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gemgate_price_source_total") && l.contains("gemini-9-experimental"))
        .unwrap_or_else(|| panic!("no price-source metric for the unknown model"));
    assert!(line.contains("source=\"default\""), "{line}");
    // A table older than pricing.stale_after shows on /readyz (the replica stays ready).
    let ready = support::get_json(&format!("{}/readyz", w.gw), None).await;
    assert_eq!(ready["status"], "ready");
    assert!(ready["pricing"].as_str().unwrap().starts_with("stale: "), "{ready}");
}

#[tokio::test]
async fn priority_is_asked_on_the_wire_and_priced_as_served() {
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "urgent question"}]}]});
    let (input, output) = flash_38_today();
    for (downgrade, served, multiplier) in [(0.0, "priority", 1.8), (1.0, "standard", 1.0)] {
        let w = world(|e| e.priority.downgrade_rate = downgrade, |_| {}).await;
        let r = generate(&w.gw, "gemini-3.8-flash", "kq", &body, &[("x-gemgate-defer", "priority")]).await;
        let v = r.json();
        assert_eq!(v["usageMetadata"]["serviceTier"], served);
        assert_eq!(v["usageMetadata"]["gemgate"]["pricedTier"], served);
        let u = &v["usageMetadata"];
        let n = |f: &str| u[f].as_f64().unwrap_or(0.0);
        let list = multiplier * (n("promptTokenCount") * input + n("candidatesTokenCount") * output) * 1e-6;
        let cost: f64 = r.header("x-gemgate-cost-usd").parse().unwrap();
        assert!((cost - list).abs() < 1e-8, "{served}: {cost} vs {list}");
        let ledger = support::get_json(&format!("{}/emulator/ledger", w.emu), None).await["total"].clone();
        let field = if served == "priority" { "priority_input_tokens" } else { "input_tokens" };
        assert!(ledger[field].as_u64().unwrap() > 0, "{ledger}");
        assert!((ledger["generation_usd"].as_f64().unwrap() - cost).abs() < 1e-8, "{ledger}");
    }
}

/// The simple rule at a threshold of one (create at first sight): every eligible prefix tries.
fn first_sight(c: &mut Config) {
    c.caching.policy = "hits".into();
    c.caching.min_hits = 1;
}

#[tokio::test]
async fn a_404_for_create_is_learned_once_per_tenant_and_model() {
    // No static rule and no models.get: only the create's 404 can teach the gateway.
    let w = world(
        |_| {},
        |c| {
            first_sight(c);
            c.catalog.implicit_only = vec![];
            c.catalog.discover = false;
        },
    )
    .await;
    for i in 0..5 {
        let body = request(&text(&format!("doc{i}"), 6_000), "Which section?");
        let via = generate(&w.gw, "gemini-4-neon", "k404", &body, &[]).await;
        let direct = generate(&w.emu, "gemini-4-neon", "k404-direct", &body, &[]).await;
        assert_eq!(via.json()["candidates"], direct.json()["candidates"], "fails open: request {i}");
    }
    assert_eq!(creates(&w), 1, "one create taught the gateway that gemini-4-neon has no explicit caching");
}

#[tokio::test]
async fn a_stated_minimum_is_learned_once_per_model() {
    // The upstream's minimum (8,000) is above the gateway's table (4,096 for 3.x).
    let w = world(|e| _ = e.caching.min_tokens.insert("gemini-3.7-flash".into(), 8_000), first_sight).await;
    for i in 0..5 {
        let body = request(&text(&format!("doc{i}"), 6_000), "Which section?");
        let r = generate(&w.gw, "gemini-3.7-flash", "kmin", &body, &[]).await;
        assert_ne!(r.header("x-gemgate-cache"), "hit");
    }
    assert_eq!(creates(&w), 1, "the first 'too small' answer set the minimum for every later prefix");
    // A prefix above the learned minimum is cached.
    let body = request(&text("big", 10_000), "Which section?");
    assert_eq!(generate(&w.gw, "gemini-3.7-flash", "kmin", &body, &[]).await.header("x-gemgate-cache"), "created");
}
