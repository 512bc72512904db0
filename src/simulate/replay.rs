//! Replaying a trace on a virtual clock through a caching strategy: never cache, always cache
//! (create at first sight, fixed TTL, no renewal — what marker-driven gateways do), or gemgate's
//! [`CostPolicy`], driven exactly as the live engine drives it (see `docs/cost-policy.md`).

use super::trace::SimRequest;
use super::{Ctx, Tally};
use crate::accounting::{ModelPrice, Service, Usage, actual_usd};
use crate::caching::cost_policy::{CostPolicy, CostPolicyConfig, Decision, PrefixStats};
use crate::caching::{Arrival, ReturnStats};
use std::collections::HashMap;
use std::hash::Hash;

/// A live simulated cache.
pub(super) struct SimCache {
    start: i64,
    expire: i64,
    tokens: u64,
    /// Index of the cache's model in [`World::prices`].
    model: usize,
}

/// The simulated upstream: the caches alive, keyed by boundary (its key, or an interned id), and
/// the bill. Every strategy is billed by it.
pub(super) struct World<K> {
    pub(super) caches: HashMap<K, SimCache>,
    pub(super) tally: Tally,
    /// The price row of each model seen, looked up once.
    prices: Vec<(String, ModelPrice)>,
}

impl<K> Default for World<K> {
    fn default() -> Self {
        World { caches: HashMap::new(), tally: Tally::default(), prices: Vec::new() }
    }
}

impl<K: Copy + Eq + Hash> World<K> {
    /// Index of `model`'s price row in `prices`.
    fn price_ix(&mut self, ctx: &Ctx, model: &str) -> usize {
        self.prices.iter().position(|(m, _)| m == model).unwrap_or_else(|| {
            self.prices.push((model.to_string(), ctx.price(model).clone()));
            self.prices.len() - 1
        })
    }

    pub(super) fn create(&mut self, ctx: &Ctx, key: K, tokens: u64, model: &str, now: i64, ttl: i64) {
        self.end(ctx, key); // a cache the policy gave up on still runs to its expiry
        let m = self.price_ix(ctx, model);
        let c = crate::accounting::creation_usd(&self.prices[m].1, ctx.prices.cache_creation, tokens);
        self.tally.creations += 1;
        self.tally.creation_usd += c;
        self.tally.total_usd += c;
        self.caches.insert(key, SimCache { start: now, expire: now + ttl, tokens, model: m });
    }

    /// Ends a cache's life at `at` (or its expiry, if earlier) and bills its storage.
    pub(super) fn end_at(&mut self, key: K, at: i64) {
        if let Some(c) = self.caches.remove(&key) {
            let ms = (at.min(c.expire) - c.start).max(0) as f64;
            let usd = c.tokens as f64 * ms * self.prices[c.model].1.storage_per_token_ms();
            self.tally.storage_token_ms += c.tokens as f64 * ms;
            self.tally.storage_usd += usd;
            self.tally.total_usd += usd;
        }
    }

    /// Lets a cache run to its expiry and bills it.
    pub(super) fn end(&mut self, _ctx: &Ctx, key: K) {
        self.end_at(key, i64::MAX);
    }

    pub(super) fn alive(&self, key: K, now: i64) -> bool {
        self.caches.get(&key).is_some_and(|c| c.expire > now)
    }

    /// Moves a live cache's expiry (a renewal).
    pub(super) fn extend(&mut self, key: K, expire: i64) {
        if let Some(c) = self.caches.get_mut(&key) {
            c.expire = expire;
        }
    }

    /// Bills one request served with `cached` tokens at the cached rate.
    pub(super) fn serve(&mut self, ctx: &Ctx, r: &SimRequest, cached: u64, explicit: bool) {
        let u = Usage {
            prompt_tokens: r.prompt_tokens,
            cached_tokens: cached.min(r.prompt_tokens),
            output_tokens: r.output_tokens,
            ..Usage::default()
        };
        let m = self.price_ix(ctx, &r.model);
        let t = &mut self.tally;
        t.total_usd += actual_usd(&self.prices[m].1, &u, Service::Standard);
        t.requests += 1;
        t.prompt_tokens += r.prompt_tokens;
        t.cached_tokens += u.cached_tokens;
        t.hit_requests += u64::from(explicit);
    }

    pub(super) fn finish(mut self, ctx: &Ctx) -> Tally {
        let keys: Vec<K> = self.caches.keys().copied().collect();
        for k in keys {
            self.end(ctx, k);
        }
        self.tally
    }
}

pub(super) fn eligible<'r>(ctx: &Ctx, r: &'r SimRequest) -> impl DoubleEndedIterator<Item = &'r (String, u64)> {
    let min = ctx.min_tokens(&r.model);
    r.boundaries.iter().filter(move |b| b.1 >= min)
}

