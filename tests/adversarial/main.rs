//! The adversarial tier: one test (or a few) per class of hostile input, each over real loopback
//! sockets against a real gateway, each bounded in time and asserting a figure a reviewer can
//! check (bytes inflated before refusal, depth refused, descriptors and RSS before and after,
//! requests lost). The heavier ones (thousands of sockets, 20,000 fuzzed bodies per route) run
//! only with `GEMGATE_ADVERSARIAL_SLOW=1`, which `.ci/run` sets.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod connections;
mod fuzz;
mod owned_paths;
mod secrets;
mod smuggling;
mod storage;
mod webhooks;

/// Whether the slow classes run (`GEMGATE_ADVERSARIAL_SLOW=1`); otherwise they run a smaller
/// version of themselves, so every class is exercised by a plain `cargo test`.
pub fn slow() -> bool {
    std::env::var("GEMGATE_ADVERSARIAL_SLOW").is_ok_and(|v| v == "1")
}

/// A gateway error answer: Gemini's JSON with the given code.
pub fn assert_gemini_error(status: u16, body: &str, code: u16) {
    assert_eq!(status, code, "{body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["error"]["code"], code, "{body}");
    assert!(v["error"]["status"].is_string() && v["error"]["message"].is_string(), "{body}");
}
