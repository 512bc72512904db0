//! Cheap checks before a deferred request is acknowledged. The JSON has been parsed by then; what
//! is left is whether the credential and the model are good, since a queued request only meets
//! the upstream minutes later, inside a batch. The first deferred request of a (credential,
//! model) pair asks the upstream for the model with that credential (one small GET); a refusal
//! (bad key, unknown model) is returned to the client at once and nothing is queued. A pair that
//! passed is remembered (bounded, for an hour), so later requests cost nothing; an upstream that
//! cannot answer lets the request through (fail open).

use super::Deferral;
use super::credentials::Credential;
use crate::proxy::UpstreamRequest;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method};
use std::time::Duration;

/// (credential scope, model) pairs the upstream has accepted.
pub struct Admitted(moka::sync::Cache<String, ()>);

impl Default for Admitted {
    fn default() -> Self {
        Self(moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(3600)).build())
    }
}

impl Deferral {
    /// `None` when the request may be queued; otherwise the upstream's refusal to return.
    pub async fn admit(&self, scope: &str, version: &str, model: &str, cred: &Credential) -> Option<Response> {
        let pair = format!("{scope}\0{model}");
        if self.0.admitted.0.contains_key(&pair) {
            return None;
        }
        let mut headers = HeaderMap::new();
        headers.insert(cred.name.clone(), cred.value.clone());
        let req = UpstreamRequest {
            method: Method::GET,
            path_and_query: format!("/{version}/{model}"),
            headers,
            body: Body::empty(),
        };
        let resp = match self.0.upstream.send(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "deferral admission check unanswered; accepting");
                return None;
            }
        };
        let status = resp.status();
        if status.is_success() {
            self.0.admitted.0.insert(pair, ());
            return None;
        }
        if !status.is_client_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let mut out_headers = HeaderMap::new();
        crate::proxy::copy_response_headers(resp.headers(), &mut out_headers);
        out_headers.remove(http::header::CONTENT_LENGTH);
        let body = resp.bytes().await.unwrap_or_default();
        let mut out = Body::from(body).into_response();
        *out.status_mut() = status;
        *out.headers_mut() = out_headers;
        Some(out)
    }
}
