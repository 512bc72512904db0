//! The one HTTP client to the upstream: pooled keep-alive connections, a connect timeout and a
//! time-to-headers timeout (streams are never cut once they have started).

use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use http::{HeaderMap, Method};
use std::time::Duration;

/// Handle to the upstream Gemini API (or the emulator). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: reqwest::Client,
    /// Base URL without a trailing slash; may carry a path prefix.
    base: String,
    timeout: Duration,
}

/// One request to send upstream.
pub struct UpstreamRequest {
    pub method: Method,
    /// Path and query as the client sent them (`/v1beta/models?key=…`).
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: reqwest::Body,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client, base: cfg.url.trim_end_matches('/').to_string(), timeout: cfg.timeout })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request to `origin` (scheme://host:port[/prefix]) or, by default, to the configured
    /// base, and waits for the response headers within the configured timeout.
    pub async fn send_to(&self, origin: Option<&str>, req: UpstreamRequest) -> Result<reqwest::Response, GatewayError> {
        let url = format!("{}{}", origin.unwrap_or(&self.base), req.path_and_query);
        let builder = self.client.request(req.method, url).headers(req.headers).body(req.body);
        match tokio::time::timeout(self.timeout, builder.send()).await {
            Err(_) => Err(GatewayError::UpstreamTimeout(self.timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(e, self.timeout)),
        }
    }

    pub async fn send(&self, req: UpstreamRequest) -> Result<reqwest::Response, GatewayError> {
        self.send_to(None, req).await
    }
}

/// Maps a transport error to the gateway error a client sees. The URL (which may carry `?key=`)
/// is stripped from the message.
fn classify(e: reqwest::Error, timeout: Duration) -> GatewayError {
    if e.is_timeout() {
        return GatewayError::UpstreamTimeout(timeout);
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    GatewayError::UpstreamUnreachable(msg)
}
