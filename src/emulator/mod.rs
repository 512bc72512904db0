//! A faithful stand-in for the Gemini API with a billing ledger (see docs/emulator.md).

use std::net::SocketAddr;
use std::path::Path;

/// Runs the emulator on `listen` until SIGINT/SIGTERM.
pub async fn run(listen: SocketAddr, config: Option<&Path>) -> anyhow::Result<()> {
    let _ = (listen, config);
    anyhow::bail!("the emulator is not built yet")
}
