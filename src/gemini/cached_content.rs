//! Moving a request's prefix into a cache: the body that creates the cache, and the request that
//! references it. Values are moved as the client wrote them; together they mean exactly what the
//! original request meant.

use super::canonical;
use serde_json::{Map, Value, json};

/// Body of `cachedContents.create` holding the request's systemInstruction, tools, toolConfig and
/// its first `k` contents.
pub fn cache_body(body: &Map<String, Value>, model: &str, k: usize, ttl_secs: u64, display_name: &str) -> Value {
    let mut out = json!({"model": model, "displayName": display_name, "ttl": format!("{ttl_secs}s")});
    let obj = out.as_object_mut().expect("object literal");
    for field in ["systemInstruction", "tools", "toolConfig"] {
        if let Some(v) = canonical::get(body, field).filter(|v| !canonical::is_empty(Some(v))) {
            obj.insert(field.to_string(), v.clone());
        }
    }
    let contents = canonical::get(body, "contents").and_then(Value::as_array);
    if let Some(c) = contents.filter(|_| k > 0) {
        obj.insert("contents".into(), Value::Array(c[..k.min(c.len())].to_vec()));
    }
    out
}

/// The request rewritten to use cache `name` holding its first `k` contents: prefix fields
/// removed, leading contents dropped, `cachedContent` added; everything else (generationConfig,
/// safetySettings, unknown fields) kept in place.
pub fn rewritten(body: &Map<String, Value>, k: usize, name: &str) -> Vec<u8> {
    // Only what stays is cloned: the prefix (the large part) is skipped, not copied.
    let mut out = Map::with_capacity(body.len() + 1);
    for (key, value) in body {
        match canonical::camel_key(key).as_ref() {
            "systemInstruction" | "tools" | "toolConfig" => {}
            "contents" => {
                let rest = value.as_array().map(|c| c.iter().skip(k).cloned().collect()).unwrap_or_default();
                out.insert(key.clone(), Value::Array(rest));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out.insert("cachedContent".into(), Value::String(name.to_string()));
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Map<String, Value> {
        json!({
            "system_instruction": {"parts": [{"text": "sys"}], "role": "user"},
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
            "contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "model", "parts": [{"text": "b"}]}, {"role": "user", "parts": [{"text": "c"}]}],
            "generationConfig": {"temperature": 0.1},
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
            "labels": {"team": "x"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn cache_and_rewritten_request_together_hold_everything_once() {
        let body = request();
        let cache = cache_body(&body, "models/gemini-2.5-flash", 2, 3600, "gemgate:abc");
        assert_eq!(cache["systemInstruction"]["parts"][0]["text"], "sys");
        assert_eq!(cache["tools"][0]["functionDeclarations"][0]["name"], "f");
        assert_eq!(cache["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
        assert_eq!(cache["contents"].as_array().unwrap().len(), 2);
        assert_eq!(cache["ttl"], "3600s");
        let req: Value = serde_json::from_slice(&rewritten(&body, 2, "cachedContents/x")).unwrap();
        let req = req.as_object().unwrap();
        for gone in ["system_instruction", "systemInstruction", "tools", "toolConfig"] {
            assert!(!req.contains_key(gone), "{gone} must move into the cache");
        }
        assert_eq!(req["contents"], json!([{"role": "user", "parts": [{"text": "c"}]}]));
        assert_eq!(req["cachedContent"], "cachedContents/x");
        assert_eq!(req["generationConfig"], json!({"temperature": 0.1}));
        assert!(req.contains_key("safetySettings") && req.contains_key("labels"));
    }

    #[test]
    fn boundary_zero_moves_no_contents() {
        let body = request();
        let cache = cache_body(&body, "models/m", 0, 60, "gemgate:x");
        assert!(cache.get("contents").is_none());
        let req: Value = serde_json::from_slice(&rewritten(&body, 0, "cachedContents/y")).unwrap();
        assert_eq!(req["contents"].as_array().unwrap().len(), 3);
    }
}
