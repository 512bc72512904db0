//! Canonical form of Gemini JSON: field names in camelCase, object keys sorted, no whitespace.
//!
//! Google's proto-JSON parser accepts `system_instruction` and `systemInstruction` alike, so two
//! bodies that differ only in spelling, key order or whitespace mean the same request. Hashing and
//! the emulator's "what did the model see" both go through this form. Free-form values (function
//! call arguments, JSON schemas, schema property names, metadata, labels) are user data: their keys
//! are kept exactly as written, because renaming them would change what the model sees.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Converts a proto field name to its camelCase JSON name (`system_instruction` → `systemInstruction`).
/// Names without an underscore are returned unchanged without allocating.
pub fn camel_key(key: &str) -> Cow<'_, str> {
    // A leading underscore is part of a real field name (`_responseJsonSchema`), keep it.
    let body = key.trim_start_matches('_');
    if !body.contains('_') {
        return Cow::Borrowed(key);
    }
    let lead = &key[..key.len() - body.len()];
    let mut out = String::with_capacity(key.len());
    out.push_str(lead);
    let mut upper = false;
    for c in body.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How the keys of an object's children are treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Proto message: keys are field names, camelCased.
    Message,
    /// Map whose keys are user data (schema `properties`), values are messages.
    MapOfMessages,
    /// Free-form JSON (Struct): nothing is renamed below this point.
    Opaque,
}

/// Mode for the value stored under a (camelCased) field name inside a message.
fn child_mode(field: &str) -> Mode {
    match field {
        "args"
        | "response"
        | "parametersJsonSchema"
        | "responseJsonSchema"
        | "_responseJsonSchema"
        | "metadata"
        | "labels"
        | "structValue"
        | "default"
        | "example"
        | "enum" => Mode::Opaque,
        "properties" => Mode::MapOfMessages,
        _ => Mode::Message,
    }
}

/// Looks a field up by its camelCase name, accepting the snake_case spelling too.
pub fn get<'a>(obj: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(camel) {
        return Some(v);
    }
    obj.iter().find(|(k, _)| k.contains('_') && camel_key(k) == camel).map(|(_, v)| v)
}

/// Removes a field given by its camelCase name, in either spelling; returns the removed value.
pub fn take(obj: &mut Map<String, Value>, camel: &str) -> Option<Value> {
    if let Some(v) = obj.shift_remove(camel) {
        return Some(v);
    }
    let key = obj.keys().find(|k| k.contains('_') && camel_key(k) == camel)?.clone();
    obj.shift_remove(&key)
}

/// Returns the canonical form of a message value as a new `Value` (keys camelCased and sorted).
pub fn normalize(v: &Value) -> Value {
    normalize_in(v, Mode::Message)
}

fn normalize_in(v: &Value, mode: Mode) -> Value {
    match v {
        Value::Object(obj) => {
            let entries = canonical_entries(obj, mode).into_iter().map(|e| {
                let nv = match mode {
                    Mode::Message => normalize_in(e.value, child_mode(&e.name)),
                    Mode::MapOfMessages => normalize_in(e.value, Mode::Message),
                    Mode::Opaque => normalize_in(e.value, Mode::Opaque),
                };
                (e.name.into_owned(), nv)
            });
            Value::Object(entries.collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| normalize_in(i, mode)).collect()),
        other => other.clone(),
    }
}

/// One entry of an object in canonical form.
struct Entry<'a> {
    /// The canonical name (camelCase inside a message).
    name: Cow<'a, str>,
    /// The key as sent.
    sent: &'a str,
    value: &'a Value,
}

/// An object's entries under their canonical names, sorted by name. Two spellings of one field
/// (`max_tokens` and `maxTokens`) keep one entry, chosen whatever the key order: the camelCase
/// spelling, else the smallest key as sent.
fn canonical_entries(obj: &Map<String, Value>, mode: Mode) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry<'_>> = obj
        .iter()
        .map(|(k, value)| {
            let name = if mode == Mode::Message { camel_key(k) } else { Cow::Borrowed(k.as_str()) };
            Entry { name, sent: k, value }
        })
        .collect();
    let respelled = |e: &Entry<'_>| e.sent != e.name;
    entries.sort_by(|a, b| a.name.cmp(&b.name).then(respelled(a).cmp(&respelled(b))).then(a.sent.cmp(b.sent)));
    entries.dedup_by(|later, kept| later.name == kept.name);
    entries
}

/// Writes the canonical bytes of a message value into `out` (compact JSON, camelCase, sorted keys).
/// Equivalent to `serde_json::to_vec(&normalize(v))` without building the intermediate tree.
pub fn write(v: &Value, out: &mut impl Sink) {
    write_in(v, Mode::Message, out);
}

/// Something canonical bytes can be written into: a buffer or a hasher.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

fn write_str(s: &str, out: &mut impl Sink) {
    // serde_json's string escaping is the canonical one; strings are small relative to the
    // document so the temporary buffer costs little. Plain strings take the fast path.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.put(b"\"");
        out.put(s.as_bytes());
        out.put(b"\"");
    } else {
        let enc = serde_json::to_vec(s).unwrap_or_default();
        out.put(&enc);
    }
}

