//! During shutdown the port keeps answering: `/readyz` says 503 (instead of a refused
//! connection) so balancers take the replica out, other new requests get 503 UNAVAILABLE, and
//! a request already open finishes.

mod support;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_while_open_requests_finish() {
    // An upstream whose answers take two seconds.
    let slow = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        "{}"
    });
    let up = format!("http://{}", support::serve(slow).await);
    let (running, gw) = tokio::task::spawn_blocking(move || {
        support::binary::spawn(
            &["serve", "--listen", "127.0.0.1:0", "--upstream", &up],
            &[("GEMGATE_STORE__BACKEND", "memory"), ("RUST_LOG", "error")],
        )
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{gw}/readyz")).send().await.unwrap().status(), 200);
    let open = tokio::spawn(client.get(format!("{gw}/v1beta/models")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = std::process::Command::new("kill").args(["-TERM", &running.id().to_string()]).status().unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections (no pooled one is reused).
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let ready = fresh().get(format!("{gw}/readyz")).send().await.expect("the port still answers");
    assert_eq!(ready.status(), 503);
    let other = fresh().get(format!("{gw}/v1beta/models")).send().await.unwrap();
    assert_eq!(other.status(), 503);
    let v: serde_json::Value = other.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAVAILABLE");
    let finished = open.await.unwrap().expect("the open request finishes");
    assert_eq!(finished.status(), 200);
}