/// Every request as sent, implicit caching included.
pub fn never(reqs: &[SimRequest], ctx: &Ctx) -> Tally {
    let mut w = World::<&str>::default();
    for r in reqs {
        w.serve(ctx, r, r.implicit_cached_tokens, false);
    }
    w.finish(ctx)
}

/// Create a cache for the longest eligible boundary unless it is alive; `ttl_ms`, no renewal.
pub fn always(reqs: &[SimRequest], ctx: &Ctx, ttl_ms: i64) -> Tally {
    let mut w = World::default();
    for r in reqs {
        let Some((key, tokens)) = eligible(ctx, r).next_back() else {
            w.serve(ctx, r, r.implicit_cached_tokens, false);
            continue;
        };
        if !w.alive(key, r.t_ms) {
            w.create(ctx, key, *tokens, &r.model, r.t_ms, ttl_ms);
        }
        w.serve(ctx, r, *tokens, true);
    }
    w.finish(ctx)
}

/// gemgate's policy: per request, the longest boundary with a live cache is used (on_request →
/// Use/Renew); every longer eligible boundary is observed with that cache's size as covered
/// (on_request → Observe/Create) and the longest `Create` is made and used; a sweeper calls
/// on_tick on every cached boundary every `sweep_ms`.
pub fn policy(reqs: &[SimRequest], ctx: &Ctx, sweep_ms: i64) -> Tally {
    policy_with(reqs, ctx, &ctx.cfg, sweep_ms)
}

/// [`policy`] with another tuning than the context's (today's policy for comparison).
pub fn policy_with(reqs: &[SimRequest], ctx: &Ctx, cfg: &CostPolicyConfig, sweep_ms: i64) -> Tally {
    let mut w = World::default();
    let mut stats: HashMap<&str, PrefixStats> = HashMap::new();
    let mut policies: HashMap<&str, CostPolicy> = HashMap::new();
    let mut returns: HashMap<&str, ReturnStats> = HashMap::new();
    // What the upstream served implicitly on the last request through each boundary sent without
    // a gateway cache: the live engine learns it from responses, so decisions see it one late.
    let mut last_implicit: HashMap<&str, u64> = HashMap::new();
    let mut next_tick = reqs.first().map_or(0, |r| r.t_ms);
    let last = reqs.last().map_or(0, |r| r.t_ms);
    let end = last + cfg.max_ttl.as_millis() as i64 + sweep_ms;
    let mut i = 0;
    while i < reqs.len() || next_tick <= end {
        if i >= reqs.len() || next_tick <= reqs[i].t_ms {
            sweep(&mut w, &mut stats, &policies, next_tick);
            next_tick += sweep_ms;
            continue;
        }
        let r = &reqs[i];
        i += 1;
        let now = r.t_ms;
        let pol = policies.entry(r.model.as_str()).or_insert_with(|| ctx.policy_with(cfg, &r.model));
        let bounds: Vec<&(String, u64)> = eligible(ctx, r).collect();
        let used = bounds.iter().rposition(|(k, _)| {
            stats
                .get(k.as_str())
                .and_then(|s| s.cache)
                .is_some_and(|c| c.expire_ms > now + pol.cfg.expiry_margin.as_millis() as i64)
        });
        let mut served = r.implicit_cached_tokens;
        let mut explicit = false;
        // Tokens of the longest boundary seen before (what implicit caching could serve).
        let mut shared = 0;
        // As in the live engine: the used boundary's arrival counts as a return, and its renewal
        // happens only if no longer cache is created below.
        let mut renew = None;
        let rs = returns.entry(r.model.as_str()).or_default();
        let mut covered = 0;
        // How long before this request the longest prefix it shares with earlier ones was seen.
        let mut since_shared = None;
        if let Some(u) = used {
            let (key, tokens) = bounds[u];
            let st = stats.get_mut(key.as_str()).expect("used boundary has stats");
            shared = *tokens;
            let last = last_implicit.get(key.as_str()).copied().unwrap_or(0);
            let a = Arrival { last_implicit: last, ..Arrival::new(now, *tokens, 0) };
            since_shared = st.last_arrival_ms.map(|p| now - p);
            if let Decision::Renew { ttl_ms } = pol.on_arrival(rs, st, a) {
                renew = Some((key.as_str(), ttl_ms));
            }
            covered = *tokens;
            explicit = true;
        }
        let mut create = None;
        let from = used.map_or(0, |u| u + 1);
        for (j, (key, tokens)) in bounds.iter().enumerate().skip(from) {
            let st = stats.entry(key.as_str()).or_default();
            if st.arrivals > 0 {
                shared = *tokens;
            }
            let last = last_implicit.get(key.as_str()).copied().unwrap_or(0);
            let own_prefix = j + 1 == bounds.len();
            let prev = st.last_arrival_ms;
            let d = pol.on_arrival(
                rs,
                st,
                Arrival {
                    last_implicit: last,
                    own_prefix,
                    since_shared_ms: since_shared,
                    ..Arrival::new(now, *tokens, covered)
                },
            );
            if let Some(p) = prev {
                since_shared = Some(now - p);
            }
            if st.cache.is_none() && w.caches.contains_key(key.as_str()) {
                w.end(ctx, key); // lapsed in the policy's eyes
            }
            if let Decision::Create { ttl_ms } = d {
                create = Some((key.as_str(), *tokens, ttl_ms));
            }
        }
        if explicit {
            served = covered;
        }
        if let Some((key, tokens, ttl_ms)) = create {
            w.create(ctx, key, tokens, &r.model, now, ttl_ms);
            stats.get_mut(key).expect("observed").on_created(now, now + ttl_ms);
            served = tokens;
            explicit = true;
        } else if !explicit {
            rs.note_implicit(shared, r.implicit_cached_tokens);
            for (key, _) in &bounds {
                last_implicit.insert(key.as_str(), r.implicit_cached_tokens);
            }
        } else if let Some((key, ttl_ms)) = renew {
            stats.get_mut(key).expect("used").on_renewed(now + ttl_ms);
            if let Some(c) = w.caches.get_mut(key) {
                c.expire = now + ttl_ms;
            }
        }
        w.serve(ctx, r, served, explicit);
    }
    w.finish(ctx)
}

