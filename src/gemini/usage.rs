//! `usageMetadata`: the token counts the upstream reports for a response. Everything that
//! reads them (pricing, caching's learning, the trace, batch results, replays) reads them here.

use super::keys::{FromKey, Key};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// The service tier that served a request; the price table's `[tiers]` say what each costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Standard,
    /// The Batch API.
    Batch,
    /// `serviceTier: flex`.
    Flex,
    /// `serviceTier: priority`.
    Priority,
}

impl Service {
    /// The tier as the wire (`serviceTier`, `usageMetadata.serviceTier`) names it; `None` for
    /// a value gemgate does not know.
    pub fn from_wire(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().trim_start_matches("service_tier_") {
            "standard" | "unspecified" => Some(Service::Standard),
            "flex" => Some(Service::Flex),
            "priority" => Some(Service::Priority),
            "batch" => Some(Service::Batch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Standard => "standard",
            Service::Batch => "batch",
            Service::Flex => "flex",
            Service::Priority => "priority",
        }
    }
}

/// The token counts of one response (`usageMetadata`; absent fields are zero).
///
/// Read from a parsed value ([`Usage::from_usage_metadata`]) or straight from a body's bytes
/// (`Deserialize`, the same rules): a response gemgate only accounts for is never built as a
/// JSON tree just to read these few numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `promptTokenCount`: the whole prompt, cached tokens included.
    pub prompt_tokens: u64,
    /// `cachedContentTokenCount`: the part served from a cache (explicit or implicit).
    pub cached_tokens: u64,
    /// `candidatesTokenCount`.
    pub output_tokens: u64,
    /// `thoughtsTokenCount`, billed at the output rate.
    pub thoughts_tokens: u64,
    /// `toolUsePromptTokenCount`, billed at the input rate (not part of the prompt count).
    pub tool_use_prompt_tokens: u64,
    /// `serviceTier`: the tier the upstream says served the request (`None`: not said, or a
    /// name gemgate does not know).
    pub served: Option<Service>,
}

/// Where a `usageMetadata` field goes: which count, and whether it is the camelCase spelling
/// (which wins over snake_case whatever the order).
enum Field {
    Count(usize, bool),
    ServiceTier,
    Other,
}

impl FromKey for Field {
    fn from_key(name: &str) -> Field {
        match name {
            "promptTokenCount" => Field::Count(0, true),
            "prompt_token_count" => Field::Count(0, false),
            "cachedContentTokenCount" => Field::Count(1, true),
            "cached_content_token_count" => Field::Count(1, false),
            "candidatesTokenCount" => Field::Count(2, true),
            "candidates_token_count" => Field::Count(2, false),
            "thoughtsTokenCount" => Field::Count(3, true),
            "thoughts_token_count" => Field::Count(3, false),
            "toolUsePromptTokenCount" => Field::Count(4, true),
            "tool_use_prompt_token_count" => Field::Count(4, false),
            "serviceTier" => Field::ServiceTier,
            _ => Field::Other,
        }
    }
}

/// Collects fields in the order they come, with the camelCase-wins rule.
#[derive(Default)]
struct Builder {
    counts: [u64; 5],
    camel: [bool; 5],
    served: Option<Service>,
}

impl Builder {
    fn count(&mut self, i: usize, is_camel: bool, n: u64) {
        if is_camel || !self.camel[i] {
            self.counts[i] = n;
            self.camel[i] |= is_camel;
        }
    }

    fn finish(self) -> Usage {
        let [prompt_tokens, cached_tokens, output_tokens, thoughts_tokens, tool_use_prompt_tokens] = self.counts;
        Usage {
            prompt_tokens,
            cached_tokens,
            output_tokens,
            thoughts_tokens,
            tool_use_prompt_tokens,
            served: self.served,
        }
    }
}

impl Usage {
    /// The usage a response (or an SSE event's JSON) reports; all zero without `usageMetadata`.
    pub fn of_response(response: &Value) -> Self {
        response.get("usageMetadata").map(Self::from_usage_metadata).unwrap_or_default()
    }

    /// Reads a `usageMetadata` object (camelCase as the upstream sends it, snake_case tolerated).
    /// One pass over the object's fields: every response is read here, several times, and ten
    /// keyed lookups (camelCase, then snake_case) cost more than walking its few fields once.
    pub fn from_usage_metadata(v: &Value) -> Self {
        let mut b = Builder::default();
        let Some(fields) = v.as_object() else { return b.finish() };
        for (k, v) in fields {
            match Field::from_key(k) {
                Field::Count(i, camel) => b.count(i, camel, v.as_u64().unwrap_or(0)),
                Field::ServiceTier => b.served = v.as_str().and_then(Service::from_wire),
                Field::Other => {}
            }
        }
        b.finish()
    }

    /// The cached part as billed: never more than the prompt.
    pub fn billed_cached(&self) -> u64 {
        self.cached_tokens.min(self.prompt_tokens)
    }
}

/// `cachedContentTokenCount` of a `usageMetadata` object (0 when absent).
pub fn cached_tokens(usage: &Value) -> u64 {
    Usage::from_usage_metadata(usage).cached_tokens
}

/// One JSON value as the usage reading sees it, read as [`Usage::from_usage_metadata`] reads
/// a parsed value: an object field by field (only a `usageMetadata` is one), an integer, a tier
/// name, or anything else, which is consumed without being built.
enum Seen {
    Object(Usage),
    /// An integer; `None` when negative (a count then reads as zero, as `as_u64` gives).
    Int(Option<u64>),
    /// A string, as the tier it names.
    Tier(Option<Service>),
    Other,
}

