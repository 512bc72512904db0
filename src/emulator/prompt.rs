//! The effective prompt of a generate request: the referenced cache expanded in front of the
//! request, empty fields dropped, and a SHA-256 over its canonical form that drives the output.

use super::auth::Caller;
use super::state::Store;
use super::tokens::{self, Counts};
use crate::gemini::GeminiError;
use crate::gemini::canonical::{self, get, is_empty};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const CONFLICT: &str = "CachedContent can not be used with GenerateContent request setting system_instruction, tools or tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request.";
pub const CACHE_NOT_FOUND: &str = "CachedContent not found (or permission denied)";

/// What the model sees.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// `models/{id}` or `tunedModels/{id}`.
    pub model: String,
    pub system: Option<Value>,
    pub tools: Option<Value>,
    pub tool_config: Option<Value>,
    pub generation_config: Option<Value>,
    pub contents: Vec<Value>,
    /// Tokens of the whole prompt (cache included) and of the cached part.
    pub counts: Counts,
    pub cached: Counts,
}

fn non_empty(v: Option<&Value>) -> Option<Value> {
    (!is_empty(v)).then(|| v.cloned()).flatten()
}

/// The system instruction without its role; `None` when it carries nothing.
pub fn system_of(obj: &Map<String, Value>) -> Option<Value> {
    let s = get(obj, "systemInstruction")?;
    let s = canonical::system_instruction_without_role(s);
    (!is_empty(Some(&s))).then_some(s)
}

/// `cachedContents/{id}` from either a full name or a bare id.
pub fn cache_id(name: &str) -> &str {
    name.strip_prefix("cachedContents/").unwrap_or(name)
}

/// Builds the effective prompt of `body` sent to `model`, expanding `cachedContent`.
pub fn build(
    store: &mut Store,
    now: DateTime<Utc>,
    caller: &Caller,
    model: &str,
    body: &Map<String, Value>,
) -> Result<Prompt, GeminiError> {
    let request_contents: Vec<Value> = match get(body, "contents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(GeminiError::invalid_argument(
                "Invalid JSON payload received. Invalid value at 'contents': expected a list.",
            ));
        }
    };
    let cache_name = get(body, "cachedContent")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let generation_config = non_empty(get(body, "generationConfig"));
    let mut p = match cache_name {
        None => {
            let system = system_of(body);
            let tools = non_empty(get(body, "tools"));
            let tool_config = non_empty(get(body, "toolConfig"));
            Prompt {
                model: model.to_string(),
                system,
                tools,
                tool_config,
                generation_config,
                contents: request_contents,
                counts: Counts::default(),
                cached: Counts::default(),
            }
        }
        Some(name) => {
            store.sweep_caches(now);
            let cache = store
                .caches
                .get(cache_id(name))
                .filter(|c| &c.owner == caller)
                .ok_or_else(|| GeminiError::permission_denied(CACHE_NOT_FOUND))?;
            if system_of(body).is_some()
                || !is_empty(get(body, "tools"))
                || !is_empty(get(body, "toolConfig"))
            {
                return Err(GeminiError::invalid_argument(CONFLICT));
            }
            if cache.model != model {
                return Err(GeminiError::invalid_argument(format!(
                    "Model used by GenerateContent request ({model}) and CachedContent ({}) has to be the same.",
                    cache.model
                )));
            }
            let mut contents = cache.contents.clone();
            contents.extend(request_contents);
            Prompt {
                model: model.to_string(),
                system: cache.system.clone(),
                tools: cache.tools.clone(),
                tool_config: cache.tool_config.clone(),
                generation_config,
                contents,
                counts: Counts::default(),
                cached: cache.counts,
            }
        }
    };
    for id in file_refs(&p.contents) {
        store.own_file(caller, &id, now)?;
    }
    if p.contents.is_empty() {
        return Err(GeminiError::invalid_argument(
            "* GenerateContentRequest.contents: contents is not specified\n",
        ));
    }
    p.counts = tokens::prompt_counts(
        p.system.as_ref(),
        p.tools.as_ref(),
        p.tool_config.as_ref(),
        &p.contents,
    );
    Ok(p)
}

/// Ids of the Files API files referenced by `fileData.fileUri` (`…/files/{id}` or `files/{id}`).
fn file_refs(contents: &[Value]) -> Vec<String> {
    contents
        .iter()
        .filter_map(|c| {
            c.as_object()
                .and_then(|o| get(o, "parts"))
                .and_then(Value::as_array)
        })
        .flatten()
        .filter_map(|p| {
            p.as_object()
                .and_then(|o| get(o, "fileData"))
                .and_then(Value::as_object)
        })
        .filter_map(|d| get(d, "fileUri").and_then(Value::as_str))
        .filter_map(|uri| {
            let tail = if let Some(t) = uri.strip_prefix("files/") {
                t
            } else {
                uri.rsplit_once("/files/")?.1
            };
            let id = tail.split(['?', ':', '/']).next()?;
            (!id.is_empty()).then(|| id.to_string())
        })
        .collect()
}

impl Prompt {
    /// SHA-256 over the canonical form of everything the model sees. Spelling, key order,
    /// whitespace, the system instruction's role and whether a prefix came from a cache do not
    /// change it.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"gemgate-emulator/v1\0model\0");
        h.update(self.model.as_bytes());
        let sections = [
            ("system", &self.system),
            ("tools", &self.tools),
            ("toolConfig", &self.tool_config),
            ("generationConfig", &self.generation_config),
        ];
        for (name, v) in sections {
            h.update(b"\0");
            h.update(name.as_bytes());
            h.update(b"\0");
            if let Some(v) = v {
                canonical::write(v, &mut h);
            }
        }
        for c in &self.contents {
            h.update(b"\0content\0");
            canonical::write(c, &mut h);
        }
        h.finalize().into()
    }

    /// A field of generationConfig, in either spelling.
    pub fn gen_field(&self, camel: &str) -> Option<&Value> {
        self.generation_config
            .as_ref()
            .and_then(Value::as_object)
            .and_then(|g| get(g, camel))
    }
}
