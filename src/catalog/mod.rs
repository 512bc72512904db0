//! The model catalog: the one place that answers "what can this model do, and what does it cost".
//!
//! * Prices: the dated schedule (`accounting::pricing`), the row in force on the request's day.
//! * Minimum cache sizes: the configured table, corrected by the upstream's "too small" answers.
//! * Explicit caching: learned per credential scope and model from `GET /{v}/models/{id}`
//!   (`supportedGenerationMethods` must list `createCachedContent`), fetched in the background the
//!   first time a scope uses a model and kept for `catalog.ttl`. A request never waits for it:
//!   until the answer is in, the static rule applies (models matching `catalog.implicit_only`,
//!   the Gemini 4 family by default, have no explicit caching; others do). A 404 "not supported
//!   for createCachedContent" answer to a create teaches the same lesson at once.
//!
//! Everything keyed by model strings a client sends is bounded (`catalog.max_entries`).

pub use crate::accounting::ids;
mod minimums;

pub use minimums::Minimums;

use crate::accounting::{self, PriceSource, PriceTable, Priced, Service, day_of_ms};
use crate::accounting::{Costs, Pricing};
use crate::config::CatalogConfig;
use crate::proxy::Upstream;
use crate::proxy::calls::Credential;
use crate::telemetry;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// What is known about one model for one credential scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explicit {
    /// A models.get is under way (or failed; retried after the TTL): the static rule applies.
    Pending,
    /// The upstream said.
    Learned(bool),
}

/// Distinct model labels the price-source metric takes before it says `other`.
const MAX_METRIC_MODELS: usize = 200;

struct Inner {
    cfg: CatalogConfig,
    prices: Arc<PriceTable>,
    minimums: Minimums,
    explicit: moka::sync::Cache<String, Explicit>,
    upstream: Upstream,
    timeout: Duration,
    tracker: TaskTracker,
    metric_models: Mutex<HashSet<String>>,
}

/// Handle to the catalog; cheap to clone.
#[derive(Clone)]
pub struct Catalog(Arc<Inner>);

impl Catalog {
    pub fn new(
        cfg: CatalogConfig,
        prices: PriceTable,
        min_tokens: BTreeMap<String, u32>,
        upstream: Upstream,
        timeout: Duration,
        tracker: TaskTracker,
    ) -> Self {
        let explicit = moka::sync::Cache::builder().max_capacity(cfg.max_entries).time_to_live(cfg.ttl).build();
        let minimums = Minimums::new(min_tokens, prices.aliases.clone());
        Catalog(Arc::new(Inner {
            cfg,
            prices: Arc::new(prices),
            minimums,
            explicit,
            upstream,
            timeout,
            tracker,
            metric_models: Mutex::default(),
        }))
    }

    pub fn prices(&self) -> &Arc<PriceTable> {
        &self.0.prices
    }

