//! Models list/get, the "model not found" check every model-scoped method shares, and the
//! embedding methods (embedContent, batchEmbedContents) with deterministic vectors.

use super::config::{EmulatorConfig, ModelConfig};
use super::http::{json_ok, paginate};
use super::textgen;
use crate::gemini::GeminiError;
use crate::gemini::canonical::{self, get};
use axum::response::Response;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

impl ModelConfig {
    pub fn is_embedding(&self) -> bool {
        self.id.contains("embedding")
    }

    /// Methods listed in `supportedGenerationMethods`.
    pub fn methods(&self) -> Vec<String> {
        if let Some(m) = &self.methods {
            return m.clone();
        }
        let list: &[&str] = if self.is_embedding() {
            &[
                "embedContent",
                "countTextTokens",
                "countTokens",
                "asyncBatchEmbedContent",
            ]
        } else {
            &[
                "generateContent",
                "countTokens",
                "createCachedContent",
                "batchGenerateContent",
            ]
        };
        list.iter().map(|s| s.to_string()).collect()
    }

    pub fn supports(&self, method: &str) -> bool {
        let methods = self.methods();
        match method {
            "streamGenerateContent" => methods.iter().any(|m| m == "generateContent"),
            "batchEmbedContents" => methods.iter().any(|m| m == "embedContent"),
            m => methods.iter().any(|x| x == m),
        }
    }
}

/// Google's 404 for an unknown model or an unsupported method.
pub fn not_found(model: &str, version: &str, method: &str) -> GeminiError {
    GeminiError::not_found(format!(
        "{model} is not found for API version {version}, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."
    ))
}

/// Checks that `name` (`models/x` or `tunedModels/x`) exists and supports `method`.
/// Tuned models are accepted as they come.
pub fn check<'a>(
    cfg: &'a EmulatorConfig,
    name: &str,
    version: &str,
    method: &str,
) -> Result<Option<&'a ModelConfig>, GeminiError> {
    if name.starts_with("tunedModels/") {
        return Ok(None);
    }
    let id = name.strip_prefix("models/").unwrap_or(name);
    match cfg.model(id) {
        Some(m) if m.supports(method) => Ok(Some(m)),
        _ => Err(not_found(&format!("models/{id}"), version, method)),
    }
}

fn model_json(m: &ModelConfig) -> Value {
    let mut v = json!({
        "name": format!("models/{}", m.id),
        "version": "001",
        "displayName": m.display_name.clone().unwrap_or_else(|| m.id.clone()),
        "description": format!("{} (gemgate emulator)", m.display_name.as_deref().unwrap_or(&m.id)),
        "inputTokenLimit": m.input_token_limit,
        "outputTokenLimit": m.output_token_limit,
        "supportedGenerationMethods": m.methods(),
    });
    if !m.is_embedding() {
        let o = v.as_object_mut().expect("object literal");
        o.insert("temperature".into(), json!(1));
        o.insert("topP".into(), json!(0.95));
        o.insert("topK".into(), json!(64));
        o.insert("maxTemperature".into(), json!(2));
        o.insert(
            "thinking".into(),
            json!(m.id.starts_with("gemini-2.5") || m.id.starts_with("gemini-3")),
        );
    }
    v
}

pub fn list(cfg: &EmulatorConfig, q: &HashMap<String, String>) -> Response {
    let (page, next) = paginate(cfg.models.iter().map(model_json).collect(), q, 50, 1000);
    let mut out = Map::new();
    out.insert("models".into(), Value::Array(page));
    if let Some(n) = next {
        out.insert("nextPageToken".into(), json!(n));
    }
    json_ok(&Value::Object(out))
}

pub fn get_one(cfg: &EmulatorConfig, id: &str, version: &str) -> Result<Response, GeminiError> {
    cfg.model(id)
        .map(|m| json_ok(&model_json(m)))
        .ok_or_else(|| not_found(&format!("models/{id}"), version, "get"))
}

/// One EmbedContentRequest → `{"values":[…]}`, a function of model, content, task type and title.
pub fn embed_one(
    cfg: &EmulatorConfig,
    model: &str,
    req: &Map<String, Value>,
) -> Result<Value, GeminiError> {
    let content = get(req, "content").ok_or_else(|| {
        GeminiError::invalid_argument("* EmbedContentRequest.content: contents is not specified\n")
    })?;
    let dims = get(req, "outputDimensionality")
        .and_then(Value::as_u64)
        .map_or(cfg.generation.embedding_dimensions, |d| d as usize);
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    canonical::write(content, &mut h);
    for f in ["taskType", "title"] {
        h.update(b"\0");
        if let Some(v) = get(req, f) {
            canonical::write(v, &mut h);
        }
    }
    let seed: [u8; 32] = h.finalize().into();
    Ok(json!({"values": textgen::embedding(&seed, dims.clamp(1, 65_536))}))
}

pub fn embed(cfg: &EmulatorConfig, model: &str, body: &Value) -> Result<Response, GeminiError> {
    let req = body.as_object().cloned().unwrap_or_default();
    Ok(json_ok(&json!({"embedding": embed_one(cfg, model, &req)?})))
}

pub fn batch_embed(
    cfg: &EmulatorConfig,
    model: &str,
    body: &Value,
) -> Result<Response, GeminiError> {
    let reqs = body
        .as_object()
        .and_then(|o| get(o, "requests"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let embeddings = reqs
        .iter()
        .map(|r| embed_one(cfg, model, &r.as_object().cloned().unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_ok(&json!({"embeddings": embeddings})))
}
