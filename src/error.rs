//! Errors the gateway itself originates while serving a request. Each variant decides its HTTP
//! status (and so Gemini's status string) and a low-cardinality kind for the
//! `gemgate_gateway_errors_total` metric; all render as Gemini's own error JSON through the one
//! `IntoResponse` below, which also counts them. Errors that come from the upstream are never
//! turned into these: they pass through untouched.

use crate::gemini::GeminiError;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("invalid JSON payload received: {0}")]
    MalformedJson(String),
    #[error("error reading the request body: {0}")]
    ClientBody(String),
    #[error("{0}; the connection is closed")]
    ClientTooSlow(String),
    /// A header, query parameter or control the gateway reads is malformed (400).
    #[error("{0}")]
    InvalidArgument(String),
    /// The path holds something the gateway never forwards (dot segments, encoded slashes…).
    #[error("Invalid request path: it contains {0}, which the gateway does not forward.")]
    UnsafePath(String),
    /// hyper refused the request before any handler ran (see `listener::io`).
    #[error("{}", match .0 { 414 => "the request URI is too long", 431 => "the request headers are too large", _ => "the request could not be parsed as HTTP" })]
    UnparsableHttp(u16),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("this endpoint requires the admin token (Authorization: Bearer <server.admin_token>)")]
    AdminTokenRequired,
    /// No credential at all on a call that acts for a tenant; worded as Google words it.
    #[error(
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
    )]
    Unregistered,
    /// A feature the endpoint belongs to is switched off in the configuration.
    #[error("{0}")]
    Disabled(&'static str),
    /// A deferred operation that does not exist, or belongs to another scope; worded as Google does.
    #[error("Operation operations/{0} not found.")]
    OperationNotFound(String),
    /// A path under the gateway's own (`/gemgate/…`, `/metrics`, …) that it does not serve; such
    /// paths are never forwarded.
    #[error("no gateway endpoint {0}")]
    NoGatewayEndpoint(String),
    /// The admin token sent as a Gemini API key (`?key=`): refused, never forwarded upstream.
    #[error("the admin token is not a Gemini API key and is never sent upstream; send your Gemini key as ?key=")]
    AdminTokenAsKey,
    #[error("no UI asset {0:?}")]
    NoSuchAsset(String),
    /// The deferral queue did not answer (Redis down, a timeout): transient, the client retries.
    #[error("the deferral queue is unavailable; retry later")]
    QueueUnavailable,
    /// A batch-marked request could not be queued and the shared queue's rule is to refuse it.
    #[error(
        "the deferral queue is unavailable, so this batch request was not accepted; retry later, or send it with x-gemgate-defer: standard"
    )]
    BatchNotAccepted,
    /// An admin read of the store or queue failed.
    #[error("{what} unavailable: {detail}")]
    BackendUnavailable { what: &'static str, detail: String },
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("too many connections open to this gateway (server.max_connections); retry shortly")]
    TooManyConnections,
    #[error("more than {0} requests in flight; retry shortly")]
    Overloaded(usize),
    #[error("internal gateway error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UpstreamUnreachable(_) => 502,
            Self::UpstreamTimeout(_) => 504,
            Self::BodyTooLarge { .. } => 413,
            Self::ClientTooSlow(_) => 408,
            Self::MalformedJson(_)
            | Self::ClientBody(_)
            | Self::InvalidArgument(_)
            | Self::UnsafePath(_)
            | Self::AdminTokenAsKey => 400,
            Self::UnparsableHttp(code) => *code,
            Self::MethodNotAllowed { .. } => 405,
            Self::AdminTokenRequired => 401,
            Self::Unregistered => 403,
            Self::Disabled(_) | Self::OperationNotFound(_) | Self::NoSuchAsset(_) | Self::NoGatewayEndpoint(_) => 404,
            Self::QueueUnavailable
            | Self::BatchNotAccepted
            | Self::BackendUnavailable { .. }
            | Self::ShuttingDown
            | Self::TooManyConnections
            | Self::Overloaded(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// Label for the `gemgate_gateway_errors_total` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UpstreamUnreachable(_) => "upstream_unreachable",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::MalformedJson(_) => "malformed_json",
            Self::ClientBody(_) => "client_body",
            Self::ClientTooSlow(_) => "client_too_slow",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::UnsafePath(_) => "unsafe_path",
            Self::UnparsableHttp(_) => "unparsable_http",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::AdminTokenRequired => "admin_token_required",
            Self::Unregistered => "unregistered",
            Self::Disabled(_) => "disabled",
            Self::OperationNotFound(_) | Self::NoSuchAsset(_) | Self::NoGatewayEndpoint(_) => "not_found",
            Self::AdminTokenAsKey => "admin_token_as_key",
            Self::QueueUnavailable | Self::BatchNotAccepted => "queue_unavailable",
            Self::BackendUnavailable { .. } => "backend_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Overloaded(_) => "overloaded",
            Self::TooManyConnections => "too_many_connections",
            Self::Internal(_) => "internal",
        }
    }

    pub fn to_gemini(&self) -> GeminiError {
        let message = match self {
            Self::MalformedJson(detail) => format!("Invalid JSON payload received. {detail}"),
            // Google's own wording, which clients and SDKs may match on.
            Self::UnsafePath(_) | Self::Unregistered | Self::OperationNotFound(_) => self.to_string(),
            other => format!("gemgate: {other}"),
        };
        GeminiError::new(self.http_status(), message)
    }

    /// Counts and logs the error; done once for every error answered (the `IntoResponse` below,
    /// and the listener for answers written below the router).
    pub fn record(&self) {
        metrics::counter!(crate::telemetry::GATEWAY_ERRORS, "kind" => self.kind()).increment(1);
        tracing::warn!(kind = self.kind(), error = %self, "gateway error");
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.record();
        let mut resp = self.to_gemini().into_response();
        match self {
            // The rest of the body may never come: do not wait for it on this connection.
            Self::ClientTooSlow(_) => {
                resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Self::AdminTokenRequired => {
                resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_documented_mapping() {
        assert_eq!(GatewayError::UpstreamUnreachable("x".into()).http_status(), 502);
        assert_eq!(GatewayError::UpstreamTimeout(std::time::Duration::from_secs(1)).http_status(), 504);
        assert_eq!(GatewayError::BodyTooLarge { limit: 1 }.http_status(), 413);
        assert_eq!(GatewayError::MalformedJson("x".into()).to_gemini().status(), "INVALID_ARGUMENT");
        assert_eq!(GatewayError::ShuttingDown.to_gemini().status(), "UNAVAILABLE");
    }
}
