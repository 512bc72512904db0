//! Deferred execution against the in-process emulator (short processing delays, port 0): batches
//! of many requests, waiting clients, cancellation, expiry, per-item errors, file input, flex and
//! its fallback, webhooks. Every billing claim is read from the emulator's ledger.

mod support;

use gemgate::config::Config;
use gemgate::emulator::{EmulatorConfig, EmulatorState};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-deferral";

struct World {
    emu: String,
    gw: String,
    http: reqwest::Client,
}

async fn world(emu: impl FnOnce(&mut EmulatorConfig), gw: impl FnOnce(&mut Config)) -> World {
    let mut ecfg = EmulatorConfig::default();
    ecfg.batch.processing_delay = Duration::from_millis(300);
    emu(&mut ecfg);
    let emu = format!("http://{}", support::serve(gemgate::emulator::router(EmulatorState::new(ecfg))).await);
    let mut cfg = support::fast_deferral_config(&emu);
    let d = &mut cfg.deferral;
    d.max_age = Duration::from_millis(300);
    d.flex_retry_delay = Duration::from_millis(10);
    gw(&mut cfg);
    let gw = support::gateway(cfg).await;
    World { emu, gw, http: support::client() }
}

fn body(i: usize) -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "You label support tickets."}]},
        "contents": [{"role": "user", "parts": [{"text": format!("ticket number {i}: my order is late")}]}]
    })
}

impl World {
    async fn generate(&self, b: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/v1beta/models/gemini-2.5-flash:generateContent", self.gw))
            .header("x-goog-api-key", KEY)
            .json(b);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    async fn op(&self, id: &str, key: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/gemgate/v1/operations/{id}", self.gw))
            .header("x-goog-api-key", key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn done(&self, id: &str, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let (status, op) = self.op(id, KEY).await;
            assert_eq!(status, 200, "{op}");
            if op["done"] == true {
                return op;
            }
            assert!(Instant::now() < until, "operation {id} not done: {op}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ledger(&self) -> Value {
        support::get_json(&format!("{}/emulator/ledger", self.emu), None).await["total"].clone()
    }
}

/// The response with the gateway's own annotation removed, for comparing with a direct call.
fn plain(mut v: Value) -> Value {
    if let Some(u) = v.get_mut("usageMetadata").and_then(Value::as_object_mut) {
        u.remove("gemgate");
    }
    v
}

async fn accepted_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["x-gemgate-tier"], "batch");
    let op: Value = r.json().await.unwrap();
    assert_eq!(op["done"], false);
    let id = op["name"].as_str().unwrap().trim_start_matches("operations/").to_string();
    assert_eq!(loc, format!("/gemgate/v1/operations/{id}"));
    id
}

#[tokio::test]
async fn hundred_deferred_requests_become_a_few_jobs_billed_at_batch_rates_and_match_direct_calls() {
    let w = world(|_| {}, |c| c.deferral.max_items_per_job = 40).await;
    let ids: Vec<String> = futures::future::join_all((0..100).map(|i| {
        let w = &w;
        async move { accepted_id(w.generate(&body(i), &[("x-gemgate-defer", "batch")]).await).await }
    }))
    .await;
    let mut ops = Vec::new();
    for id in &ids {
        ops.push(w.done(id, Duration::from_secs(30)).await);
    }
    let batch_ledger = w.ledger().await;
    let jobs = batch_ledger["batch_jobs_submitted"].as_u64().unwrap();
    assert!((3..=6).contains(&jobs), "100 requests in a few jobs of ≤ 40, got {jobs}");
    assert_eq!(batch_ledger["batch_requests"], 100);
    assert_eq!(batch_ledger["input_tokens"], 0, "nothing was billed at the standard rate");

    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["response"]["usageMetadata"]["gemgate"]["tier"], "batch");
        assert_eq!(op["response"]["usageMetadata"]["gemgate"]["discount"], 0.5);
        assert_eq!(op["response"]["usageMetadata"]["gemgate"]["pricedTier"], "batch");
        assert!(op["response"]["usageMetadata"]["gemgate"]["netSavingUsd"].as_f64().unwrap() > 0.0);
        let direct = w.generate(&body(i), &[]).await;
        assert_eq!(direct.status(), 200);
        let direct: Value = direct.json().await.unwrap();
        assert_eq!(plain(op["response"].clone()), plain(direct), "request {i}");
    }
    let all = w.ledger().await;
    println!(
        "ledger after 100 batch + 100 direct: batch_input_tokens={} batch_output_tokens={} input_tokens={} output_tokens={} batch_jobs_submitted={}",
        all["batch_input_tokens"],
        all["batch_output_tokens"],
        all["input_tokens"],
        all["output_tokens"],
        all["batch_jobs_submitted"]
    );
    assert_eq!(all["batch_input_tokens"], all["input_tokens"], "same tokens, billed at the batch rate");
    assert_eq!(all["batch_output_tokens"], all["output_tokens"]);

