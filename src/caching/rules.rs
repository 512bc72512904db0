//! Which caching rule the live gateway runs, behind one interface: the cost policy (default, see
//! `cost_policy.rs` and docs/cost-policy.md) or the simple "seen K times within W" rule (kept for
//! operators who want predictable behaviour, and for tests). Both answer with the same
//! [`Decision`]s over the same per-boundary state, so the engine has one code path.

use super::cost_policy::{CacheState, CostPolicy, CostPolicyConfig, Decision, PrefixStats};
use super::engine::CacheView;
use super::policy::{self, Observed, Rule};
use super::reason::Reason;
use super::speculate::{Arrival, ReturnStats};
use crate::accounting::PriceTable;
use crate::config::CachingConfig;
use std::sync::Arc;

/// What the engine keeps per prefix boundary.
#[derive(Debug, Default)]
pub struct BoundaryState {
    pub stats: PrefixStats,
    /// Recent arrivals, for the simple rule.
    recent: Observed,
    /// `cachedContentTokenCount` last seen on an uncached request of this prefix (implicit
    /// caching by the upstream).
    pub last_implicit: u64,
    /// The boundary's (estimated) tokens when last seen.
    pub tokens: u64,
}

impl BoundaryState {
    /// Makes the policy's view of the cache agree with the registry's.
    pub fn sync(&mut self, entry: Option<CacheView>, now_ms: i64) {
        match (entry, self.stats.cache) {
            (Some(e), cur) => {
                let last_used = cur.map_or(e.last_used_ms, |c| c.last_used_ms.max(e.last_used_ms));
                self.stats.cache =
                    Some(CacheState { created_ms: e.created_ms, expire_ms: e.expire_ms, last_used_ms: last_used });
            }
            (None, Some(_)) => self.stats.on_gone(now_ms),
            (None, None) => {}
        }
    }
}

pub enum Rules {
    /// One policy per model name. Model names come from the client, so the map is bounded.
    Cost {
        cfg: Box<CostPolicyConfig>,
        prices: Arc<PriceTable>,
        per_model: moka::sync::Cache<String, Arc<CostPolicy>>,
        /// Prices of this day (a replay), else of the day each decision is made.
        day: Option<chrono::NaiveDate>,
    },
    Hits {
        rule: Rule,
        ttl_ms: i64,
        renew_before_ms: i64,
        idle_ms: i64,
        /// A cache this close to its expiry is not used.
        expiry_margin_ms: i64,
    },
}

/// Cost policies kept at once (one per model name seen).
const MAX_MODEL_POLICIES: u64 = 1_000;

impl Rules {
    pub fn from_config(c: &CachingConfig, prices: Arc<PriceTable>) -> Self {
        if c.policy == "hits" {
            Rules::Hits {
                rule: Rule { min_hits: c.min_hits, window_ms: c.window.as_millis() as i64 },
                ttl_ms: c.ttl.as_millis() as i64,
                renew_before_ms: c.renew_before.as_millis() as i64,
                idle_ms: c.idle_delete_after.as_millis() as i64,
                expiry_margin_ms: c.cost.expiry_margin.as_millis() as i64,
            }
        } else {
            let per_model = moka::sync::Cache::builder().max_capacity(MAX_MODEL_POLICIES).build();
            Rules::Cost { cfg: Box::new(c.cost.clone()), prices, per_model, day: None }
        }
    }

    /// The same rules priced at the rows in force on `day` (for replaying a trace).
    pub fn at(self, day: chrono::NaiveDate) -> Self {
        match self {
            Rules::Cost { cfg, prices, per_model, .. } => Rules::Cost { cfg, prices, per_model, day: Some(day) },
            hits => hits,
        }
    }

    fn cost_policy(&self, model: &str) -> Option<Arc<CostPolicy>> {
        let Rules::Cost { cfg, prices, per_model, day } = self else { return None };
        // Keyed by the price row in force, not by the model string a client sent: the map stays
        // as small as the price table, and a new row takes effect on its day.
        let day = day.unwrap_or_else(crate::accounting::today);
        let row = prices.price_at(model, day).row_name();
        Some(per_model.get_with(row, || {
            let (p, fell_back) = CostPolicy::at((**cfg).clone(), prices, model, day);
            if fell_back {
                tracing::warn!(model, "no price for this model; caching decisions use the default row");
            }
            Arc::new(p)
        }))
    }

