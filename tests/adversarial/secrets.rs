//! Secrets stay where they were put: every credential form (x-goog-api-key, ?key=, Bearer) and
//! the admin token, sent through a gateway logging at debug level with a SQLite store and
//! deferral on, appear nowhere afterwards: not in the log, /metrics, any error answer, the store
//! files, the admin API or the page.

use crate::support::{self, binary};
use serde_json::json;
use std::process::{Command, Stdio};

const HEADER_KEY: &str = "AIzaHeaderKey-5ecret-0001";
const QUERY_KEY: &str = "AIzaQueryKey-5ecret-0002";
const BEARER: &str = "ya29.bearer-5ecret-0003";
const ADMIN: &str = "admin-5ecret-0004";

#[tokio::test]
async fn no_credential_or_admin_token_appears_in_logs_metrics_errors_store_or_page() {
    let emu = support::emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.sqlite");
    let log = dir.path().join("gateway.log");
    let mut child = Command::new(binary::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream", &emu])
        .env("GEMGATE_STORE__SQLITE_PATH", &db)
        .env("GEMGATE_SERVER__ADMIN_TOKEN", ADMIN)
        .env("GEMGATE_CACHING__COST__IMPLICIT_PROBES", "0")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let gw = line.trim().rsplit(' ').next().unwrap().to_string();
    let _kill = scopeguard(child);
    let http = support::client();
    let doc = support::document("secrets", 5_000);
    let request = |i: usize| json!({"systemInstruction": {"parts": [{"text": doc}]}, "contents": [{"role": "user", "parts": [{"text": format!("q{i}")}]}]});
    let url = |m: &str| format!("{gw}/v1beta/models/gemini-2.5-flash:{m}");
    let mut answers = String::new();
    for i in 0..4 {
        for (form, req) in [
            ("header", http.post(url("generateContent")).header("x-goog-api-key", HEADER_KEY)),
            ("query", http.post(format!("{}?key={QUERY_KEY}", url("generateContent")))),
            ("bearer", http.post(url("generateContent")).bearer_auth(BEARER)),
            ("stream", http.post(format!("{}?alt=sse&key={QUERY_KEY}", url("streamGenerateContent")))),
            (
                "batch",
                http.post(url("generateContent"))
                    .header("x-goog-api-key", HEADER_KEY)
                    .header("x-gemgate-defer", "batch"),
            ),
            (
                "bad json",
                http.post(format!("{}?key={QUERY_KEY}", url("generateContent")))
                    .header("authorization", format!("Bearer {ADMIN}")),
            ),
        ] {
            let body = if form == "bad json" { "{not json".to_string() } else { request(i).to_string() };
            let resp = req.header("content-type", "application/json").body(body).send().await.unwrap();
            answers.push_str(&format!("{form} {}\n{:?}\n", resp.status(), resp.headers()));
            answers.push_str(&resp.text().await.unwrap());
        }
    }
    // Errors the gateway makes itself, with keys in the request.
    for path in [
        format!("/v1beta/models/x:generateContent?key={QUERY_KEY}&alt=%ZZ"),
        format!("/v1beta/%2e%2e/models?key={QUERY_KEY}"),
        format!("/gemgate/v1/nope?key={QUERY_KEY}"),
        format!("/v1beta/models?key={ADMIN}"),
    ] {
        let resp = http.get(format!("{gw}{path}")).header("x-goog-api-key", HEADER_KEY).send().await.unwrap();
        answers.push_str(&resp.text().await.unwrap());
    }
    let mut surfaces = String::new();
    for path in [
        "/metrics",
        "/gemgate/v1/spend",
        "/gemgate/v1/requests",
        "/gemgate/v1/caches",
        "/gemgate/v1/prefixes",
        "/gemgate/v1/queue",
        "/gemgate/ui",
        "/gemgate/ui/app.js",
        "/readyz",
    ] {
        let resp = http.get(format!("{gw}{path}")).bearer_auth(ADMIN).send().await.unwrap();
        surfaces.push_str(&resp.text().await.unwrap());
    }
    let ops =
        http.get(format!("{gw}/gemgate/v1/operations")).header("x-goog-api-key", HEADER_KEY).send().await.unwrap();
    surfaces.push_str(&ops.text().await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("g.sqlite")) {
            stored.extend(std::fs::read(&p).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    println!(
        "searched {} log lines ({} KiB at debug), {} KiB of answers, {} KiB of metrics/API/page, {} KiB of store files",
        logged.lines().count(),
        logged.len() / 1024,
        answers.len() / 1024,
        surfaces.len() / 1024,
        stored.len() / 1024
    );
    assert!(logged.lines().count() > 50, "debug logging was on: {} lines", logged.lines().count());
    assert!(stored.len() > 4096, "the store was written");
    for secret in [HEADER_KEY, QUERY_KEY, BEARER, ADMIN] {
        for (place, text) in
            [("log", &logged), ("answers", &answers), ("metrics/API/page", &surfaces), ("store", &stored.to_string())]
        {
            assert!(!text.contains(secret), "{secret} found in the {place}");
        }
    }
}

/// Kills the child when dropped.
fn scopeguard(child: std::process::Child) -> impl Drop {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Kill(child)
}
