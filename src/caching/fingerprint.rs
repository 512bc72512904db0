//! Prefix-chain fingerprints over the canonical form of a request.
//!
//! `h0 = H(scope, model, systemInstruction, tools, toolConfig)` and `h(k) = H(h(k-1), contents[k-1])`.
//! Boundary `k` means "the cache holds the first `k` contents"; at least the last turn always stays
//! with the request. Spelling, key order and whitespace do not change a hash (canonical form), the
//! `role` on the system instruction is ignored, and the scope (a SHA-256 of the credential) keeps
//! tenants apart.

use crate::gemini::canonical::{self, Sink};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// One candidate cache boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    /// Leading `contents` the cache would hold.
    pub contents: usize,
    /// Registry key: hex of the chain hash at this boundary.
    pub key: String,
    /// Canonical bytes of everything the cache would hold (for token estimates).
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Fingerprint {
    /// Candidate boundaries, shortest first. Empty when nothing can be cached.
    pub boundaries: Vec<Boundary>,
    /// Canonical bytes of the whole prompt (prefix plus every content).
    pub total_bytes: u64,
}

/// Counts bytes while hashing, so one pass gives both.
struct Counting<'a> {
    hasher: &'a mut Sha256,
    n: u64,
}

impl Sink for Counting<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.n += bytes.len() as u64;
    }
}

pub use crate::gemini::scope_of;

const PREFIX_FIELDS: [&str; 3] = ["systemInstruction", "tools", "toolConfig"];

/// Computes the chain for a generate request body. `model` is `models/…`.
pub fn fingerprint(scope: &str, model: &str, body: &Map<String, Value>) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(b"gemgate-prefix-v1\0");
    h.update(scope.as_bytes());
    h.update(b"\0");
    h.update(model.as_bytes());
    h.update(b"\0");
    let mut has_prefix = false;
    let mut bytes = 0u64;
    for field in PREFIX_FIELDS {
        h.update(field.as_bytes());
        h.update(b"=");
        let value = canonical::get(body, field);
        if !canonical::is_empty(value) {
            has_prefix = true;
            let mut sink = Counting { hasher: &mut h, n: 0 };
            match (field, value) {
                ("systemInstruction", Some(v)) => {
                    canonical::write(&canonical::system_instruction_without_role(v), &mut sink)
                }
                (_, Some(v)) => canonical::write(v, &mut sink),
                _ => {}
            }
            bytes += sink.n;
        }
        h.update(b"\0");
    }
    let contents: &[Value] =
        canonical::get(body, "contents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut boundaries = Vec::with_capacity(contents.len());
    let mut chain: [u8; 32] = h.finalize().into();
    if has_prefix && !contents.is_empty() {
        boundaries.push(Boundary { contents: 0, key: hex::encode(chain), bytes });
    }
    // Boundary i+1 holds contents[..=i]; the last content always stays with the request, so it is
    // only counted, never hashed (for a single-turn request that is the whole body).
    let (last, leading) = match contents.split_last() {
        Some((last, leading)) => (Some(last), leading),
        None => (None, &[][..]),
    };
    for (i, content) in leading.iter().enumerate() {
        let mut h = Sha256::new();
        h.update(chain);
        let mut sink = Counting { hasher: &mut h, n: 0 };
        canonical::write(content, &mut sink);
        bytes += sink.n;
        chain = h.finalize().into();
        boundaries.push(Boundary { contents: i + 1, key: hex::encode(chain), bytes });
    }
    if let Some(last) = last {
        let mut sink = ByteCount(0);
        canonical::write(last, &mut sink);
        bytes += sink.0;
    }
    Fingerprint { boundaries, total_bytes: bytes }
}

/// Counts canonical bytes without hashing them.
struct ByteCount(u64);

impl Sink for ByteCount {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::json;

    fn fp(scope: &str, body: Value) -> Fingerprint {
        fingerprint(scope, "models/gemini-2.5-flash", body.as_object().unwrap())
    }

