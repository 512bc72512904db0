//! `usageMetadata`: the token counts the upstream reports for a response. Everything that
//! reads them (pricing, caching's learning, the trace, batch results, replays) reads them here.

use serde_json::Value;

/// The token counts of one response (`usageMetadata`; absent fields are zero).
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
        let mut u = Usage::default();
        let Some(fields) = v.as_object() else { return u };
        // Which counts were given in camelCase: those win over a snake_case spelling.
        let mut camel = [false; 5];
        for (k, v) in fields {
            let (i, is_camel, slot) = match k.as_str() {
                "promptTokenCount" => (0, true, &mut u.prompt_tokens),
                "prompt_token_count" => (0, false, &mut u.prompt_tokens),
                "cachedContentTokenCount" => (1, true, &mut u.cached_tokens),
                "cached_content_token_count" => (1, false, &mut u.cached_tokens),
                "candidatesTokenCount" => (2, true, &mut u.output_tokens),
                "candidates_token_count" => (2, false, &mut u.output_tokens),
                "thoughtsTokenCount" => (3, true, &mut u.thoughts_tokens),
                "thoughts_token_count" => (3, false, &mut u.thoughts_tokens),
                "toolUsePromptTokenCount" => (4, true, &mut u.tool_use_prompt_tokens),
                "tool_use_prompt_token_count" => (4, false, &mut u.tool_use_prompt_tokens),
                _ => continue,
            };
            if is_camel || !camel[i] {
                *slot = v.as_u64().unwrap_or(0);
                camel[i] |= is_camel;
            }
        }
        u
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
        };
        assert_eq!(Usage::from_usage_metadata(&v), want);
        assert_eq!(Usage::from_usage_metadata(&json!("not an object")), Usage::default());
        // A count that is not a number reads as zero, as before.
        assert_eq!(Usage::from_usage_metadata(&json!({"promptTokenCount": "7"})).prompt_tokens, 0);
    }
}
