//! API-key authentication: `x-goog-api-key`, `?key=` or `Authorization: Bearer`, with Google's
//! exact error texts. Callers are identified by a hash of their key, never the key itself.

use crate::gemini::GeminiError;
use http::HeaderMap;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const MISSING_KEY: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
pub const BAD_KEY: &str = "API key not valid. Please pass a valid API key.";

/// Who is calling: the first 16 hex chars of SHA-256(key). Caches, files and batches are scoped to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller(pub String);

impl Caller {
    pub fn from_key(key: &str) -> Self {
        Caller(hex::encode(Sha256::digest(key.as_bytes()))[..16].to_string())
    }
}

/// Finds the key in the request and checks it against `valid` (empty = any non-empty key).
pub fn authenticate(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    valid: &[String],
) -> Result<Caller, GeminiError> {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("key").cloned())
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(|s| s.trim().to_string())
        })
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(GeminiError::permission_denied(MISSING_KEY));
    };
    if !valid.is_empty() && !valid.iter().any(|k| k == &key) {
        return Err(GeminiError::invalid_argument(BAD_KEY).with_details(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"}
        }])));
    }
    Ok(Caller::from_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sources_and_errors() {
        let mut h = HeaderMap::new();
        let q = HashMap::new();
        assert_eq!(authenticate(&h, &q, &[]).unwrap_err().code, 403);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(authenticate(&h, &q, &[]).unwrap(), Caller::from_key("abc"));
        let err = authenticate(&h, &q, &["other".to_string()]).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.to_json()["error"]["details"][0]["reason"],
            "API_KEY_INVALID"
        );
        let mut q = HashMap::new();
        q.insert("key".to_string(), "other".to_string());
        assert!(authenticate(&HeaderMap::new(), &q, &["other".to_string()]).is_ok());
    }
}
