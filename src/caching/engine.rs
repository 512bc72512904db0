//! The caching decision engine: pure, no I/O, no clock of its own. Given one request's prefix
//! chain (boundary keys with their token counts), what the registry holds for those keys, the
//! model's minimum cache size and the time, [`Engine::decide`] returns an [`Intent`] and updates
//! the per-boundary and per-tenant state it owns. Whoever drives it reports back what actually
//! happened ([`Engine::created`], [`Engine::renewed`], [`Engine::gone`], [`Engine::responded`]).
//!
//! Two drivers exist: the live gateway (`Caching::plan`, which turns intents into upstream calls
//! and store writes) and `gemgate simulate` (which feeds a trace on a virtual clock to a simulated
//! upstream). Every rule — the expiry margin, the size margin, the rule in force (cost or hits),
//! the first-sight and probe logic inside it, which cache a request uses, which boundary is
//! created, when a used cache is renewed, what the sweeper deletes — lives here once.

use super::cost_policy::Decision;
use super::reason::Reason;
use super::rules::{BoundaryState, Rules};
use super::speculate::{Arrival, ReturnStats};
use crate::accounting::PriceTable;
use crate::config::CachingConfig;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the registry (live) or the simulated upstream knows of one boundary's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheView {
    pub tokens: u64,
    pub created_ms: i64,
    pub expire_ms: i64,
    pub last_used_ms: i64,
}

impl From<&crate::store::CacheEntry> for CacheView {
    fn from(e: &crate::store::CacheEntry) -> Self {
        CacheView { tokens: e.tokens, created_ms: e.created_ms, expire_ms: e.expire_ms, last_used_ms: e.last_used_ms }
    }
}

/// One request, as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Tenant scope (credential hash); first-sight statistics are kept per scope and model.
    pub scope: &'a str,
    pub model: &'a str,
    pub now_ms: i64,
    /// The request's boundaries, shortest first: registry key and (estimated) tokens.
    pub boundaries: &'a [(String, u64)],
    /// The model's minimum explicit-cache size, or `None` when the model (for this tenant) has
    /// no explicit caching. The engine adds its size margin.
    pub min_tokens: Option<u64>,
}

/// What to do with one request. Indices point into [`Request::boundaries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intent {
    /// Boundaries whose cache is too close to expiry to be used: forget them (the upstream
    /// lets them expire).
    pub forget: Vec<usize>,
    /// Use the live cache of this boundary (the longest one).
    pub hit: Option<usize>,
    /// Extend the used cache to this TTL from now, unless a longer cache is created.
    pub renew_ttl_ms: Option<i64>,
    /// Create a cache for this boundary with this TTL, and use it instead.
    pub create: Option<(usize, i64)>,
    /// Tokens of the longest boundary seen before this request: what the upstream's implicit
    /// caching could serve (reported back through [`Engine::responded`]).
    pub shared_tokens: u64,
    /// Why the request is (or is not) served from a cache, as far as the engine knows: the
    /// driver refines `Created` once the creation's outcome is known.
    pub reason: Reason,
}

/// The policy's state for one tracked prefix boundary, for the admin listing. Keyed by the
/// boundary's registry key (a hash); holds no prompt text and no credential.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixView {
    pub key: String,
    pub tokens: u64,
    pub sightings: u64,
    pub last_seen_ms: Option<i64>,
    /// The boundary's cache as the policy knows it: its expiry and the uses it had.
    pub cache_expire_ms: Option<i64>,
    pub cache_hits: u64,
    pub reason: Reason,
}

/// The sweeper's verdict on one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Past its expiry: forget it (then [`Engine::gone`]).
    Expired,
    /// Delete it now (then, once deleted, [`Engine::gone`]).
    Delete,
    /// Leave it alone.
    Keep,
}

/// The engine: the rule in force and the state it keeps. Cheap to share (`&self` everywhere).
pub struct Engine {
    rules: Rules,
    expiry_margin_ms: i64,
    size_margin: f64,
    cooldown_ms: i64,
    states: moka::sync::Cache<String, Arc<Mutex<BoundaryState>>>,
    /// Per (scope, model): how often a request's own prefix comes back (see speculate.rs).
    returns: moka::sync::Cache<String, Arc<Mutex<ReturnStats>>>,
}

