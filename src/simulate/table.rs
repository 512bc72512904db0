//! `gemgate simulate --workload all`: every generated workload under one price model, as the
//! Markdown table `docs/cost-policy.md` shows (savings against never caching, and gemgate's
//! share of the hindsight baseline's saving).

use super::{Ctx, HINDSIGHT, StrategyResult, TODAY, simulate, workloads};

/// One workload's rows.
pub struct Outcome {
    pub workload: &'static str,
    pub requests: usize,
    pub results: Vec<StrategyResult>,
}

impl Outcome {
    pub fn total(&self, strategy: &str) -> f64 {
        self.row(strategy).total_usd
    }

    pub fn row(&self, strategy: &str) -> &StrategyResult {
        self.results.iter().find(|r| r.strategy == strategy).expect("every row is simulated")
    }

    /// What `strategy` saves against never caching (USD).
    pub fn saving(&self, strategy: &str) -> f64 {
        self.total("never-cache") - self.total(strategy)
    }

    /// gemgate's saving as a share of the hindsight baseline's (1 when neither saves anything).
    pub fn share_of_baseline(&self) -> f64 {
        let best = self.saving(HINDSIGHT);
        if best <= 1e-9 { 1.0 } else { self.saving("gemgate") / best }
    }
}

/// Simulates every workload for `model` at the context's day.
pub fn outcomes(ctx: &Ctx, model: &str, seed: u64) -> Vec<Outcome> {
    workloads::WORKLOADS
        .iter()
        .map(|&w| {
            let reqs = workloads::generate(w, seed, model).expect("listed workload");
            Outcome { workload: w, requests: reqs.len(), results: simulate(&reqs, ctx) }
        })
        .collect()
}

/// The Markdown table.
pub fn markdown(ctx: &Ctx, model: &str, seed: u64) -> String {
    let priced = ctx.prices.price_at(model, ctx.at);
    let mut s = format!(
        "{model} at the prices in force on {} (row {}), seed {seed}; savings are USD against never caching\n\n",
        ctx.at,
        priced.row_name()
    );
    s += "| workload | requests | never-cache USD | always-cache | policy v1 | gemgate | best online rule (hindsight) \
          | clairvoyant greedy | gemgate / hindsight | the best rule |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for o in outcomes(ctx, model, seed) {
        s += &format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} % | {} |\n",
            o.workload,
            o.requests,
            o.total("never-cache"),
            o.saving("always-cache"),
            o.saving(TODAY),
            o.saving("gemgate"),
            o.saving(HINDSIGHT),
            o.saving("clairvoyant greedy"),
            100.0 * o.share_of_baseline(),
            o.row(HINDSIGHT).detail.as_deref().unwrap_or_default(),
        );
    }
    s
}
