//! The request path: intercepted generate calls (parsed once, candidates for caching) and
//! everything else (streamed through untouched).

use crate::app::AppState;
use crate::error::GatewayError;
use crate::gemini::path::{self, Door};
use crate::proxy::{self, UpstreamRequest};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::Method;

/// Fallback handler: every path that is not the gateway's own goes through here.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let result = match path::parse(req.uri().path()) {
        Some(p) if p.is_generate() && req.method() == Method::POST => generate(&state, req).await,
        Some(p) if p.door == Door::Upload => {
            let origin = req
                .uri()
                .query()
                .and_then(|q| state.uploads().origin_for(q));
            proxy::passthrough(&state, req, origin).await
        }
        _ => proxy::passthrough(&state, req, None).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// generateContent / streamGenerateContent: the body is read and parsed once.
async fn generate(state: &AppState, req: Request) -> Result<Response, GatewayError> {
    let (parts, body) =
        proxy::read_limited_body(req, state.config().server.max_json_body_bytes).await?;
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(GatewayError::MalformedJson(e.to_string()));
    }
    let upstream_req = UpstreamRequest {
        method: parts.method.clone(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string(),
        headers: proxy::copy_request_headers(&parts.headers),
        body: body.into(),
    };
    let started = std::time::Instant::now();
    let resp = state.upstream().send(upstream_req).await?;
    crate::app::record_upstream_time(started.elapsed());
    Ok(proxy::relay_response(resp))
}