/// How long idle state is kept by the live gateway.
const STATE_IDLE: Duration = Duration::from_secs(6 * 3600);
const RETURNS_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// (scope, model) pairs whose first-sight statistics are kept at once.
const MAX_RETURNS: u64 = 100_000;

impl Engine {
    /// The live engine: state bounded by `registry_capacity` and dropped when idle; prices of
    /// the day each decision is made.
    pub fn new(cfg: &CachingConfig, prices: Arc<PriceTable>) -> Self {
        Self::build(cfg, Rules::from_config(cfg, prices), Some((STATE_IDLE, RETURNS_IDLE)))
    }

    /// An engine for replaying a trace: prices of `day`, and state kept for the whole replay
    /// (virtual time makes idle expiry meaningless).
    pub fn for_replay(cfg: &CachingConfig, prices: Arc<PriceTable>, day: chrono::NaiveDate) -> Self {
        Self::build(cfg, Rules::from_config(cfg, prices).at(day), None)
    }

    fn build(cfg: &CachingConfig, rules: Rules, idle: Option<(Duration, Duration)>) -> Self {
        let mut states = moka::sync::Cache::builder().max_capacity(cfg.registry_capacity);
        let mut returns = moka::sync::Cache::builder().max_capacity(MAX_RETURNS);
        if let Some((s, r)) = idle {
            states = states.time_to_idle(s);
            returns = returns.time_to_idle(r);
        }
        Engine {
            rules,
            expiry_margin_ms: cfg.cost.expiry_margin.as_millis() as i64,
            size_margin: cfg.size_margin,
            cooldown_ms: cfg.cooldown.as_millis() as i64,
            states: states.build(),
            returns: returns.build(),
        }
    }

    fn state(&self, key: &str) -> Arc<Mutex<BoundaryState>> {
        self.states.get_with_by_ref(key, || Arc::new(Mutex::new(BoundaryState::default())))
    }

    fn returns(&self, scope: &str, model: &str) -> Arc<Mutex<ReturnStats>> {
        self.returns.get_with(format!("{scope}:{model}"), Default::default)
    }

    /// Whether a cache expiring at `expire_ms` can still serve a request sent at `now_ms`.
    pub fn usable(&self, expire_ms: i64, now_ms: i64) -> bool {
        expire_ms > now_ms + self.expiry_margin_ms
    }

