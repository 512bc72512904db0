//! Router tests: the emulator in-process on 127.0.0.1:0, driven over HTTP with reqwest.

use gemgate::emulator::{EmulatorConfig, EmulatorState, router};
use serde_json::{Value, json};
use std::time::Duration;

struct Emu {
    base: String,
    http: reqwest::Client,
    state: EmulatorState,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn error_message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap_or_default().to_string()
    }
}

async fn start(cfg: EmulatorConfig) -> Emu {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = EmulatorState::new(cfg);
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Emu { base: format!("http://{addr}"), http: reqwest::Client::new(), state }
}

impl Emu {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            rb = rb.header("x-goog-api-key", k);
        }
        for (h, v) in headers {
            rb = rb.header(*h, *v);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(serde_json::to_vec(b).unwrap());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap().to_vec();
        Resp { status, headers, body }
    }
    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::POST, path, Some("test-key"), Some(body), &[]).await
    }
    async fn post_h(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
        self.send(reqwest::Method::POST, path, Some("test-key"), Some(body), headers).await
    }
    async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, Some("test-key"), None, &[]).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, Some("test-key"), None, &[]).await
    }
    async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::PATCH, path, Some("test-key"), Some(body), &[]).await
    }
    async fn ledger(&self) -> Value {
        self.send(reqwest::Method::GET, "/emulator/ledger", None, None, &[]).await.json()
    }
}

fn user(text: &str) -> Value {
    json!({"role": "user", "parts": [{"text": text}]})
}

fn model_turn(text: &str) -> Value {
    json!({"role": "model", "parts": [{"text": text}]})
}

/// A document of about `tokens` tokens under the emulator's rule (4 bytes per token).
fn doc(tokens: usize) -> String {
    "word ".repeat(tokens * 4 / 5 + 1)
}

fn text_of(resp: &Value) -> String {
    resp["candidates"][0]["content"]["parts"].as_array().unwrap().iter().filter_map(|p| p["text"].as_str()).collect()
}

const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

#[tokio::test]
async fn generate_is_deterministic_pretty_and_version_independent() {
    let emu = start(EmulatorConfig::default()).await;
    let body = json!({"contents": [user("hello")]});
    let a = emu.post(GEN, &body).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json; charset=UTF-8"));
    assert!(a.text().starts_with("{\n  \"candidates\": ["), "{}", a.text());
    let b = emu.post("/v1/models/gemini-2.5-flash:generateContent", &body).await;
    assert_eq!(a.body, b.body, "v1 and v1beta must answer the same prompt identically");
    let v = a.json();
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 2);
    assert!(v["usageMetadata"].get("cachedContentTokenCount").is_none());
    let other = emu.post(GEN, &json!({"contents": [user("hello!")]})).await.json();
    assert_ne!(text_of(&other), text_of(&v));
    assert_ne!(other["responseId"], v["responseId"]);
    let with_prefix = emu.post("/v1beta/models/gemini-2.5-pro:generateContent", &body).await.json();
    assert_eq!(with_prefix["modelVersion"], "gemini-2.5-pro");
    assert_ne!(text_of(&with_prefix), text_of(&v), "the model is part of the prompt");
}