    /// The price of `model` in force at `now_ms` (the request's time).
    pub fn price(&self, model: &str, now_ms: i64) -> Priced<'_> {
        self.0.prices.price_at(model, day_of_ms(now_ms))
    }

    /// Counts a priced response by model and price source (a bounded set of model labels).
    pub fn count_price_source(&self, model: &str, source: PriceSource) {
        let label = self.model_label(model);
        metrics::counter!(telemetry::PRICE_SOURCE, "model" => label, "source" => source.as_str()).increment(1);
    }

    /// The model as a metric label: its bare id, or `other` past the first few hundred models.
    fn model_label(&self, model: &str) -> String {
        let id = ids::bare(model);
        let mut seen = self.0.metric_models.lock().expect("poisoned");
        if seen.contains(id) || (seen.len() < MAX_METRIC_MODELS && seen.insert(id.to_string())) {
            id.to_string()
        } else {
            "other".to_string()
        }
    }

    pub fn min_tokens(&self, model: &str) -> u32 {
        self.0.minimums.min_tokens(model)
    }

    /// The upstream stated a model's minimum in a "too small" answer.
    pub fn learn_min(&self, model: &str, min: u32) {
        self.0.minimums.learn(model, min);
    }

    /// The static rule: models matching `catalog.implicit_only` have no explicit caching.
    pub fn static_explicit(&self, model: &str) -> bool {
        ids::resolve(self.0.cfg.implicit_only.iter().map(String::as_str), model).is_none()
    }

    fn key(scope: &str, model: &str) -> String {
        format!("{scope}\0{}", ids::bare(model))
    }

    /// What is known for this scope and model, if anything.
    pub fn known(&self, scope: &str, model: &str) -> Option<Explicit> {
        self.0.explicit.get(&Self::key(scope, model))
    }

    /// Whether gemgate may try an explicit cache for `model` on behalf of `scope`. The first call
    /// for a pair starts the models.get in the background (with `cred`, on API `version`) and
    /// answers by the static rule; later calls answer from what the upstream said.
    pub fn explicit_caching(&self, scope: &str, model: &str, version: &str, cred: Option<&Credential>) -> bool {
        let key = Self::key(scope, model);
        match self.0.explicit.get(&key) {
            Some(Explicit::Learned(b)) => return b,
            Some(Explicit::Pending) => {}
            None if self.0.cfg.discover => {
                if let Some(cred) = cred {
                    self.0.explicit.insert(key.clone(), Explicit::Pending);
                    self.spawn_discovery(key, ids::bare(model).to_string(), version.to_string(), cred.clone());
                }
            }
            None => {}
        }
        self.static_explicit(model)
    }

    /// The upstream refused a create for this model ("not supported for createCachedContent").
    pub fn learn_no_explicit(&self, scope: &str, model: &str) {
        tracing::info!(model = %ids::bare(model), "upstream has no explicit caching for this model; not trying again");
        self.0.explicit.insert(Self::key(scope, model), Explicit::Learned(false));
    }

    fn spawn_discovery(&self, key: String, id: String, version: String, cred: Credential) {
        let this = self.clone();
        self.0.tracker.spawn(async move {
            let e = &this.0;
            match crate::proxy::calls::get_model(&e.upstream, &version, &id, &cred, e.timeout).await {
                Ok(v) => {
                    let explicit = supports(&v, "createCachedContent");
                    tracing::debug!(model = %id, explicit, "model capabilities learned");
                    e.explicit.insert(key, Explicit::Learned(explicit));
                }
                Err(err) if err.status() == Some(404) => {
                    // The model does not exist for this credential: nothing can be cached for it.
                    e.explicit.insert(key, Explicit::Learned(false));
                }
                Err(err) => tracing::debug!(model = %id, ?err, "models.get failed; static rule until the TTL"),
            }
        });
    }
}

impl Catalog {
    /// What a response cost (from its `usageMetadata`) at the price in force at `now_ms`, at the
    /// tier the usage says served it (`serviceTier`), else at `requested`; what it would have cost
    /// sent as it came at the standard tier; and the net saving after `overhead_usd` (the cache
    /// creation and storage the request committed). Counts a deferred tier's saving in USD.
    /// Also the price row used, for callers with more arithmetic to do on it. `None` without a
    /// model.
    pub fn costs(
        &self,
        model: &str,
        u: &accounting::Usage,
        requested: Service,
        overhead_usd: f64,
        now_ms: i64,
    ) -> Option<(Costs, Pricing, &accounting::ModelPrice)> {
        if model.is_empty() {
            return None;
        }
        let priced = self.price(model, now_ms);
        let service = u.served.unwrap_or(requested);
        let p = priced.row;
        // "As sent" is what the client would have paid sending the request itself: no cache, at
        // the standard tier. So a deferred (flex, batch) response shows its tier's saving too.
        let actual_usd = accounting::actual_usd(p, u, service);
        let as_sent_usd = accounting::as_sent_usd(p, u, Service::Standard);
        let costs = Costs { actual_usd, as_sent_usd, net_saving_usd: as_sent_usd - actual_usd - overhead_usd };
        let tier_saving = as_sent_usd - accounting::as_sent_usd(p, u, service);
        if matches!(service, Service::Flex | Service::Batch) && tier_saving > 0.0 {
            metrics::counter!(telemetry::DEFER_SAVED_MICRO_USD, "tier" => service.as_str(), "model" => self.model_label(model))
                .increment((tier_saving * 1e6).round() as u64);
        }
        self.count_price_source(model, priced.source);
        let pricing = Pricing { key: priced.key.to_string(), row: priced.row_name(), source: priced.source, service };
        Some((costs, pricing, p))
    }
}

/// Whether a model resource lists `method` in `supportedGenerationMethods`.
pub fn supports(model: &serde_json::Value, method: &str) -> bool {
    model["supportedGenerationMethods"].as_array().is_some_and(|a| a.iter().any(|m| m == method))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
