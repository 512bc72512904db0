//! The one HTTP client to the upstream on the forwarding path: hyper's pooled client (keep-alive,
//! HTTP/2 by ALPN over TLS), a connect timeout and a time-to-headers timeout (streams are never
//! cut once they have started). Background calls (cache creation, batches) use `client()`.

use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use axum::body::{Body, Bytes};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

type Connector = hyper_rustls::HttpsConnector<super::early_answer::Connector>;

/// Handle to the upstream Gemini API (or the emulator). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The forwarding path: requests and responses stream through as hyper bodies.
    http: Client<Connector, Body>,
    /// HTTP/1.1 only, for protocol upgrades (HTTP/2 has no `Upgrade`).
    upgrade_http: Client<Connector, Body>,
    /// For the gateway's own calls (cache creation, batches, webhooks), which want JSON helpers.
    client: reqwest::Client,
    /// Base URL without a trailing slash; may carry a path prefix.
    base: String,
    /// The same, parsed once: request URIs are built from its parts without re-parsing the host.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The base's path without a trailing slash (`""` for none).
    prefix: String,
    /// `Host` for requests to the base over cleartext HTTP/1.1, worked out once: left to the
    /// client, it is formatted again for every request. `None` for https, where the connection
    /// may speak HTTP/2 and the authority travels as `:authority` instead.
    host: Option<HeaderValue>,
    timeout: Duration,
}

/// One request to send upstream.
pub struct UpstreamRequest {
    pub method: Method,
    /// Path and query as the client sent them (`/v1beta/models?key=…`).
    pub path_and_query: String,
    /// Without hop-by-hop headers; a `Host` among them is replaced by the upstream's.
    pub headers: HeaderMap,
    pub body: Body,
}

/// The upstream's answer: status and headers, and a body still to be read or streamed.
#[derive(Debug)]
pub struct UpstreamResponse(Response<Incoming>);

impl UpstreamResponse {
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }
    pub fn headers(&self) -> &HeaderMap {
        self.0.headers()
    }
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.0.headers_mut()
    }
    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, hyper::Error> {
        Ok(self.0.into_body().collect().await?.to_bytes())
    }
    /// The body as a stream of chunks.
    pub fn bytes_stream(self) -> http_body_util::BodyDataStream<Incoming> {
        self.0.into_body().into_data_stream()
    }
    pub fn into_parts(self) -> (http::response::Parts, Incoming) {
        self.0.into_parts()
    }
    /// The upgraded connection after a 101 answer.
    pub async fn upgrade(self) -> hyper::Result<hyper::upgrade::Upgraded> {
        hyper::upgrade::on(self.0).await
    }
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> anyhow::Result<Self> {
        let base = cfg.url.trim_end_matches('/').to_string();
        let parsed: Uri = base.parse().map_err(|e| anyhow::anyhow!("upstream.url {base:?}: {e}"))?;
        let (Some(scheme), Some(authority)) = (parsed.scheme().cloned(), parsed.authority().cloned()) else {
            anyhow::bail!("upstream.url {base:?}: not an absolute http(s) URL");
        };
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            anyhow::bail!("upstream.url {base:?}: the scheme must be http or https");
        }
        let prefix = parsed.path().trim_end_matches('/').to_string();
        // What the client would set: the host, and the port unless it is the scheme's default.
        let host = (scheme == http::uri::Scheme::HTTP)
            .then(|| match authority.port_u16() {
                Some(p) if p != 80 => format!("{}:{p}", authority.host()),
                _ => authority.host().to_string(),
            })
            .and_then(|h| HeaderValue::from_str(&h).ok());
        let connector = |h2: bool| {
            let mut tcp = HttpConnector::new();
            tcp.enforce_http(false);
            tcp.set_nodelay(true);
            tcp.set_connect_timeout(Some(cfg.connect_timeout));
            let tls = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http();
            match h2 {
                true => tls.enable_http1().enable_http2().wrap_connector(super::early_answer::Connector(tcp)),
                false => tls.enable_http1().wrap_connector(super::early_answer::Connector(tcp)),
            }
        };
        let pooled = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_max_idle_per_host(cfg.pool_max_idle_per_host)
                .pool_idle_timeout(cfg.pool_idle_timeout)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new());
            b
        };
        let http = pooled().build(connector(true));
        let upgrade_http = pooled().build(connector(false));
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, upgrade_http, client, base, scheme, authority, prefix, host, timeout: cfg.timeout })
    }

    /// The URI for a client's path and query on the configured base.
    fn uri_for(&self, path_and_query: &str) -> Result<Uri, GatewayError> {
        let pq = match self.prefix.is_empty() {
            true => http::uri::PathAndQuery::try_from(path_and_query),
            false => http::uri::PathAndQuery::try_from(format!("{}{path_and_query}", self.prefix)),
        };
        let pq = pq.map_err(|e| GatewayError::Internal(format!("unforwardable path: {e}")))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| GatewayError::Internal(format!("unforwardable path: {e}")))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request to `origin` (scheme://host:port[/prefix]) or, by default, to the configured
    /// base, and waits for the response headers within the configured timeout.
    pub async fn send_to(&self, origin: Option<&str>, req: UpstreamRequest) -> Result<UpstreamResponse, GatewayError> {
        let mut headers = req.headers;
        let uri = match origin {
            Some(origin) => format!("{origin}{}", req.path_and_query)
                .parse()
                .map_err(|e| GatewayError::Internal(format!("unforwardable upload URL: {e}")))?,
            None => {
                self.set_host(&mut headers);
                self.uri_for(&req.path_and_query)?
            }
        };
        if origin.is_some() || self.host.is_none() {
            // The client sets it from the URI.
            headers.remove(header::HOST);
        }
        self.await_headers(&self.http, req.method, uri, headers, req.body).await
    }

    /// Sets the base's `Host` when it is known in advance (cleartext base); the client sets it
    /// otherwise, as for any other origin.
    fn set_host(&self, headers: &mut HeaderMap) {
        if let Some(h) = &self.host {
            headers.insert(header::HOST, h.clone());
        }
    }

    /// Sends an upgrade request (no body) over HTTP/1.1 and waits for the upstream's answer.
    pub async fn send_upgrade(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
    ) -> Result<UpstreamResponse, GatewayError> {
        let uri = self.uri_for(path_and_query)?;
        let mut headers = headers;
        self.set_host(&mut headers);
        self.await_headers(&self.upgrade_http, method, uri, headers, Body::empty()).await
    }

    /// Sends and waits for the response headers within the configured timeout.
    async fn await_headers(
        &self,
        client: &Client<Connector, Body>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Result<UpstreamResponse, GatewayError> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        match tokio::time::timeout(self.timeout, client.request(req)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout(self.timeout)),
            Ok(Ok(resp)) => Ok(UpstreamResponse(resp)),
            Ok(Err(e)) => Err(classify(&e)),
        }
    }

    pub async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, GatewayError> {
        self.send_to(None, req).await
    }
}

