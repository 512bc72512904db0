//! With an upstream URL that has a path prefix, nothing a client sends reaches the upstream
//! outside that prefix, and no generate call escapes interception through `..` or encoded
//! separators: such paths get Gemini's 400 and are never forwarded.

mod support;

use support::raw;

#[tokio::test]
async fn no_request_reaches_the_upstream_outside_its_path_prefix() {
    let emulator = support::emulator().await;
    let recorder = support::Recorder::start(&emulator).await;
    let gw = support::gateway(support::config(&format!("{}/prefix", recorder.url))).await;
    let evil = [
        "/v1beta/../../admin/secret",
        "/v1beta/%2e%2e/%2E%2E/admin/secret",
        "/v1beta/x/../models/gemini-2.5-flash:generateContent",
        "/v1beta/models/x%2f..%2f..%2fadmin",
        "/v1beta/./models",
        "/v1beta/a%5c..%5cadmin",
        "/upload/v1beta/../../admin",
        "/gemgate/v1/../../v1beta/models",
    ];
    for path in evil {
        for method in ["GET", "POST"] {
            let resp = raw::request(&gw, method, path, &[("x-goog-api-key", "k")]).await;
            assert_eq!(raw::status(&resp), 400, "{method} {path}: {resp}");
            assert!(resp.contains("\"INVALID_ARGUMENT\""), "{method} {path}: {resp}");
        }
    }
    let ok = raw::request(&gw, "GET", "/v1beta/models", &[("x-goog-api-key", "k")]).await;
    assert_ne!(raw::status(&ok), 400, "{ok}");
    let seen = recorder.paths();
    assert_eq!(seen, ["/prefix/v1beta/models"], "the upstream saw {seen:?}");
}
