//! The catalog against the emulator over loopback HTTP: what it learns from models.get, from each
//! error text, and what it answers before it knows.

use super::*;
use crate::config::{CachingConfig, UpstreamConfig};
use http::HeaderMap;

async fn emulator() -> String {
    let state = crate::emulator::EmulatorState::new(crate::emulator::EmulatorConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, crate::emulator::router(state)).await.unwrap() });
    format!("http://{addr}")
}

fn catalog(url: &str, cfg: CatalogConfig) -> Catalog {
    let upstream = Upstream::new(&UpstreamConfig { url: url.into(), ..UpstreamConfig::default() }).unwrap();
    let min = CachingConfig::default().min_tokens;
    Catalog::new(cfg, PriceTable::builtin(), min, upstream, Duration::from_secs(5), TaskTracker::new())
}

fn cred() -> Credential {
    let mut h = HeaderMap::new();
    h.insert("x-goog-api-key", "k".parse().unwrap());
    Credential::from_request(&h, None).unwrap()
}

async fn until_known(c: &Catalog, scope: &str, model: &str) -> Explicit {
    for _ in 0..200 {
        match c.known(scope, model) {
            Some(Explicit::Learned(b)) => return Explicit::Learned(b),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("models.get for {model} never answered")
}

#[tokio::test]
async fn first_answer_is_the_static_rule_then_what_models_get_says() {
    let url = emulator().await;
    let c = catalog(&url, CatalogConfig { implicit_only: vec![], ..CatalogConfig::default() });
    // With no static rule, the first answer for Gemini 4 is "yes" (nothing known yet)...
    assert!(c.explicit_caching("s", "models/gemini-4-carbon", "v1beta", Some(&cred())));
    // ...and models.get (no createCachedContent listed) corrects it for later requests.
    assert_eq!(until_known(&c, "s", "models/gemini-4-carbon").await, Explicit::Learned(false));
    assert!(!c.explicit_caching("s", "models/gemini-4-carbon", "v1beta", Some(&cred())));
    assert!(c.explicit_caching("s", "gemini-3.8-flash", "v1beta", Some(&cred())));
    assert_eq!(until_known(&c, "s", "gemini-3.8-flash").await, Explicit::Learned(true));
    // A model the upstream does not know cannot have caches either.
    c.explicit_caching("s", "gemini-nope", "v1beta", Some(&cred()));
    assert_eq!(until_known(&c, "s", "gemini-nope").await, Explicit::Learned(false));
    // Scopes learn separately.
    assert_eq!(c.known("other", "gemini-4-carbon"), None);
}

#[tokio::test]
async fn static_rule_covers_gemini_4_while_the_fetch_is_pending_or_off() {
    let c = catalog("http://127.0.0.1:9", CatalogConfig { discover: false, ..CatalogConfig::default() });
    for m in ["gemini-4-carbon", "models/gemini-4-argon", "gemini-4-neon-001", "gemini-4-xenon"] {
        assert!(!c.explicit_caching("s", m, "v1beta", Some(&cred())), "{m}");
    }
    assert!(c.explicit_caching("s", "gemini-3.8-flash", "v1beta", Some(&cred())));
    assert_eq!(c.known("s", "gemini-3.8-flash"), None, "discovery off: nothing fetched");
}

#[tokio::test]
async fn learns_from_each_create_error_text() {
    let url = emulator().await;
    let c = catalog(&url, CatalogConfig { discover: false, implicit_only: vec![], ..CatalogConfig::default() });
    let up = Upstream::new(&UpstreamConfig { url: url.clone(), ..UpstreamConfig::default() }).unwrap();
    let t = Duration::from_secs(5);
    let text = "word ".repeat(3_000);
    let body =
        |model: &str| serde_json::json!({"model": model, "contents": [{"role": "user", "parts": [{"text": text}]}]});
    // The documented 404 for a model without explicit caching.
    let err =
        crate::proxy::calls::create(&up, "v1beta", &cred(), &body("models/gemini-4-carbon"), t).await.unwrap_err();
    assert!(err.no_explicit_caching(), "{err}");
    assert!(c.explicit_caching("s", "gemini-4-carbon", "v1beta", None));
    c.learn_no_explicit("s", "gemini-4-carbon");
    assert!(!c.explicit_caching("s", "gemini-4-carbon", "v1beta", None));
    // "Too small" states the live minimum, which replaces the table's.
    let small = serde_json::json!({"model": "models/gemini-2.5-flash-lite",
        "contents": [{"role": "user", "parts": [{"text": "word ".repeat(1_200)}]}]});
    let err = crate::proxy::calls::create(&up, "v1beta", &cred(), &small, t).await.unwrap_err();
    let Some((_, min)) = err.too_small() else { panic!("{err:?}") };
    assert_eq!(min, 2048);
    c.learn_min("models/gemini-2.5-flash-lite", 3000);
    assert_eq!(c.min_tokens("gemini-2.5-flash-lite"), 3000);
    assert!(!crate::gemini::error::is_no_explicit_caching(404, "CachedContent not found (or permission denied)"));
}

#[test]
fn price_source_metric_labels_are_bounded() {
    let c = catalog("http://127.0.0.1:9", CatalogConfig::default());
    for i in 0..MAX_METRIC_MODELS + 50 {
        c.count_price_source(&format!("made-up-{i}"), PriceSource::Default);
    }
    assert_eq!(c.0.metric_models.lock().unwrap().len(), MAX_METRIC_MODELS);
}

#[test]
fn costs_use_the_row_in_force_and_the_served_tier() {
    let c = catalog("http://127.0.0.1:9", CatalogConfig::default());
    let read = |v: serde_json::Value| crate::accounting::Usage::from_usage_metadata(&v);
    let usage = read(serde_json::json!({"promptTokenCount": 1_000_000, "candidatesTokenCount": 0}));
    let nov = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap().and_hms_opt(12, 0, 0).unwrap();
    let ms = nov.and_utc().timestamp_millis();
    let (costs, p, _) = c.costs("models/gemini-3.8-flash", &usage, Service::Standard, 0.0, ms).unwrap();
    assert!((costs.actual_usd - 0.75).abs() < 1e-9);
    assert_eq!((p.row.as_str(), p.source), ("gemini-3.8-flash@2026-09-01", PriceSource::Table));
    let jan = ms + 40 * 86_400_000;
    assert!(
        (c.costs("gemini-3.8-flash", &usage, Service::Standard, 0.0, jan).unwrap().0.actual_usd - 1.5).abs() < 1e-9
    );
    // Asked for priority, served standard (over the limit): priced as served.
    let downgraded = read(serde_json::json!({"promptTokenCount": 1_000_000, "serviceTier": "standard"}));
    let (costs, p, _) = c.costs("gemini-3.8-flash", &downgraded, Service::Priority, 0.0, ms).unwrap();
    assert_eq!(p.service, Service::Standard);
    assert!((costs.actual_usd - 0.75).abs() < 1e-9);
    let (costs, _, _) = c.costs("gemini-3.8-flash", &usage, Service::Priority, 0.0, ms).unwrap();
    assert!((costs.actual_usd - 0.75 * 1.8).abs() < 1e-9);
    assert!(c.costs("", &usage, Service::Standard, 0.0, ms).is_none());
}