    let listed: Value = support::get_json(&format!("{}/gemgate/v1/operations?pageSize=1000", w.gw), Some(KEY)).await;
    assert_eq!(listed["operations"].as_array().unwrap().len(), 100);
    let metrics = w.http.get(format!("{}/metrics", w.gw)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gemgate_deferral_items_total"), "{metrics}");
}

#[tokio::test]
async fn a_waiting_client_gets_the_ordinary_response() {
    let w = world(|_| {}, |_| {}).await;
    let r = w.generate(&body(1), &[("x-gemgate-defer", "batch"), ("x-gemgate-wait", "20s")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gemgate-tier"], "batch");
    let net: f64 = r.headers()["x-gemgate-net-saving-usd"].to_str().unwrap().parse().unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string(), "{v}");
    assert_eq!(v["usageMetadata"]["gemgate"]["tier"], "batch");
    assert!(net > 0.0 && (v["usageMetadata"]["gemgate"]["netSavingUsd"].as_f64().unwrap() - net).abs() < 1e-7, "{v}");
    // A wait shorter than the batch takes answers 202 with the operation.
    let r = w.generate(&body(2), &[("x-gemgate-defer", "batch"), ("x-gemgate-wait", "10ms")]).await;
    let id = accepted_id(r).await;
    let (_, op) = w.op(&id, KEY).await;
    if op["done"] == false {
        let eta = op["metadata"]["expectedCompletionTime"].as_str().unwrap_or_else(|| panic!("{op}"));
        assert!(gemgate::clock::parse_rfc3339(eta).is_some(), "{op}");
    }
    let op = w.done(&id, Duration::from_secs(20)).await;
    assert!(op["metadata"].get("expectedCompletionTime").is_none(), "a finished operation has no estimate");
}

#[tokio::test]
async fn cancelling_a_queued_or_submitted_request() {
    let w = world(
        |e| e.batch.processing_delay = Duration::from_secs(30),
        |c| c.deferral.max_age = Duration::from_secs(3600),
    )
    .await;
    let id = accepted_id(w.generate(&body(1), &[("x-gemgate-defer", "batch")]).await).await;
    // Another tenant cannot see or cancel it.
    assert_eq!(w.op(&id, "someone-else").await.0, 404);
    let r = w
        .http
        .delete(format!("{}/gemgate/v1/operations/{id}", w.gw))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let op: Value = r.json().await.unwrap();
    assert_eq!((op["done"].clone(), op["error"]["status"].clone()), (json!(true), json!("CANCELLED")));
    assert_eq!(op["metadata"]["state"], "CANCELLED");

    // Submitted: the job's only request is cancelled, so the gateway cancels the job upstream.
    let w = world(
        |e| e.batch.processing_delay = Duration::from_secs(30),
        |c| c.deferral.max_age = Duration::from_millis(10),
    )
    .await;
    let id = accepted_id(w.generate(&body(2), &[("x-gemgate-defer", "batch")]).await).await;
    let until = Instant::now() + Duration::from_secs(10);
    let batch = loop {
        let (_, op) = w.op(&id, KEY).await;
        if let Some(b) = op["metadata"]["batch"].as_str() {
            break b.to_string();
        }
        assert!(Instant::now() < until, "never submitted: {op}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    w.http.delete(format!("{}/gemgate/v1/operations/{id}", w.gw)).header("x-goog-api-key", KEY).send().await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let upstream: Value = support::get_json(&format!("{}/v1beta/{batch}", w.emu), Some(KEY)).await;
        if upstream["metadata"]["state"] == "BATCH_STATE_CANCELLED" {
            break;
        }
        assert!(Instant::now() < until, "upstream job not cancelled: {upstream}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.done(&id, Duration::from_secs(1)).await["error"]["code"], 499);
}

#[tokio::test]
async fn expired_jobs_are_resubmitted_once_then_their_requests_fail() {
    let w = world(
        |e| {
            e.batch.processing_delay = Duration::from_secs(60);
            e.batch.expiry = Duration::from_millis(200);
        },
        |c| c.deferral.max_resubmits = 1,
    )
    .await;
    let id = accepted_id(w.generate(&body(1), &[("x-gemgate-defer", "batch")]).await).await;
    let op = w.done(&id, Duration::from_secs(20)).await;
    assert_eq!(op["error"]["status"], "DEADLINE_EXCEEDED", "{op}");
    assert_eq!(w.ledger().await["batch_jobs_submitted"], 2, "the first job plus one resubmission");
}

#[tokio::test]
async fn per_item_errors_reach_their_own_requests() {
    let w = world(|e| e.batch.item_error_rate = 0.5, |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(accepted_id(w.generate(&body(i), &[("x-gemgate-defer", "batch")]).await).await);
    }
    let (mut ok, mut failed) = (0, 0);
    for id in &ids {
        let op = w.done(id, Duration::from_secs(20)).await;
        if op["response"].is_object() {
            ok += 1;
        } else {
            assert_eq!(op["error"]["code"], 504, "gRPC 4 is DEADLINE_EXCEEDED: {op}");
            failed += 1;
        }
    }
    assert!(ok > 0 && failed > 0, "ok={ok} failed={failed}");
}

#[tokio::test]
async fn large_jobs_go_as_a_jsonl_file() {
    let w = world(|_| {}, |c| c.deferral.inline_max_bytes = 1000).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(accepted_id(w.generate(&body(i), &[("x-gemgate-defer", "batch")]).await).await);
    }
    for id in &ids {
        assert!(w.done(id, Duration::from_secs(20)).await["response"].is_object());
    }
    // The input went through the Files API: an uploaded JSONL named after the gateway's job.
    let files: Value = support::get_json(&format!("{}/v1beta/files?pageSize=100", w.emu), Some(KEY)).await;
    let uploaded = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["displayName"].as_str().is_some_and(|n| n.starts_with("gemgate-")))
        .count();
    assert!(uploaded >= 1, "{files}");
}

#[tokio::test]
async fn flex_is_billed_at_flex_rates_and_falls_back_to_standard_when_shed() {
    let w = world(|_| {}, |_| {}).await;
    let r = w.generate(&body(1), &[("x-gemgate-defer", "flex")]).await;
    assert_eq!((r.status().as_u16(), r.headers()["x-gemgate-tier"].to_str().unwrap()), (200, "flex"));
    let header = |name: &str| r.headers()[name].to_str().unwrap().parse::<f64>().unwrap();
    let (cost, as_sent, net) =
        (header("x-gemgate-cost-usd"), header("x-gemgate-cost-as-sent-usd"), header("x-gemgate-net-saving-usd"));
    let v: Value = r.json().await.unwrap();
    let g = &v["usageMetadata"]["gemgate"];
    assert_eq!((&g["tier"], &g["discount"], &g["pricedTier"]), (&json!("flex"), &json!(0.5), &json!("flex")), "{g}");
    // Flex costs half of what the request cost sent at the standard tier: the half is its saving.
    assert!((as_sent - 2.0 * cost).abs() < 1e-7 && (net - cost).abs() < 1e-7, "{cost} {as_sent} {net}");
    assert!((g["netSavingUsd"].as_f64().unwrap() - net).abs() < 1e-7, "{g}");
    let metrics = w.http.get(format!("{}/metrics", w.gw)).send().await.unwrap().text().await.unwrap();
    let saved = metrics
        .lines()
        .find(|l| l.starts_with("gemgate_deferral_saved_microdollars_total") && l.contains("tier=\"flex\""))
        .unwrap_or_else(|| panic!("no flex saving counted: {metrics}"));
    assert!(saved.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 0.0, "{saved}");
    let l = w.ledger().await;
    assert!(l["flex_input_tokens"].as_u64().unwrap() > 0 && l["input_tokens"] == 0, "{l}");
    // Streaming requests marked batch go flex.
    let r = w
        .http
        .post(format!("{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", w.gw))
        .header("x-goog-api-key", KEY)
        .header("x-gemgate-defer", "batch")
        .json(&body(2))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-gemgate-tier"].to_str().unwrap()), (200, "flex"));

    let w = world(|e| e.flex.shed_rate = 1.0, |_| {}).await;
    let r = w.generate(&body(1), &[("x-gemgate-defer", "flex")]).await;
    assert_eq!((r.status().as_u16(), r.headers()["x-gemgate-tier"].to_str().unwrap()), (200, "standard"));
    let v: Value = r.json().await.unwrap();
    let g = &v["usageMetadata"]["gemgate"];
    assert_eq!((&g["tier"], &g["discount"], &g["pricedTier"]), (&json!("standard"), &json!(0.0), &json!("standard")));
    let l = w.ledger().await;
    assert_eq!(l["flex_shed"], 2, "one try and one retry were shed: {l}");
    assert!(l["input_tokens"].as_u64().unwrap() > 0, "{l}");
}

#[tokio::test]
async fn results_are_posted_to_the_webhook_signed() {
    use axum::extract::Request;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String, Vec<u8>)>();
    let receiver = axum::Router::new().fallback(move |req: Request| {
        let tx = tx.clone();
        async move {
            let sig = req.headers()["x-gemgate-signature"].to_str().unwrap().to_string();
            let op = req.headers()["x-gemgate-operation"].to_str().unwrap().to_string();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
            let _ = tx.send((op, sig, body.to_vec()));
            "ok"
        }
    });
    let hook = support::serve(receiver).await;
    // The secret is read from the variable named in config; cargo sets CARGO_PKG_NAME for tests.
    let w = world(
        |_| {},
        |c| {
            c.deferral.webhook_url = format!("http://{hook}/hook");
            c.deferral.webhook_secret_env = "CARGO_PKG_NAME".into();
        },
    )
    .await;
    let id = accepted_id(w.generate(&body(1), &[("x-gemgate-defer", "batch")]).await).await;
    let (op_id, sig, bytes) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
    assert_eq!(op_id, id);
    let secret = std::env::var("CARGO_PKG_NAME").unwrap();
    assert_eq!(sig, format!("sha256={}", gemgate::deferral::hmac_sha256_hex(secret.as_bytes(), &bytes)));
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["done"], true);
    assert!(v["response"]["candidates"].is_array());
}

#[tokio::test]
async fn with_the_fail_rule_an_expired_job_fails_its_requests_at_once() {
    let w = world(
        |e| {
            e.batch.processing_delay = Duration::from_secs(60);
            e.batch.expiry = Duration::from_millis(200);
        },
        |c| c.deferral.on_job_failure = "fail".into(),
    )
    .await;
    let r = w.generate(&body(1), &[("x-gemgate-defer", "batch"), ("x-gemgate-wait", "20s")]).await;
    // A waiting client gets the error as generateContent would have given it.
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "DEADLINE_EXCEEDED");
    assert_eq!(w.ledger().await["batch_jobs_submitted"], 1);
}

