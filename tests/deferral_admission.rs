//! A deferred request is acknowledged only once the upstream has accepted its key and model
//! (one small look-up per pair, remembered): a made-up key or model is refused at once with the
//! upstream's own error, and nothing is queued for it.

mod support;

use gemgate::emulator::EmulatorConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn bad_keys_and_models_are_refused_before_queueing() {
    let mut ecfg = EmulatorConfig::default();
    ecfg.auth.keys = vec!["good-key".into()];
    let emu = support::emulator_with(ecfg).await;
    let rec = support::Recorder::start(&emu).await;
    let mut cfg = support::config(&rec.url);
    cfg.caching.enabled = false;
    let gw = support::gateway(cfg).await;
    let client = support::client();
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "whenever"}]}]});
    let defer = |key: &'static str, model: &'static str| {
        client
            .post(format!("{gw}/v1beta/models/{model}:generateContent"))
            .header("x-goog-api-key", key)
            .header("x-gemgate-defer", "batch")
            .json(&body)
            .send()
    };

    let bad_key = defer("made-up-key", "gemini-2.5-flash").await.unwrap();
    assert_eq!(bad_key.status(), 400);
    let v: Value = bad_key.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("API key not valid"), "{v}");

    let bad_model = defer("good-key", "no-such-model-1").await.unwrap();
    assert_eq!(bad_model.status(), 404);

    for _ in 0..3 {
        assert_eq!(defer("good-key", "gemini-2.5-flash").await.unwrap().status(), 202);
    }
    // One look-up for the refused key, one for the accepted pair, none for its later requests.
    assert_eq!(rec.count("GET", "/models/gemini-2.5-flash"), 2);

    for (key, expected) in [("made-up-key", 0), ("good-key", 3)] {
        let list: Value = support::get_json(&format!("{gw}/gemgate/v1/operations"), Some(key)).await;
        let n = list["operations"].as_array().map_or(0, Vec::len);
        assert_eq!(n, expected, "{key}: {list}");
    }
}
