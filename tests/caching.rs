//! Automatic caching against the emulator, with its billing ledger and a recording proxy as the
//! judges: how many caches were created, what was billed at which rate, and whether every
//! response equals the one the emulator gives to the unrewritten request.

mod support;

use futures::StreamExt;
use gemgate::config::Config;
use serde_json::{Value, json};
use std::time::Duration;
use support::Recorder;

/// The simple rule with a threshold of one: create at first sight. These tests are about the
/// mechanics around a creation (single flight, fail open, tenancy, restarts), not the policy.
fn first_sight(c: &mut Config) {
    c.caching.policy = "hits".into();
    c.caching.min_hits = 1;
}

struct World {
    emu: String,
    rec: Recorder,
    gw: String,
}

async fn world(tune: impl FnOnce(&mut Config)) -> World {
    let emu = support::emulator().await;
    let rec = Recorder::start(&emu).await;
    let mut cfg = support::config(&rec.url);
    tune(&mut cfg);
    let gw = support::gateway(cfg).await;
    World { emu, rec, gw }
}

/// About `tokens` tokens of deterministic text (the emulator counts UTF-8 bytes / 4).
fn text(seed: &str, tokens: usize) -> String {
    let mut s = format!("Document {seed}. ");
    let mut i = 0;
    while s.len() < tokens * 4 {
        s.push_str(&format!("Clause {i} of {seed} sets out a rule the assistant follows. "));
        i += 1;
    }
    s
}

fn request(system: &str, question: &str) -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": system}], "role": "user"},
        "contents": [{"role": "user", "parts": [{"text": question}]}],
        "generationConfig": {"temperature": 0.2}
    })
}

struct Reply {
    status: u16,
    cache: String,
    body: Value,
}

async fn generate(base: &str, key: &str, body: &Value) -> Reply {
    let resp = support::client()
        .post(format!("{base}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cache = resp.headers().get("x-gemgate-cache").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    Reply { status, cache, body: resp.json().await.unwrap() }
}

/// The part of a response that must not change when the gateway rewrites the request.
fn meaning(v: &Value) -> Value {
    json!({"candidates": v["candidates"], "responseId": v["responseId"], "modelVersion": v["modelVersion"]})
}

async fn ledger(emu: &str) -> Value {
    support::get_json(&format!("{emu}/emulator/ledger"), None).await
}

fn total(ledger: &Value, field: &str) -> u64 {
    ledger["total"][field].as_u64().unwrap_or_else(|| panic!("ledger has no total.{field}: {ledger}"))
}

#[tokio::test]
async fn shared_system_instruction_is_billed_at_the_cache_rate_with_identical_answers() {
    let w = world(|_| {}).await;
    let system = text("policy", 9000);
    let mut outcomes = Vec::new();
    for i in 0..6 {
        let body = request(&system, &format!("Question {i}?"));
        let direct = generate(&w.emu, "direct-key", &body).await;
        let via = generate(&w.gw, "gw-key", &body).await;
        assert_eq!((direct.status, via.status), (200, 200), "{}", via.body);
        assert_eq!(meaning(&via.body), meaning(&direct.body), "request {i} changed meaning");
        outcomes.push(via.cache.clone());
        if via.cache == "hit" || via.cache == "created" {
            let usage = &via.body["usageMetadata"];
            assert!(usage["cachedContentTokenCount"].as_u64().unwrap() >= 9000, "{usage}");
            assert_eq!(usage["gemgate"]["cache"], via.cache);
            assert!(usage["gemgate"]["cacheName"].as_str().unwrap().starts_with("cachedContents/"));
        }
    }
    assert_eq!(outcomes, ["miss", "created", "hit", "hit", "hit", "hit"]);
    assert_eq!(w.rec.count("POST", "/cachedContents"), 1);
    let l = ledger(&w.emu).await;
    assert_eq!(total(&l, "cache_creations"), 1);
    assert!(total(&l, "cached_tokens") >= 5 * 9000, "{l}");
}

#[tokio::test]
async fn fifty_concurrent_first_requests_make_one_cache() {
    let w = world(first_sight).await;
    let system = text("burst", 4000);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (gw, body) = (w.gw.clone(), request(&system, &format!("q{i}")));
        tasks.push(tokio::spawn(async move { generate(&gw, "k", &body).await }));
    }
    let mut hits = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        hits += usize::from(r.cache == "hit" || r.cache == "created");
    }
    assert_eq!(w.rec.count("POST", "/cachedContents"), 1, "exactly one creation");
    assert_eq!(total(&ledger(&w.emu).await, "cache_creations"), 1);
    assert!(hits >= 45, "requests waited for the single creation ({hits} used it)");
}

