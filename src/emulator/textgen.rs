//! Deterministic "model output": words, function-call arguments and embedding vectors derived
//! from a SHA-256 seed of the effective prompt. No randomness, no state.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

const WORDS: &[&str] = &[
    "the",
    "model",
    "answers",
    "with",
    "care",
    "and",
    "a",
    "clear",
    "plan",
    "data",
    "shows",
    "that",
    "every",
    "request",
    "gets",
    "its",
    "own",
    "reply",
    "tokens",
    "flow",
    "through",
    "gateway",
    "cache",
    "prefix",
    "batch",
    "stream",
    "quickly",
    "emulated",
    "response",
    "context",
    "system",
    "tools",
    "input",
    "output",
    "cost",
    "saves",
    "time",
    "deterministic",
    "result",
    "for",
    "this",
    "prompt",
    "is",
    "stable",
    "across",
    "runs",
    "because",
    "hash",
    "seed",
    "picks",
    "words",
    "from",
    "fixed",
    "list",
    "so",
    "tests",
    "can",
    "compare",
    "bytes",
    "exactly",
    "here",
    "more",
    "detail",
    "follows",
];

/// An endless deterministic byte source: SHA-256(seed || label || counter) blocks.
pub struct SeedStream {
    seed: [u8; 32],
    label: u64,
    counter: u64,
    buf: [u8; 32],
    pos: usize,
}

impl SeedStream {
    pub fn new(seed: &[u8; 32], label: u64) -> Self {
        Self {
            seed: *seed,
            label,
            counter: 0,
            buf: [0; 32],
            pos: 32,
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos + 4 > 32 {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.label.to_le_bytes());
            h.update(self.counter.to_le_bytes());
            self.buf = h.finalize().into();
            self.counter += 1;
            self.pos = 0;
        }
        let b = &self.buf[self.pos..self.pos + 4];
        self.pos += 4;
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Uniform-ish value in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u32() as usize) % n.max(1)
    }
}

/// A text of `min..=max` words in sentences of 5–12 words, for candidate `label`.
pub fn text(seed: &[u8; 32], label: u64, min_words: usize, max_words: usize) -> String {
    let mut s = SeedStream::new(seed, label);
    let n = min_words + s.below(max_words.saturating_sub(min_words) + 1);
    let mut out = String::new();
    let mut in_sentence = 0;
    let mut sentence_len = 5 + s.below(8);
    for i in 0..n {
        let w = WORDS[s.below(WORDS.len())];
        if i > 0 {
            out.push(' ');
        }
        if in_sentence == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push_str(w);
        }
        in_sentence += 1;
        if in_sentence == sentence_len || i + 1 == n {
            out.push('.');
            in_sentence = 0;
            sentence_len = 5 + s.below(8);
        }
    }
    out
}

/// Arguments for a declared function: one deterministic value per schema property.
pub fn function_args(declaration: &Map<String, Value>, seed: &[u8; 32]) -> Value {
    use crate::gemini::canonical::get;
    let schema =
        get(declaration, "parameters").or_else(|| get(declaration, "parametersJsonSchema"));
    let Some(props) = schema
        .and_then(Value::as_object)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return json!({});
    };
    let mut s = SeedStream::new(seed, 0xfc);
    let mut args = Map::new();
    for (name, prop) in props {
        let ty = prop
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
            .to_ascii_lowercase();
        let enum_vals = prop
            .get("enum")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        let v = match (ty.as_str(), enum_vals) {
            (_, Some(vals)) => vals[s.below(vals.len())].clone(),
            ("integer", _) => json!(s.below(100)),
            ("number", _) => json!(s.below(1000) as f64 / 10.0),
            ("boolean", _) => json!(s.below(2) == 1),
            ("array", _) => json!([]),
            ("object", _) => json!({}),
            _ => json!(WORDS[s.below(WORDS.len())]),
        };
        args.insert(name.clone(), v);
    }
    Value::Object(args)
}

/// A unit-length embedding of `dims` values derived from `seed`.
pub fn embedding(seed: &[u8; 32], dims: usize) -> Vec<f64> {
    let mut s = SeedStream::new(seed, 0xe6);
    let raw: Vec<f64> = (0..dims)
        .map(|_| (s.next_u32() as f64 / u32::MAX as f64) * 2.0 - 1.0)
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.into_iter()
        .map(|x| ((x / norm) * 1e7).round() / 1e7)
        .collect()
}

/// Byte offsets that split `text` into at most `n` non-empty pieces on word boundaries.
pub fn split_points(text: &str, n: usize) -> Vec<usize> {
    let starts: Vec<usize> = text
        .char_indices()
        .filter(|(i, c)| *i > 0 && *c == ' ')
        .map(|(i, _)| i)
        .collect();
    let words = starts.len() + 1;
    let n = n.clamp(1, words);
    let mut cuts = vec![0];
    for k in 1..n {
        cuts.push(starts[k * words / n - 1]);
    }
    cuts.push(text.len());
    cuts.dedup();
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_deterministic_and_depends_on_seed() {
        let a = text(&[1; 32], 0, 10, 20);
        assert_eq!(a, text(&[1; 32], 0, 10, 20));
        assert_ne!(a, text(&[2; 32], 0, 10, 20));
        assert_ne!(a, text(&[1; 32], 1, 10, 20));
        let words = a.split(' ').count();
        assert!((10..=20).contains(&words), "{a}");
        assert!(a.ends_with('.'));
    }

    #[test]
    fn split_points_cover_the_text_in_n_pieces() {
        let t = "one two three four five six seven";
        let cuts = split_points(t, 3);
        assert_eq!(cuts.len(), 4);
        let pieces: Vec<&str> = cuts.windows(2).map(|w| &t[w[0]..w[1]]).collect();
        assert_eq!(pieces.concat(), t);
        assert!(pieces.iter().all(|p| !p.is_empty()));
        assert_eq!(split_points("single", 5), vec![0, 6]);
    }

    #[test]
    fn function_args_follow_the_schema() {
        let decl = json!({"name": "f", "parameters": {"type": "OBJECT", "properties": {
            "city": {"type": "STRING"}, "n": {"type": "integer"}, "unit": {"type": "string", "enum": ["c", "f"]}}}});
        let args = function_args(decl.as_object().unwrap(), &[7; 32]);
        assert!(args["city"].is_string() && args["n"].is_u64());
        assert!(args["unit"] == "c" || args["unit"] == "f");
    }

    #[test]
    fn embeddings_are_unit_length() {
        let e = embedding(&[3; 32], 64);
        let norm: f64 = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}