    /// Decides for one request. `cache(key)` is the registry's (or the simulated upstream's)
    /// cache for a boundary key, if any.
    pub fn decide(&self, req: &Request<'_>, cache: impl Fn(&str) -> Option<CacheView>) -> Intent {
        let now = req.now_ms;
        let mut intent = Intent::default();
        // Fetched (and created) only once the request reaches a gateway cache or a boundary the
        // rule observes: a scope whose prompts stay below the minimum leaves nothing behind.
        let returns = std::cell::OnceCell::new();
        let returns = || returns.get_or_init(|| self.returns(req.scope, req.model));

        // 1. The longest boundary with a usable cache; the rule sees this use.
        let mut covered = 0;
        // How long before this request the longest prefix it shares with earlier ones was last
        // seen: the first-sight class (speculate.rs).
        let mut since_shared = None;
        for (i, (key, _)) in req.boundaries.iter().enumerate().rev() {
            let Some(c) = cache(key) else { continue };
            if !self.usable(c.expire_ms, now) {
                intent.forget.push(i);
                continue;
            }
            let st = self.state(key);
            let mut st = st.lock().expect("poisoned");
            st.sync(Some(c), now);
            intent.shared_tokens = c.tokens;
            since_shared = st.stats.last_arrival_ms.map(|p| now - p);
            let d = self.rules.on_request(
                req.model,
                &mut returns().lock().expect("poisoned"),
                &mut st,
                Arrival::new(now, c.tokens, 0),
            );
            if let Decision::Renew { ttl_ms } = d {
                intent.renew_ttl_ms = Some(ttl_ms);
            }
            intent.hit = Some(i);
            covered = c.tokens;
            break;
        }

        // 2. Every longer eligible boundary is observed; the longest that should be a cache wins.
        let min = req.min_tokens.map_or(f64::INFINITY, |m| m as f64 * self.size_margin);
        let start = intent.hit.map_or(0, |i| i + 1);
        let eligible: Vec<usize> =
            (start..req.boundaries.len()).filter(|&i| req.boundaries[i].1 as f64 >= min).collect();
        for (j, &i) in eligible.iter().enumerate() {
            let (key, tokens) = &req.boundaries[i];
            let st = self.state(key);
            let mut st = st.lock().expect("poisoned");
            st.sync(None, now);
            st.tokens = *tokens;
            if st.stats.arrivals > 0 {
                intent.shared_tokens = *tokens;
            }
            // The request's own prefix may be cached at first sight (speculate.rs).
            let own_prefix = j + 1 == eligible.len();
            let a = Arrival { own_prefix, since_shared_ms: since_shared, ..Arrival::new(now, *tokens, covered) };
            let prev = st.stats.last_arrival_ms;
            let d = self.rules.on_request(req.model, &mut returns().lock().expect("poisoned"), &mut st, a);
            if let Some(p) = prev {
                since_shared = Some(now - p);
            }
            if let Decision::Create { ttl_ms } = d {
                intent.create = Some((i, ttl_ms));
            }
            if own_prefix {
                intent.reason = st.stats.reason;
            }
        }
        intent.reason = match (intent.create, intent.hit) {
            (Some(_), _) => Reason::Created,
            (None, Some(_)) => Reason::Hit,
            _ if eligible.is_empty() && req.min_tokens.is_none() => Reason::NoExplicitCaching,
            _ if eligible.is_empty() => Reason::BelowMinimum,
            _ => intent.reason,
        };
        intent
    }

    /// The reason for the policy's current decision on `key`, if the boundary is tracked.
    pub fn reason(&self, key: &str) -> Option<Reason> {
        self.states.get(key).map(|st| st.lock().expect("poisoned").stats.reason)
    }

    /// Up to `limit` tracked prefix boundaries, most recently seen first (the longer first among
    /// those seen by the same request).
    pub fn prefixes(&self, limit: usize) -> Vec<PrefixView> {
        let order = |p: &PrefixView| std::cmp::Reverse((p.last_seen_ms, p.tokens));
        // The state map may hold a million boundaries: keep at most twice the page while walking it.
        let keep = |out: &mut Vec<PrefixView>| {
            if out.len() > limit {
                out.select_nth_unstable_by_key(limit, order);
                out.truncate(limit);
            }
        };
        let mut out = Vec::new();
        for (key, st) in self.states.iter() {
            let st = st.lock().expect("poisoned");
            out.push(PrefixView {
                key: key.as_str().to_owned(),
                tokens: st.tokens,
                sightings: st.stats.arrivals,
                last_seen_ms: st.stats.last_arrival_ms,
                cache_expire_ms: st.stats.cache.map(|c| c.expire_ms),
                cache_hits: st.stats.hits,
                reason: st.stats.reason,
            });
            if out.len() >= 2 * limit.max(1) {
                keep(&mut out);
            }
        }
        keep(&mut out);
        out.sort_unstable_by_key(order);
        out
    }

    /// A cache now exists for `key`: made by this driver (`made_here`, the `Create` it asked for)
    /// or found made by another replica.
    pub fn created(&self, key: &str, cache: CacheView, made_here: bool, now_ms: i64) {
        let st = self.state(key);
        let mut st = st.lock().expect("poisoned");
        if made_here {
            st.stats.on_created(cache.created_ms, cache.expire_ms);
        }
        st.sync(Some(cache), now_ms);
    }

    /// Creating `key`'s cache failed: no new attempt during the cooldown.
    pub fn create_failed(&self, key: &str, now_ms: i64) {
        self.state(key).lock().expect("poisoned").stats.on_create_failed(now_ms, self.cooldown_ms);
    }

