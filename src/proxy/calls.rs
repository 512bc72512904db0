//! The gateway's own calls to the Gemini API (cachedContents create, renew (PATCH ttl), delete;
//! a model's GET). They carry the credential of the tenant they act for, held in memory only.

use super::Upstream;
use crate::clock::parse_rfc3339;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use std::time::Duration;

/// A tenant's credential as it reached the gateway, kept in memory to act on its caches. Its
/// Debug output never shows the value.
#[derive(Clone)]
pub struct Credential {
    name: HeaderName,
    value: HeaderValue,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: *****)", self.name)
    }
}

impl Credential {
    /// The credential of a request: `x-goog-api-key`, `?key=` (sent on as the header), or
    /// `Authorization`, copied out of the request's header buffer (it is kept beyond the request).
    pub fn from_request(headers: &http::HeaderMap, query: Option<&str>) -> Option<Self> {
        let api_key = HeaderName::from_static("x-goog-api-key");
        if let Some(v) = headers.get(&api_key) {
            return Some(Self { name: api_key, value: crate::proxy::owned_sensitive(v) });
        }
        if let Some(k) = query.and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "key")) {
            let mut value = HeaderValue::from_str(&k.1).ok()?;
            value.set_sensitive(true);
            return Some(Self { name: api_key, value });
        }
        headers
            .get(http::header::AUTHORIZATION)
            .map(|v| Self { name: http::header::AUTHORIZATION, value: crate::proxy::owned_sensitive(v) })
    }
}

/// Why a cache operation failed.
#[derive(Debug)]
pub enum OpError {
    /// The upstream says the prefix is below the model's minimum.
    TooSmall { total: u64, min: u32 },
    /// Any other upstream answer.
    Status(u16, String),
    /// No answer.
    Transport(String),
}

/// The fields of a CachedContent resource the gateway needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub name: String,
    pub expire_ms: i64,
    pub tokens: u64,
}

async fn call(
    upstream: &Upstream,
    method: http::Method,
    path: &str,
    cred: &Credential,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, OpError> {
    let mut req = upstream
        .client()
        .request(method, format!("{}{path}", upstream.base()))
        .header(cred.name.clone(), cred.value.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .timeout(timeout);
    if let Some(b) = body {
        req = req.body(serde_json::to_vec(b).unwrap_or_default());
    }
    let resp = req.send().await.map_err(|e| OpError::Transport(e.without_url().to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| OpError::Transport(e.without_url().to_string()))?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status == 200 {
        return Ok(v);
    }
    let message = v["error"]["message"].as_str().unwrap_or("").to_string();
    if let Some((total, min)) = crate::gemini::error::parse_too_small(&message) {
        return Err(OpError::TooSmall { total, min });
    }
    Err(OpError::Status(status, message))
}

fn parse_created(v: &Value) -> Result<Created, OpError> {
    let name = v["name"].as_str().ok_or_else(|| OpError::Status(200, "no name in response".into()))?;
    let expire_ms = v["expireTime"].as_str().and_then(parse_rfc3339).unwrap_or(0);
    let tokens = v["usageMetadata"]["totalTokenCount"].as_u64().unwrap_or(0);
    Ok(Created { name: name.to_string(), expire_ms, tokens })
}

/// `POST /{version}/cachedContents`.
pub async fn create(
    upstream: &Upstream,
    version: &str,
    cred: &Credential,
    body: &Value,
    timeout: Duration,
) -> Result<Created, OpError> {
    let v =
        call(upstream, http::Method::POST, &format!("/{version}/cachedContents"), cred, Some(body), timeout).await?;
    parse_created(&v)
}

/// `PATCH /{version}/cachedContents/{id}` with a new TTL; returns the new expiry.
pub async fn renew(
    upstream: &Upstream,
    name: &str,
    cred: &Credential,
    ttl: Duration,
    timeout: Duration,
) -> Result<i64, OpError> {
    let body = serde_json::json!({"ttl": format!("{}s", ttl.as_secs())});
    let v = call(upstream, http::Method::PATCH, &format!("/v1beta/{name}"), cred, Some(&body), timeout).await?;
    Ok(parse_created(&v)?.expire_ms)
}

/// `GET /{version}/models/{id}`: the model resource (`supportedGenerationMethods`, limits).
pub async fn get_model(
    upstream: &Upstream,
    version: &str,
    id: &str,
    cred: &Credential,
    timeout: Duration,
) -> Result<Value, OpError> {
    call(upstream, http::Method::GET, &format!("/{version}/models/{id}"), cred, None, timeout).await
}

/// `DELETE /{version}/cachedContents/{id}`.
pub async fn delete(upstream: &Upstream, name: &str, cred: &Credential, timeout: Duration) -> Result<(), OpError> {
    call(upstream, http::Method::DELETE, &format!("/v1beta/{name}"), cred, None, timeout).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_debug_hides_the_value() {
        let mut h = http::HeaderMap::new();
        h.insert("x-goog-api-key", HeaderValue::from_static("SECRET"));
        let c = Credential::from_request(&h, None).unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
        let q = Credential::from_request(&http::HeaderMap::new(), Some("key=QK")).unwrap();
        assert_eq!(q.value, "QK");
    }
}
