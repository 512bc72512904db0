//! The layers between the stack's outer half and the routes: gzip request bodies inflated, unsafe
//! paths refused, the admin token checked. Static types like the rest of the stack: a request
//! that needs none of them costs a header look-up and a path scan, not a boxed future each.

use crate::admin_token::{authorized, in_query, is_admin_path, is_owned_path, strip_from_headers};
use crate::error::GatewayError;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either, Ready, ready};
use http::{Request, header};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};
use tower_http::decompression::RequestDecompressionLayer;

super::wrapping_layer!(
    /// gzip request bodies are inflated before any handler reads them (body limits apply to the
    /// inflated bytes); other encodings pass through to the upstream untouched. Requests without
    /// `Content-Encoding` (nearly all) go straight on.
    DecompressLayer => Decompress
);

impl<S> Service<Request<Body>> for Decompress<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !req.headers().contains_key(header::CONTENT_ENCODING) {
            return Either::Left(self.inner.call(req));
        }
        let inflate = tower::ServiceBuilder::new()
            .layer(RequestDecompressionLayer::new().pass_through_unaccepted(true))
            .map_request(|req: Request<_>| req.map(Body::new))
            .service(self.inner.clone());
        Either::Right(Box::pin(async move { Ok(inflate.oneshot(req).await?.map(Body::new)) }))
    }
}

super::wrapping_layer!(
    /// Refuses paths that URL resolution would turn into another path (see `path::check_safe`),
    /// before any route, guard or forwarding sees them.
    PathSafetyLayer => PathSafety
);

impl<S, B> Service<Request<B>> for PathSafety<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match crate::gemini::path::check_safe(req.uri().path()) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(what) => Either::Right(ready(Ok(GatewayError::UnsafePath(what.to_string()).into_response()))),
        }
    }
}

/// `server.admin_token`: when set, admin paths (`/gemgate/...` but tenants' operations, and
/// `/metrics`) need `Authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub struct AdminTokenLayer {
    /// Empty: the admin endpoints are open.
    token: Arc<str>,
}

impl AdminTokenLayer {
    pub fn new(token: &str) -> Self {
        Self { token: token.into() }
    }
}

impl<S> Layer<S> for AdminTokenLayer {
    type Service = AdminToken<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdminToken { inner, token: self.token.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct AdminToken<S> {
    inner: S,
    token: Arc<str>,
}

impl<S, B> Service<Request<B>> for AdminToken<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if self.token.is_empty() {
            return Either::Left(self.inner.call(req));
        }
        if !is_owned_path(req.uri().path()) {
            // Bound upstream: the token must not go with it, in whatever form it was sent.
            if in_query(req.uri().query(), &self.token) {
                return Either::Right(ready(Ok(GatewayError::AdminTokenAsKey.into_response())));
            }
            if strip_from_headers(req.headers_mut(), &self.token) {
                tracing::debug!("the admin token was sent on a forwarded path; removed before forwarding");
            }
            return Either::Left(self.inner.call(req));
        }
        // The `/gemgate/ui` page's static files hold no data, and a browser navigating cannot send
        // the header; the page's script sends the token on every call it makes.
        let static_ui = req.method() == http::Method::GET && crate::admin_token::is_static_ui(req.uri().path());
        if !is_admin_path(req.uri().path())
            || static_ui
            || authorized(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()), &self.token)
        {
            return Either::Left(self.inner.call(req));
        }
        Either::Right(ready(Ok(GatewayError::AdminTokenRequired.into_response())))
    }
}
