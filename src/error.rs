//! Errors the gateway itself originates while serving a request. Each variant decides its HTTP
//! status and a low-cardinality kind for metrics; all render as Gemini's own error JSON. Errors
//! that come from the upstream are never turned into these: they pass through untouched.

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
    #[error("the gateway is shutting down")]
    ShuttingDown,
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
            Self::MalformedJson(_) | Self::ClientBody(_) => 400,
            Self::ShuttingDown | Self::Overloaded(_) => 503,
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
            Self::ShuttingDown => "shutting_down",
            Self::Overloaded(_) => "overloaded",
            Self::Internal(_) => "internal",
        }
    }

    pub fn to_gemini(&self) -> GeminiError {
        let message = match self {
            Self::MalformedJson(detail) => format!("Invalid JSON payload received. {detail}"),
            other => format!("gemgate: {other}"),
        };
        GeminiError::new(self.http_status(), message)
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        metrics::counter!(crate::telemetry::GATEWAY_ERRORS, "kind" => self.kind()).increment(1);
        tracing::warn!(kind = self.kind(), error = %self, "gateway error");
        let mut resp = self.to_gemini().into_response();
        if matches!(self, Self::ClientTooSlow(_)) {
            // The rest of the body may never come: do not wait for it on this connection.
            resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
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
