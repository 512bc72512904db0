//! The admin token never leaves the gateway, and the gateway's own paths are never forwarded:
//! counted on a recorder in front of the emulator over every owned path (known and unknown) and a
//! spread of forwarded ones, with the token in every credential form.

use crate::support::{self, Recorder};

const TOKEN: &str = "adm-7c1f-never-upstream";

#[tokio::test]
async fn the_admin_token_never_reaches_the_upstream_and_owned_paths_are_never_forwarded() {
    let emu = support::emulator().await;
    let rec = Recorder::start(&emu).await;
    let mut cfg = support::config(&rec.url);
    cfg.server.admin_token = TOKEN.into();
    let gw = support::gateway(cfg).await;
    let http = support::client();

    let owned_unknown = [
        "/gemgate",
        "/gemgate/",
        "/gemgate/v1/nope",
        "/gemgate/v2/caches",
        "/metrics/x",
        "/healthz/x",
        "/readyz/deep/er",
    ];
    let owned_known =
        ["/gemgate/v1/caches", "/gemgate/v1/prefixes", "/gemgate/v1/spend", "/metrics", "/healthz", "/readyz"];
    let forwarded = [
        ("GET", "/v1beta/models"),
        ("GET", "/v1beta/models/gemini-2.5-flash"),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent"),
        ("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        ("POST", "/v1beta/models/gemini-2.5-flash:countTokens"),
        ("GET", "/v1beta/cachedContents"),
        ("GET", "/v1beta/some/path/the/gateway/does/not/know"),
        ("POST", "/v1beta/openai/chat/completions"),
    ];
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let mut sent = 0;
    for method in ["GET", "POST", "DELETE"] {
        for path in owned_unknown {
            for auth in [Some(format!("Bearer {TOKEN}")), None] {
                let mut req = http.request(method.parse().unwrap(), format!("{gw}{path}")).body(body);
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap();
                // Without the token, admin paths are refused first; with it, the path is unknown.
                let want = if auth.is_none() && path.starts_with("/gemgate/") { 401 } else { 404 };
                crate::assert_gemini_error(status, &text, want);
                sent += 1;
            }
        }
    }
    for path in owned_known {
        let resp = http.get(format!("{gw}{path}")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        sent += 1;
    }
    // Forwarded paths with the token as Bearer and as x-goog-api-key beside a tenant key: the
    // request goes on, the token does not.
    for (method, path) in forwarded {
        for header in ["authorization", "x-goog-api-key"] {
            let value = if header == "authorization" { format!("Bearer {TOKEN}") } else { TOKEN.to_string() };
            let mut req = http.request(method.parse().unwrap(), format!("{gw}{path}")).header(header, value);
            if header == "authorization" {
                req = req.header("x-goog-api-key", "tenant-key");
            }
            if method == "POST" {
                req = req.header("content-type", "application/json").body(body);
            }
            let resp = req.send().await.unwrap();
            let _ = resp.bytes().await;
            sent += 1;
        }
        // As ?key=: refused by the gateway (it cannot be removed without changing the request).
        let sep = if path.contains('?') { '&' } else { '?' };
        let resp = http
            .request(method.parse().unwrap(), format!("{gw}{path}{sep}key={TOKEN}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        crate::assert_gemini_error(status, &resp.text().await.unwrap(), 400);
        sent += 1;
    }
    let upstream_calls = rec.paths();
    println!(
        "requests sent: {sent}; upstream calls: {}; carrying the token: {}",
        upstream_calls.len(),
        rec.containing(TOKEN)
    );
    assert!(upstream_calls.len() >= forwarded.len() * 2, "forwarded requests went on: {upstream_calls:?}");
    assert_eq!(rec.containing(TOKEN), 0, "the admin token reached the upstream");
    let leaked: Vec<_> = upstream_calls
        .iter()
        .filter(|p| p.starts_with("/gemgate") || ["/metrics", "/healthz", "/readyz"].iter().any(|o| p.starts_with(o)))
        .collect();
    assert!(leaked.is_empty(), "owned paths forwarded: {leaked:?}");
}
