//! `gemgate simulate`: replays a trace on a virtual clock and compares what never caching, always
//! caching, gemgate's cost policy, a feasible clairvoyant schedule and a clairvoyant lower bound
//! would have cost, under one price table. Trace conventions and the oracle are documented in `docs/simulate.md`.

pub mod hindsight;
pub mod oracle;
pub mod replay;
pub mod table;
pub mod trace;
pub mod workloads;

pub use trace::{SimRequest, TraceBoundary, TraceFormat, TraceRecord, TraceWriter};

use crate::accounting::{CreationBilling, ModelPrice, PriceSource, PriceTable};
use crate::caching::cost_policy::{CostPolicy, CostPolicyConfig};
use crate::catalog::Minimums;
use crate::cli::SimulateArgs;
use crate::config::CachingConfig;
use anyhow::Context;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Model given to Mooncake requests unless `--model` says otherwise.
pub const DEFAULT_MODEL: &str = "gemini-3.8-flash";
/// Virtual time between two sweeper passes.
pub const SWEEP_MS: i64 = 10_000;
/// TTL of the always-cache baseline (Gemini's default).
pub const ALWAYS_TTL_MS: i64 = 3_600_000;

/// Prices (at one day), minimum cache sizes and policy tuning shared by every strategy.
pub struct Ctx {
    pub prices: PriceTable,
    pub cfg: CostPolicyConfig,
    /// The day whose prices apply (`--at`).
    pub at: NaiveDate,
    minimums: Minimums,
}

impl Ctx {
    /// Prices in force today. `min_tokens` is the same table (and lookup) the gateway's
    /// `[caching].min_tokens` uses.
    pub fn new(prices: PriceTable, cfg: CostPolicyConfig, min_tokens: BTreeMap<String, u32>) -> Self {
        let minimums = Minimums::new(min_tokens, prices.aliases.clone());
        Ctx { prices, cfg, at: crate::accounting::today(), minimums }
    }

    /// The same context priced at the rows in force on `day`.
    pub fn at(self, day: NaiveDate) -> Self {
        Ctx { at: day, ..self }
    }

    pub fn price(&self, model: &str) -> &ModelPrice {
        self.prices.price_at(model, self.at).row
    }

    pub fn min_tokens(&self, model: &str) -> u64 {
        u64::from(self.minimums.min_tokens(model))
    }

    /// The gateway's caching configuration this replay runs the engine with: defaults, with the
    /// cost policy tuned as given.
    pub fn caching(&self) -> CachingConfig {
        CachingConfig { cost: self.cfg.clone(), ..CachingConfig::default() }
    }

    pub fn policy(&self, model: &str) -> CostPolicy {
        self.policy_with(&self.cfg, model)
    }

    /// The policy for `model` with another tuning.
    pub fn policy_with(&self, cfg: &CostPolicyConfig, model: &str) -> CostPolicy {
        CostPolicy::at(cfg.clone(), &self.prices, model, self.at).0
    }
}

/// Running totals of one strategy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub total_usd: f64,
    pub creation_usd: f64,
    pub storage_usd: f64,
    pub creations: u64,
    pub storage_token_ms: f64,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub hit_requests: u64,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    pub strategy: &'static str,
    pub total_usd: f64,
    pub creations: u64,
    pub creation_usd: f64,
    pub storage_token_hours: f64,
    pub storage_usd: f64,
    /// Requests served from an explicit cache.
    pub hit_ratio: f64,
    /// Prompt tokens billed at the cached rate (explicit or implicit).
    pub cached_token_share: f64,
    /// The parameters behind the row (the hindsight baseline's winning rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StrategyResult {
    fn new(strategy: &'static str, t: &Tally) -> Self {
        StrategyResult {
            strategy,
            total_usd: t.total_usd,
            creations: t.creations,
            creation_usd: t.creation_usd,
            storage_token_hours: t.storage_token_ms / 3_600_000.0,
            storage_usd: t.storage_usd,
            hit_ratio: t.hit_requests as f64 / t.requests.max(1) as f64,
            cached_token_share: t.cached_tokens as f64 / t.prompt_tokens.max(1) as f64,
            detail: None,
        }
    }
}

