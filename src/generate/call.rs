//! The typed context of an intercepted generate call, built once when its body has been read:
//! every step of the generate path reads what it needs from here instead of parsing again.

use crate::caching::Plan;
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
    /// The body as it came, and what the planner made of it.
    pub raw: Bytes,
    pub body: Body,
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

/// A generate call's body beyond its bytes.
pub enum Body {
    /// Parsed: the planner needs it, or the call is marked for deferral.
    Parsed(Value),
    /// Only checked to be JSON: caching's plan was settled from the path and the body's shape
    /// ([`Plan::unread`]), so nothing on the way needs the parsed form.
    Unread(Box<Plan>),
}

impl Call {
    /// Reads the body (within the configured limit), parses it, and works out everything else
    /// once. Deferral sees the credential here (it is remembered for the tenant's queued work),
    /// and a malformed deferral header is the client's error.
    pub async fn read(state: &AppState, req: Request) -> Result<Self, GatewayError> {
        let started = std::time::Instant::now();
        let (parts, raw) = proxy::read_limited_body(req, state.config().server.max_json_body_bytes).await?;
        let uri_path = parts.uri.path();
        let api = path::parse(uri_path).ok_or_else(|| GatewayError::Internal("unparsable generate path".into()))?;
        let query = parts.uri.query();
        let stream = api.is_stream();
        let sse = stream && query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
        let tenant = Credential::scoped(&parts.headers, query);
        let scope = tenant.as_ref().map(|(s, _)| s.as_str());
        let model = api.model_name().unwrap_or_default();
        let marking = match state.deferral() {
            Some(d) => d.mark(&api, &model, &parts.headers, uri_path, scope),
            None => Ok(None),
        };
        // Malformed JSON is the first error a client hears of, whether or not the body is built.
        let unread = match &marking {
            Ok(None) => Plan::unread(state.caching(), &api, scope, &raw).map_err(malformed)?,
            _ => None,
        };
        let body = match unread {
            Some(plan) => Body::Unread(Box::new(plan)),
            None => Body::Parsed(serde_json::from_slice(&raw).map_err(malformed)?),
        };
        let marking = marking?;
        if let (Some(d), Some((scope, cred))) = (state.deferral(), &tenant) {
            d.observe_tenant(scope, cred);
        }
        let meta = RequestMeta::new(&parts.headers, tenant.as_ref().map(|(s, _)| s.clone()), stream, started);
        Ok(Call { raw, body, model, tenant, stream, sse, marking, meta, parts })
    }

    /// The API path (parsed again from the URI, which `read` checked parses).
    pub fn api(&self) -> ApiPath<'_> {
        path::parse(self.parts.uri.path()).expect("checked when the call was read")
    }

    /// The parsed body (parsed here when the planner did not need it).
    pub fn value(&self) -> Result<std::borrow::Cow<'_, Value>, GatewayError> {
        match &self.body {
            Body::Parsed(v) => Ok(std::borrow::Cow::Borrowed(v)),
            Body::Unread(_) => serde_json::from_slice(&self.raw).map(std::borrow::Cow::Owned).map_err(malformed),
        }
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

fn malformed(e: serde_json::Error) -> GatewayError {
    GatewayError::MalformedJson(e.to_string())
}
