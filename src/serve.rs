//! `gemgate serve`: build the state, bind, serve, and shut down in order.

use crate::app::{AppState, build_app};
use crate::config::Config;
use crate::net::{bind_and_announce, shutdown_signal};
use crate::telemetry;

/// Runs the gateway until SIGINT/SIGTERM.
///
/// Shutdown sequence:
/// 1. a signal cancels the state's token: `/readyz` turns 503 and background tasks stop;
/// 2. the listener stops accepting; in-flight requests get `server.shutdown_grace` to finish;
/// 3. background work under the task tracker is awaited (bounded by the same grace).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = telemetry::install_metrics();
    let grace = config.server.shutdown_grace;
    let listen = config.server.listen;
    tracing::info!(upstream = %telemetry::redact_url(&config.upstream.url), "starting gateway");
    let state = AppState::new(config, Some(metrics))?;
    state.start().await;
    let listener = bind_and_announce(listen, "gateway").await?;
    let app = build_app(state.clone());
    let cancel = state.cancel_token().clone();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested");
            cancel.cancel();
        }
    });
    let server =
        axum::serve(crate::net::with_nodelay(listener), app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    tokio::select! {
        r = server => r?,
        _ = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "shutdown grace elapsed with requests still open");
        }
    }
    state.tracker().close();
    if tokio::time::timeout(grace, state.tracker().wait()).await.is_err() {
        tracing::warn!("background tasks did not finish in time");
    }
    Ok(())
}
