//! `server.admin_token` on the real binary (set through `GEMGATE_SERVER__ADMIN_TOKEN`): the
//! admin endpoints answer 401 without it and 200 with it, while tenants still read their own
//! deferred operations with their own key.

mod support;

#[tokio::test]
async fn admin_endpoints_need_the_token_and_operations_need_the_tenant_key() {
    let upstream = support::emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.sqlite").to_str().unwrap().to_string();
    let (_running, gw) = tokio::task::spawn_blocking(move || {
        support::binary::spawn(
            &["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream],
            &[("GEMGATE_STORE__SQLITE_PATH", &db), ("RUST_LOG", "error"), ("GEMGATE_SERVER__ADMIN_TOKEN", "adm-t0ken")],
        )
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    for path in ["/gemgate/v1/caches", "/metrics", "/gemgate/v1/anything-added-later"] {
        for auth in [None, Some("Bearer wrong"), Some("adm-t0ken")] {
            let mut req = client.get(format!("{gw}{path}"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path} with {auth:?}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["status"], "UNAUTHENTICATED", "{path}: {body}");
        }
    }
    for path in ["/gemgate/v1/caches", "/metrics"] {
        let resp = client.get(format!("{gw}{path}")).bearer_auth("adm-t0ken").send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} with the token");
    }
    // Operations: the tenant's own key, as before; no key is still refused.
    let own = client.get(format!("{gw}/gemgate/v1/operations")).header("x-goog-api-key", "tenant-a").send().await;
    assert_eq!(own.unwrap().status(), 200);
    let none = client.get(format!("{gw}/gemgate/v1/operations")).send().await.unwrap();
    assert_eq!(none.status(), 403);
    for p in ["/healthz", "/readyz"] {
        assert_eq!(client.get(format!("{gw}{p}")).send().await.unwrap().status(), 200, "{p}");
    }
}

#[test]
fn an_open_admin_surface_beyond_loopback_is_warned_about() {
    use std::io::{BufRead, BufReader, Read};
    let warning = "server.admin_token is not set";
    let run = |listen: &str, token: Option<&str>| {
        let mut cmd = std::process::Command::new(support::binary::BIN);
        cmd.args(["serve", "--listen", listen, "--upstream", "http://127.0.0.1:9"])
            .env("GEMGATE_STORE__BACKEND", "memory")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(t) = token {
            cmd.env("GEMGATE_SERVER__ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "{line}");
        let _ = child.kill();
        let mut logs = String::new();
        child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
        let _ = child.wait();
        logs
    };
    assert!(run("0.0.0.0:0", None).contains(warning));
    assert!(!run("0.0.0.0:0", Some("t0ken")).contains(warning));
    assert!(!run("127.0.0.1:0", None).contains(warning));
}
