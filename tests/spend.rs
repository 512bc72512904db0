//! Spend rollups end to end: requests through the gateway in front of the emulator, the spend API
//! against the sum of the responses' `x-gemgate-net-saving-usd`, grouping by tag, the admin token
//! on the data but not on the static page, Gemini errors for bad queries, rollups in the SQLite
//! file and in a real Redis, and `x-gemgate-tag` never reaching the upstream.

mod support;

use gemgate::store::{RedisStore, SpendFigures, SpendKey, SqliteStore, Store};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "spend-admin";

async fn generate(base: &str, key: &str, body: &Value, tag: &str) -> reqwest::Response {
    support::client()
        .post(format!("{base}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", key)
        .header("x-gemgate-tag", tag)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn admin_get(url: &str) -> (u16, Value) {
    let r = support::client().get(url).bearer_auth(TOKEN).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_spend_api_sums_what_the_responses_reported_and_keeps_it_in_the_sqlite_file() {
    let emu = support::emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gemgate.sqlite");
    let mut cfg = support::config(&emu);
    cfg.store.backend = "sqlite".into();
    cfg.store.sqlite_path = file.clone();
    cfg.server.admin_token = TOKEN.into();
    cfg.spend.max_tags = 2;
    let gw = support::gateway(cfg).await;

    let system = support::document("spend", 9000);
    let mut header_sum = 0.0;
    for (i, tag) in ["a", "b", "a", "c", "a", "bad tag!"].iter().enumerate() {
        let body = json!({"systemInstruction": {"parts": [{"text": system}]}, "contents": [{"role": "user", "parts": [{"text": format!("Q{i}?")}]}]});
        let r = generate(&gw, "spend-key", &body, tag).await;
        assert_eq!(r.status(), 200);
        header_sum += r.headers()["x-gemgate-net-saving-usd"].to_str().unwrap().parse::<f64>().unwrap();
    }
    assert!(header_sum > 0.0, "the cache saved money: {header_sum}");

    let (status, by_tag) = admin_get(&format!("{gw}/gemgate/v1/spend?group_by=tag,model")).await;
    assert_eq!(status, 200, "{by_tag}");
    let total = by_tag["total"]["netSavingUsd"].as_f64().unwrap();
    assert!((total - header_sum).abs() < 1e-6, "API {total} vs headers {header_sum}");
    let sum: f64 = by_tag["groups"].as_array().unwrap().iter().map(|g| g["netSavingUsd"].as_f64().unwrap()).sum();
    assert!((sum - header_sum).abs() < 1e-6);
    // Two tags per hour are kept; a third one and a malformed one count as `other`.
    let tags: Vec<(&str, u64)> = by_tag["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["tag"].as_str().unwrap(), g["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(tags, [("a", 3), ("b", 1), ("other", 2)], "{by_tag}");
    assert_eq!(by_tag["groups"][0]["model"], "gemini-2.5-flash");

    let (_, recent) = admin_get(&format!("{gw}/gemgate/v1/requests?tag=a")).await;
    assert_eq!(recent["requests"].as_array().unwrap().len(), 3, "{recent}");
    assert!(!recent.to_string().contains("Clause"), "no content in the recent list");

    // The rows are in the SQLite file itself (the read above wrote what was pending).
    let store = SqliteStore::open(&file).unwrap();
    let rows = store.spend_rows(0, i64::MAX).await.unwrap();
    let file_sum: f64 = rows.iter().map(|(_, f)| f.net_saving_usd).sum();
    assert!((file_sum - header_sum).abs() < 1e-6, "{rows:?}");

    // The data needs the token; the page itself does not (it holds no data).
    let r = support::client().get(format!("{gw}/gemgate/v1/spend")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let page = support::client().get(format!("{gw}/gemgate/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert!(page.text().await.unwrap().contains("/gemgate/ui/app.js"));
    let js = support::client().get(format!("{gw}/gemgate/ui/app.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    let other = support::client().get(format!("{gw}/gemgate/ui/secret.js")).send().await.unwrap();
    assert_eq!(other.status(), 401, "only the page's own files are open");

    for bad in ["group_by=colour", "window=500days", "from=yesterday", "limit=0"] {
        let path = if bad.starts_with("limit") { "requests" } else { "spend" };
        let (status, body) = admin_get(&format!("{gw}/gemgate/v1/{path}?{bad}")).await;
        assert_eq!((status, body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")), "{bad}: {body}");
    }
}

#[tokio::test]
async fn the_tag_header_never_reaches_the_upstream() {
    let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
    let log = seen.clone();
    let upstream = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(req.headers().contains_key("x-gemgate-tag"));
            axum::Json(json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6}
            }))
        }
    });
    let addr = support::serve(upstream).await;
    let gw = support::gateway(support::config(&format!("http://{addr}"))).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    assert_eq!(generate(&gw, "k", &body, "team-a").await.status(), 200);
    let r =
        support::client().get(format!("{gw}/v1beta/models")).header("x-gemgate-tag", "team-a").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(*seen.lock().unwrap(), [false, false]);
    let (_, recent) = admin_get(&format!("{gw}/gemgate/v1/requests")).await;
    assert_eq!(recent["requests"][0]["tag"], "team-a", "{recent}");
}

#[tokio::test]
async fn redis_rollups_sum_across_writers_and_forget_old_hours() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::RedisServer::start_at(&dir.path().join("r.sock"));
    let a = RedisStore::open(&server.url, "t:", Duration::from_millis(500)).unwrap();
    let b = RedisStore::open(&server.url, "t:", Duration::from_millis(500)).unwrap();
    // Hours counted from the current one: Redis expires each hour's hash after its retention.
    let h0 = gemgate::clock::system_ms() / 3_600_000 - 10;
    let row = |hour: i64, net: f64| {
        let key = SpendKey {
            hour_ms: (h0 + hour) * 3_600_000,
            model: "gemini-2.5-flash".into(),
            tenant: "0123456789abcdef".into(),
            tag: "checkout/v2".into(),
            mechanism: "explicit_cache".into(),
        };
        (key, SpendFigures { requests: 1, net_saving_usd: net, prompt_tokens: 10, ..Default::default() })
    };
    let day = 86_400_000;
    a.add_spend(&[row(5, 0.25), row(7, 1.0)], day).await.unwrap();
    b.add_spend(&[row(5, -0.125)], day).await.unwrap();
    let ms = |hour: i64| (h0 + hour) * 3_600_000;
    let mut rows = b.spend_rows(ms(5), ms(8)).await.unwrap();
    rows.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].1.requests, rows[0].1.prompt_tokens), (2, 20));
    assert!((rows[0].1.net_saving_usd - 0.125).abs() < 1e-12, "{rows:?}");
    assert_eq!(rows[0].0.tag, "checkout/v2");
    a.prune_spend(ms(6)).await.unwrap();
    let left = a.spend_rows(ms(0), ms(8)).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0.hour_ms, ms(7));
}
