//! The request span and the request's labels, worked out once for the layers below it, and the
//! account of time the request spent waiting for the upstream.

use super::REQUEST_ID;
use crate::gemini::path;
use http::Request;
use std::cell::Cell;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::futures::TaskLocalFuture;
use tower::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;

pub use crate::telemetry::record_upstream_time;
pub(super) use crate::telemetry::upstream_time;

/// A request's low-cardinality labels, in its extensions for the metrics layer.
#[derive(Clone, Debug)]
pub struct RequestLabels {
    pub method: &'static str,
    /// The matched route (`models:generateContent`, `files/{id}`, `healthz`, `other`…).
    pub route: Arc<str>,
}

impl RequestLabels {
    pub fn of<B>(req: &Request<B>) -> Self {
        let p = req.uri().path();
        let route: Arc<str> = match path::parse(p) {
            Some(api) => api.route_label().into(),
            None if matches!(p, "/healthz" | "/readyz" | "/metrics") => p[1..].into(),
            None if p.starts_with("/gemgate/") => "gemgate".into(),
            None if p.starts_with("/ws/") => "ws".into(),
            None => "other".into(),
        };
        Self { method: path::method_label(req.method()), route }
    }
}

super::wrapping_layer!(
    RequestSpanLayer => RequestSpan
);

impl<S, B> Service<Request<B>> for RequestSpan<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<TaskLocalFuture<Cell<Duration>, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let labels = RequestLabels::of(&req);
        let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
        let span = tracing::info_span!("request", id = %id, method = %labels.method, route = %labels.route);
        req.extensions_mut().insert(labels);
        crate::telemetry::upstream_time_scope(self.inner.call(req)).instrument(span)
    }
}
