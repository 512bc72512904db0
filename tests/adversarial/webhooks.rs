//! Server-side request forgery through webhooks: the webhook address is the operator's alone
//! (`deferral.webhook_url`); a client cannot name one, and a webhook that answers with a redirect
//! to a loopback or private address is not followed there.

use crate::support::{self, deferred};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_aim_webhooks_and_redirects_are_not_followed() {
    // The "internal service" a forged request would reach: counts every request it gets.
    let internal_hits: Arc<Mutex<usize>> = Default::default();
    let hits = internal_hits.clone();
    let internal = support::serve(axum::Router::new().fallback(move || {
        let hits = hits.clone();
        async move {
            *hits.lock().unwrap() += 1;
            "internal"
        }
    }))
    .await;
    let internal_url = format!("http://{internal}/admin/delete-everything");
    // The operator's webhook answers every POST with a redirect to the internal service.
    let posted: Arc<Mutex<usize>> = Default::default();
    let seen = posted.clone();
    let target = internal_url.clone();
    let hook = support::serve(axum::Router::new().fallback(move || {
        let (seen, target) = (seen.clone(), target.clone());
        async move {
            *seen.lock().unwrap() += 1;
            (http::StatusCode::TEMPORARY_REDIRECT, [(http::header::LOCATION, target)])
        }
    }))
    .await;
    let emu = deferred::emulator().await;
    let mut cfg = support::fast_deferral_config(&emu);
    cfg.deferral.max_age = Duration::from_millis(300);
    cfg.deferral.webhook_url = format!("http://{hook}/hook");
    cfg.deferral.webhook_secret_env = "HOME".into();
    cfg.deferral.webhook_max_attempts = 2;
    cfg.deferral.webhook_initial_backoff = Duration::from_millis(100);
    let gw = support::gateway(cfg).await;
    let body = deferred::request(1);
    let resp = support::client()
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", deferred::KEY)
        .header("x-gemgate-defer", "batch")
        // Headers a client might try, to name its own address: none is read.
        .header("x-gemgate-webhook", &internal_url)
        .header("x-gemgate-webhook-url", &internal_url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "acknowledged");
    let id = resp.json::<serde_json::Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .trim_start_matches("operations/")
        .to_string();
    deferred::finished(&gw, &[id], Duration::from_secs(30)).await;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while *posted.lock().unwrap() < 2 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (posts, internal) = (*posted.lock().unwrap(), *internal_hits.lock().unwrap());
    println!(
        "webhook POSTs to the operator's address: {posts}; requests that reached the internal address: {internal}"
    );
    assert!(posts >= 1, "the operator's webhook was called");
    assert_eq!(internal, 0, "the redirect or a client header reached the internal address");
}
