//! The emulated model: turns an effective prompt into candidates (text or a function call),
//! usage figures and response JSON, all as pure functions of the prompt.

use super::config::GenerationConfig;
use super::ledger::Usage;
use super::prompt::Prompt;
use super::textgen;
use super::tokens::{self, Counts};
use crate::gemini::canonical::{self, get};
use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// One generated candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Text(String),
    /// A `functionCall` object (`{"name":…,"args":…}`).
    Call(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub body: Body,
    pub finish: &'static str,
}

impl Candidate {
    pub fn tokens(&self) -> u64 {
        match &self.body {
            Body::Text(t) => tokens::text_tokens(t),
            Body::Call(c) => tokens::tokens_for_bytes(canonical::to_vec(&json!({"functionCall": c})).len()),
        }
    }
}

/// A complete generated answer.
#[derive(Debug, Clone)]
pub struct Output {
    pub response_id: String,
    pub model_version: String,
    pub candidates: Vec<Candidate>,
    pub prompt: Counts,
    pub cached: Counts,
    pub thoughts: u64,
    /// Thought summary shown when `includeThoughts` is set.
    pub thought_text: Option<String>,
    /// The tier that served the request, as `usageMetadata.serviceTier` reports it.
    pub service_tier: &'static str,
}

/// The function the model calls, if the tool-calling rule applies: tools declare functions, the
/// mode is not NONE and the last turn is not a function response.
fn function_to_call(p: &Prompt) -> Option<Map<String, Value>> {
    let decls: Vec<&Map<String, Value>> = p
        .tools
        .as_ref()?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|t| get(t, "functionDeclarations").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_object)
        .collect();
    if decls.is_empty() {
        return None;
    }
    let fcc = p.tool_config.as_ref().and_then(Value::as_object).and_then(|t| get(t, "functionCallingConfig"));
    let fcc = fcc.and_then(Value::as_object);
    let mode = fcc.and_then(|f| get(f, "mode")).and_then(Value::as_str).unwrap_or("AUTO");
    if mode.eq_ignore_ascii_case("NONE") {
        return None;
    }
    let last = p.contents.last()?.as_object()?;
    let role = get(last, "role").and_then(Value::as_str).unwrap_or("user");
    let parts = get(last, "parts").and_then(Value::as_array)?;
    let answered = parts.iter().filter_map(Value::as_object).any(|part| get(part, "functionResponse").is_some());
    if role != "user" || answered {
        return None;
    }
    let allowed: Vec<&str> = fcc
        .and_then(|f| get(f, "allowedFunctionNames"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let name_of = |d: &&Map<String, Value>| d.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    decls.iter().find(|d| allowed.is_empty() || allowed.contains(&name_of(d).as_str())).map(|d| (*d).clone())
}

fn as_u64(v: Option<&Value>) -> Option<u64> {
    v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
}

/// Truncates `text` to at most `max_tokens` tokens on a char boundary.
fn truncate(text: &str, max_tokens: u64) -> Option<String> {
    let limit = usize::try_from(max_tokens.saturating_mul(4)).unwrap_or(usize::MAX);
    if text.len() <= limit {
        return None;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_string())
}

/// Generates the answer to `p`.
pub fn generate(cfg: &GenerationConfig, p: &Prompt) -> Output {
    let seed = p.hash();
    let digest = Sha256::digest([&b"responseId"[..], &seed].concat());
    let response_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
    let model_version = p.model.split_once('/').map_or(p.model.as_str(), |(_, id)| id).to_string();
    let count = as_u64(p.gen_field("candidateCount")).unwrap_or(1).clamp(1, 8);
    let max_tokens = as_u64(p.gen_field("maxOutputTokens")).filter(|m| *m > 0);
    let call = function_to_call(p);
    let candidates = (0..count)
        .map(|i| match &call {
            Some(decl) => {
                let name = decl.get("name").cloned().unwrap_or(json!(""));
                let mut s = seed;
                s[0] ^= i as u8;
                Candidate {
                    body: Body::Call(json!({"name": name, "args": textgen::function_args(decl, &s)})),
                    finish: "STOP",
                }
            }
            None => {
                let text = textgen::text(&seed, i, cfg.min_words, cfg.max_words);
                match max_tokens.and_then(|m| truncate(&text, m)) {
                    Some(short) => Candidate { body: Body::Text(short), finish: "MAX_TOKENS" },
                    None => Candidate { body: Body::Text(text), finish: "STOP" },
                }
            }
        })
        .collect();
    let thinking = p.gen_field("thinkingConfig").and_then(Value::as_object);
    let budget = thinking.and_then(|t| get(t, "thinkingBudget")).and_then(Value::as_i64).unwrap_or(0);
    let thoughts = if budget > 0 {
        let mut s = textgen::SeedStream::new(&seed, 0x7417);
        let cap = cfg.max_thoughts_tokens.max(1);
        (1 + s.next_u32() as u64 % cap).min(budget as u64)
    } else {
        0
    };
    let include = thinking.and_then(|t| get(t, "includeThoughts")).and_then(Value::as_bool).unwrap_or(false);
    let thought_text = (thoughts > 0 && include).then(|| textgen::text(&seed, 0x7417, 6, 12));
    Output {
        response_id,
        model_version,
        candidates,
        prompt: p.counts,
        cached: p.cached,
        thoughts,
        thought_text,
        service_tier: "standard",
    }
}

impl Output {
    pub fn candidates_tokens(&self) -> u64 {
        self.candidates.iter().map(Candidate::tokens).sum()
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt: self.prompt.total(),
            cached: self.cached.total(),
            candidates: self.candidates_tokens(),
            thoughts: self.thoughts,
        }
    }

    fn envelope(&self, candidates: Vec<Value>, candidate_tokens: u64) -> Value {
        let mut usage = tokens::usage_json(&self.prompt, &self.cached, candidate_tokens, self.thoughts);
        usage["serviceTier"] = json!(self.service_tier);
        json!({
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": self.model_version,
            "responseId": self.response_id,
        })
    }

    fn thought_part(&self) -> Option<Value> {
        self.thought_text.as_ref().map(|t| json!({"text": t, "thought": true}))
    }

    fn candidate_json(index: usize, parts: Vec<Value>, finish: Option<&str>) -> Value {
        let mut c = Map::new();
        c.insert("content".into(), json!({"parts": parts, "role": "model"}));
        if let Some(f) = finish {
            c.insert("finishReason".into(), json!(f));
        }
        c.insert("index".into(), json!(index));
        Value::Object(c)
    }

    /// The non-streaming GenerateContentResponse.
    pub fn response_json(&self) -> Value {
        let cands = self
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut parts: Vec<Value> = self.thought_part().into_iter().collect();
                parts.push(match &c.body {
                    Body::Text(t) => json!({"text": t}),
                    Body::Call(f) => json!({"functionCall": f}),
                });
                Self::candidate_json(i, parts, Some(c.finish))
            })
            .collect();
        self.envelope(cands, self.candidates_tokens())
    }

    /// The events of a stream of at most `n` events: text deltas on word boundaries, cumulative
    /// usage on each, finishReason only on the last. A function call arrives whole in one event.
    pub fn stream_events(&self, n: usize) -> Vec<Value> {
        let texts: Vec<Option<&str>> = self
            .candidates
            .iter()
            .map(|c| match &c.body {
                Body::Text(t) => Some(t.as_str()),
                Body::Call(_) => None,
            })
            .collect();
        let events =
            texts.iter().map(|t| t.map_or(1, |t| textgen::split_points(t, n).len() - 1)).min().unwrap_or(1).max(1);
        let cuts: Vec<Vec<usize>> =
            texts.iter().map(|t| t.map(|t| textgen::split_points(t, events)).unwrap_or_default()).collect();
        (0..events)
            .map(|k| {
                let last = k + 1 == events;
                let mut so_far = 0;
                let cands = self
                    .candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let mut parts: Vec<Value> =
                            if k == 0 { self.thought_part().into_iter().collect() } else { vec![] };
                        match &c.body {
                            Body::Text(t) => {
                                let (a, b) = (cuts[i][k], cuts[i][k + 1]);
                                parts.push(json!({"text": &t[a..b]}));
                                so_far += tokens::text_tokens(&t[..b]);
                            }
                            Body::Call(f) => {
                                parts.push(json!({"functionCall": f}));
                                so_far += c.tokens();
                            }
                        }
                        Self::candidate_json(i, parts, last.then_some(c.finish))
                    })
                    .collect();
                self.envelope(cands, so_far)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::tokens::prompt_counts;

    fn prompt(contents: Value, gen_cfg: Option<Value>, tools: Option<Value>) -> Prompt {
        let contents: Vec<Value> = contents.as_array().unwrap().clone();
        let counts = prompt_counts(None, tools.as_ref(), None, &contents);
        Prompt {
            model: "models/gemini-2.5-flash".into(),
            system: None,
            tools,
            tool_config: None,
            generation_config: gen_cfg,
            contents,
            counts,
            cached: Counts::default(),
        }
    }

    #[test]
    fn same_prompt_same_answer_and_max_tokens_truncates() {
        let cfg = GenerationConfig::default();
        let c = json!([{"role": "user", "parts": [{"text": "hi"}]}]);
        let a = generate(&cfg, &prompt(c.clone(), None, None));
        let b = generate(&cfg, &prompt(c.clone(), None, None));
        assert_eq!(a.response_json(), b.response_json());
        let short = generate(&cfg, &prompt(c, Some(json!({"maxOutputTokens": 3})), None));
        assert_eq!(short.candidates[0].finish, "MAX_TOKENS");
        assert!(short.candidates_tokens() <= 3);
        assert_eq!(short.model_version, "gemini-2.5-flash");
    }

    #[test]
    fn stream_events_reassemble_the_text_with_cumulative_usage() {
        let cfg = GenerationConfig::default();
        let out = generate(&cfg, &prompt(json!([{"parts": [{"text": "hello"}]}]), None, None));
        let events = out.stream_events(4);
        assert_eq!(events.len(), 4);
        let text: String =
            events.iter().map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap()).collect();
        assert_eq!(json!(text), out.response_json()["candidates"][0]["content"]["parts"][0]["text"]);
        let counts: Vec<u64> =
            events.iter().map(|e| e["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*counts.last().unwrap(), out.candidates_tokens());
        assert!(events[..3].iter().all(|e| e["candidates"][0].get("finishReason").is_none()));
        assert_eq!(events[3]["candidates"][0]["finishReason"], "STOP");
    }

    #[test]
    fn tools_lead_to_a_function_call_until_answered() {
        let cfg = GenerationConfig::default();
        let tools = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]);
        let out = generate(
            &cfg,
            &prompt(json!([{"role": "user", "parts": [{"text": "weather?"}]}]), None, Some(tools.clone())),
        );
        assert!(matches!(&out.candidates[0].body, Body::Call(c) if c["name"] == "get_weather"));
        let answered = json!([
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 20}}}]}
        ]);
        let out = generate(&cfg, &prompt(answered, None, Some(tools)));
        assert!(matches!(out.candidates[0].body, Body::Text(_)));
    }

    #[test]
    fn thinking_budget_reports_bounded_thoughts() {
        let cfg = GenerationConfig::default();
        let gen_cfg = json!({"thinking_config": {"thinking_budget": 10, "include_thoughts": true}});
        let out = generate(&cfg, &prompt(json!([{"parts": [{"text": "x"}]}]), Some(gen_cfg), None));
        assert!((1..=10).contains(&out.thoughts));
        assert_eq!(out.response_json()["candidates"][0]["content"]["parts"][0]["thought"], true);
    }
}
