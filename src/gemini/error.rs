//! Gemini-style error bodies: `{"error":{"code","message","status"}}`, pretty-printed as Google does.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

/// An error in Gemini's own JSON shape. The HTTP status always equals `code`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeminiError {
    pub code: u16,
    pub message: String,
    pub details: Option<Value>,
}

impl GeminiError {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: None }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// The canonical status name Google puts beside the code.
    pub fn status(&self) -> &'static str {
        status_name(self.code)
    }

    pub fn to_json(&self) -> Value {
        let mut err = json!({"code": self.code, "message": self.message, "status": self.status()});
        if let Some(d) = &self.details {
            err["details"] = d.clone();
        }
        json!({ "error": err })
    }

    /// Pretty-printed body bytes, as non-streaming Google responses are.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.to_json()).unwrap_or_default()
    }
}

impl std::fmt::Display for GeminiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.status(), self.message)
    }
}

impl std::error::Error for GeminiError {}

impl IntoResponse for GeminiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.body()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
        resp
    }
}

/// google.rpc.Code name for an HTTP status, as Gemini reports it.
pub fn status_name(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "UNIMPLEMENTED",
        408 => "DEADLINE_EXCEEDED",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        413 | 414 | 431 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        502 => "UNAVAILABLE",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// Numeric google.rpc.Code (the gRPC code used inside batch per-item errors) for an HTTP status.
pub fn grpc_code(http: u16) -> i32 {
    match http {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        409 => 6,
        429 => 8,
        499 => 1,
        501 => 12,
        503 | 502 => 14,
        504 => 4,
        _ => 13,
    }
}

/// Parses `Cached content is too small. total_token_count=N, min_total_token_count=M`.
pub fn parse_too_small(message: &str) -> Option<(u64, u32)> {
    let num_after = |tag: &str| -> Option<u64> {
        let start = message.find(tag)? + tag.len();
        let digits: String = message[start..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let min = num_after("min_total_token_count=")?;
    let total = num_after(" total_token_count=").or_else(|| num_after("total_token_count="))?;
    Some((total, min as u32))
}

/// The `error.message` of an error body, or the body itself when it is not Gemini's error JSON.
pub fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// True when an upstream error says the model cannot have explicit caches.
pub fn is_no_explicit_caching(status: u16, message: &str) -> bool {
    status == 404 && message.contains("not supported for createCachedContent")
}

/// True when an upstream error says the cache a request referenced is gone or unusable.
pub fn is_cache_rejection(status: u16, message: &str) -> bool {
    if status != 403 && status != 400 && status != 404 {
        return false;
    }
    let text = message.to_ascii_lowercase();
    text.contains("cachedcontent") || text.contains("cached content") || text.contains("cached_content")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_too_small_error() {
        let msg = "Cached content is too small. total_token_count=653, min_total_token_count=1024";
        assert_eq!(parse_too_small(msg), Some((653, 1024)));
        assert_eq!(parse_too_small("something else"), None);
    }

    #[test]
    fn body_has_code_message_status() {
        let e = GeminiError::new(429, "slow down");
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], 429);
        assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(v["error"]["message"], "slow down");
    }
}
