//! gemgate-load: the performance harness of gemgate.
//!
//! `suite` starts the emulator (or a built-in fake upstream), a gateway and nginx (as a plain
//! reverse proxy), drives open-loop constant-rate load at each path side by side, searches the
//! highest sustained rate of each path, measures CPU and memory from /proc, and writes
//! `results.json`. `report` turns that (plus criterion's estimates) into the markdown table.

mod client;
mod fake;
mod procs;
mod report;
mod scenarios;
mod store;
mod suite;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "gemgate-load", about = "Load harness for gemgate")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every load scenario and write results.json into --out.
    Suite(suite::SuiteArgs),
    /// Render results.json (and criterion estimates) as markdown.
    Report {
        /// results.json written by `suite`.
        #[arg(long)]
        results: PathBuf,
        /// criterion's output directory (target/criterion of the root package).
        #[arg(long)]
        criterion: Option<PathBuf>,
        /// Where to write the markdown (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A tiny upstream for developing the harness without the emulator.
    FakeUpstream {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Write N registry rows into a gateway SQLite store file.
    PopulateStore {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        n: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Suite(args) => {
            let threads = args.client_threads;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?
                .block_on(suite::run(args))
        }
        Cmd::Report {
            results,
            criterion,
            out,
        } => {
            let md = report::render(&results, criterion.as_deref())?;
            match out {
                Some(p) => std::fs::write(p, md)?,
                None => print!("{md}"),
            }
            Ok(())
        }
        Cmd::FakeUpstream { listen } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(fake::serve(listen)),
        Cmd::PopulateStore { path, n } => {
            store::populate(&path, n, scenarios::API_KEY)?;
            println!("wrote {n} rows into {}", path.display());
            Ok(())
        }
    }
}