/// One sweeper pass: forget expired caches, delete those the policy says to.
fn sweep<'a>(
    w: &mut World<&'a str>,
    stats: &mut HashMap<&'a str, PrefixStats>,
    policies: &HashMap<&str, CostPolicy>,
    now: i64,
) {
    let live: Vec<(&'a str, u64, String)> =
        w.caches.iter().map(|(k, c)| (*k, c.tokens, w.prices[c.model].0.clone())).collect();
    for (key, tokens, model) in live {
        let Some(st) = stats.get_mut(key) else {
            continue;
        };
        let expired = w.caches.get(key).is_some_and(|c| c.expire <= now);
        if expired || policies[model.as_str()].on_tick(st, now, tokens) == Decision::Delete {
            w.end_at(key, now);
            st.on_gone(now);
        }
    }
}

/// A feasible clairvoyant schedule (an upper bound on the true optimum, where the oracle is a
/// lower bound): at each request, for every eligible boundary longer than the cache in use, it
/// looks ahead at that boundary's future arrivals, keeps a would-be cache across each gap only
/// while the storage costs less than the next hit saves, and creates the boundary whose run has
/// the largest positive value (savings beyond what implicit caching gives − creation −
/// storage), with an expiry right after the last arrival it is kept for. Greedy: it ignores that
/// a later, longer cache may take over, so it is an upper bound on the optimum, not the optimum.
pub fn clairvoyant_greedy(reqs: &[SimRequest], ctx: &Ctx) -> Tally {
    let mut w = World::<&str>::default();
    let mut arrivals: HashMap<&str, Vec<(i64, u64)>> = HashMap::new();
    for r in reqs {
        for (k, _) in eligible(ctx, r) {
            let implicit = r.implicit_cached_tokens;
            arrivals.entry(k.as_str()).or_default().push((r.t_ms, implicit));
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in reqs {
        let now = r.t_ms;
        let pol = ctx.policy(&r.model);
        let bounds: Vec<&(String, u64)> = eligible(ctx, r).collect();
        let used = bounds.iter().rposition(|(k, _)| w.alive(k, now));
        let mut served = used.map_or(r.implicit_cached_tokens, |u| bounds[u].1);
        let mut best: Option<(f64, &str, u64, i64)> = None;
        for (i, (key, tokens)) in bounds.iter().enumerate() {
            let pos = seen.entry(key.as_str()).or_insert(0);
            *pos += 1;
            if used.is_some_and(|u| i <= u) {
                continue;
            }
            let d = pol.hit_saving_usd(*tokens, served);
            let s = pol.storage_per_ms(*tokens);
            let (mut value, mut prev) = (d - pol.creation_usd(*tokens), now);
            let mut run_best = (value, now);
            for &(t, implicit) in &arrivals[key.as_str()][*pos..] {
                let d = pol.hit_saving_usd(*tokens, implicit.max(served));
                if s * (t - prev) as f64 >= d {
                    break;
                }
                value += d - s * (t - prev) as f64;
                prev = t;
                if value > run_best.0 {
                    run_best = (value, t);
                }
            }
            if run_best.0 > 0.0 && best.is_none_or(|b| run_best.0 > b.0) {
                best = Some((run_best.0, key.as_str(), *tokens, run_best.1));
            }
        }
        let mut explicit = used.is_some();
        if let Some((_, key, tokens, last)) = best {
            w.create(ctx, key, tokens, &r.model, now, last + 1 - now);
            served = tokens;
            explicit = true;
        }
        w.serve(ctx, r, served, explicit);
    }
    w.finish(ctx)
}
