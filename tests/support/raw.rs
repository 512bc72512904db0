//! Raw HTTP/1.1 over TCP, for requests no client library will send: half-sent headers, slow
//! bodies, `..` segments and encoded separators kept as they are.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `http://127.0.0.1:port` → `127.0.0.1:port`.
pub fn host_of(base: &str) -> String {
    base.trim_start_matches("http://").trim_end_matches('/').to_string()
}

pub async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(host_of(base)).await.unwrap()
}

/// Reads until the server closes the connection (or `limit` passes); returns what was read and
/// how long it took.
pub async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Duration, bool) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), started.elapsed(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), started.elapsed(), false),
        }
    }
}

/// Sends one request with `Connection: close` and returns the whole response text.
pub async fn request(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut s = connect(base).await;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", host_of(base));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("content-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(10)).await.0
}

/// The status code of a raw response.
pub fn status(resp: &str) -> u16 {
    resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
