//! Thin entry point: parse the command line, then hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser;
use gemgate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Emulator { listen, config } => {
            gemgate::emulator::run(listen, config.as_deref()).await
        }
        Command::Serve { .. } | Command::CheckConfig { .. } => {
            Err(anyhow::anyhow!("not built yet"))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gemgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
