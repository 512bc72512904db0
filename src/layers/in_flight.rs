//! Requests in flight and load shedding. A request counts from its arrival until its response
//! body is finished or dropped, so a long stream holds its slot to the last byte. Beyond
//! `server.max_in_flight` a request is answered 503 at once instead of queueing without bound.

use crate::error::GatewayError;
use crate::telemetry::hot;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// Holds the in-flight count (and gauge) up until it is dropped.
pub struct InFlight {
    counter: Arc<AtomicUsize>,
    /// Requests in flight, this one included, when it entered.
    count: usize,
}

impl InFlight {
    pub fn enter(counter: &Arc<AtomicUsize>) -> Self {
        hot().in_flight.increment(1.0);
        let count = counter.fetch_add(1, Ordering::Relaxed) + 1;
        InFlight { counter: counter.clone(), count }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
        hot().in_flight.decrement(1.0);
    }
}

#[derive(Clone, Debug)]
pub struct InFlightLimitLayer {
    counter: Arc<AtomicUsize>,
    /// Zero: no limit (the count is still kept for the gauge).
    limit: usize,
}

impl InFlightLimitLayer {
    pub fn new(counter: Arc<AtomicUsize>, limit: usize) -> Self {
        Self { counter, limit }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit { inner, counter: self.counter.clone(), limit: self.limit }
    }
}

#[derive(Clone, Debug)]
pub struct InFlightLimit<S> {
    inner: S,
    counter: Arc<AtomicUsize>,
    limit: usize,
}

impl<S, B> Service<Request<B>> for InFlightLimit<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = InFlightFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = InFlight::enter(&self.counter);
        if self.limit > 0 && guard.count > self.limit {
            // Shed load rather than queue without bound: a clear, retryable 503 now beats memory
            // growing until the process dies.
            let shed = GatewayError::Overloaded(self.limit).into_response();
            return InFlightFuture::Shed { response: Some(guarded(shed, guard)) };
        }
        InFlightFuture::Serving { inner: self.inner.call(req), guard: Some(guard) }
    }
}

pin_project! {
    #[project = Proj]
    pub enum InFlightFuture<F> {
        Shed { response: Option<Response> },
        Serving { #[pin] inner: F, guard: Option<InFlight> },
    }
}

impl<F, E> Future for InFlightFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Shed { response } => Poll::Ready(Ok(response.take().expect("polled after completion"))),
            Proj::Serving { inner, guard } => {
                let resp = ready!(inner.poll(cx))?;
                let guard = guard.take().expect("polled after completion");
                Poll::Ready(Ok(guarded(resp, guard)))
            }
        }
    }
}

/// The response with `guard` held until its body is finished or dropped.
fn guarded(resp: Response, guard: InFlight) -> Response {
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::new(GuardedBody { inner: body, _guard: guard }))
}

struct GuardedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
