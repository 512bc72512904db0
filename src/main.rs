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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, listen, upstream } => {
            match Config::load(config.as_deref(), std::env::vars(), &CliOverrides { listen, upstream }) {
                Ok(cfg) => {
                    gemgate::telemetry::init_tracing(&cfg.telemetry);
                    // Spawned rather than run by `block_on`: the accept loop then runs on a worker
                    // like the connections it starts, not on a thread of its own.
                    runtime(cfg.server.worker_threads)
                        .and_then(|rt| rt.block_on(async { tokio::spawn(gemgate::serve::run(cfg)).await? }))
                }
                Err(errors) => Err(errors.into()),
            }
        }
        Command::Emulator { listen, config } => {
            runtime(0).and_then(|rt| rt.block_on(gemgate::emulator::run(listen, config.as_deref())))
        }
        Command::Simulate(args) => gemgate::simulate::run(&args),
        Command::Replay(args) => runtime(0).and_then(|rt| rt.block_on(gemgate::replay::run(&args))),
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

/// The tokio runtime: `workers` threads serve tasks (0: one per CPU core, or
/// `TOKIO_WORKER_THREADS`). One worker is tokio's single-threaded scheduler, on the calling
/// thread: the same one thread serving everything, without the work-stealing machinery.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if workers > 1 {
        builder.worker_threads(workers);
    }
    Ok(builder.enable_all().build()?)
}