    /// `key`'s cache was extended to `expire_ms`.
    pub fn renewed(&self, key: &str, expire_ms: i64) {
        self.state(key).lock().expect("poisoned").stats.on_renewed(expire_ms);
    }

    /// `key`'s cache is gone (expired, deleted, or rejected by the upstream).
    pub fn gone(&self, key: &str, now_ms: i64) {
        if let Some(st) = self.states.get(key) {
            st.lock().expect("poisoned").stats.on_gone(now_ms);
        }
    }

    /// The response to a request sent without a gateway cache: the upstream served `cached`
    /// tokens implicitly; `shared_tokens` is what [`Intent::shared_tokens`] said for it and
    /// `keys` are the request's boundary keys.
    pub fn responded<'k>(
        &self,
        scope: &str,
        model: &str,
        keys: impl IntoIterator<Item = &'k str>,
        shared_tokens: u64,
        cached: u64,
    ) {
        if shared_tokens > 0 {
            self.returns(scope, model).lock().expect("poisoned").note_implicit(shared_tokens, cached);
        }
        for key in keys {
            if let Some(st) = self.states.get(key) {
                st.lock().expect("poisoned").last_implicit = cached;
            }
        }
    }

    /// The sweeper's question for one cache at `now_ms`.
    pub fn sweep(&self, key: &str, model: &str, cache: CacheView, now_ms: i64) -> Sweep {
        if cache.expire_ms <= now_ms {
            return Sweep::Expired;
        }
        // A cache warmed from the store may have no state in this process yet; judge it on a
        // temporary one rather than allocating state for every entry on every pass.
        let st = self.states.get(key);
        let mut temp = BoundaryState::default();
        let mut guard = st.as_ref().map(|s| s.lock().expect("poisoned"));
        let state = guard.as_deref_mut().unwrap_or(&mut temp);
        state.sync(Some(cache), now_ms);
        match self.rules.on_tick(model, state, now_ms, cache.tokens) {
            Decision::Delete => Sweep::Delete,
            _ => Sweep::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(policy: &str) -> Engine {
        let cfg = CachingConfig { policy: policy.into(), min_hits: 2, ..CachingConfig::default() };
        Engine::for_replay(
            &cfg,
            Arc::new(PriceTable::builtin()),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
        )
    }

    fn bounds() -> Vec<(String, u64)> {
        vec![("a".into(), 4_000), ("ab".into(), 8_000)]
    }

    fn req<'a>(b: &'a [(String, u64)], now_ms: i64) -> Request<'a> {
        Request { scope: "s", model: "models/gemini-2.5-flash", now_ms, boundaries: b, min_tokens: Some(1_024) }
    }

    #[test]
    fn the_hits_rule_creates_the_longest_boundary_then_uses_it() {
        let (e, b) = (engine("hits"), bounds());
        let first = e.decide(&req(&b, 0), |_| None);
        assert_eq!((first.hit, first.create), (None, None));
        let second = e.decide(&req(&b, 1_000), |_| None);
        let (i, ttl) = second.create.expect("second arrival creates");
        assert_eq!(i, 1, "the longest eligible boundary");
        let view = CacheView { tokens: 8_000, created_ms: 1_000, expire_ms: 1_000 + ttl, last_used_ms: 1_000 };
        e.created("ab", view, true, 1_000);
        let third = e.decide(&req(&b, 2_000), |k| (k == "ab").then_some(view));
        assert_eq!((third.hit, third.create), (Some(1), None));
        assert_eq!(third.shared_tokens, 8_000);
    }

    #[test]
    fn a_cache_inside_the_expiry_margin_is_forgotten_not_used() {
        let (e, b) = (engine("hits"), bounds());
        let view = CacheView { tokens: 8_000, created_ms: 0, expire_ms: 10_000, last_used_ms: 0 };
        e.created("ab", view, true, 0);
        let margin = CachingConfig::default().cost.expiry_margin.as_millis() as i64;
        let late = e.decide(&req(&b, 10_000 - margin), |k| (k == "ab").then_some(view));
        assert_eq!(late.forget, vec![1]);
        assert_eq!(late.hit, None);
        assert!(e.usable(10_000, 10_000 - margin - 1));
    }

    #[test]
    fn boundaries_below_the_minimum_with_its_margin_or_without_explicit_caching_are_never_created() {
        let e = engine("hits");
        let b = vec![("small".to_string(), 1_100)]; // above 1,024 but below 1,024 × 1.1
        let none = |_: &str| None;
        let long = bounds();
        for t in 0..5 {
            assert_eq!(e.decide(&req(&b, t * 1_000), none).create, None);
            let no_explicit = Request { min_tokens: None, ..req(&long, t * 1_000) };
            assert_eq!(e.decide(&no_explicit, none).create, None);
        }
    }

    #[test]
    fn the_intent_and_the_prefix_listing_say_why() {
        let e = engine("cost");
        let (small, b) = (vec![("small".to_string(), 200)], bounds());
        let none = |_: &str| None;
        assert_eq!(e.decide(&req(&small, 0), none).reason, Reason::BelowMinimum);
        assert_eq!(e.decide(&Request { min_tokens: None, ..req(&b, 0) }, none).reason, Reason::NoExplicitCaching);
        assert_eq!(e.decide(&req(&b, 1_000), none).reason, Reason::FirstSight);
        e.create_failed("ab", 1_000);
        assert_eq!(e.decide(&req(&b, 2_000), none).reason, Reason::Cooldown);
        let listed = e.prefixes(1);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].key.as_str(), listed[0].sightings, listed[0].tokens), ("ab", 2, 8_000));
        assert_eq!((listed[0].reason, e.reason("ab")), (Reason::Cooldown, Some(Reason::Cooldown)));
        assert_eq!(e.prefixes(1_000).len(), 2, "both boundaries are tracked");
        // A page smaller than the map holds the most recently seen.
        for t in 0..50 {
            let keys = vec![(format!("k{t}"), 5_000)];
            e.decide(&req(&keys, 10_000 + t), none);
        }
        let page: Vec<String> = e.prefixes(3).into_iter().map(|p| p.key).collect();
        assert_eq!(page, ["k49", "k48", "k47"]);
    }

    #[test]
    fn scopes_that_never_reach_a_cacheable_prefix_leave_no_state() {
        // Every made-up key is a scope: one that only sends prompts below the minimum (or to a
        // model without explicit caching) must not leave first-sight statistics behind.
        let e = engine("cost");
        let (small, long) = (vec![("small".to_string(), 200)], bounds());
        for i in 0..2_000 {
            let scope = format!("made-up-{i}");
            e.decide(&Request { scope: &scope, ..req(&small, i) }, |_| None);
            e.decide(&Request { scope: &scope, min_tokens: None, ..req(&long, i) }, |_| None);
        }
        e.returns.run_pending_tasks();
        e.states.run_pending_tasks();
        assert_eq!((e.returns.entry_count(), e.states.entry_count()), (0, 0));
        // A scope that does reach one is tracked.
        e.decide(&req(&long, 5_000), |_| None);
        e.returns.run_pending_tasks();
        assert_eq!(e.returns.entry_count(), 1);
    }

    #[test]
    fn the_sweeper_forgets_expired_caches_and_deletes_idle_ones() {
        let cfg = CachingConfig {
            policy: "hits".into(),
            idle_delete_after: Duration::from_secs(60),
            ..CachingConfig::default()
        };
        let e = Engine::for_replay(
            &cfg,
            Arc::new(PriceTable::builtin()),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
        );
        let view = CacheView { tokens: 8_000, created_ms: 0, expire_ms: 600_000, last_used_ms: 0 };
        e.created("ab", view, true, 0);
        assert_eq!(e.sweep("ab", "models/gemini-2.5-flash", view, 30_000), Sweep::Keep);
        assert_eq!(e.sweep("ab", "models/gemini-2.5-flash", view, 61_000), Sweep::Delete);
        assert_eq!(e.sweep("ab", "models/gemini-2.5-flash", view, 600_000), Sweep::Expired);
    }
}
