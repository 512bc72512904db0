//! The typed context of an intercepted generate call, built once when its body has been read:
//! every step of the generate path reads what it needs from here instead of parsing again.

use crate::deferral::marking::Marking;
use crate::error::GatewayError;
use crate::gemini::Credential;
use crate::gemini::path::{self, ApiPath};
use crate::proxy;
use crate::spend::RequestMeta;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::Request;
use serde_json::Value;

pub struct Call {
    /// Method, URI and headers as the client sent them.
    pub parts: http::request::Parts,
    /// The body as it came, and parsed.
    pub raw: Bytes,
    pub body: Value,
    /// `models/…` (empty when the path names no model).
    pub model: String,
    /// The tenant's scope (hash of its credential) and the credential itself, when it sent one.
    pub tenant: Option<(String, Credential)>,
    /// streamGenerateContent, and with `alt=sse`.
    pub stream: bool,
    pub sse: bool,
    /// The deferral tier asked for (header or rule), when deferral is on and the call is marked.
    pub marking: Option<Marking>,
    /// What the spend rollups record about the request.
    pub meta: RequestMeta,
}

impl Call {
    /// Reads the body (within the configured limit), parses it, and works out everything else
    /// once. Deferral sees the credential here (it is remembered for the tenant's queued work),
    /// and a malformed deferral header is the client's error.
    pub async fn read(state: &AppState, req: Request) -> Result<Self, GatewayError> {
        let started = std::time::Instant::now();
        let (parts, raw) = proxy::read_limited_body(req, state.config().server.max_json_body_bytes).await?;
        let body: Value = serde_json::from_slice(&raw).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        let uri_path = parts.uri.path();
        let api = path::parse(uri_path).ok_or_else(|| GatewayError::Internal("unparsable generate path".into()))?;
        let query = parts.uri.query();
        let stream = api.is_stream();
        let sse = stream && query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
        let meta = RequestMeta::new(&parts.headers, query, stream, started);
        let tenant = Credential::scoped(&parts.headers, query);
        let marking = match state.deferral() {
            Some(d) => {
                let scope = d.observe(&parts.headers, query);
                d.mark(&api, &parts.headers, uri_path, scope.as_deref())?
            }
            None => None,
        };
        let model = api.model_name().unwrap_or_default();
        Ok(Call { raw, body, model, tenant, stream, sse, marking, meta, parts })
    }

    /// The API path (parsed again from the URI, which `read` checked parses).
    pub fn api(&self) -> ApiPath<'_> {
        path::parse(self.parts.uri.path()).expect("checked when the call was read")
    }

    pub fn path_and_query(&self) -> &str {
        self.parts.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    pub fn scope(&self) -> Option<&str> {
        self.tenant.as_ref().map(|(s, _)| s.as_str())
    }

    pub fn credential(&self) -> Option<&Credential> {
        self.tenant.as_ref().map(|(_, c)| c)
    }
}
