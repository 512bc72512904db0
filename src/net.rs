//! Listener set-up shared by the gateway and the emulator.

use std::io::Write;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Binds `addr` and prints `listening on http://ADDR` on stdout, with the real port when port 0
/// was asked for. Tests and scripts read that line to find the server.
pub async fn bind_and_announce(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{what} listening on http://{local}")?;
    out.flush()?;
    Ok(listener)
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn set_nodelay(stream: &mut tokio::net::TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::trace!(%err, "could not set TCP_NODELAY");
    }
}

/// The listener with `TCP_NODELAY` on every accepted connection. Without it, small writes such
/// as SSE events wait for the client's delayed ACK (about 40 ms on Linux).
pub fn with_nodelay(listener: TcpListener) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    listener.tap_io(set_nodelay as fn(&mut tokio::net::TcpStream))
}