async fn delete_upstream(emu: &str, key: &str, name: &str) {
    let r =
        support::client().delete(format!("{emu}/v1beta/{name}")).header("x-goog-api-key", key).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cache_deleted_behind_the_gateways_back_fails_open_and_is_recreated() {
    let w = world(first_sight).await;
    let system = text("vanishing", 3000);
    let first = generate(&w.gw, "k", &request(&system, "a")).await;
    assert_eq!(first.cache, "created");
    let name = first.body["usageMetadata"]["gemgate"]["cacheName"].as_str().unwrap().to_string();
    delete_upstream(&w.emu, "k", &name).await;

    let body = request(&system, "b");
    let direct = generate(&w.emu, "k", &body).await;
    let again = generate(&w.gw, "k", &body).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.cache, "error", "the rejected cache was reported");
    assert_eq!(meaning(&again.body), meaning(&direct.body));
    let next = generate(&w.gw, "k", &request(&system, "c")).await;
    assert_eq!(next.cache, "created", "a new cache replaces the lost one");
    assert_eq!(w.rec.count("POST", "/cachedContents"), 2);

    // The same for a stream: nothing was sent before the refusal, so the original is resent.
    let name = next.body["usageMetadata"]["gemgate"]["cacheName"].as_str().unwrap().to_string();
    delete_upstream(&w.emu, "k", &name).await;
    let resp = support::client()
        .post(format!("{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", w.gw))
        .header("x-goog-api-key", "k")
        .json(&request(&system, "d"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-gemgate-cache"], "error");
    let body = resp.bytes_stream().map(|c| c.unwrap()).collect::<Vec<_>>().await.concat();
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("\"finishReason\""), "{text}");
}

/// The gateway's one cache in its listing: (name, created, expires), on the gateway's clock.
async fn listed(gw: &str) -> (String, i64, i64) {
    let l = support::get_json(&format!("{gw}/gemgate/v1/caches"), None).await;
    let c = &l["caches"][0];
    let t = |f: &str| gemgate::clock::parse_rfc3339(c[f].as_str().unwrap()).unwrap();
    (c["name"].as_str().unwrap().to_string(), t("createTime"), t("expireTime"))
}

#[tokio::test]
async fn expiries_are_kept_on_the_gateways_clock_when_the_upstreams_runs_ahead() {
    // The upstream's clock is 50 minutes ahead (a compressed replay's emulator started a second
    // before the gateway at 60x is a minute ahead): a 5-minute cache expires, on the gateway's
    // clock, 5 minutes after it was made, not 55. Believing the upstream's absolute expireTime
    // made the gateway use caches the upstream had already expired, and skip their renewals.
    let w = world(|c| {
        first_sight(c);
        c.caching.ttl = Duration::from_secs(300); // below renew_before (600 s): every use renews
    })
    .await;
    let r = support::client().post(format!("{}/emulator/clock/advance?seconds=3000", w.emu)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let system = text("skewed", 3000);
    assert_eq!(generate(&w.gw, "k", &request(&system, "a")).await.cache, "created");
    let (name, created, expires) = listed(&w.gw).await;
    assert!((280_000..=300_000).contains(&(expires - created)), "created {created}, expires {expires}");

    let sent = gemgate::clock::system_ms();
    assert_eq!(generate(&w.gw, "k", &request(&system, "b")).await.cache, "hit");
    let mut renewed = expires;
    for _ in 0..100 {
        let (n, _, e) = listed(&w.gw).await;
        assert_eq!(n, name);
        if e != expires {
            renewed = e;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed != expires, "the use renewed the cache");
    assert!((sent + 300_000..=sent + 310_000).contains(&renewed), "renewed at {sent} to {renewed}");
}

#[tokio::test]
async fn prefixes_below_the_minimum_are_never_created() {
    let w = world(first_sight).await;
    let system = text("short", 500);
    for i in 0..4 {
        let r = generate(&w.gw, "k", &request(&system, &format!("q{i}"))).await;
        assert_eq!((r.status, r.cache.as_str()), (200, "miss"));
    }
    assert_eq!(w.rec.count("POST", "/cachedContents"), 0);
}

#[tokio::test]
async fn a_higher_live_minimum_costs_one_failed_creation_then_is_learned() {
    // The table says 1024 for gemini-2.5-flash; the emulator's live minimum for the model is
    // set higher, so the first attempt is refused and the answer is learned.
    let mut ecfg = gemgate::emulator::EmulatorConfig::default();
    ecfg.caching.min_tokens.insert("gemini-2.5-flash".into(), 4096);
    let emu = support::emulator_with(ecfg).await;
    let rec = Recorder::start(&emu).await;
    let mut cfg = support::config(&rec.url);
    first_sight(&mut cfg);
    cfg.caching.cooldown = Duration::ZERO;
    let gw = support::gateway(cfg).await;
    let system = text("medium", 2500);
    let first = generate(&gw, "k", &request(&system, "q0")).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "error"));
    for i in 1..5 {
        let r = generate(&gw, "k", &request(&system, &format!("q{i}"))).await;
        assert_eq!((r.status, r.cache.as_str()), (200, "miss"));
    }
    assert_eq!(rec.count("POST", "/cachedContents"), 1, "one failed attempt, then learned");
}

#[tokio::test]
async fn two_api_keys_get_two_caches_never_crossed() {
    let w = world(first_sight).await;
    let system = text("shared", 3000);
    let a = generate(&w.gw, "key-a", &request(&system, "x")).await;
    let b = generate(&w.gw, "key-b", &request(&system, "x")).await;
    assert_eq!((a.cache.as_str(), b.cache.as_str()), ("created", "created"));
    let (na, nb) = (&a.body["usageMetadata"]["gemgate"]["cacheName"], &b.body["usageMetadata"]["gemgate"]["cacheName"]);
    assert_ne!(na, nb);
    for _ in 0..3 {
        let a2 = generate(&w.gw, "key-a", &request(&system, "y")).await;
        let b2 = generate(&w.gw, "key-b", &request(&system, "y")).await;
        assert_eq!(&a2.body["usageMetadata"]["gemgate"]["cacheName"], na);
        assert_eq!(&b2.body["usageMetadata"]["gemgate"]["cacheName"], nb);
    }
    let listing: Value = support::get_json(&format!("{}/gemgate/v1/caches", w.gw), None).await;
    let caches = listing["caches"].as_array().unwrap();
    assert_eq!(caches.len(), 2);
    assert_ne!(caches[0]["scope"], caches[1]["scope"]);
    assert!(!listing.to_string().contains("key-a"), "credentials never listed");
}

#[tokio::test]
async fn camel_and_snake_case_bodies_share_one_cache() {
    let w = world(|_| {}).await;
    let system = text("spelling", 3000);
    let camel = request(&system, "same");
    let snake = json!({
        "system_instruction": {"parts": [{"text": system}]},
        "contents": [{"parts": [{"text": "same"}], "role": "user"}],
        "generation_config": {"temperature": 0.2}
    });
    let r1 = generate(&w.gw, "k", &camel).await;
    let r2 = generate(&w.gw, "k", &snake).await;
    let r3 = generate(&w.gw, "k", &camel).await;
    assert_eq!([r1.cache, r2.cache, r3.cache], ["miss", "created", "hit"]);
    assert_eq!(meaning(&r1.body), meaning(&r2.body));
    assert_eq!(w.rec.count("POST", "/cachedContents"), 1);
}

#[tokio::test]
async fn the_clients_own_cache_is_forwarded_as_is() {
    let w = world(first_sight).await;
    let system = text("client-owned", 3000);
    let created = support::post_json(&format!("{}/v1beta/cachedContents", w.gw), "k", &json!({"model": "models/gemini-2.5-flash", "systemInstruction": {"parts": [{"text": system}]}, "contents": [{"role": "user", "parts": [{"text": "doc"}]}]})).await;
    let name = created["name"].as_str().unwrap();
    let body = json!({"cachedContent": name, "contents": [{"role": "user", "parts": [{"text": "q"}]}]});
    let r = generate(&w.gw, "k", &body).await;
    assert_eq!((r.status, r.cache.as_str()), (200, "bypass"));
    assert_eq!(w.rec.count("POST", "/cachedContents"), 1, "only the client's own creation");
}

#[tokio::test]
async fn a_restarted_gateway_keeps_using_its_caches() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gemgate.sqlite");
    let emu = support::emulator().await;
    let rec = Recorder::start(&emu).await;
    let make = |rec_url: &str| {
        let mut cfg = support::config(rec_url);
        cfg.store.backend = "sqlite".into();
        cfg.store.sqlite_path = db.clone();
        first_sight(&mut cfg);
        cfg
    };
    let system = text("durable", 3000);
    let gw1 = support::gateway(make(&rec.url)).await;
    assert_eq!(generate(&gw1, "k", &request(&system, "a")).await.cache, "created");
    let gw2 = support::gateway(make(&rec.url)).await;
    let r = generate(&gw2, "k", &request(&system, "b")).await;
    assert_eq!(r.cache, "hit", "{}", r.body);
    assert_eq!(rec.count("POST", "/cachedContents"), 1);
}