    /// A request arrives on this boundary (see `CostPolicy::on_arrival`; the boundary's last
    /// implicit coverage is filled in from `st`).
    pub fn on_request(&self, model: &str, rs: &mut ReturnStats, st: &mut BoundaryState, a: Arrival) -> Decision {
        let now = a.now_ms;
        match self {
            Rules::Cost { .. } => {
                let p = self.cost_policy(model).expect("cost rules");
                p.on_arrival(rs, &mut st.stats, Arrival { last_implicit: st.last_implicit, ..a })
            }
            Rules::Hits { rule, ttl_ms, renew_before_ms, expiry_margin_ms, .. } => {
                st.recent.record(now, rule);
                st.stats.arrivals += 1;
                st.stats.last_arrival_ms = Some(now);
                if let Some(c) = &mut st.stats.cache {
                    if c.expire_ms > now + *expiry_margin_ms {
                        c.last_used_ms = now;
                        st.stats.reason = Reason::Hit;
                        return if c.expire_ms - now < *renew_before_ms {
                            Decision::Renew { ttl_ms: *ttl_ms }
                        } else {
                            Decision::Use
                        };
                    }
                    st.stats.on_gone(now);
                }
                st.recent.cooldown_until = st.stats.cooldown_until_ms;
                let d = match policy::decide(&st.recent, now, rule) {
                    policy::Decision::Create => Decision::Create { ttl_ms: *ttl_ms },
                    policy::Decision::Observe => Decision::Observe,
                };
                st.stats.reason = Reason::of(&d, &st.stats, now);
                d
            }
        }
    }

    /// The sweeper's question for a boundary that has a cache.
    pub fn on_tick(&self, model: &str, st: &BoundaryState, now: i64, tokens: u64) -> Decision {
        match self {
            Rules::Cost { .. } => self.cost_policy(model).expect("cost rules").on_tick(&st.stats, now, tokens),
            Rules::Hits { idle_ms, .. } => match st.stats.cache {
                Some(c) if *idle_ms > 0 && now - c.last_used_ms >= *idle_ms => Decision::Delete,
                Some(_) => Decision::LetExpire,
                None => Decision::Observe,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CachingConfig;
    use crate::store::CacheEntry;

    fn hits(min_hits: u32) -> Rules {
        let cfg = CachingConfig { policy: "hits".into(), min_hits, ..CachingConfig::default() };
        Rules::from_config(&cfg, Arc::new(PriceTable::builtin()))
    }

    #[test]
    fn simple_rule_creates_on_the_kth_arrival_then_uses_and_renews() {
        let r = hits(2);
        let (mut rs, mut st) = (ReturnStats::default(), BoundaryState::default());
        assert_eq!(r.on_request("models/m", &mut rs, &mut st, Arrival::new(0, 5000, 0)), Decision::Observe);
        let ttl = CachingConfig::default().ttl.as_millis() as i64;
        assert_eq!(
            r.on_request("models/m", &mut rs, &mut st, Arrival::new(10, 5000, 0)),
            Decision::Create { ttl_ms: ttl }
        );
        st.stats.on_created(10, 10 + ttl);
        assert_eq!(r.on_request("models/m", &mut rs, &mut st, Arrival::new(20, 5000, 0)), Decision::Use);
        assert_eq!(
            r.on_request("models/m", &mut rs, &mut st, Arrival::new(ttl - 1_000, 5000, 0)),
            Decision::Observe,
            "too close to expiry"
        );
        st.stats.on_created(ttl, 2 * ttl);
        assert!(matches!(
            r.on_request("models/m", &mut rs, &mut st, Arrival::new(2 * ttl - 60_000, 5000, 0)),
            Decision::Renew { .. }
        ));
    }

    #[test]
    fn cost_rule_waits_for_evidence_and_sync_follows_the_registry() {
        let r = Rules::from_config(&CachingConfig::default(), Arc::new(PriceTable::builtin()));
        let mut st = BoundaryState::default();
        // A tenant whose returns were measured without gateway caches: none served implicitly.
        let mut rs = ReturnStats::default();
        (0..10).for_each(|_| rs.note_implicit(8000, 0));
        assert_eq!(
            r.on_request("models/gemini-2.5-flash", &mut rs, &mut st, Arrival::new(0, 8000, 0)),
            Decision::Observe
        );
        assert!(matches!(
            r.on_request("models/gemini-2.5-flash", &mut rs, &mut st, Arrival::new(1_000, 8000, 0)),
            Decision::Create { .. }
        ));
        let e = CacheEntry::new("k", "cachedContents/x", "models/gemini-2.5-flash", "s", 8000, 0, 1_000, 400_000);
        st.sync(Some(CacheView::from(&e)), 1_000);
        assert_eq!(
            r.on_request("models/gemini-2.5-flash", &mut rs, &mut st, Arrival::new(2_000, 8000, 0)),
            Decision::Use
        );
        st.sync(None, 3_000);
        assert!(st.stats.cache.is_none());
    }

    #[test]
    fn made_up_model_names_cannot_grow_the_policy_map_past_its_bound() {
        let r = Rules::from_config(&CachingConfig::default(), Arc::new(PriceTable::builtin()));
        for i in 0..(MAX_MODEL_POLICIES * 3) {
            r.cost_policy(&format!("models/made-up-{i}"));
        }
        let Rules::Cost { per_model, .. } = &r else { unreachable!() };
        per_model.run_pending_tasks();
        assert!(per_model.entry_count() <= MAX_MODEL_POLICIES, "{} policies", per_model.entry_count());
    }
}