impl<'de> serde::Deserialize<'de> for Seen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SeenVisitor)
    }
}

struct SeenVisitor;

impl<'de> Visitor<'de> for SeenVisitor {
    type Value = Seen;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen, A::Error> {
        let mut b = Builder::default();
        while let Some(Key(field)) = map.next_key::<Key<Field>>()? {
            match (field, map.next_value::<Seen>()?) {
                (Field::Count(i, camel), Seen::Int(n)) => b.count(i, camel, n.unwrap_or(0)),
                (Field::Count(i, camel), _) => b.count(i, camel, 0),
                (Field::ServiceTier, Seen::Tier(t)) => b.served = t,
                (Field::ServiceTier, _) => b.served = None,
                (Field::Other, _) => {}
            }
        }
        Ok(Seen::Object(b.finish()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seen, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Seen::Other)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seen, E> {
        Ok(Seen::Int(Some(n)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seen, E> {
        Ok(Seen::Int(u64::try_from(n).ok()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Seen, E> {
        Ok(Seen::Tier(Service::from_wire(s)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Seen, E> {
        Ok(Seen::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Seen, E> {
        Ok(Seen::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
}

/// `usageMetadata` read from bytes by the rules of [`Usage::from_usage_metadata`] (a value
/// that is not an object reads as all zero there too).
impl<'de> serde::Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Seen::deserialize(d)? {
            Seen::Object(u) => u,
            _ => Usage::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_case_wins_over_snake_case_in_either_order() {
        let a = json!({"prompt_token_count": 5, "promptTokenCount": 7, "thoughts_token_count": 3});
        let b = json!({"promptTokenCount": 7, "prompt_token_count": 5, "thoughts_token_count": 3});
        for v in [a, b] {
            let u = Usage::from_usage_metadata(&v);
            assert_eq!((u.prompt_tokens, u.thoughts_tokens, u.cached_tokens), (7, 3, 0), "{v}");
        }
    }

    #[test]
    fn every_count_is_read_and_others_are_ignored() {
        let v = json!({
            "promptTokenCount": 1, "cachedContentTokenCount": 2, "candidatesTokenCount": 3,
            "thoughtsTokenCount": 4, "toolUsePromptTokenCount": 5, "totalTokenCount": 15,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1}]
        });
        let want = Usage {
            prompt_tokens: 1,
            cached_tokens: 2,
            output_tokens: 3,
            thoughts_tokens: 4,
            tool_use_prompt_tokens: 5,
            served: None,
        };
        assert_eq!(Usage::from_usage_metadata(&v), want);
        assert_eq!(Usage::from_usage_metadata(&json!("not an object")), Usage::default());
        // A count that is not a number reads as zero, as before.
        assert_eq!(Usage::from_usage_metadata(&json!({"promptTokenCount": "7"})).prompt_tokens, 0);
    }

    #[test]
    fn the_serving_tier_is_read_by_its_wire_name() {
        let u = Usage::from_usage_metadata(&json!({"promptTokenCount": 1, "serviceTier": "SERVICE_TIER_FLEX"}));
        assert_eq!(u.served, Some(Service::Flex));
        assert_eq!(Usage::from_usage_metadata(&json!({"serviceTier": "gold"})).served, None);
        assert_eq!(Usage::from_usage_metadata(&json!({"serviceTier": 3})).served, None);
    }

    /// Reading from bytes gives what reading the parsed value gives, for well-formed and odd
    /// usage alike (wrong kinds, duplicates, escapes, nesting).
    #[test]
    fn reading_bytes_agrees_with_reading_the_value() {
        let cases = [
            r#"{"promptTokenCount": 326, "candidatesTokenCount": 63, "totalTokenCount": 543,
                "cachedContentTokenCount": 173, "thoughtsTokenCount": 154, "serviceTier": "priority",
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 326}],
                "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 173}]}"#,
            r#"{"prompt_token_count": 5, "promptTokenCount": 7, "thoughts_token_count": 3}"#,
            r#"{"promptTokenCount": 7, "prompt_token_count": 5, "tool_use_prompt_token_count": 9}"#,
            r#"{"promptTokenCount": "7", "cachedContentTokenCount": -3, "candidatesTokenCount": 2.5,
                "thoughtsTokenCount": null, "toolUsePromptTokenCount": {"a": [1, 2]}, "serviceTier": ["flex"]}"#,
            r#"{"promptTokenCount": 1, "promptTokenCount": 2, "serviceTier": "flex", "serviceTier": "nope"}"#,
            r#"{"prompt\u0054okenCount": 11, "serviceTier": "b\u0061tch"}"#,
            r#"{}"#,
            r#""not an object""#,
            r#"[1, {"promptTokenCount": 4}]"#,
            r#"42"#,
            r#"true"#,
        ];
        for raw in cases {
            let value: Value = serde_json::from_str(raw).unwrap();
            let read: Usage = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(read, Usage::from_usage_metadata(&value), "{raw}");
        }
        let read: Usage = serde_json::from_str(cases[0]).unwrap();
        assert_eq!((read.prompt_tokens, read.cached_tokens, read.served), (326, 173, Some(Service::Priority)));
        assert!(serde_json::from_str::<Usage>(r#"{"promptTokenCount": 1"#).is_err(), "truncated JSON is an error");
    }
}
