//! Thin entry point: parse the command line, load and validate config, init telemetry, run.
#![forbid(unsafe_code)]

use clap::Parser;
use gemgate::cli::{Cli, Command};
use gemgate::config::{CliOverrides, Config};
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the request path allocates many small, short-lived
/// buffers (headers, JSON values, body chunks), and glibc's malloc/free took about 12 % of the
/// gateway's CPU under load (see BENCHMARKS.md for the before/after figure).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Emulator { listen, config } => gemgate::emulator::run(listen, config.as_deref()).await,
        Command::Serve { config, listen, upstream } => {
            match Config::load(config.as_deref(), std::env::vars(), &CliOverrides { listen, upstream }) {
                Ok(cfg) => {
                    gemgate::telemetry::init_tracing(&cfg.telemetry);
                    gemgate::serve::run(cfg).await
                }
                Err(errors) => Err(errors.into()),
            }
        }
        Command::Simulate(args) => gemgate::simulate::run(&args),
        Command::Replay(args) => gemgate::replay::run(&args).await,
        Command::CheckConfig { file } => {
            match Config::load(file.as_deref(), std::env::vars(), &CliOverrides::default()) {
                Ok(_) => {
                    println!("configuration is valid");
                    Ok(())
                }
                Err(errors) => Err(errors.into()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gemgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
