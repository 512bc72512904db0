//! Command-line interface definitions (clap) and nothing else.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Seed of the generated workloads unless `--seed` says otherwise (the one the published tables use).
pub const WORKLOAD_SEED: u64 = 15;

#[derive(Debug, Parser)]
#[command(name = "gemgate", version, about = "A cost-saving gateway for the Gemini API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (TOML). Without it, built-in defaults and GEMGATE_* environment overrides apply.
        #[arg(long, env = "GEMGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `server.listen`). Port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Upstream base URL (overrides `upstream.url`).
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Run the Gemini API emulator (for tests, benchmarks, demos and CI).
    Emulator {
        /// Address to listen on. Port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Emulator config file (TOML); see config/emulator.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replay a trace on a virtual clock and compare caching strategies' costs.
    Simulate(SimulateArgs),
    /// Send a trace as real HTTP requests (deterministic text) to a gateway or the emulator.
    Replay(ReplayArgs),
    /// Validate a gateway config file and report every problem at once.
    CheckConfig {
        /// Config file to check (default: built-in defaults plus environment overrides).
        file: Option<PathBuf>,
    },
}

/// `gemgate simulate` options (see docs/simulate.md).
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Trace file: Mooncake JSONL or gemgate's own trace format (detected).
    #[arg(long, required_unless_present = "workload", conflicts_with = "workload")]
    pub trace: Option<PathBuf>,
    /// A generated workload instead of a trace: rag, agents, bursts, poisson-mix, no-reuse; or
    /// `all` for a Markdown table of every one (docs/cost-policy.md).
    #[arg(long)]
    pub workload: Option<String>,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = WORKLOAD_SEED)]
    pub seed: u64,
    /// Model to price (default: the trace's own, or gemini-3.8-flash for Mooncake and workloads).
    #[arg(long)]
    pub model: Option<String>,
    /// Price at the rows in force on this day, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub at: Option<chrono::NaiveDate>,
    /// Price table (default: the built-in config/pricing.toml).
    #[arg(long)]
    pub pricing: Option<PathBuf>,
    /// Cost-policy tuning as TOML (the CostPolicyConfig keys; default: built-in defaults).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Model implicit caching: a prefix seen within this long is served implicitly (default:
    /// absent for Mooncake, as recorded for gemgate traces).
    #[arg(long)]
    pub implicit_window: Option<humantime::Duration>,
    /// How cache creation is billed, overriding the price table's `cache_creation` (Google does not
    /// document it; see config/pricing.toml).
    #[arg(long, value_enum)]
    pub creation_billing: Option<crate::accounting::CreationBilling>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute only these rows (comma-separated names or name prefixes, e.g. `never,gemgate`;
    /// default: all). The hindsight baseline and the oracle are the slow ones.
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
}

/// `gemgate replay` options (see docs/simulate.md).
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Trace file: Mooncake JSONL or gemgate's own trace format (detected).
    #[arg(long)]
    pub trace: PathBuf,
    /// Base URL to send to (a gateway, or the emulator for a baseline).
    #[arg(long)]
    pub target: String,
    /// Time compression: 60 sends an hour of trace in a minute. Run the gateway and the emulator
    /// with `clock.speed` equal to it so TTLs and storage compress alike.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// API key to send.
    #[arg(long, default_value = "replay-key")]
    pub key: String,
    /// Model (default: the trace's own, or gemini-3.8-flash for Mooncake).
    #[arg(long)]
    pub model: Option<String>,
    /// Only the first N requests.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Requests in flight at most (arrivals stay on schedule; only sending waits).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