fn write_in(v: &Value, mode: Mode, out: &mut impl Sink) {
    match v {
        Value::Object(obj) => {
            let entries = canonical_entries(obj, mode);
            out.put(b"{");
            for (i, e) in entries.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_str(&e.name, out);
                out.put(b":");
                let m = match mode {
                    Mode::Message => child_mode(&e.name),
                    Mode::MapOfMessages => Mode::Message,
                    Mode::Opaque => Mode::Opaque,
                };
                write_in(e.value, m, out);
            }
            out.put(b"}");
        }
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_in(item, mode, out);
            }
            out.put(b"]");
        }
        Value::String(s) => write_str(s, out),
        other => out.put(other.to_string().as_bytes()),
    }
}

/// Canonical bytes of a message value.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

/// The system instruction as the model sees it: its `role` is ignored by the API, so it is
/// dropped here (the Python SDK adds `"role":"user"`, other clients send none).
pub fn system_instruction_without_role(v: &Value) -> Value {
    match v {
        Value::Object(obj) => {
            let mut obj = obj.clone();
            obj.shift_remove("role");
            Value::Object(obj)
        }
        other => other.clone(),
    }
}

/// `body` (a generate request's JSON) with `serviceTier` set to `tier`, whichever spelling it
/// had; `None` if it is not a JSON object.
pub fn with_service_tier(body: &[u8], tier: &str) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    take(obj, "serviceTier");
    obj.insert("serviceTier".into(), tier.into());
    serde_json::to_vec(&v).ok()
}

/// True when a value carries nothing: absent, null, `{}` or `[]`. The API treats
/// `"generationConfig": {}` as no generation config at all.
pub fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_key_converts_snake_case() {
        assert_eq!(camel_key("system_instruction"), "systemInstruction");
        assert_eq!(camel_key("systemInstruction"), "systemInstruction");
        assert_eq!(camel_key("_response_json_schema"), "_responseJsonSchema");
        assert_eq!(camel_key("parameters_json_schema"), "parametersJsonSchema");
    }

    /// Two spellings of one field in the same object (`s` and `s_` both read as `s`): the
    /// canonical form keeps one, the same whatever the key order, and `normalize` agrees.
    #[test]
    fn two_spellings_of_one_field_keep_one_whatever_the_order() {
        for (v, want) in [
            (json!([{"s": null, "s_": null}]), r#"[{"s":null}]"#),
            (json!({"max_tokens": 2, "maxTokens": 1}), r#"{"maxTokens":1}"#),
            (json!({"maxTokens": 1, "max_tokens": 2}), r#"{"maxTokens":1}"#),
            (json!({"a_b": 1, "a__b": 2, "c": {"d_e": 3, "d__e": 4}}), r#"{"aB":2,"c":{"dE":4}}"#),
            (json!({"c": {"d__e": 4, "d_e": 3}, "a__b": 2, "a_b": 1}), r#"{"aB":2,"c":{"dE":4}}"#),
        ] {
            assert_eq!(String::from_utf8(to_vec(&v)).unwrap(), want, "{v}");
            assert_eq!(serde_json::to_string(&normalize(&v)).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn spelling_order_and_whitespace_do_not_change_canonical_bytes() {
        let a: Value = serde_json::from_str(
            r#"{"system_instruction": {"parts": [{"text": "x"}]}, "generation_config": {"max_output_tokens": 5}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"generationConfig":{"maxOutputTokens":5},"systemInstruction":{"parts":[{"text":"x"}]}}"#,
        )
        .unwrap();
        assert_eq!(to_vec(&a), to_vec(&b));
        assert_eq!(to_vec(&a), serde_json::to_vec(&normalize(&b)).unwrap());
    }

    #[test]
    fn user_data_keys_are_not_renamed() {
        let a = json!({"functionCall": {"name": "f", "args": {"user_id": 1}}});
        let b = json!({"functionCall": {"name": "f", "args": {"userId": 1}}});
        assert_ne!(to_vec(&a), to_vec(&b));
        let s =
            json!({"parameters": {"type": "object", "properties": {"user_id": {"type": "string", "max_length": 3}}}});
        let out = String::from_utf8(to_vec(&s)).unwrap();
        assert!(out.contains("\"user_id\""), "{out}");
        assert!(out.contains("\"maxLength\""), "{out}");
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let v = json!({"text": "a \"quote\"\n<b>"});
        assert_eq!(to_vec(&v), serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn get_and_take_accept_both_spellings() {
        let mut obj = json!({"cached_content": "cachedContents/x", "contents": []});
        let map = obj.as_object_mut().unwrap();
        assert_eq!(get(map, "cachedContent"), Some(&json!("cachedContents/x")));
        assert_eq!(take(map, "cachedContent"), Some(json!("cachedContents/x")));
        assert!(get(map, "cachedContent").is_none());
    }
}
