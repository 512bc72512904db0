//! `gemgate serve`: build the state, bind, serve, and shut down in order.

use crate::app::{AppState, build_app};
use crate::config::Config;
use crate::listener::ClientLimits;
use crate::net::{bind_and_announce, shutdown_signal};
use crate::telemetry;
use anyhow::Context;

/// Runs the gateway until SIGINT/SIGTERM.
///
/// Shutdown sequence:
/// 1. a signal cancels the state's token: `/readyz` turns 503 and background tasks stop;
/// 2. requests open at that moment get `server.shutdown_grace` to finish; new connections are
///    still answered (503, `/readyz` included) so balancers see the replica leave;
/// 3. background work under the task tracker is awaited (bounded by the same grace).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = telemetry::install_metrics();
    let grace = config.server.shutdown_grace;
    let listen = config.server.listen;
    let limits = ClientLimits::from_config(&config.server);
    tracing::info!(upstream = %telemetry::redact_url(&config.upstream.url), "starting gateway");
    // One process per SQLite file, checked before the file is opened.
    let _lock = match config.store.backend.as_str() {
        "sqlite" => crate::store::lock::acquire(&config.store.sqlite_path)?,
        _ => None,
    };
    let state = AppState::new(config, Some(metrics))?;
    crate::admin_token::warn_if_open(state.config());
    // Bind before any background work starts: a second gateway on a taken port must fail before
    // its workers touch the queue.
    let listener = bind_and_announce(listen, "gateway").await.with_context(|| format!("cannot listen on {listen}"))?;
    state.start().await;
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
    let server = crate::listener::serve(listener, app, limits, cancel.clone());
    tokio::select! {
        () = server => {}
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
