//! The gateway's HTTP server loop (hyper, HTTP/1.1 and h2c): a first-byte and a header-read
//! timeout, a cap on open connections, body read limits on every request, upgrades (WebSocket)
//! kept possible, and a shutdown that lets open requests finish while new connections only learn
//! that this replica is leaving.

mod body;
mod io;

pub use body::{BodyLimits, BodyTimedOut, SlowBody, is_slow_body};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use body::TimedBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What the server loop runs for every request: the route table inside the layer stack.
type App = crate::layers::Stack<axum::Router>;

/// Limits on how slowly a client may send a request, and on how many connections it may hold.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Time allowed for the whole request line and header block.
    pub header_read: Duration,
    /// Time a new connection has to send its first byte (zero: no limit).
    pub first_byte: Duration,
    /// Connections open at once (0: no limit).
    pub max_connections: usize,
    pub body: BodyLimits,
}

impl ClientLimits {
    pub fn from_config(c: &crate::config::ServerConfig) -> Self {
        Self {
            header_read: c.header_read_timeout,
            first_byte: c.first_byte_timeout,
            max_connections: c.max_connections,
            body: BodyLimits { idle: c.body_idle_timeout, min_rate: c.min_body_rate },
        }
    }
}

/// Connections open on a listener; a [`Slot`] is held for each and given back when it closes.
#[derive(Clone, Default)]
struct Connections(Arc<AtomicUsize>);

/// One open connection's place in [`Connections`].
struct Slot(Arc<AtomicUsize>);

impl Connections {
    /// A slot for a new connection, or `None` when `max` (0: no limit) are open already.
    fn admit(&self, max: usize) -> Option<Slot> {
        let open = self.0.fetch_add(1, Ordering::Relaxed);
        if max != 0 && open >= max {
            self.0.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        metrics::gauge!(crate::telemetry::OPEN_CONNECTIONS).increment(1.0);
        Some(Slot(self.0.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::OPEN_CONNECTIONS).decrement(1.0);
    }
}

/// Answers a connection over the cap with 503 and closes it. The answer is written only if the
/// socket takes it at once (a new connection's send buffer is empty), so a flood of connections
/// costs no task and no wait each.
fn refuse(stream: tokio::net::TcpStream) {
    let error = crate::error::GatewayError::TooManyConnections;
    error.record();
    let body = error.to_gemini().body();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    let _ = stream.try_write(&out);
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then until the connections open at
/// that moment have finished (the caller bounds that wait). Connections accepted after it are
/// answered by `app` for `/healthz` and `/readyz` (which then says 503) and with 503 otherwise.
pub async fn serve(listener: TcpListener, app: App, limits: ClientLimits, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    builder.http2().timer(TokioTimer::new());
    let open = Connections::default();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(slot) = open.admit(limits.max_connections) else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(io::GeminiErrors::new(io::FirstByte::new(stream, limits.first_byte, slot)));
        let conn = builder.serve_connection_with_upgrades(io, service(app.clone(), limits));
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move { note_connection_end(conn.await) });
    }
    tokio::spawn(answer_while_leaving(listener, app, builder, limits));
    graceful.shutdown().await;
}

/// After shutdown: keep the port answering, so load balancers read a 503 from `/readyz` instead
/// of a refused connection, until the process exits.
async fn answer_while_leaving(listener: TcpListener, app: App, builder: auto::Builder<TokioExecutor>, l: ClientLimits) {
    let leaving = Router::new()
        .route("/healthz", axum::routing::any_service(app.clone()))
        .route("/readyz", axum::routing::any_service(app))
        .fallback(|| async { crate::error::GatewayError::ShuttingDown.into_response() });
    while let Ok((stream, _)) = listener.accept().await {
        let io = TokioIo::new(io::GeminiErrors::new(io::FirstByte::new(stream, l.first_byte, ())));
        let conn = builder.serve_connection(io, service(leaving.clone(), l)).into_owned();
        tokio::spawn(async move { note_connection_end(conn.await) });
    }
}

fn service<A>(app: A, limits: ClientLimits) -> Service<A> {
    Service { app, limits }
}

/// The router behind a hyper connection, with every request body under the body limits.
#[derive(Clone)]
struct Service<A> {
    app: A,
    limits: ClientLimits,
}

impl<A> hyper::service::Service<http::Request<Incoming>> for Service<A>
where
    A: tower::Service<http::Request<Body>, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = tower::util::Oneshot<A, http::Request<Body>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let flag = BodyTimedOut::default();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(flag.clone());
        let req = http::Request::from_parts(parts, Body::new(TimedBody::new(body, self.limits.body, flag)));
        self.app.clone().oneshot(req)
    }
}

/// Counts connections closed for sending their header block too slowly.
fn note_connection_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    let Err(err) = result else { return };
    if err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
        metrics::counter!(crate::telemetry::CLIENT_TIMEOUTS, "kind" => "header").increment(1);
        tracing::debug!("connection closed: header block not received in time");
    } else {
        tracing::trace!(%err, "connection ended with an error");
    }
}
