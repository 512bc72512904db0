//! A faithful stand-in for the Gemini API with a billing ledger (see docs/emulator.md).
//!
//! Public surface: [`run`] (the `gemgate emulator` command), [`router`] + [`EmulatorState`] +
//! [`EmulatorConfig`] for in-process use (tests on port 0), and [`Clock`].

mod admin;
mod auth;
mod batches;
mod caches;
pub mod clock;
pub mod config;
mod faults;
mod files;
mod generate;
mod generate_api;
mod http;
mod implicit;
pub mod ledger;
mod live;
mod models;
mod prompt;
mod records;
mod route;
mod state;
mod stream;
mod textgen;
pub mod tokens;

pub use clock::Clock;
pub use config::{EmulatorConfig, ModelConfig};
pub use faults::FAULT_HEADER;
pub use generate_api::CHUNKS_HEADER;
pub use state::EmulatorState;

use std::net::SocketAddr;
use std::path::Path;

/// The emulator's router: the Live API's WebSocket, and one fallback handler that parses Gemini
/// paths itself.
pub fn router(state: EmulatorState) -> axum::Router {
    axum::Router::new()
        .route("/ws/{*method}", axum::routing::get(live::session))
        .fallback(route::dispatch)
        .with_state(state)
}

/// Runs the emulator on `listen` until SIGINT/SIGTERM.
pub async fn run(listen: SocketAddr, config: Option<&Path>) -> anyhow::Result<()> {
    let config = EmulatorConfig::load(config)?;
    let state = EmulatorState::new(config);
    let listener = crate::net::bind_and_announce(listen, "emulator").await?;
    axum::serve(crate::net::with_nodelay(listener), router(state))
        .with_graceful_shutdown(crate::net::shutdown_signal())
        .await?;
    Ok(())
}