#[tokio::test]
async fn max_output_tokens_and_candidate_count() {
    let emu = start(EmulatorConfig::default()).await;
    let v = emu
        .post(GEN, &json!({"contents": [user("hi")], "generationConfig": {"maxOutputTokens": 4, "candidateCount": 2}}))
        .await
        .json();
    let cands = v["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 2);
    assert_eq!(cands[1]["index"], 1);
    assert!(cands.iter().all(|c| c["finishReason"] == "MAX_TOKENS"));
    assert!(v["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap() <= 8);
}

#[tokio::test]
async fn camel_and_snake_case_bodies_get_identical_bytes() {
    let emu = start(EmulatorConfig::default()).await;
    let camel = json!({
        "contents": [user("q")],
        "systemInstruction": {"parts": [{"text": "be terse"}], "role": "user"},
        "generationConfig": {"temperature": 0.2, "thinkingConfig": {"thinkingBudget": 64, "includeThoughts": false}},
        "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}
    });
    let snake = json!({
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
        "tools": [{"function_declarations": [{"parameters_json_schema": {"type": "object"}, "name": "f"}]}],
        "generation_config": {"thinking_config": {"include_thoughts": false, "thinking_budget": 64}, "temperature": 0.2},
        "system_instruction": {"parts": [{"text": "be terse"}]},
        "contents": [user("q")]
    });
    let a = emu.post(GEN, &camel).await;
    let b = emu.post(GEN, &snake).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.body, b.body);
    let v = a.json();
    assert!(v["usageMetadata"]["thoughtsTokenCount"].as_u64().unwrap() > 0);
    let total = v["usageMetadata"]["totalTokenCount"].as_u64().unwrap();
    let parts: u64 = ["promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount"]
        .iter()
        .map(|f| v["usageMetadata"][f].as_u64().unwrap())
        .sum();
    assert_eq!(total, parts);
    // `generationConfig: {}` is the same as none.
    let x = emu.post(GEN, &json!({"contents": [user("q")]})).await;
    let y = emu.post(GEN, &json!({"contents": [user("q")], "generationConfig": {}})).await;
    assert_eq!(x.body, y.body);
}

#[tokio::test]
async fn sse_framing_is_byte_exact() {
    let emu = start(EmulatorConfig::default()).await;
    let body = json!({"contents": [user("stream please")]});
    let full = emu.post(GEN, &body).await.json();
    let r = emu.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert!(text.ends_with("\r\n\r\n"));
    let events: Vec<&str> = text.strip_suffix("\r\n\r\n").unwrap().split("\r\n\r\n").collect();
    assert_eq!(events.len(), 3, "default is 3 events");
    let mut parsed = Vec::new();
    for e in &events {
        let payload = e.strip_prefix("data: ").expect("each event starts with 'data: '");
        assert!(!payload.contains('\n') && !payload.contains('\r'), "single-line JSON");
        parsed.push(serde_json::from_str::<Value>(payload).unwrap());
    }
    let ids: Vec<&Value> = parsed.iter().map(|e| &e["responseId"]).collect();
    assert!(ids.iter().all(|i| *i == &full["responseId"]));
    let counts: Vec<u64> =
        parsed.iter().map(|e| e["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "cumulative: {counts:?}");
    assert_eq!(parsed.last().unwrap()["usageMetadata"], full["usageMetadata"]);
    assert!(parsed[..2].iter().all(|e| e["candidates"][0].get("finishReason").is_none()));
    assert_eq!(parsed[2]["candidates"][0]["finishReason"], "STOP");
    let joined: String = parsed.iter().map(text_of).collect();
    assert_eq!(joined, text_of(&full));
    let many = emu
        .post_h(
            "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            &body,
            &[("x-emulator-stream-chunks", "20")],
        )
        .await;
    assert_eq!(many.text().matches("data: ").count(), 20);
}

#[tokio::test]
async fn json_array_stream_framing() {
    let emu = start(EmulatorConfig::default()).await;
    let body = json!({"contents": [user("array please")]});
    let r = emu.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent", &body).await;
    let text = r.text();
    assert!(text.starts_with("[{\n  \"candidates\""), "{text}");
    assert!(text.ends_with("}\n]"));
    assert_eq!(text.matches("\n,\r\n").count(), 2);
    let arr = r.json();
    assert_eq!(arr.as_array().unwrap().len(), 3);
    let sse = emu.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &body).await.text();
    let first: Value =
        serde_json::from_str(sse.split("\r\n\r\n").next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(arr[0], first);
}

#[tokio::test]
async fn count_tokens_both_forms() {
    let emu = start(EmulatorConfig::default()).await;
    let r = emu
        .post("/v1beta/models/gemini-2.5-flash:countTokens", &json!({"contents": [user("hello world!")]}))
        .await
        .json();
    assert_eq!(r, json!({"totalTokens": 3, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]}));
    let nested = json!({"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": [user("hello world!")],
        "systemInstruction": {"parts": [{"text": "abcdefgh"}]}}});
    let r = emu.post("/v1/models/gemini-2.5-flash:countTokens", &nested).await.json();
    assert_eq!(r["totalTokens"], 5);
    let generated = emu
        .post(GEN, &json!({"contents": [user("hello world!")], "systemInstruction": {"parts": [{"text": "abcdefgh"}]}}))
        .await
        .json();
    assert_eq!(generated["usageMetadata"]["promptTokenCount"], 5, "countTokens agrees with generate");
    let both = emu
        .post(
            "/v1/models/gemini-2.5-flash:countTokens",
            &json!({"contents": [user("x")], "generateContentRequest": {"contents": [user("x")]}}),
        )
        .await;
    assert_eq!(both.status, 400);
}

#[tokio::test]
async fn models_list_get_and_unknown() {
    let emu = start(EmulatorConfig::default()).await;
    let list = emu.get("/v1beta/models").await.json();
    let names: Vec<&str> = list["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    for want in [
        "models/gemini-2.5-flash",
        "models/gemini-2.5-pro",
        "models/gemini-3-pro-preview",
        "models/gemini-embedding-001",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let m = emu.get("/v1/models/gemini-2.5-pro").await.json();
    assert_eq!(m["name"], "models/gemini-2.5-pro");
    let r = emu.post("/v1beta/models/gemini-foo:generateContent", &json!({"contents": [user("x")]})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    assert_eq!(
        r.error_message(),
        "models/gemini-foo is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
    );
    let emb = emu
        .post(
            "/v1beta/models/gemini-embedding-001:embedContent",
            &json!({"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8}),
        )
        .await
        .json();
    assert_eq!(emb["embedding"]["values"].as_array().unwrap().len(), 8);
    let batch = emu
        .post("/v1beta/models/gemini-embedding-001:batchEmbedContents", &json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8}]}))
        .await
        .json();
    assert_eq!(batch["embeddings"][0], emb["embedding"], "same input, same vector");
    assert_ne!(batch["embeddings"][1], emb["embedding"]);
}

#[tokio::test]
async fn auth_errors_match_google() {
    let mut cfg = EmulatorConfig::default();
    cfg.auth.keys = vec!["good".into()];
    let emu = start(cfg).await;
    let body = json!({"contents": [user("x")]});
    let none = emu.send(reqwest::Method::POST, GEN, None, Some(&body), &[]).await;
    assert_eq!(none.status, 403);
    assert_eq!(none.json()["error"]["status"], "PERMISSION_DENIED");
    assert!(none.error_message().starts_with("Method doesn't allow unregistered callers"));
    let bad = emu.send(reqwest::Method::POST, GEN, Some("bad"), Some(&body), &[]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_message(), "API key not valid. Please pass a valid API key.");
    assert_eq!(bad.json()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    assert_eq!(emu.send(reqwest::Method::POST, GEN, Some("good"), Some(&body), &[]).await.status, 200);
    let q = emu.send(reqwest::Method::POST, &format!("{GEN}?key=good"), None, Some(&body), &[]).await;
    assert_eq!(q.status, 200);
    let bearer = emu.send(reqwest::Method::POST, GEN, None, Some(&body), &[("authorization", "Bearer good")]).await;
    assert_eq!(bearer.status, 200);
}

fn cache_body(model: &str, tokens: usize) -> Value {
    json!({"model": model, "contents": [user(&doc(tokens))], "systemInstruction": {"parts": [{"text": "sys"}], "role": "user"}})
}

#[tokio::test]
async fn cache_crud() {
    let emu = start(EmulatorConfig::default()).await;
    assert_eq!(emu.get("/v1beta/cachedContents").await.body, b"{}");
    let c = emu.post("/v1beta/cachedContents", &cache_body("models/gemini-2.5-flash", 1100)).await;
    assert_eq!(c.status, 200, "{}", c.text());
    let c = c.json();
    let name = c["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("cachedContents/") && name.len() == "cachedContents/".len() + 12);
    assert_eq!(c["displayName"], "");
    assert_eq!(c["model"], "models/gemini-2.5-flash");
    assert!(c.get("contents").is_none() && c.get("systemInstruction").is_none() && c.get("ttl").is_none());
    let tokens = c["usageMetadata"]["totalTokenCount"].as_u64().unwrap();
    assert!(tokens >= 1100);
    let created = chrono::DateTime::parse_from_rfc3339(c["createTime"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(c["expireTime"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 3600, "default TTL is 1 h");
    let got = emu.get(&format!("/v1/{name}")).await.json();
    assert_eq!(got, c);
    let list = emu.get("/v1beta/cachedContents?pageSize=5").await.json();
    assert_eq!(list["cachedContents"].as_array().unwrap().len(), 1);
    let p = emu.patch(&format!("/v1beta/{name}"), &json!({"ttl": "600s"})).await.json();
    let exp = chrono::DateTime::parse_from_rfc3339(p["expireTime"].as_str().unwrap()).unwrap();
    let upd = chrono::DateTime::parse_from_rfc3339(p["updateTime"].as_str().unwrap()).unwrap();
    assert_eq!((exp - upd).num_seconds(), 600);
    let p = emu.patch(&format!("/v1beta/{name}"), &json!({"expireTime": "2099-01-01T00:00:00+00:00"})).await.json();
    assert!(p["expireTime"].as_str().unwrap().starts_with("2099-01-01T00:00:00"));
    let bad = emu.patch(&format!("/v1beta/{name}"), &json!({"name": name, "ttl": "5s"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.error_message(),
        "Invalid value at 'cached_content' (oneof), oneof field '_name' is already set. Cannot set 'name'"
    );
    let both = emu.patch(&format!("/v1beta/{name}"), &json!({"ttl": "5s", "expireTime": "2099-01-01T00:00:00Z"})).await;
    assert_eq!(both.status, 400);
    let mut create_both = cache_body("models/gemini-2.5-flash", 1100);
    create_both["ttl"] = json!("60s");
    create_both["expire_time"] = json!("2099-01-01T00:00:00Z");
    assert_eq!(emu.post("/v1beta/cachedContents", &create_both).await.status, 400);
    // Another key cannot see it.
    let other = emu.send(reqwest::Method::GET, &format!("/v1beta/{name}"), Some("other-key"), None, &[]).await;
    assert_eq!(other.status, 403);
    let d = emu.delete(&format!("/v1beta/{name}")).await;
    assert_eq!((d.status, d.json()), (200, json!({})));
    let gone = emu.get(&format!("/v1beta/{name}")).await;
    assert_eq!(gone.status, 403);
    assert_eq!(gone.error_message(), "CachedContent not found (or permission denied)");
}

#[tokio::test]
async fn cache_minimum_size_per_model() {
    let emu = start(EmulatorConfig::default()).await;
    let small = emu
        .post("/v1beta/cachedContents", &json!({"model": "models/gemini-2.5-flash", "contents": [user(&doc(600))]}))
        .await;
    assert_eq!(small.status, 400);
    assert_eq!(small.json()["error"]["status"], "INVALID_ARGUMENT");
    let msg = small.error_message();
    assert!(msg.starts_with("Cached content is too small. total_token_count="), "{msg}");
    assert!(msg.ends_with(", min_total_token_count=1024"), "{msg}");
    let pro = emu.post("/v1beta/cachedContents", &cache_body("models/gemini-2.5-pro", 2000)).await;
    assert!(pro.error_message().ends_with("min_total_token_count=4096"), "{}", pro.text());
    let bare_id = emu.post("/v1beta/cachedContents", &cache_body("gemini-2.5-pro", 4200)).await;
    assert_eq!(bare_id.status, 200);
    assert_eq!(bare_id.json()["model"], "models/gemini-2.5-pro");
}

#[tokio::test]
async fn cache_errors_on_generate() {
    let emu = start(EmulatorConfig::default()).await;
    let missing = emu.post(GEN, &json!({"contents": [user("x")], "cachedContent": "cachedContents/nope"})).await;
    assert_eq!(missing.status, 403);
    assert_eq!(missing.error_message(), "CachedContent not found (or permission denied)");
    let name = emu.post("/v1beta/cachedContents", &cache_body("models/gemini-2.5-flash", 1100)).await.json()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let conflict = emu
        .post(
            GEN,
            &json!({"contents": [user("x")], "cachedContent": name, "systemInstruction": {"parts": [{"text": "s"}]}}),
        )
        .await;
    assert_eq!(conflict.status, 400);
    assert_eq!(
        conflict.error_message(),
        "CachedContent can not be used with GenerateContent request setting system_instruction, tools or tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
    );
    let mismatch = emu
        .post(
            "/v1beta/models/gemini-2.5-pro:generateContent",
            &json!({"contents": [user("x")], "cached_content": name}),
        )
        .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(
        mismatch.error_message(),
        "Model used by GenerateContent request (models/gemini-2.5-pro) and CachedContent (models/gemini-2.5-flash) has to be the same."
    );
    let other_key = emu
        .send(
            reqwest::Method::POST,
            GEN,
            Some("someone-else"),
            Some(&json!({"contents": [user("x")], "cachedContent": name})),
            &[],
        )
        .await;
    assert_eq!(other_key.status, 403, "caches are scoped per API key");
    // Expiry is evaluated on the emulator clock.
    emu.patch(&format!("/v1beta/{name}"), &json!({"ttl": "60s"})).await;
    assert_eq!(emu.post(GEN, &json!({"contents": [user("x")], "cachedContent": name})).await.status, 200);
    emu.state.clock().advance(Duration::from_secs(61));
    assert_eq!(emu.post(GEN, &json!({"contents": [user("x")], "cachedContent": name})).await.status, 403);
    assert_eq!(emu.get("/v1beta/cachedContents").await.body, b"{}");
}

/// The heart of the gateway's caching promise: moving a prefix into a cache changes nothing the
/// application sees except the usage cache fields.
#[tokio::test]
async fn request_rewritten_to_use_a_cache_gets_the_same_answer() {
    let emu = start(EmulatorConfig::default()).await;
    let system = json!({"parts": [{"text": "You are a careful assistant."}], "role": "user"});
    let tools = json!([{"functionDeclarations": [{"name": "lookup", "description": "d",
        "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}}]}]);
    let tool_config = json!({"functionCallingConfig": {"mode": "AUTO"}});
    let prefix = vec![user(&doc(1200)), model_turn("Noted."), user("Now a question about it.")];
    for last in [
        user("What does it say?"),
        json!({"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"r": 1}}}]}),
    ] {
        let mut all = prefix.clone();
        all.push(last.clone());
        let original = json!({"contents": all, "systemInstruction": system, "tools": tools, "toolConfig": tool_config,
            "generationConfig": {"temperature": 0.3}});
        let cache = emu
            .post(
                "/v1beta/cachedContents",
                &json!({"model": "models/gemini-2.5-flash", "contents": prefix,
                "system_instruction": system, "tools": tools, "tool_config": tool_config, "ttl": "300s"}),
            )
            .await
            .json();
        let rewritten =
            json!({"contents": [last], "cachedContent": cache["name"], "generationConfig": {"temperature": 0.3}});
        let a = emu.post(GEN, &original).await;
        let b = emu.post(GEN, &rewritten).await;
        assert_eq!((a.status, b.status), (200, 200), "{} {}", a.text(), b.text());
        let (mut a, mut b) = (a.json(), b.json());
        let cache_tokens = cache["usageMetadata"]["totalTokenCount"].clone();
        assert_eq!(b["usageMetadata"]["cachedContentTokenCount"], cache_tokens);
        assert_eq!(b["usageMetadata"]["cacheTokensDetails"][0]["tokenCount"], cache_tokens);
        assert_eq!(
            a["usageMetadata"]["promptTokenCount"], b["usageMetadata"]["promptTokenCount"],
            "prompt includes cached tokens"
        );
        let u = b["usageMetadata"].as_object_mut().unwrap();
        // shift_remove keeps the order of the other fields (remove would swap the last one in).
        u.shift_remove("cachedContentTokenCount");
        u.shift_remove("cacheTokensDetails");
        assert_eq!(a["responseId"], b["responseId"]);
        assert_eq!(a["candidates"], b["candidates"]);
        a["usageMetadata"].as_object_mut().unwrap().shift_remove("cachedContentTokenCount");
        assert_eq!(serde_json::to_vec_pretty(&a).unwrap(), serde_json::to_vec_pretty(&b).unwrap());
    }
}

#[tokio::test]
async fn function_calling_round_trip() {
    let emu = start(EmulatorConfig::default()).await;
    let tools = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]);
    let first = emu.post(GEN, &json!({"contents": [user("weather in Paris?")], "tools": tools})).await.json();
    let call = &first["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "get_weather");
    assert!(call["args"]["city"].is_string());
    let second = emu
        .post(
            GEN,
            &json!({"tools": tools, "contents": [user("weather in Paris?"), first["candidates"][0]["content"],
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 20}}}]}]}),
        )
        .await
        .json();
    assert!(!text_of(&second).is_empty());
    let none = emu.post(GEN, &json!({"contents": [user("weather?")], "tools": tools, "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}})).await.json();
    assert!(!text_of(&none).is_empty());
}

fn short_batches() -> EmulatorConfig {
    let mut cfg = EmulatorConfig::default();
    cfg.batch.processing_delay = Duration::from_millis(150);
    cfg
}

async fn wait_done(emu: &Emu, name: &str) -> Value {
    for _ in 0..100 {
        let op = emu.get(&format!("/v1beta/{name}")).await.json();
        if op["done"] == true {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("batch {name} never finished");
}

#[tokio::test]
async fn inline_batch_lifecycle() {
    let emu = start(short_batches()).await;
    let req = json!({"contents": [user("batched question")]});
    let body = json!({"batch": {"displayName": "b1", "priority": "5", "inputConfig": {"requests": {"requests": [
        {"request": req, "metadata": {"key": "k1"}},
        {"request": {"model": "models/gemini-nope", "contents": [user("x")]}, "metadata": {"key": "k2"}},
        {"request": {"contents": [user("third")]}}
    ]}}}});
    let op = emu.post("/v1beta/models/gemini-2.5-flash:batchGenerateContent", &body).await;
    assert_eq!(op.status, 200, "{}", op.text());
    let op = op.json();
    let name = op["name"].as_str().unwrap().to_string();
    let id = name.strip_prefix("batches/").unwrap();
    assert_eq!(id.len(), 36);
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let md = &op["metadata"];
    assert_eq!(md["@type"], "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch");
    assert_eq!(md["state"], "BATCH_STATE_PENDING");
    assert_eq!(md["batchStats"], json!({"requestCount": "3", "pendingRequestCount": "3"}));
    assert_eq!(md["priority"], "5");
    assert!(op.get("done").is_none() && op.get("response").is_none());
    let done = wait_done(&emu, &name).await;
    assert_eq!(done["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    assert_eq!(
        done["metadata"]["batchStats"],
        json!({"requestCount": "3", "successfulRequestCount": "2", "failedRequestCount": "1"})
    );
    let items = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let direct = emu.post(GEN, &req).await.json();
    assert_eq!(items[0]["response"], direct, "a batched request gets what a direct call gets");
    assert_eq!(items[0]["metadata"], json!({"key": "k1"}));
    assert_eq!(items[1]["error"]["code"], 5);
    assert!(items[2].get("metadata").is_none() && items[2].get("response").is_some());
    assert_eq!(
        done["response"]["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
    );
    assert_eq!(done["response"]["inlinedResponses"], done["metadata"]["output"]["inlinedResponses"]);
    let list = emu.get("/v1beta/batches").await.json();
    let listed = &list["operations"][0];
    assert_eq!(listed["name"], json!(name));
    assert!(listed["metadata"].get("output").is_none(), "list leaves inline responses out");
    assert!(listed["response"].get("inlinedResponses").is_none());
    let ledger = emu.ledger().await;
    let total = &ledger["total"];
    assert_eq!(total["batch_jobs_submitted"], 1);
    assert_eq!(total["batch_requests"], 2);
    let usage = &direct["usageMetadata"];
    assert!(total["batch_input_tokens"].as_u64().unwrap() >= usage["promptTokenCount"].as_u64().unwrap());
    assert_eq!(total["input_tokens"], usage["promptTokenCount"], "only the direct call is billed at the standard rate");
    let del = emu.delete(&format!("/v1beta/{name}")).await;
    assert_eq!((del.status, del.json()), (200, json!({})));
    assert_eq!(emu.get(&format!("/v1beta/{name}")).await.status, 404);
    assert_eq!(emu.get("/v1beta/batches").await.body, b"{}");
}

#[tokio::test]
async fn batch_cancel_and_expiry() {
    let mut cfg = EmulatorConfig::default();
    cfg.batch.processing_delay = Duration::from_secs(3600);
    let emu = start(cfg).await;
    let body = json!({"batch": {"display_name": "c", "input_config": {"requests": {"requests": [{"request": {"contents": [user("x")]}}]}}}});
    let name = emu.post("/v1/models/gemini-2.5-flash:batchGenerateContent", &body).await.json()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let c = emu.post(&format!("/v1/{name}:cancel"), &json!({})).await;
    assert_eq!((c.status, c.json()), (200, json!({})));
    let op = emu.get(&format!("/v1/{name}")).await.json();
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_CANCELLED");
    assert_eq!(op["done"], true);
    assert_eq!(emu.ledger().await["total"]["batch_requests"], 0, "cancelled work is not billed");
    let name2 = emu.post("/v1/models/gemini-2.5-flash:batchGenerateContent", &body).await.json()["name"]
        .as_str()
        .unwrap()
        .to_string();
    emu.state.clock().advance(Duration::from_secs(1800));
    assert_eq!(emu.get(&format!("/v1/{name2}")).await.json()["metadata"]["state"], "BATCH_STATE_RUNNING");
    emu.state.clock().advance(Duration::from_secs(1800));
    assert_eq!(emu.get(&format!("/v1/{name2}")).await.json()["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
}

/// Resumable upload as the Python SDK does it: start with the key, chunks without it.
async fn upload(emu: &Emu, data: &[u8], mime: &str, chunk: usize) -> Value {
    let start = emu
        .send(
            reqwest::Method::POST,
            "/upload/v1beta/files",
            Some("test-key"),
            Some(&json!({"file": {"display_name": "in", "mime_type": mime, "size_bytes": data.len()}})),
            &[
                ("x-goog-upload-protocol", "resumable"),
                ("x-goog-upload-command", "start"),
                ("x-goog-upload-header-content-length", &data.len().to_string()),
                ("x-goog-upload-header-content-type", mime),
            ],
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.text());
    assert!(start.body.is_empty());
    assert_eq!(start.header("x-goog-upload-status"), Some("active"));
    assert_eq!(start.header("x-goog-upload-chunk-granularity"), Some("8388608"));
    let url = start.header("x-goog-upload-url").unwrap().to_string();
    assert!(url.starts_with(&format!("{}/upload/v1beta/files?upload_id=", emu.base)), "{url}");
    assert!(url.ends_with("&upload_protocol=resumable"));
    let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
    let mut offset = 0;
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let r = emu
            .http
            .post(&url)
            .header("x-goog-upload-command", if last { "upload, finalize" } else { "upload" })
            .header("x-goog-upload-offset", offset.to_string())
            .body(c.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.headers()["x-goog-upload-status"].to_str().unwrap().to_string();
        assert_eq!(r.status(), 200);
        offset += c.len();
        if last {
            assert_eq!(status, "final");
            return serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap()["file"].clone();
        }
        assert_eq!(status, "active");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    unreachable!()
}

#[tokio::test]
async fn files_upload_get_list_delete() {
    let emu = start(EmulatorConfig::default()).await;
    let data = b"hello file contents";
    let f = upload(&emu, data, "text/plain", 7).await;
    let name = f["name"].as_str().unwrap().to_string();
    assert_eq!(f["sizeBytes"], "19");
    assert_eq!(f["mimeType"], "text/plain");
    assert_eq!(f["displayName"], "in");
    assert_eq!((f["state"].as_str(), f["source"].as_str()), (Some("ACTIVE"), Some("UPLOADED")));
    assert!(f["sha256Hash"].as_str().is_some_and(|h| !h.is_empty()));
    let created = chrono::DateTime::parse_from_rfc3339(f["createTime"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(f["expirationTime"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_hours(), 48);
    assert_eq!(emu.get(&format!("/v1beta/{name}")).await.json(), f, "get returns the bare File");
    assert_eq!(emu.get("/v1/files").await.json()["files"][0], f);
    let dl = emu.get(&format!("/v1beta/{name}:download?alt=media")).await;
    assert_eq!(dl.status, 400, "uploaded files cannot be downloaded");
    // A chunk at the wrong offset is refused.
    let start = emu
        .send(
            reqwest::Method::POST,
            "/upload/v1/files",
            Some("test-key"),
            Some(&json!({"file": {"mimeType": "text/plain", "sizeBytes": "4"}})),
            &[("x-goog-upload-protocol", "resumable"), ("x-goog-upload-command", "start")],
        )
        .await;
    let url = start.header("x-goog-upload-url").unwrap();
    let r = emu
        .http
        .post(url)
        .header("x-goog-upload-command", "upload")
        .header("x-goog-upload-offset", "3")
        .body("abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let d = emu.delete(&format!("/v1beta/{name}")).await;
    assert_eq!((d.status, d.json()), (200, json!({})));
    let gone = emu.get(&format!("/v1beta/{name}")).await;
    assert_eq!(gone.status, 403);
    let id = name.strip_prefix("files/").unwrap();
    assert_eq!(
        gone.error_message(),
        format!("You do not have permission to access the File {id} or it may not exist.")
    );
}

#[tokio::test]
async fn batch_from_file_writes_a_downloadable_results_file() {
    let emu = start(short_batches()).await;
    let lines = [
        json!({"key": "a", "request": {"contents": [user("first")], "generation_config": {"temperature": 0.7}}}),
        json!({"contents": [user("bare line")]}),
        json!({"key": "c", "request": {"model": "models/nope", "contents": [user("x")]}}),
    ];
    let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let f = upload(&emu, jsonl.as_bytes(), "jsonl", 50).await;
    let op = emu
        .post(
            "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
            &json!({"batch": {"display_name": "f", "input_config": {"file_name": f["name"]}}}),
        )
        .await;
    assert_eq!(op.status, 200, "{}", op.text());
    let op = op.json();
    assert_eq!(op["metadata"]["inputConfig"]["fileName"], f["name"]);
    let done = wait_done(&emu, op["name"].as_str().unwrap()).await;
    let id = op["name"].as_str().unwrap().strip_prefix("batches/").unwrap();
    let out_name = format!("files/batch-{id}");
    assert_eq!(done["metadata"]["output"]["responsesFile"], json!(out_name));
    assert_eq!(done["response"]["responsesFile"], json!(out_name));
    let a = emu.get(&format!("/v1beta/{out_name}:download?alt=media")).await;
    let b = emu.get(&format!("/download/v1beta/{out_name}:download?alt=media")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b.body);
    let out: Vec<Value> = a.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["key"], "a");
    let direct =
        emu.post(GEN, &json!({"contents": [user("first")], "generationConfig": {"temperature": 0.7}})).await.json();
    assert_eq!(out[0]["response"], direct);
    assert!(out[1].get("key").is_none() && out[1]["response"]["candidates"].is_array());
    assert_eq!(out[2]["key"], "c");
    assert_eq!(out[2]["error"]["code"], 5);
    let meta = emu.get(&format!("/v1beta/{out_name}")).await.json();
    assert_eq!(meta["source"], "GENERATED");
    let missing = emu
        .post(
            "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
            &json!({"batch": {"inputConfig": {"fileName": "files/none"}}}),
        )
        .await;
    assert_eq!(missing.status, 403);
}

#[tokio::test]
async fn ledger_bills_cached_tokens_at_the_cache_rate() {
    let emu = start(EmulatorConfig::default()).await;
    let c = emu.post("/v1beta/cachedContents", &cache_body("models/gemini-2.5-flash", 1100)).await.json();
    let cache_tokens = c["usageMetadata"]["totalTokenCount"].as_u64().unwrap();
    let r = emu.post(GEN, &json!({"contents": [user("question")], "cachedContent": c["name"]})).await.json();
    let u = &r["usageMetadata"];
    let prompt = u["promptTokenCount"].as_u64().unwrap();
    assert_eq!(prompt, cache_tokens + 2);
    emu.state.clock().advance(Duration::from_secs(100));
    let l = emu.ledger().await;
    assert_eq!(l["keys"].as_object().unwrap().len(), 1);
    let key = l["keys"].as_object().unwrap().keys().next().unwrap().clone();
    assert_eq!(key.len(), 16);
    assert!(!l.to_string().contains("test-key"), "raw keys never appear");
    let t = &l["total"];
    assert_eq!(t["cached_tokens"], cache_tokens);
    assert_eq!(t["input_tokens"], prompt - cache_tokens);
    assert_eq!(t["output_tokens"], u["candidatesTokenCount"]);
    assert_eq!(t["cache_creations"], 1);
    assert_eq!(t["cache_creation_tokens"], cache_tokens);
    assert_eq!(t["requests"], 1);
    assert_eq!(t["generate_calls"]["generateContent"], 1);
    let storage = t["cache_storage_token_seconds"].as_f64().unwrap();
    assert!(storage >= 100.0 * cache_tokens as f64, "{storage}");
    emu.patch(&format!("/v1beta/{}", c["name"].as_str().unwrap()), &json!({"ttl": "10s"})).await;
    emu.delete(&format!("/v1beta/{}", c["name"].as_str().unwrap())).await;
    let t = emu.ledger().await["total"].clone();
    assert_eq!((t["cache_ttl_updates"].as_u64(), t["cache_deletions"].as_u64()), (Some(1), Some(1)));
    let r = emu.send(reqwest::Method::POST, "/emulator/ledger/reset", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(emu.ledger().await["total"]["requests"], 0);
}

#[tokio::test]
async fn flex_is_billed_apart_and_can_be_shed() {
    let emu = start(EmulatorConfig::default()).await;
    let r = emu.post(GEN, &json!({"contents": [user("flex me")], "service_tier": "flex"})).await;
    assert_eq!(r.status, 200);
    let u = r.json()["usageMetadata"].clone();
    let t = emu.ledger().await["total"].clone();
    assert_eq!(t["flex_input_tokens"], u["promptTokenCount"]);
    assert_eq!(t["flex_output_tokens"], u["candidatesTokenCount"]);
    assert_eq!(t["input_tokens"], 0);
    let mut cfg = EmulatorConfig::default();
    cfg.flex.shed_rate = 1.0;
    let shedding = start(cfg).await;
    let r = shedding.post(GEN, &json!({"contents": [user("flex me")], "serviceTier": "flex"})).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["status"], "UNAVAILABLE");
    assert_eq!(
        shedding.post(GEN, &json!({"contents": [user("standard")]})).await.status,
        200,
        "standard is never shed"
    );
    assert_eq!(shedding.ledger().await["total"]["flex_shed"], 1);
}

#[tokio::test]
async fn fault_headers() {
    let emu = start(EmulatorConfig::default()).await;
    let body = json!({"contents": [user("x")]});
    let r = emu.post_h(GEN, &body, &[("x-emulator-fault", "429")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.RetryInfo");
    assert_eq!(r.json()["error"]["details"][0]["retryDelay"], "9s");
    assert_eq!(emu.post_h(GEN, &body, &[("x-emulator-fault", "500")]).await.status, 500);
    assert_eq!(emu.post_h(GEN, &body, &[("x-emulator-fault", "503")]).await.status, 503);
    let t0 = std::time::Instant::now();
    let delayed = emu.post_h(GEN, &body, &[("x-emulator-fault", "delay-ms=150")]).await;
    assert_eq!(delayed.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    let sse = emu
        .post_h(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            &body,
            &[("x-emulator-fault", "midstream-error")],
        )
        .await;
    assert_eq!(sse.status, 200);
    let events: Vec<&str> = sse.text().leak().split("\r\n\r\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2);
    let err: Value = serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(err["error"]["code"], 503);
    let dropped = emu
        .http
        .post(format!("{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", emu.base))
        .header("x-goog-api-key", "k")
        .header("x-emulator-fault", "drop")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(dropped.bytes().await.is_err(), "the body must break off");
    // Admin paths are never faulted; failed calls are not billed.
    let l = emu.send(reqwest::Method::GET, "/emulator/ledger", None, None, &[("x-emulator-fault", "500")]).await;
    assert_eq!(l.status, 200);
    assert_eq!(l.json()["total"]["output_tokens"], delayed.json()["usageMetadata"]["candidatesTokenCount"]);
}

#[tokio::test]
async fn configured_error_rate_applies_to_api_calls() {
    let mut cfg = EmulatorConfig::default();
    cfg.faults.rate_500 = 1.0;
    let emu = start(cfg).await;
    assert_eq!(emu.post(GEN, &json!({"contents": [user("x")]})).await.status, 500);
    assert_eq!(emu.send(reqwest::Method::GET, "/emulator/ledger", None, None, &[]).await.status, 200);
}

#[tokio::test]
async fn file_references_must_exist() {
    let emu = start(EmulatorConfig::default()).await;
    let f = upload(&emu, b"some text", "text/plain", 100).await;
    let part = |uri: &Value| json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": uri, "mimeType": "text/plain"}}, {"text": "summarise"}]}]});
    let ok = emu.post(GEN, &part(&f["uri"])).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let missing = emu.post(GEN, &part(&json!("https://generativelanguage.googleapis.com/v1beta/files/nope"))).await;
    assert_eq!(missing.status, 403);
    assert_eq!(missing.error_message(), "You do not have permission to access the File nope or it may not exist.");
}

/// The real binary: `gemgate emulator --listen 127.0.0.1:0` announces its port and serves.
#[tokio::test]
async fn binary_announces_its_port_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gemgate"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/emulator.toml"),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let base = line.strip_prefix("emulator listening on ").expect(&line).to_string();
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", "k")
        .body(json!({"contents": [user("hello")]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn async_batch_embeddings_and_in_process_ledger() {
    let emu = start(short_batches()).await;
    let body = json!({"batch": {"displayName": "e", "inputConfig": {"requests": {"requests": [
        {"request": {"content": {"parts": [{"text": "a"}], "role": "user"}, "outputDimensionality": 8}},
        {"request": {"content": {"parts": [{"text": "b"}], "role": "user"}, "outputDimensionality": 8}}]}}}});
    let op = emu.post("/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent", &body).await.json();
    assert!(op["metadata"]["@type"].as_str().unwrap().ends_with("v1main.EmbedContentBatch"));
    let done = wait_done(&emu, op["name"].as_str().unwrap()).await;
    let items = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"].as_array().unwrap();
    let direct = emu
        .post(
            "/v1beta/models/gemini-embedding-001:embedContent",
            &json!({"content": {"parts": [{"text": "a"}], "role": "user"}, "outputDimensionality": 8}),
        )
        .await
        .json();
    assert_eq!(items[0]["response"]["embedding"], direct["embedding"]);
    assert_eq!(emu.state.ledger()["total"]["batch_requests"], 2);
    emu.state.reset_ledger();
    assert_eq!(emu.state.ledger()["total"]["batch_requests"], 0);
    // Generation models don't embed and embedding models don't generate.
    assert_eq!(
        emu.post(GEN.replace("gemini-2.5-flash", "gemini-embedding-001").as_str(), &json!({"contents": [user("x")]}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn implicit_caching_bills_a_recent_prefix_as_cached_when_enabled() {
    let body = |question: &str| json!({"contents": [user(&doc(3000)), model_turn("Read."), user(question)]});
    // Off by default: the same prefix twice is billed in full both times.
    let emu = start(EmulatorConfig::default()).await;
    for q in ["first?", "second?"] {
        let r = emu.post(GEN, &body(q)).await.json();
        assert!(r["usageMetadata"].get("cachedContentTokenCount").is_none(), "{r}");
    }
    let mut cfg = EmulatorConfig::default();
    cfg.caching.implicit_window = std::time::Duration::from_secs(300);
    let emu = start(cfg).await;
    let first = emu.post(GEN, &body("first?")).await.json();
    assert!(first["usageMetadata"].get("cachedContentTokenCount").is_none(), "{first}");
    let second = emu.post(GEN, &body("second?")).await.json();
    let cached = second["usageMetadata"]["cachedContentTokenCount"].as_u64().expect("implicitly cached");
    let prompt = second["usageMetadata"]["promptTokenCount"].as_u64().unwrap();
    assert!(cached >= 3000 && cached < prompt, "{cached} of {prompt}");
    let ledger = emu.ledger().await;
    assert_eq!(ledger["total"]["cached_tokens"].as_u64(), Some(cached), "{ledger}");
    assert_eq!(ledger["total"]["cache_creations"], 0, "no cache object");
    assert_eq!(ledger["total"]["cache_storage_token_seconds"], 0.0, "no storage fee");
}
