//! The emulator's deterministic token rule (documented in docs/emulator.md):
//! a text part costs ceil(utf8 bytes / 4) tokens, any other part ceil(canonical JSON bytes / 4);
//! tools and toolConfig cost ceil(canonical JSON bytes / 4) as a whole.

use crate::gemini::canonical;
use serde_json::{Map, Value, json};

/// ceil(n / 4).
pub fn tokens_for_bytes(n: usize) -> u64 {
    n.div_ceil(4) as u64
}

/// Tokens of a piece of text.
pub fn text_tokens(s: &str) -> u64 {
    tokens_for_bytes(s.len())
}

/// Token counts split by modality, in a fixed order (TEXT, IMAGE, VIDEO, AUDIO, DOCUMENT).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub text: u64,
    pub image: u64,
    pub video: u64,
    pub audio: u64,
    pub document: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.text + self.image + self.video + self.audio + self.document
    }

    pub fn add(&mut self, o: &Counts) {
        self.text += o.text;
        self.image += o.image;
        self.video += o.video;
        self.audio += o.audio;
        self.document += o.document;
    }

    fn slot(&mut self, mime: &str) -> &mut u64 {
        if mime.starts_with("image/") {
            &mut self.image
        } else if mime.starts_with("video/") {
            &mut self.video
        } else if mime.starts_with("audio/") {
            &mut self.audio
        } else if mime == "application/pdf" {
            &mut self.document
        } else {
            &mut self.text
        }
    }

    /// `[{"modality":"TEXT","tokenCount":n},…]`, zero entries left out.
    pub fn details(&self) -> Vec<Value> {
        [
            ("TEXT", self.text),
            ("IMAGE", self.image),
            ("VIDEO", self.video),
            ("AUDIO", self.audio),
            ("DOCUMENT", self.document),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(m, n)| json!({"modality": m, "tokenCount": n}))
        .collect()
    }
}

/// Tokens of one part.
pub fn part_counts(part: &Value) -> Counts {
    let mut c = Counts::default();
    let Some(obj) = part.as_object() else {
        c.text = tokens_for_bytes(canonical::to_vec(part).len());
        return c;
    };
    if let Some(Value::String(t)) = canonical::get(obj, "text") {
        c.text = text_tokens(t);
        return c;
    }
    let mime = ["inlineData", "fileData"]
        .iter()
        .filter_map(|f| canonical::get(obj, f).and_then(Value::as_object))
        .find_map(|d| canonical::get(d, "mimeType").and_then(Value::as_str))
        .unwrap_or("");
    *c.slot(mime) = tokens_for_bytes(canonical::to_vec(part).len());
    c
}

/// Tokens of a Content (`{"parts":[…],"role":…}`); the role costs nothing.
pub fn content_counts(content: &Value) -> Counts {
    let mut c = Counts::default();
    if let Some(parts) = content
        .as_object()
        .and_then(|o| canonical::get(o, "parts"))
        .and_then(Value::as_array)
    {
        for p in parts {
            c.add(&part_counts(p));
        }
    }
    c
}

/// Tokens of a whole message value counted as canonical JSON (tools, toolConfig).
pub fn json_counts(v: &Value) -> Counts {
    Counts {
        text: tokens_for_bytes(canonical::to_vec(v).len()),
        ..Counts::default()
    }
}

/// Tokens of the pieces of a prompt: system instruction, tools, tool config and contents.
pub fn prompt_counts(
    system: Option<&Value>,
    tools: Option<&Value>,
    tool_config: Option<&Value>,
    contents: &[Value],
) -> Counts {
    let mut c = Counts::default();
    if let Some(s) = system {
        c.add(&content_counts(s));
    }
    if let Some(t) = tools {
        c.add(&json_counts(t));
    }
    if let Some(t) = tool_config {
        c.add(&json_counts(t));
    }
    for content in contents {
        c.add(&content_counts(content));
    }
    c
}

/// usageMetadata with zero and empty fields left out, in Google's field order.
pub fn usage_json(prompt: &Counts, cached: &Counts, candidates: u64, thoughts: u64) -> Value {
    let mut m = Map::new();
    let p = prompt.total();
    let total = p + candidates + thoughts;
    if p > 0 {
        m.insert("promptTokenCount".into(), json!(p));
    }
    if candidates > 0 {
        m.insert("candidatesTokenCount".into(), json!(candidates));
    }
    if total > 0 {
        m.insert("totalTokenCount".into(), json!(total));
    }
    if cached.total() > 0 {
        m.insert("cachedContentTokenCount".into(), json!(cached.total()));
    }
    let pd = prompt.details();
    if !pd.is_empty() {
        m.insert("promptTokensDetails".into(), Value::Array(pd));
    }
    let cd = cached.details();
    if !cd.is_empty() {
        m.insert("cacheTokensDetails".into(), Value::Array(cd));
    }
    if thoughts > 0 {
        m.insert("thoughtsTokenCount".into(), json!(thoughts));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parts_cost_a_quarter_of_their_bytes_rounded_up() {
        let c = content_counts(
            &json!({"role": "user", "parts": [{"text": "hello"}, {"text": "abcd"}]}),
        );
        assert_eq!(c.text, 2 + 1);
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("é"), 1);
    }

    #[test]
    fn spelling_does_not_change_counts_of_non_text_parts() {
        let a = part_counts(&json!({"inline_data": {"mime_type": "image/png", "data": "AAAA"}}));
        let b = part_counts(&json!({"inlineData": {"data": "AAAA", "mimeType": "image/png"}}));
        assert_eq!(a, b);
        assert!(a.image > 0 && a.text == 0);
    }

    #[test]
    fn usage_omits_zero_fields_and_totals_add_up() {
        let prompt = Counts {
            text: 10,
            ..Counts::default()
        };
        let u = usage_json(&prompt, &Counts::default(), 5, 0);
        assert_eq!(u["totalTokenCount"], 15);
        assert!(
            u.get("cachedContentTokenCount").is_none() && u.get("thoughtsTokenCount").is_none()
        );
        let cached = Counts {
            text: 4,
            ..Counts::default()
        };
        let u = usage_json(&prompt, &cached, 5, 3);
        assert_eq!(u["totalTokenCount"], 18);
        assert_eq!(u["cacheTokensDetails"][0]["tokenCount"], 4);
    }
}
