//! Moving bodies: client request → upstream and upstream response → client, as streams, so large
//! uploads and long SSE streams are never held in memory. Dropping the client side drops the
//! upstream response, which cancels the upstream call.

use super::{ClientOrigin, UpstreamRequest, UpstreamResponse, strip_hop_by_hop, strip_request_headers};
use super::{UploadRoutes, Upstream};
use crate::error::GatewayError;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use http::header::CONTENT_LENGTH;
use http_body::Frame;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Counts body bytes into a metrics counter as they pass.
#[derive(Clone, Copy)]
pub struct BodyMeter(Direction);

#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

impl BodyMeter {
    pub const REQUEST: Self = Self(Direction::Request);
    pub const RESPONSE: Self = Self(Direction::Response);
    pub fn add(self, n: usize) {
        let hot = crate::telemetry::hot();
        match self.0 {
            Direction::Request => hot.request_bytes.increment(n as u64),
            Direction::Response => hot.response_bytes.increment(n as u64),
        }
    }
}

pin_project! {
    /// A body passed on frame by frame (trailers included), its data counted by a [`BodyMeter`].
    pub struct Metered<B> {
        #[pin]
        inner: B,
        meter: BodyMeter,
    }
}

impl<B> Metered<B> {
    pub fn new(inner: B, meter: BodyMeter) -> Self {
        Self { inner, meter }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                this.meter.add(data.len());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn content_length(req: &Request) -> Option<u64> {
    req.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads a whole request body, refusing more than `limit` bytes with 413.
pub async fn read_limited_body(req: Request, limit: u64) -> Result<(http::request::Parts, Bytes), GatewayError> {
    if content_length(&req).is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let (parts, body) = req.into_parts();
    // Counted as they arrive, so a body refused half-way still shows what it cost to read.
    let limited = http_body_util::Limited::new(Metered::new(body, BodyMeter::REQUEST), limit as usize);
    match limited.collect().await {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(e) if crate::listener::is_slow_body(&*e) => Err(GatewayError::ClientTooSlow(e.to_string())),
        Err(e) => Err(GatewayError::ClientBody(e.to_string())),
    }
}

/// What forwarding a request as it came needs from the gateway.
#[derive(Clone, Copy)]
pub struct Passthrough<'a> {
    pub upstream: &'a Upstream,
    pub uploads: &'a UploadRoutes,
    pub max_body_bytes: u64,
}

/// Forwards a request as it came, streaming its body, and relays the response.
pub async fn passthrough(to: Passthrough<'_>, req: Request, origin: Option<String>) -> Result<Response, GatewayError> {
    let limit = to.max_body_bytes;
    if content_length(&req).is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let (mut parts, body) = req.into_parts();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    // The client's header map goes upstream itself, edited; the upload-URL rewrite keeps the
    // three headers it reads.
    let client = ClientOrigin::of(&parts.headers);
    let mut headers = std::mem::take(&mut parts.headers);
    strip_request_headers(&mut headers);
    let body = Metered::new(http_body_util::Limited::new(body, limit as usize), BodyMeter::REQUEST);
    let upstream_req = UpstreamRequest { method: parts.method, path_and_query, headers, body: Body::new(body) };
    let started = std::time::Instant::now();
    let slow = parts.extensions.get::<crate::listener::BodyTimedOut>().cloned().unwrap_or_default();
    let resp = match to.upstream.send_to(origin.as_deref(), upstream_req).await {
        Ok(resp) => resp,
        // The upstream call failed because the client's body stopped coming: say so.
        Err(_) if slow.get() => return Err(GatewayError::ClientTooSlow("the request body arrived too slowly".into())),
        // The body passed the limit while it streamed upstream (no Content-Length, or inflated).
        Err(GatewayError::BodyTooLarge { .. }) => return Err(GatewayError::BodyTooLarge { limit }),
        Err(e) => return Err(e),
    };
    crate::telemetry::record_upstream_time(started.elapsed());
    let mut out = relay_response(resp);
    to.uploads.rewrite(&client, out.headers_mut(), to.upstream.base());
    Ok(out)
}

/// Turns an upstream response into a client response, streaming the body frame by frame.
pub fn relay_response(resp: UpstreamResponse) -> Response {
    let (parts, body) = resp.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    // Only status and headers cross: the upstream connection's version and extensions do not.
    let mut out = Response::new(Body::new(Metered::new(body, BodyMeter::RESPONSE)));
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    out
}
