//! Gives hyper's own error answers a Gemini body. When a request cannot even be parsed (a bad
//! header line, headers or a URI too large) hyper answers by itself, before any handler runs,
//! with an empty 400, 431 or 414. This wrapper around the connection recognises that answer (a
//! 4xx head with `content-length: 0` and no `x-request-id`, which every response of the gateway
//! carries) and writes the same status with Gemini's error JSON instead. [`FirstByte`] closes
//! connections that never send anything.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An accepted connection: its deadline for a first byte, and whatever it holds while open
/// (its place under the connection cap), released when the connection is dropped, also after an
/// upgrade hands it to a WebSocket splice.
///
/// hyper's header-read timer starts only once the HTTP/1 parser runs, and the server first
/// waits for enough bytes to tell HTTP/1 from h2c with no timer at all: without the deadline, a
/// connection that never sends a byte is held forever. Once a byte has arrived the deadline is
/// gone and reads pass straight through.
pub struct FirstByte<T, H> {
    inner: T,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    _held: H,
}

impl<T, H> FirstByte<T, H> {
    /// `limit` zero: no deadline.
    pub fn new(inner: T, limit: Duration, held: H) -> Self {
        let deadline = (!limit.is_zero()).then(|| Box::pin(tokio::time::sleep(limit)));
        Self { inner, deadline, _held: held }
    }
}

impl<T: AsyncRead + Unpin, H: Unpin> AsyncRead for FirstByte<T, H> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(deadline) = &mut this.deadline else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                metrics::counter!(crate::telemetry::CLIENT_TIMEOUTS, "kind" => "first_byte").increment(1);
                tracing::debug!("connection closed: no byte received in time");
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin, H: Unpin> AsyncWrite for FirstByte<T, H> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub struct GeminiErrors<T> {
    inner: T,
    /// A replacement answer being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> GeminiErrors<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, pending: None }
    }
}

/// The Gemini version of hyper's automatic answer in `head`, if it is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    let lower = text.to_ascii_lowercase();
    if !matches!(code, 400 | 414 | 431)
        || !text.ends_with("\r\n\r\n")
        || !lower.contains("\r\ncontent-length: 0\r\n")
        || lower.contains("x-request-id")
    {
        return None;
    }
    let error = crate::error::GatewayError::UnparsableHttp(code);
    error.record();
    let body = error.to_gemini().body();
    let reason = http::StatusCode::from_u16(code).ok()?.canonical_reason().unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncRead + Unpin> AsyncRead for GeminiErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> GeminiErrors<T> {
    fn flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            if *done == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GeminiErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.flush_pending(cx))?;
        // Cheap test first: only a 4xx head can be one of hyper's answers.
        if buf.starts_with(b"HTTP/1.1 4") {
            if let Some(out) = replacement(buf) {
                self.pending = Some((out, 0));
                let _ = self.flush_pending(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Vectored writes pass straight through, so hyper sends a response's head and body as they
    /// are (one `writev`) instead of first copying the body behind the head in its own buffer.
    /// hyper's own answers are a head alone, the first buffer of a write.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.flush_pending(cx))?;
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if first.starts_with(b"HTTP/1.1 4") => self.poll_write(cx, &first[..]),
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.flush_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.flush_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_answers_are_replaced() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 27 Nov 2026 19:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(hyper).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((v["error"]["code"].as_u64(), v["error"]["status"].as_str()), (Some(431), Some("INVALID_ARGUMENT")));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: abc\r\n\r\n";
        assert!(replacement(ours).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n";
        assert!(replacement(with_body).is_none());
    }
}
