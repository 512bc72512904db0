//! The layer stack every request passes before the router: named tower layers, each with one
//! job, composed once with static types (no boxed service or future per layer and request).

/// A layer without settings and the service it wraps around `inner`: every such layer of the
/// stack is declared through this, so only its `Service` impl is written by hand. The doc
/// comments describe the layer and go on both types.
macro_rules! wrapping_layer {
    ($(#[$doc:meta])* $layer:ident => $service:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $layer;

        impl<S> tower::Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> Self::Service {
                $service { inner }
            }
        }

        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $service<S> {
            inner: S,
        }
    };
}
use wrapping_layer;

mod access_log;
mod catch_panic;
mod guards;
mod in_flight;
mod metrics;
mod span;

pub use access_log::{AccessLog, AccessLogLayer};
pub use catch_panic::{CatchPanic, CatchPanicLayer};
pub use guards::{AdminToken, AdminTokenLayer, Decompress, DecompressLayer, PathSafety, PathSafetyLayer};
pub use in_flight::{InFlight, InFlightLimit, InFlightLimitLayer};
pub use metrics::{RequestMetrics, RequestMetricsLayer};
pub use span::{RequestLabels, RequestSpan, RequestSpanLayer, record_upstream_time};

use crate::config::ServerConfig;
use http::HeaderName;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestId, PropagateRequestIdLayer, RequestId, SetRequestId, SetRequestIdLayer,
};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole stack around a service `S` (the router), outermost first.
pub type Stack<S> = SetRequestId<
    PropagateRequestId<
        RequestSpan<AccessLog<RequestMetrics<InFlightLimit<CatchPanic<Decompress<PathSafety<AdminToken<S>>>>>>>>,
    >,
    MakeUuid,
>;

/// Request ids: random UUIDs (v4), written straight into a header value. tower-http's
/// `MakeRequestUuid` formats each one through `to_string()` and parses the text back.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeUuid;

impl MakeRequestId for MakeUuid {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        http::HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// Wraps `inner` in the gateway's layers. A request passes them top to bottom, a response
/// bottom to top:
/// 1. `SetRequestId`: gives every request an `x-request-id` (the client's, or a new UUID) before
///    anything logs, so every line of a request carries the same id.
/// 2. `PropagateRequestId`: copies the id onto the response for the client to quote; outside
///    everything that answers, shed and panic answers included.
/// 3. `RequestSpan`: works out the request's labels (method, matched route) once, opens the
///    `request` span every later log line of the request belongs to, and starts the account of
///    time spent waiting for the upstream ([`record_upstream_time`]).
/// 4. `AccessLog`: one `served` line per request (redacted path, status, total and upstream ms).
/// 5. `RequestMetrics`: requests by route, method and status; duration; the gateway's own
///    overhead (total minus upstream). Outside the in-flight limit, so shed requests are counted.
/// 6. `InFlightLimit`: counts requests being served (a stream until its last byte, through a
///    guard on the response body) and answers 503 beyond `server.max_in_flight`.
/// 7. `CatchPanic`: a handler that panics answers 500 with Gemini's error JSON instead of
///    dropping the connection; the layers above see, count and log an ordinary 500.
/// 8. `Decompress`: gzip request bodies are inflated, so every handler reads plain bytes.
/// 9. `PathSafety`: 400 for paths with `.`/`..` segments or encoded separators, before any
///    handler or the upstream could resolve them into another path.
/// 10. `AdminToken`: the admin token on `/gemgate/...` and `/metrics` when one is configured, and
///     removed from (or, as `?key=`, refusing) every request bound upstream, so it never leaves.
pub fn stack<S>(inner: S, in_flight: Arc<AtomicUsize>, server: &ServerConfig) -> Stack<S> {
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(RequestSpanLayer)
        .layer(AccessLogLayer)
        .layer(RequestMetricsLayer)
        .layer(InFlightLimitLayer::new(in_flight, server.max_in_flight))
        .layer(CatchPanicLayer)
        .layer(DecompressLayer)
        .layer(PathSafetyLayer)
        .layer(AdminTokenLayer::new(&server.admin_token))
        .service(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let req = http::Request::new(());
        let mut ids = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = MakeUuid.make_request_id(&req).unwrap();
            let text = id.header_value().to_str().unwrap().to_string();
            let parsed = uuid::Uuid::parse_str(&text).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(text, parsed.hyphenated().to_string());
            assert!(ids.insert(text));
        }
    }
}
