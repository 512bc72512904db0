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
    pub fn from_usage_metadata(v: &Value) -> Self {
        let get = |camel: &str, snake: &str| v.get(camel).or_else(|| v.get(snake)).and_then(Value::as_u64).unwrap_or(0);
        Usage {
            prompt_tokens: get("promptTokenCount", "prompt_token_count"),
            cached_tokens: get("cachedContentTokenCount", "cached_content_token_count"),
            output_tokens: get("candidatesTokenCount", "candidates_token_count"),
            thoughts_tokens: get("thoughtsTokenCount", "thoughts_token_count"),
            tool_use_prompt_tokens: get("toolUsePromptTokenCount", "tool_use_prompt_token_count"),
        }
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
