//! The gateway's own calls to the Gemini API (cachedContents create, renew (PATCH ttl), delete;
//! a model's GET). They carry the credential of the tenant they act for, held in memory only.

use super::{Upstream, UpstreamFailure};
use crate::clock::parse_rfc3339;
pub use crate::gemini::Credential;
use serde_json::Value;
use std::time::Duration;

/// The fields of a CachedContent resource the gateway needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub name: String,
    /// `expireTime`, on the upstream's clock (0 when absent).
    pub expire_ms: i64,
    /// `updateTime` (else `createTime`), on the upstream's clock (0 when absent): when the
    /// upstream set `expireTime`.
    pub stamped_ms: i64,
    pub tokens: u64,
}

impl Created {
    /// The expiry on the caller's clock, for a call sent at `sent_ms` (caller's clock): the
    /// lifetime the upstream granted (`expireTime − updateTime`) counted from the send, never
    /// the upstream's absolute `expireTime`. The two clocks need not agree (NTP skew; a
    /// compressed replay's scaled clocks, started at different moments, differ by minutes), and
    /// a cache the gateway believes alive after the upstream expired it is rejected on use.
    /// `None` when the upstream gave no expiry.
    pub fn expire_at(&self, sent_ms: i64) -> Option<i64> {
        match (self.expire_ms, self.stamped_ms) {
            (0, _) => None,
            (e, 0) => Some(e),
            (e, s) => Some(sent_ms + (e - s).max(0)),
        }
    }
}

async fn call(
    upstream: &Upstream,
    method: http::Method,
    path: &str,
    cred: &Credential,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, UpstreamFailure> {
    let mut req = upstream
        .client()
        .request(method, format!("{}{path}", upstream.base()))
        .header(cred.name.clone(), cred.value.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .timeout(timeout);
    if let Some(b) = body {
        req = req.body(serde_json::to_vec(b).unwrap_or_default());
    }
    let resp = req.send().await.map_err(UpstreamFailure::transport)?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(UpstreamFailure::transport)?;
    if status != 200 {
        return Err(UpstreamFailure::from_answer(status, &bytes));
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

impl Created {
    /// The fields of a CachedContent resource as the upstream returned it; `None` without a name.
    pub fn from_resource(v: &Value) -> Option<Self> {
        let name = v["name"].as_str()?;
        let time = |f: &str| v[f].as_str().and_then(parse_rfc3339).unwrap_or(0);
        let (expire_ms, stamped_ms) = (time("expireTime"), time("updateTime").max(time("createTime")));
        let tokens = v["usageMetadata"]["totalTokenCount"].as_u64().unwrap_or(0);
        Some(Created { name: name.to_string(), expire_ms, stamped_ms, tokens })
    }
}

fn parse_created(v: &Value) -> Result<Created, UpstreamFailure> {
    Created::from_resource(v)
        .ok_or_else(|| UpstreamFailure::Status { status: 200, message: "no name in response".into() })
}

/// `POST /{version}/cachedContents`.
pub async fn create(
    upstream: &Upstream,
    version: &str,
    cred: &Credential,
    body: &Value,
    timeout: Duration,
) -> Result<Created, UpstreamFailure> {
    let v =
        call(upstream, http::Method::POST, &format!("/{version}/cachedContents"), cred, Some(body), timeout).await?;
    parse_created(&v)
}

/// `PATCH /{version}/cachedContents/{id}` with a new TTL; returns the resource (its new expiry:
/// [`Created::expire_at`]).
pub async fn renew(
    upstream: &Upstream,
    name: &str,
    cred: &Credential,
    ttl: Duration,
    timeout: Duration,
) -> Result<Created, UpstreamFailure> {
    let body = serde_json::json!({"ttl": format!("{}s", ttl.as_secs())});
    let v = call(upstream, http::Method::PATCH, &format!("/v1beta/{name}"), cred, Some(&body), timeout).await?;
    parse_created(&v)
}

/// `GET /{version}/models/{id}`: the model resource (`supportedGenerationMethods`, limits).
pub async fn get_model(
    upstream: &Upstream,
    version: &str,
    id: &str,
    cred: &Credential,
    timeout: Duration,
) -> Result<Value, UpstreamFailure> {
    call(upstream, http::Method::GET, &format!("/{version}/models/{id}"), cred, None, timeout).await
}

/// `DELETE /{version}/cachedContents/{id}`.
pub async fn delete(
    upstream: &Upstream,
    name: &str,
    cred: &Credential,
    timeout: Duration,
) -> Result<(), UpstreamFailure> {
    call(upstream, http::Method::DELETE, &format!("/v1beta/{name}"), cred, None, timeout).await.map(|_| ())
}
