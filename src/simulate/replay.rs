//! Replaying a trace on a virtual clock through a caching strategy: never cache, always cache
//! (create at first sight, fixed TTL, no renewal — what marker-driven gateways do), or gemgate's
//! own decision [`Engine`], the very one the live gateway runs (see `docs/cost-policy.md`).

use super::trace::SimRequest;
use super::{Ctx, Tally};
use crate::accounting::{ModelPrice, Service, Usage, actual_usd};
use crate::caching::{CacheView, Engine, Request, Sweep};
use crate::config::CostPolicyConfig;
use std::collections::HashMap;
use std::hash::Hash;

/// A live simulated cache.
pub(super) struct SimCache {
    start: i64,
    expire: i64,
    last_used: i64,
    tokens: u64,
    /// Index of the cache's model in [`World::prices`].
    model: usize,
}

/// The simulated upstream: the caches alive, keyed by boundary (its key, or an interned id), and
/// the bill. Every strategy is billed by it.
pub(super) struct World<K> {
    caches: HashMap<K, SimCache>,
    tally: Tally,
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
        self.end(key); // a cache the policy gave up on still runs to its expiry
        let m = self.price_ix(ctx, model);
        let c = crate::accounting::creation_usd(&self.prices[m].1, ctx.prices.cache_creation, tokens);
        self.tally.creations += 1;
        self.tally.creation_usd += c;
        self.tally.total_usd += c;
        self.caches.insert(key, SimCache { start: now, expire: now + ttl, last_used: now, tokens, model: m });
    }

    /// Ends a cache's life at `at` (or its expiry, if earlier) and bills its storage.
    fn end_at(&mut self, key: K, at: i64) {
        if let Some(c) = self.caches.remove(&key) {
            let ms = (at.min(c.expire) - c.start).max(0) as f64;
            let usd = c.tokens as f64 * ms * self.prices[c.model].1.storage_per_token_ms();
            self.tally.storage_token_ms += c.tokens as f64 * ms;
            self.tally.storage_usd += usd;
            self.tally.total_usd += usd;
        }
    }

    /// Lets a cache run to its expiry and bills it.
    fn end(&mut self, key: K) {
        self.end_at(key, i64::MAX);
    }

    /// What the simulated upstream holds for `key`, as the registry would show it.
    fn view(&self, key: K) -> Option<CacheView> {
        self.caches.get(&key).map(|c| CacheView {
            tokens: c.tokens,
            created_ms: c.start,
            expire_ms: c.expire,
            last_used_ms: c.last_used,
        })
    }

    fn alive(&self, key: K, now: i64) -> bool {
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

    pub(super) fn finish(mut self) -> Tally {
        let keys: Vec<K> = self.caches.keys().copied().collect();
        for k in keys {
            self.end(k);
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
    w.finish()
}

/// Create a cache for the longest eligible boundary unless it is alive; `ttl_ms`, no renewal.
pub fn always(reqs: &[SimRequest], ctx: &Ctx, ttl_ms: i64) -> Tally {
    let mut w = World::<&str>::default();
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
    w.finish()
}

/// gemgate's engine ([`Engine`], the same one the live gateway runs) on a simulated upstream:
/// per request the engine decides from the caches alive in the simulation; creations always
/// succeed at once, renewals too; a sweeper asks the engine about every cache every `sweep_ms`.
/// Implicit caching is reported back to the engine as the live gateway reports it from
/// responses (one request late).
pub fn policy(reqs: &[SimRequest], ctx: &Ctx, sweep_ms: i64) -> Tally {
    policy_with(reqs, ctx, &ctx.cfg, sweep_ms)
}

/// [`policy`] with another tuning than the context's (policy v1, for comparison).
pub fn policy_with(reqs: &[SimRequest], ctx: &Ctx, cfg: &CostPolicyConfig, sweep_ms: i64) -> Tally {
    let caching = crate::config::CachingConfig { cost: cfg.clone(), ..ctx.caching() };
    let engine = Engine::for_replay(&caching, std::sync::Arc::new(ctx.prices.clone()), ctx.at);
    let mut w = World::<&str>::default();
    let mut next_tick = reqs.first().map_or(0, |r| r.t_ms);
    let last = reqs.last().map_or(0, |r| r.t_ms);
    let end = last + cfg.max_ttl.as_millis() as i64 + sweep_ms;
    let mut i = 0;
    while i < reqs.len() || next_tick <= end {
        if i >= reqs.len() || next_tick <= reqs[i].t_ms {
            sweep(&mut w, &engine, next_tick);
            next_tick += sweep_ms;
            continue;
        }
        let r = &reqs[i];
        i += 1;
        let now = r.t_ms;
        let req = Request {
            scope: "",
            model: &r.model,
            now_ms: now,
            boundaries: &r.boundaries,
            min_tokens: Some(ctx.min_tokens(&r.model)),
        };
        let intent = engine.decide(&req, |key| w.view(key));
        for &f in &intent.forget {
            w.end(&r.boundaries[f].0); // runs to its expiry unused
        }
        let (served, explicit) = if let Some((c, ttl_ms)) = intent.create {
            let (key, tokens) = &r.boundaries[c];
            w.create(ctx, key, *tokens, &r.model, now, ttl_ms);
            let view = w.view(key).expect("just created");
            engine.created(key, view, true, now);
            (*tokens, true)
        } else if let Some(h) = intent.hit {
            let key = r.boundaries[h].0.as_str();
            if let Some(ttl_ms) = intent.renew_ttl_ms {
                if let Some(c) = w.caches.get_mut(key) {
                    c.expire = now + ttl_ms;
                }
                engine.renewed(key, now + ttl_ms);
            }
            if let Some(c) = w.caches.get_mut(key) {
                c.last_used = now;
            }
            (w.caches[key].tokens, true)
        } else {
            let keys = r.boundaries.iter().map(|(k, _)| k.as_str());
            engine.responded(req.scope, req.model, keys, intent.shared_tokens, r.implicit_cached_tokens);
            (r.implicit_cached_tokens, false)
        };
        w.serve(ctx, r, served, explicit);
    }
    w.finish()
}

/// One sweeper pass: forget expired caches, delete those the engine says to.
fn sweep(w: &mut World<&str>, engine: &Engine, now: i64) {
    let live: Vec<(&str, String)> = w.caches.iter().map(|(k, c)| (*k, w.prices[c.model].0.clone())).collect();
    for (key, model) in live {
        let view = w.view(key).expect("listed");
        if engine.sweep(key, &model, view, now) != Sweep::Keep {
            w.end_at(key, now);
            engine.gone(key, now);
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
    w.finish()
}
