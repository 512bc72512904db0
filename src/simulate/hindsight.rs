//! The "best online rule (hindsight)" row: a documented grid of simple online caching rules, each
//! replayed over the trace on the same simulated upstream and bill as every other row, with the
//! cheapest reported with its parameters. Every rule in the grid decides from the past only; the
//! hindsight is in picking the best one for this trace. It answers "how close is gemgate to the
//! best simple rule for my traffic". The grid is described in `docs/cost-policy.md`.
//!
//! Boundaries are interned once (ids instead of strings) so the few hundred replays stay fast.

use super::replay::{World, eligible};
use super::{Ctx, SimRequest, Tally};
use crate::caching::cost_policy::CostPolicy;
use std::collections::HashMap;
use std::fmt;

/// When a rule creates a cache for a boundary it sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// At the `k`-th sighting: counted over the boundary's whole life (`lifetime`), or within a
    /// run of sightings each at most one TTL after the previous.
    Kth { k: u32, lifetime: bool },
    /// Ski rental: once the money lost by not caching (net of what storage across the gaps would
    /// have cost, as gemgate's regret) reaches `alpha ×` the price of buying (creation less the
    /// request's own saving, plus one TTL of storage).
    Ski { alpha: f64 },
}

/// One simple online rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub start: Start,
    /// Fixed TTL of every cache it creates.
    pub ttl_ms: i64,
    /// A hit pushes the expiry to one TTL after it.
    pub renew: bool,
    /// A request's own (longest) boundary is created at its first sighting (conversation
    /// continuation: the next turn reads it).
    pub first_sight: bool,
    /// Supersede guard: while a shorter cache serves the request, a longer boundary is created only
    /// if it adds at least a quarter of its tokens.
    pub guard: bool,
}

/// Share of a longer boundary's tokens it must add beyond the cache in use (with `guard`).
pub const GUARD_SHARE: f64 = 0.25;

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start {
            Start::Kth { k, lifetime } => {
                write!(f, "sighting {k}{}", if k > 1 && !lifetime { " in a run" } else { "" })?
            }
            Start::Ski { alpha } => write!(f, "ski rental ×{alpha}")?,
        }
        write!(f, ", ttl {} min", self.ttl_ms / 60_000)?;
        if self.renew {
            write!(f, " renewed")?;
        }
        if self.first_sight {
            write!(f, ", first sight")?;
        }
        if self.guard {
            write!(f, ", guard")?;
        }
        Ok(())
    }
}

/// TTLs of the grid, minutes.
pub const TTL_MINUTES: [i64; 7] = [1, 3, 5, 10, 20, 40, 60];

/// The grid: every start rule × TTL × renewed or not × first sight or not × guard or not (first
/// sight is left out where the start rule already creates at the first sighting).
pub fn grid() -> Vec<Rule> {
    let mut starts = vec![Start::Kth { k: 1, lifetime: true }];
    for k in [2, 3] {
        starts.extend([true, false].map(|lifetime| Start::Kth { k, lifetime }));
    }
    starts.extend([0.5, 1.0, 2.0].map(|alpha| Start::Ski { alpha }));
    let mut rules = Vec::new();
    for start in starts {
        for ttl in TTL_MINUTES {
            for renew in [false, true] {
                for guard in [false, true] {
                    for first_sight in [false, true] {
                        if first_sight && start == (Start::Kth { k: 1, lifetime: true }) {
                            continue;
                        }
                        rules.push(Rule { start, ttl_ms: ttl * 60_000, renew, first_sight, guard });
                    }
                }
            }
        }
    }
    rules
}

/// A request with its eligible boundaries interned and priced.
struct Compiled<'r> {
    req: &'r SimRequest,
    bounds: Vec<Bound>,
}

/// One eligible boundary of a request, with the policy's arithmetic for it done once.
#[derive(Clone, Copy)]
struct Bound {
    id: u32,
    tokens: u64,
    /// What one hit saves per token not already served cached (USD).
    saving_per_token: f64,
    /// Creation price and storage per ms (USD).
    creation: f64,
    storage_per_ms: f64,
}

/// What a rule keeps per boundary.
#[derive(Clone, Copy, Default)]
struct State {
    /// Sightings: over the boundary's life, and in the current run.
    seen: u32,
    run: u32,
    last: Option<i64>,
    regret: f64,
    /// Expiry of the boundary's cache (alive while later than now); storage was paid up to
    /// here.
    expire: i64,
}

