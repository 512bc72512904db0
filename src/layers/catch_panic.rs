//! A handler that panics answers 500 with Gemini's error JSON, like any gateway error, instead of
//! the connection being dropped without a word. The panic message goes to the log (and stderr,
//! through the panic hook), never into the response: it may quote request data.

use crate::error::GatewayError;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::CatchUnwind;
use http::Request;
use pin_project_lite::pin_project;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::Service;

super::wrapping_layer!(
    /// Unlike tower-http's `CatchPanic`, the response keeps its body type: no response body is boxed
    /// again on the way out.
    CatchPanicLayer => CatchPanic
);

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => CatchPanicFuture::Running { inner: AssertUnwindSafe(fut).catch_unwind() },
            Err(payload) => CatchPanicFuture::Panicked { response: Some(answer(payload)) },
        }
    }
}

pin_project! {
    #[project = Proj]
    pub enum CatchPanicFuture<F> {
        Running { #[pin] inner: CatchUnwind<AssertUnwindSafe<F>> },
        Panicked { response: Option<Response> },
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Running { inner } => Poll::Ready(match ready!(inner.poll(cx)) {
                Ok(result) => result,
                Err(payload) => Ok(answer(payload)),
            }),
            Proj::Panicked { response } => Poll::Ready(Ok(response.take().expect("polled after completion"))),
        }
    }
}

fn answer(payload: Box<dyn Any + Send>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "request handler panicked");
    GatewayError::Internal("the request could not be completed (the gateway hit a bug; see its log)".into())
        .into_response()
}
