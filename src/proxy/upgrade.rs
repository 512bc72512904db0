//! Protocol upgrades (the Live API's WebSocket; no other protocol is switched to): the upgrade request goes to the
//! upstream with its credentials and WebSocket headers untouched; once the upstream answers 101,
//! the client's connection and the upstream's are spliced byte for byte for the session's life.
//! The session holds an in-flight slot until it ends and is logged when it closes.

use super::Upstream;
use super::{copy_request_headers, copy_response_headers, relay_response};
use crate::error::GatewayError;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::time::Instant;
use tracing::Instrument;

/// Whether a request asks to switch to WebSocket (`Connection: upgrade`, `Upgrade: websocket`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    // Only WebSocket: any other protocol (h2c above all) would turn the connection into a tunnel
    // past every check the gateway makes on later requests. Such requests are served as plain
    // HTTP, their `Upgrade` dropped with the other hop-by-hop headers.
    lists_token(headers, header::CONNECTION, "upgrade") && lists_token(headers, header::UPGRADE, "websocket")
}

/// Whether any `name` header's comma-separated list holds `token` (case-insensitive).
fn lists_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Forwards an upgrade request and, on 101, splices the two connections in the background.
/// `hold` is called once the upgrade is accepted; what it returns is kept until the spliced
/// connection ends (the gateway's in-flight slot).
pub async fn forward<H: Send + 'static>(
    upstream: &Upstream,
    hold: impl FnOnce() -> H,
    mut req: Request,
) -> Result<Response, GatewayError> {
    let client_side = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let protocol = parts.headers.get(header::UPGRADE).cloned().unwrap_or(HeaderValue::from_static("websocket"));
    let mut headers = copy_request_headers(&parts.headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol.clone());
    let started = Instant::now();
    let resp = upstream.send_upgrade(parts.method.clone(), &path_and_query, headers).await?;
    crate::telemetry::record_upstream_time(started.elapsed());
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(relay_response(resp));
    }
    let mut out = HeaderMap::new();
    copy_response_headers(resp.headers(), &mut out);
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, resp.headers().get(header::UPGRADE).cloned().unwrap_or(protocol));
    let slot = hold();
    tokio::spawn(
        async move {
            let opened = Instant::now();
            let (client, upstream) = tokio::join!(client_side, resp.upgrade());
            let upstream = upstream.map(TokioIo::new);
            let (client, mut upstream) = match (client, upstream) {
                (Ok(c), Ok(u)) => (c, u),
                (c, u) => {
                    let err = c.err().map(|e| e.to_string()).or(u.err().map(|e| e.to_string()));
                    tracing::warn!(error = err.unwrap_or_default(), "upgrade failed after 101");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            let secs = (opened.elapsed().as_secs_f64() * 1e3).round() / 1e3;
            match result {
                Ok((up, down)) => tracing::info!(bytes_up = up, bytes_down = down, secs, "upgraded session closed"),
                Err(err) => tracing::info!(%err, secs, "upgraded session ended with an error"),
            }
            drop(slot);
        }
        .instrument(tracing::Span::current()),
    );
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    *response.headers_mut() = out;
    Ok(response)
}