/// The best rule of the grid for this trace and what it cost (ties keep the earlier rule).
pub fn best(reqs: &[SimRequest], ctx: &Ctx) -> Option<(Rule, Tally)> {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut policies: HashMap<&str, CostPolicy> = HashMap::new();
    let compiled: Vec<Compiled> = reqs
        .iter()
        .map(|r| {
            let pol = policies.entry(r.model.as_str()).or_insert_with(|| ctx.policy(&r.model));
            let bounds = eligible(ctx, r)
                .map(|(k, t)| {
                    let n = ids.len() as u32;
                    Bound {
                        id: *ids.entry(k.as_str()).or_insert(n),
                        tokens: *t,
                        saving_per_token: pol.hit_saving_usd(*t, 0) / (*t).max(1) as f64,
                        creation: pol.creation_usd(*t),
                        storage_per_ms: pol.storage_per_ms(*t),
                    }
                })
                .collect();
            Compiled { req: r, bounds }
        })
        .collect();
    let rules = grid();
    let run_all = |rules: &[Rule]| -> Option<(Rule, Tally)> {
        rules
            .iter()
            .map(|rule| (*rule, run(&compiled, ids.len(), ctx, rule)))
            .min_by(|a, b| a.1.total_usd.total_cmp(&b.1.total_usd))
    };
    // Two halves on two threads: the grid is a few hundred replays.
    let (a, b) = rules.split_at(rules.len() / 2);
    let (x, y) = std::thread::scope(|s| {
        let h = s.spawn(|| run_all(b));
        (run_all(a), h.join().expect("hindsight replay panicked"))
    });
    match (x, y) {
        (Some(x), Some(y)) if y.1.total_usd < x.1.total_usd => Some(y),
        (x, y) => x.or(y),
    }
}

/// Replays one rule.
fn run(reqs: &[Compiled], n: usize, ctx: &Ctx, rule: &Rule) -> Tally {
    let mut w = World::<u32>::default();
    let mut state = vec![State::default(); n];
    for c in reqs {
        let (r, now) = (c.req, c.req.t_ms);
        let used = c.bounds.iter().rposition(|b| state[b.id as usize].expire > now);
        let covered = used.map_or(0, |u| c.bounds[u].tokens);
        if let (Some(u), true) = (used, rule.renew) {
            let id = c.bounds[u].id;
            w.extend(id, now + rule.ttl_ms);
            state[id as usize].expire = now + rule.ttl_ms;
        }
        let mut create = None;
        let from = used.map_or(0, |u| u + 1);
        let served_before = covered.max(r.implicit_cached_tokens);
        for (j, b) in c.bounds.iter().enumerate().skip(from) {
            let st = &mut state[b.id as usize];
            let d = b.tokens.saturating_sub(served_before) as f64 * b.saving_per_token;
            let first = st.last.is_none();
            st.regret = match st.last {
                Some(p) => (st.regret + d - b.storage_per_ms * (now - p.max(st.expire)).max(0) as f64).max(0.0),
                None => 0.0,
            };
            st.seen += 1;
            st.run = if st.last.is_some_and(|p| now - p <= rule.ttl_ms) { st.run + 1 } else { 1 };
            st.last = Some(now);
            let mut go = match rule.start {
                Start::Kth { k, lifetime } => (if lifetime { st.seen } else { st.run }) >= k,
                Start::Ski { alpha } => {
                    let buy = (b.creation - d + b.storage_per_ms * rule.ttl_ms as f64).max(0.0);
                    !first && st.regret >= alpha * buy
                }
            };
            go |= rule.first_sight && first && j + 1 == c.bounds.len();
            if rule.guard && covered > 0 && ((b.tokens - covered) as f64) < GUARD_SHARE * b.tokens as f64 {
                go = false;
            }
            if go && d > 0.0 {
                create = Some(*b);
            }
        }
        let mut served = if used.is_some() { covered } else { r.implicit_cached_tokens };
        if let Some(b) = create {
            w.create(ctx, b.id, b.tokens, &r.model, now, rule.ttl_ms);
            let st = &mut state[b.id as usize];
            st.regret = 0.0;
            st.expire = now + rule.ttl_ms;
            served = b.tokens;
        }
        w.serve(ctx, r, served, used.is_some() || create.is_some());
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_documented_size_and_every_rule_is_distinct() {
        let g = grid();
        let names: std::collections::HashSet<String> = g.iter().map(|r| r.to_string()).collect();
        assert_eq!(names.len(), g.len());
        assert_eq!(g.len(), 7 * 2 * 2 + 7 * 7 * 2 * 2 * 2);
    }
}