/// Runs the strategies over `reqs` (sorted by time).
pub fn simulate(reqs: &[SimRequest], ctx: &Ctx) -> Vec<StrategyResult> {
    simulate_rows(reqs, ctx, &[], &indicatif::ProgressBar::hidden())
}

/// Every row of [`ROWS`] whose name starts with one of `only` (all when empty), advancing
/// `progress` by the trace's length as each row finishes.
pub fn simulate_rows(
    reqs: &[SimRequest],
    ctx: &Ctx,
    only: &[String],
    progress: &indicatif::ProgressBar,
) -> Vec<StrategyResult> {
    let mut rows = Vec::new();
    for &name in ROWS.iter().filter(|n| wanted(only, n)) {
        progress.set_message(name.to_string());
        let (tally, detail) = match name {
            "never-cache" => (replay::never(reqs, ctx), None),
            "always-cache" => (replay::always(reqs, ctx, ALWAYS_TTL_MS), None),
            "gemgate" => (replay::policy(reqs, ctx, SWEEP_MS), None),
            TODAY => (replay::policy_with(reqs, ctx, &CostPolicyConfig::v1(), SWEEP_MS), None),
            HINDSIGHT => match hindsight::best(reqs, ctx) {
                Some((rule, tally)) => (tally, Some(rule.to_string())),
                None => continue,
            },
            "clairvoyant greedy" => (replay::clairvoyant_greedy(reqs, ctx), None),
            _ => (oracle::run(reqs, ctx), None),
        };
        progress.inc(reqs.len() as u64);
        rows.push(StrategyResult { detail, ..StrategyResult::new(name, &tally) });
    }
    progress.finish_and_clear();
    rows
}

/// Whether `--rows` asks for `row` (every row when empty).
fn wanted(only: &[String], row: &str) -> bool {
    only.is_empty() || only.iter().any(|o| row.starts_with(o.as_str()))
}

/// Every row, in the order reports list them.
pub const ROWS: [&str; 7] =
    ["never-cache", "always-cache", "gemgate", TODAY, HINDSIGHT, "clairvoyant greedy", "oracle (lower bound)"];

/// The row of the policy before v2 (its defaults kept as `CostPolicyConfig::v1`).
pub const TODAY: &str = "policy v1 (before v2)";
/// The hindsight baseline's row (see `hindsight.rs`).
pub const HINDSIGHT: &str = "best online rule (hindsight)";

/// Traces at least this long get a progress bar (on a terminal, without `--json`).
const PROGRESS_MIN_REQUESTS: usize = 10_000;

/// What `gemgate simulate` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub trace: String,
    pub format: TraceFormat,
    pub requests: usize,
    pub span_minutes: f64,
    pub model: String,
    /// The day whose prices were used (`--at`).
    pub priced_at: NaiveDate,
    /// The price rows used: `model@effective_from`, with the Standard input/output rates.
    pub price_row: String,
    pub input_usd_per_m: f64,
    pub output_usd_per_m: f64,
    pub prices_as_of: String,
    /// How cache creation was billed (an assumption: see config/pricing.toml).
    pub creation_billing: CreationBilling,
    /// `table`, `family` or `default` (the model is not in the table: a guess).
    pub price_source: PriceSource,
    pub implicit_caching: String,
    pub results: Vec<StrategyResult>,
    pub elapsed_ms: u128,
}

