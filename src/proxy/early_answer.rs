//! Lets an upstream answer before it has read the whole request body. An upstream that refuses a
//! large upload (413, 400) may answer as soon as the headers are in and close the connection,
//! which resets it; the gateway's next body write then fails, and hyper would report that write
//! error instead of the answer already waiting on the socket. On these connections a write that
//! fails because the peer closed or reset is swallowed (and every later one discarded), so hyper
//! goes on to read what the upstream said; when it said nothing, the read fails at once and the
//! call errors as before.

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// The upstream TCP connector, handing out [`EarlyAnswer`] connections.
#[derive(Clone, Debug)]
pub struct Connector(pub HttpConnector);

impl tower::Service<http::Uri> for Connector {
    type Response = EarlyAnswer<TokioIo<TcpStream>>;
    type Error = <HttpConnector as tower::Service<http::Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connecting = self.0.call(dst);
        Box::pin(async move { Ok(EarlyAnswer { inner: connecting.await?, peer_closed: false }) })
    }
}

/// A connection whose writes stop failing once the peer has closed: see the module docs.
#[derive(Debug)]
pub struct EarlyAnswer<T> {
    inner: T,
    /// A write failed because the peer closed or reset: writes are discarded from now on.
    peer_closed: bool,
}

/// Whether a write error means the peer has gone (and may have answered before going).
fn peer_gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}

impl<T> EarlyAnswer<T> {
    /// `result` of a write of `len` bytes, with a closed peer's error turned into "written".
    fn written(&mut self, result: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Err(e)) if peer_gone(&e) => {
                tracing::debug!(error = %e, "upstream closed while the request body was being sent; reading its answer");
                self.peer_closed = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

impl<T: Read + Unpin> Read for EarlyAnswer<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for EarlyAnswer<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.peer_closed {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(result, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.peer_closed {
            return Poll::Ready(Ok(len));
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(result, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_closed {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_gone(&e) => {
                self.peer_closed = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for EarlyAnswer<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
