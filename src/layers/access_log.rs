//! The access log: one `served` line per request, inside the request span, with the path
//! (credentials redacted), status, total time and time spent waiting for the upstream.

use http::{Request, Response, Uri};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tower::Service;

super::wrapping_layer!(
    AccessLogLayer => AccessLog
);

impl<S, B, R> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // With `served` lines filtered out (a `warn` level), the request is not timed and its URI
        // not kept. A clone of the URI shares its bytes; the path is only redacted if the line is
        // written.
        let log = tracing::enabled!(tracing::Level::INFO).then(|| (req.uri().clone(), Instant::now()));
        AccessLogFuture { inner: self.inner.call(req), log }
    }
}

pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        // The request's URI and arrival, when its line will be written.
        log: Option<(Uri, Instant)>,
    }
}

impl<F, R, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(resp), Some((uri, started))) = (&result, this.log.as_ref()) {
            let total = started.elapsed();
            let upstream = super::span::upstream_time();
            let path = Redacted(uri);
            let status = resp.status().as_u16();
            tracing::info!(path = %path, status, ms = millis(total), upstream_ms = millis(upstream), "served");
        }
        Poll::Ready(result)
    }
}

/// The path and query with credentials redacted, worked out only when the line is written.
struct Redacted<'a>(&'a Uri);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pq = self.0.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        f.write_str(&crate::telemetry::redact_path_and_query(pq))
    }
}

/// Milliseconds rounded to the microsecond, so logs carry `12.345`, not float noise.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
