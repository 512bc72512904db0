//! The few facts about a generate body that decide whether it has any prefix to cache, read in
//! one validating pass that builds nothing: most calls have no such prefix (one turn, no system
//! instruction or tools), and for them the planner's answer is known without the parsed body.

use crate::gemini::canonical::camel_key;
use crate::gemini::keys::{FromKey, Key};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// What [`fingerprint`](super::fingerprint::fingerprint) and the planner look at before
/// anything else, with the same reading of spellings (camelCase or snake_case) and emptiness
/// (absent, `null`, `{}` and `[]` are empty).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// A non-empty `systemInstruction`, `tools` or `toolConfig`.
    pub prefix: bool,
    /// Entries of `contents` (0 when it is absent or not an array).
    pub contents: usize,
    /// A non-empty `cachedContent`: the client's own cache, which the planner leaves alone.
    pub cached_content: bool,
}

impl Shape {
    /// Scans a body. `Err`: it is not JSON. `Ok(None)`: JSON the planner must see parsed to be
    /// read the same way: not an object, or naming one of these fields twice (in any spelling).
    pub fn scan(raw: &[u8]) -> Result<Option<Shape>, serde_json::Error> {
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            serde_json::from_slice::<IgnoredAny>(raw)?;
            return Ok(None);
        }
        serde_json::from_slice::<Scan>(raw).map(|s| s.0)
    }

    /// Whether the fingerprint has any boundary: a prefix before at least one content, or a
    /// content before the last (the last always stays with the request).
    pub fn has_boundaries(&self) -> bool {
        (self.prefix && self.contents > 0) || self.contents > 1
    }
}

/// The fields the shape reads, by camelCase name; each has a bit for "seen".
const FIELDS: [&str; 5] = ["systemInstruction", "tools", "toolConfig", "contents", "cachedContent"];

struct Scan(Option<Shape>);

impl<'de> Deserialize<'de> for Scan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScanVisitor)
    }
}

struct ScanVisitor;

impl<'de> Visitor<'de> for ScanVisitor {
    type Value = Scan;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let (mut shape, mut seen, mut twice) = (Shape::default(), 0u8, false);
        while let Some(Key(Top(field))) = map.next_key::<Key<Top>>()? {
            let Some(i) = field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            twice |= seen & (1 << i) != 0;
            seen |= 1 << i;
            match FIELDS[i] {
                "contents" => shape.contents = map.next_value::<Count>()?.0,
                "cachedContent" => shape.cached_content = !map.next_value::<Empty>()?.0,
                _ => shape.prefix |= !map.next_value::<Empty>()?.0,
            }
        }
        Ok(Scan((!twice).then_some(shape)))
    }
}

/// A top-level key: the index in [`FIELDS`] of the field it spells, if any.
struct Top(Option<usize>);

impl FromKey for Top {
    fn from_key(key: &str) -> Top {
        let camel = if key.contains('_') { camel_key(key) } else { key.into() };
        Top(FIELDS.iter().position(|f| *f == camel))
    }
}

/// Whether a value is empty in the planner's sense; the value itself is skipped.
struct Empty(bool);

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let size = d.deserialize_any(Measure)?;
        Ok(Empty(matches!(size, Size::Null | Size::Array(0) | Size::Object(0))))
    }
}

/// The entries of an array value (0 for anything else); the entries themselves are skipped.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let size = d.deserialize_any(Measure)?;
        Ok(Count(if let Size::Array(n) = size { n } else { 0 }))
    }
}

/// What kind of value was skipped, and how many entries it had.
enum Size {
    Null,
    Scalar,
    Array(usize),
    Object(usize),
}

/// Skips one value, telling its [`Size`].
struct Measure;

impl<'de> Visitor<'de> for Measure {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Size, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Size::Array(n))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Size, A::Error> {
        let mut n = 0;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Size::Object(n))
    }

    fn visit_unit<E>(self) -> Result<Size, E> {
        Ok(Size::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Size, E> {
        Ok(Size::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Size, E> {
        Ok(Size::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Size, E> {
        Ok(Size::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Size, E> {
        Ok(Size::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Size, E> {
        Ok(Size::Scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caching::fingerprint::fingerprint;
    use crate::gemini::canonical;
    use serde_json::{Value, json};

    /// The planner's reading of a parsed body: (has boundaries, names a cache of its own).
    fn planner(body: &Value) -> (bool, bool) {
        let obj = body.as_object().unwrap();
        let fp = fingerprint("scope", "models/m", obj);
        (!fp.boundaries.is_empty(), !canonical::is_empty(canonical::get(obj, "cachedContent")))
    }

    #[test]
    fn reads_every_body_as_the_planner_does() {
        let turn = json!({"role": "user", "parts": [{"text": "hi"}]});
        let prefixes = [
            None,
            Some(json!(null)),
            Some(json!({})),
            Some(json!([])),
            Some(json!({"parts": [{"text": "sys"}]})),
            Some(json!([{"functionDeclarations": []}])),
            Some(json!("")),
        ];
        let contents = [None, Some(json!([])), Some(json!([turn])), Some(json!([turn, turn])), Some(json!({}))];
        let cached = [None, Some(json!(null)), Some(json!("cachedContents/x")), Some(json!({}))];
        let names = [
            ("systemInstruction", "contents", "cachedContent"),
            ("system_instruction", "contents", "cached_content"),
            ("tools", "contents", "cachedContent"),
            ("tool_config", "contents", "cachedContent"),
        ];
        let mut checked = 0;
        for (p_name, c_name, k_name) in names {
            for p in &prefixes {
                for c in &contents {
                    for k in &cached {
                        let mut body = json!({"generationConfig": {"temperature": 0.1}});
                        for (name, v) in [(p_name, p), (c_name, c), (k_name, k)] {
                            if let Some(v) = v {
                                body[name] = v.clone();
                            }
                        }
                        let shape = Shape::scan(body.to_string().as_bytes()).unwrap().expect("an object");
                        assert_eq!((shape.has_boundaries(), shape.cached_content), planner(&body), "{body}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 7 * 5 * 4);
    }

    #[test]
    fn escaped_keys_are_read_as_their_names() {
        let raw = br#"{"\u0073ystemInstruction": {"parts": [{"text": "s"}]}, "contents": [{"parts": []}]}"#;
        let shape = Shape::scan(raw).unwrap().unwrap();
        assert!(shape.prefix && shape.has_boundaries());
    }

    #[test]
    fn repeated_fields_and_non_objects_are_left_to_the_planner_and_bad_json_is_an_error() {
        for raw in [
            &br#"{"contents": [], "contents": [{}, {}]}"#[..],
            br#"{"systemInstruction": null, "system_instruction": {"parts": []}}"#,
            b"[1, 2]",
            b"\"text\"",
            b"null",
        ] {
            assert_eq!(Shape::scan(raw).unwrap(), None, "{}", String::from_utf8_lossy(raw));
        }
        for raw in [&b"{"[..], b"{\"contents\": [}", b"{} x", b"", b"{\"a\": 1,}"] {
            assert!(Shape::scan(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }
}