/// The `simulate` subcommand.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut prices = match &args.pricing {
        Some(p) => PriceTable::load(p)?,
        None => PriceTable::builtin(),
    };
    if let Some(b) = args.creation_billing {
        prices.cache_creation = b;
    }
    let cfg: CostPolicyConfig = match &args.policy {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => CostPolicyConfig::default(),
    };
    let at = args.at.unwrap_or_else(crate::accounting::today);
    let ctx = Ctx::new(prices, cfg, CachingConfig::default().min_tokens).at(at);
    let (name, format, mut reqs) = match (&args.trace, args.workload.as_deref()) {
        (_, Some("all")) => {
            let model = args.model.as_deref().unwrap_or(DEFAULT_MODEL);
            print!("{}", table::markdown(&ctx, model, args.seed));
            return Ok(());
        }
        (_, Some(w)) => {
            let model = args.model.as_deref().unwrap_or(DEFAULT_MODEL);
            let reqs = workloads::generate(w, args.seed, model).with_context(|| {
                format!("unknown workload {w:?}: one of {}, or all", workloads::WORKLOADS.join(", "))
            })?;
            (format!("workload {w} (seed {})", args.seed), TraceFormat::Generated, reqs)
        }
        (Some(path), None) => {
            let (format, reqs) = trace::load(path, args.model.as_deref(), DEFAULT_MODEL)?;
            (path.display().to_string(), format, reqs)
        }
        (None, None) => anyhow::bail!("--trace or --workload is required"),
    };
    let implicit = match (args.implicit_window, format) {
        (Some(w), _) => {
            let ms = w.as_millis() as i64;
            trace::add_implicit(&mut reqs, ms, |m| ctx.min_tokens(m));
            format!("modelled: prefixes seen within {w}")
        }
        (None, TraceFormat::Mooncake) => "absent (Mooncake trace)".into(),
        (None, TraceFormat::Generated) => "absent (generated workload)".into(),
        (None, TraceFormat::Gemgate) => "as recorded".into(),
    };
    let model =
        args.model.clone().or_else(|| reqs.first().map(|r| r.model.clone())).unwrap_or_else(|| DEFAULT_MODEL.into());
    let priced = ctx.prices.price_at(&model, at);
    let row = priced.row;
    let span = reqs.last().map_or(0, |r| r.t_ms) - reqs.first().map_or(0, |r| r.t_ms);
    let report = Report {
        trace: name,
        format,
        requests: reqs.len(),
        span_minutes: span as f64 / 60_000.0,
        priced_at: at,
        price_row: priced.row_name(),
        input_usd_per_m: row.standard.input,
        output_usd_per_m: row.standard.output,
        prices_as_of: row.as_of.clone(),
        creation_billing: ctx.prices.cache_creation,
        price_source: priced.source,
        model,
        implicit_caching: implicit,
        results: {
            let show = reqs.len() >= PROGRESS_MIN_REQUESTS && crate::progress::wanted(args.json);
            let n = ROWS.iter().filter(|r| wanted(&args.rows, r)).count() as u64;
            let bar = crate::progress::bar(n * reqs.len() as u64, "never-cache", show);
            simulate_rows(&reqs, &ctx, &args.rows, &bar)
        },
        elapsed_ms: started.elapsed().as_millis(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The human-readable table.
pub fn render(r: &Report) -> String {
    let mut s = format!(
        "trace {} ({:?}, {} requests over {:.1} min), model {}, cache creation billed {}, implicit caching {}\n\
         prices on {}: row {} ({}{}): input {} / output {} USD per 1M tokens, checked {}\n\n",
        r.trace,
        r.format,
        r.requests,
        r.span_minutes,
        r.model,
        r.creation_billing.describe(),
        r.implicit_caching,
        r.priced_at,
        r.price_row,
        r.price_source.as_str(),
        if r.price_source == PriceSource::Default { ": MODEL NOT IN THE TABLE, a guess" } else { "" },
        r.input_usd_per_m,
        r.output_usd_per_m,
        r.prices_as_of,
    );
    s += &format!(
        "{:<28} {:>12} {:>10} {:>12} {:>16} {:>12} {:>9} {:>13}\n",
        "strategy",
        "total USD",
        "creations",
        "creation USD",
        "storage tok·h",
        "storage USD",
        "hit ratio",
        "cached tokens"
    );
    for x in &r.results {
        s += &format!(
            "{:<28} {:>12.4} {:>10} {:>12.4} {:>16.0} {:>12.4} {:>8.1}% {:>12.1}%\n",
            x.strategy,
            x.total_usd,
            x.creations,
            x.creation_usd,
            x.storage_token_hours,
            x.storage_usd,
            100.0 * x.hit_ratio,
            100.0 * x.cached_token_share
        );
    }
    for x in r.results.iter().filter(|x| x.detail.is_some()) {
        s += &format!("\n{}: {}", x.strategy, x.detail.as_deref().unwrap_or_default());
    }
    s += &format!("\n(simulated in {} ms)\n", r.elapsed_ms);
    s
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