/// Maps a transport error to the gateway error a client sees: the error and its causes, which
/// never carry the URL (and so never a `?key=`).
fn classify(e: &(dyn std::error::Error + 'static)) -> GatewayError {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        if s.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            // The request body passed its limit on the way: the caller names the limit.
            return GatewayError::BodyTooLarge { limit: 0 };
        }
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    GatewayError::UpstreamUnreachable(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::new(&UpstreamConfig { url: url.into(), ..Default::default() }).unwrap()
    }

    #[test]
    fn built_uris_equal_parsing_the_whole_string() {
        let bases = ["http://127.0.0.1:8080", "https://generativelanguage.googleapis.com/", "http://h:1/prefix/"];
        // Paths as the server hands them over: whatever its URI parser accepted.
        let paths = [
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=abc%20d",
            "/v1/models?",
            "/upload/v1beta/files?upload_id=x&upload_protocol=resumable",
            "/v1beta/cachedContents/a%2Fb",
            "/v1beta/files/with%20space/%C3%A9",
            "/",
        ];
        for base in bases {
            let u = upstream(base);
            for pq in paths {
                let whole: Uri = format!("{}{pq}", base.trim_end_matches('/')).parse().unwrap();
                assert_eq!(u.uri_for(pq).unwrap(), whole, "{base} + {pq}");
            }
        }
        // Not something the server can hand over, but refused rather than sent broken.
        assert!(upstream(bases[0]).uri_for("/with space").is_err());
    }

    #[test]
    fn the_host_set_in_advance_is_the_one_the_client_would_set() {
        let host = |base: &str| upstream(base).host.map(|h| h.to_str().unwrap().to_string());
        assert_eq!(host("http://127.0.0.1:8080/prefix").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(host("http://emulator").as_deref(), Some("emulator"));
        assert_eq!(host("http://emulator:80").as_deref(), Some("emulator"));
        assert_eq!(host("http://[::1]:9000").as_deref(), Some("[::1]:9000"));
        assert_eq!(host("https://generativelanguage.googleapis.com"), None);
    }

    #[test]
    fn a_base_that_is_not_a_url_is_refused() {
        let err = Upstream::new(&UpstreamConfig { url: "not a url".into(), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("upstream.url"), "{err}");
    }
}
