//! Request metrics: requests by matched route, method and status; the time until the response
//! headers; and the gateway's own overhead (that time minus the time spent waiting upstream).

use super::RequestLabels;
use crate::telemetry::{REQUEST_DURATION, REQUESTS, hot, status_label};
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tower::Service;

super::wrapping_layer!(
    RequestMetricsLayer => RequestMetrics
);

impl<S, B, R> Service<Request<B>> for RequestMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Set by the span layer; worked out here when this layer is used on its own.
        let labels = req.extensions().get::<RequestLabels>().cloned().unwrap_or_else(|| RequestLabels::of(&req));
        MetricsFuture { inner: self.inner.call(req), labels, started: Instant::now() }
    }
}

pin_project! {
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        labels: RequestLabels,
        started: Instant,
    }
}

impl<F, R, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(resp) = &result {
            let total = this.started.elapsed();
            let upstream = super::span::upstream_time();
            let RequestLabels { method, route } = this.labels;
            let status = status_label(resp.status());
            metrics::counter!(REQUESTS, "route" => route.clone(), "method" => *method, "status" => status).increment(1);
            metrics::histogram!(REQUEST_DURATION, "route" => route.clone()).record(total.as_secs_f64());
            if !upstream.is_zero() {
                hot().overhead.record(total.saturating_sub(upstream).as_secs_f64());
            }
        }
        Poll::Ready(result)
    }
}