#[tokio::test]
async fn a_config_rule_defers_an_unmodified_application() {
    let w = world(
        |_| {},
        |c| {
            c.deferral.rules = vec![gemgate::config::DeferralRule {
                model: "gemini-2.5-flash".into(),
                defer: "batch".into(),
                ..Default::default()
            }]
        },
    )
    .await;
    let id = accepted_id(w.generate(&body(1), &[]).await).await;
    assert!(w.done(&id, Duration::from_secs(20)).await["response"].is_object());
    // The header still wins over the rule.
    let r = w.generate(&body(2), &[("x-gemgate-defer", "standard")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gemgate-tier"], "standard");
}

#[tokio::test]
async fn malformed_marking_headers_are_client_errors() {
    let w = world(|_| {}, |_| {}).await;
    for headers in [
        vec![("x-gemgate-defer", "someday")],
        vec![("x-gemgate-defer", "auto"), ("x-gemgate-deadline", "soon")],
        vec![("x-gemgate-defer", "batch"), ("x-gemgate-wait", "a while")],
    ] {
        let r = w.generate(&body(1), &headers).await;
        assert_eq!(r.status(), 400, "{headers:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    }
    let l = w.ledger().await;
    assert_eq!(l["requests"], 0, "nothing reached the upstream: {l}");
}