    fn chat() -> Value {
        json!({
            "systemInstruction": {"parts": [{"text": "You are a long system prompt"}], "role": "user"},
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
            "contents": [
                {"role": "user", "parts": [{"text": "one"}]},
                {"role": "model", "parts": [{"text": "two"}]},
                {"role": "user", "parts": [{"text": "three"}]}
            ],
            "generationConfig": {"temperature": 0.5}
        })
    }

    #[test]
    fn boundaries_leave_the_last_turn_with_the_request() {
        let f = fp("s", chat());
        let ks: Vec<usize> = f.boundaries.iter().map(|b| b.contents).collect();
        assert_eq!(ks, vec![0, 1, 2]);
        assert!(f.boundaries.windows(2).all(|w| w[0].bytes < w[1].bytes));
        let last = canonical::to_vec(&chat()["contents"][2]).len() as u64;
        assert_eq!(f.total_bytes, f.boundaries[2].bytes + last, "the last turn is counted in full");
    }

    #[test]
    fn a_lone_turn_is_counted_but_offers_no_boundary() {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "just this"}]}]});
        let f = fp("s", body.clone());
        assert!(f.boundaries.is_empty());
        assert_eq!(f.total_bytes, canonical::to_vec(&body["contents"][0]).len() as u64);
    }

    #[test]
    fn spelling_order_whitespace_and_system_role_do_not_matter() {
        let snake: Value = serde_json::from_str(
            r#"{ "generation_config": {"temperature": 0.9},
                 "contents": [{"parts":[{"text":"one"}],"role":"user"},{"parts":[{"text":"two"}],"role":"model"},{"parts":[{"text":"three"}],"role":"user"}],
                 "tools": [{"function_declarations": [{"parameters": {"type": "OBJECT"}, "name": "f"}]}],
                 "system_instruction": {"parts": [{"text": "You are a long system prompt"}]} }"#,
        )
        .unwrap();
        let a = fp("s", chat());
        let b = fp("s", snake);
        assert_eq!(a.boundaries, b.boundaries, "generationConfig is not part of the prefix");
    }

    #[test]
    fn scope_model_and_content_change_the_hash() {
        let base = fp("s", chat()).boundaries;
        assert_ne!(fp("t", chat()).boundaries[0].key, base[0].key);
        let other = fingerprint("s", "models/gemini-2.5-pro", chat().as_object().unwrap());
        assert_ne!(other.boundaries[0].key, base[0].key);
        let mut changed = chat();
        changed["contents"][0]["parts"][0]["text"] = json!("uno");
        let c = fp("s", changed).boundaries;
        assert_eq!(c[0].key, base[0].key, "boundary 0 holds no contents");
        assert_ne!(c[1].key, base[1].key);
    }

    #[test]
    fn no_prefix_fields_means_no_boundary_zero_and_single_turn_means_none() {
        let f = fp("s", json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}]}));
        assert!(f.boundaries.is_empty());
        let f = fp("s", json!({"contents": [{"parts": [{"text": "a"}]}, {"parts": [{"text": "b"}]}]}));
        assert_eq!(f.boundaries.len(), 1);
        assert_eq!(f.boundaries[0].contents, 1);
    }

    #[test]
    fn scope_comes_from_any_credential_and_never_equals_it() {
        let mut h = HeaderMap::new();
        assert_eq!(scope_of(&h, None), None);
        let q = scope_of(&h, Some("alt=sse&key=abc")).unwrap();
        h.insert("x-goog-api-key", "abc".parse().unwrap());
        assert_eq!(scope_of(&h, None).unwrap(), q);
        assert!(!q.contains("abc"));
        let mut b = HeaderMap::new();
        b.insert("authorization", "Bearer tok".parse().unwrap());
        assert_ne!(scope_of(&b, None).unwrap(), q);
    }
}
