//! Automatic explicit context caching: notice long shared prefixes, put them into a Gemini
//! explicit cache when the policy says it pays, and rewrite later requests to reference it. Fails
//! open everywhere.
//!
//! Public surface: [`Caching::plan`] before a generate call, [`Caching::learn`] and
//! [`Caching::account`] with the response's usage, [`Caching::invalidate`] when the upstream
//! rejects a cache, and the background sweeper started by [`Caching::start`].

mod annotate;
pub mod cost_policy;
mod create;
pub mod engine;
mod fingerprint;
mod lifecycle;
mod policy;
mod reason;
pub mod registry;
mod rules;
mod shape;
mod sizing;
mod speculate;
pub mod trace;

pub use crate::gemini::Credential;
pub(crate) use crate::proxy::calls as ops;
pub use annotate::{Annotation, Costs, Outcome, Pricing, annotate_body};
pub use cost_policy::Decision;
pub use engine::{CacheView, Engine, Intent, PrefixView, Request, Sweep};
pub use fingerprint::{Boundary, Fingerprint, fingerprint, scope_of};
pub use reason::Reason;
pub use rules::{BoundaryState, Rules};
pub use sizing::Sizer;
pub use speculate::{Arrival, ReturnStats};

use crate::accounting::{self, Service, Usage};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::CachingConfig;
use crate::gemini::cached_content as rewrite;
use crate::gemini::canonical;
use crate::gemini::path::ApiPath;
use crate::proxy::Upstream;
use crate::store::{CacheEntry, Store};
use crate::telemetry;
use registry::Registry;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use trace::{TraceBoundary, TraceRecord, TraceSink, TraceWriter};

/// What to do with one generate request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub annotation: Annotation,
    /// The rewritten body, when a cache is used.
    pub rewritten: Option<Vec<u8>>,
    /// Registry key of the cache used.
    pub key: Option<String>,
    pub model: String,
    /// Canonical bytes of the whole prompt (for learning the bytes/token ratio).
    pub total_bytes: u64,
    /// The request's boundaries, shortest first: key and canonical bytes.
    pub boundaries: Vec<(String, u64)>,
    /// Cache creation and storage this request committed (USD): the creation and its TTL for
    /// the request that made a cache, the extension for one that renewed it, else 0.
    pub overhead_usd: f64,
    /// Credential scope (hash), for the trace.
    pub scope: String,
    /// Estimated tokens of the longest eligible boundary seen before this request: what the
    /// upstream's implicit caching could serve (learned from the response, see speculate.rs).
    pub shared_tokens: u64,
}

impl Plan {
    /// The plan for a generate call: `caching`'s when it is on and the body is a JSON object,
    /// else the call sent as it came. Priced as the path's model either way.
    pub async fn for_call(
        caching: Option<&Caching>,
        path: &ApiPath<'_>,
        scope: Option<&str>,
        cred: Option<&Credential>,
        body: &Value,
    ) -> Plan {
        let mut plan = match (caching, body.as_object()) {
            (Some(c), Some(obj)) => c.plan(path, scope, cred, obj).await,
            _ => Plan::bypass(),
        };
        if plan.model.is_empty() {
            plan.model = path.model_name().unwrap_or_default();
        }
        plan
    }

    /// The plan for a generate call settled without building its body (`raw`), which is checked
    /// to be JSON on the way (`Err` when it is not): caching is off, the path is not a model
    /// call, or the body has no prefix to cache ([`Caching::unread`]). `Ok(None)`: the body must
    /// be parsed and planned by [`Plan::for_call`].
    pub fn unread(
        caching: Option<&Caching>,
        path: &ApiPath<'_>,
        scope: Option<&str>,
        raw: &[u8],
    ) -> Result<Option<Plan>, serde_json::Error> {
        let plan = match caching {
            Some(c) => c.unread(path, scope, raw)?,
            None => {
                serde_json::from_slice::<serde::de::IgnoredAny>(raw)?;
                Some(Plan::bypass())
            }
        };
        Ok(plan.map(|mut plan| {
            plan.model = path.model_name().unwrap_or_default();
            plan
        }))
    }

    /// The plan with the cache-rewritten body (when there is one) asking for `tier` too.
    pub fn with_service_tier(self, tier: &str) -> Plan {
        let rewritten = self.rewritten.map(|r| canonical::with_service_tier(&r, tier).unwrap_or(r));
        Plan { rewritten, ..self }
    }

    /// The plan with the tier that served the request and its discount, for the annotation.
    pub fn served_at(mut self, tier: Option<(&'static str, f64)>) -> Plan {
        self.annotation.tier = tier;
        self
    }

    /// A request the gateway does not cache: sent as it came (the reason says caching is off;
    /// the planner says why otherwise).
    pub fn bypass() -> Self {
        Plan {
            annotation: Annotation::new(Outcome::Bypass).because(Reason::CachingOff),
            rewritten: None,
            key: None,
            model: String::new(),
            total_bytes: 0,
            boundaries: Vec::new(),
            overhead_usd: 0.0,
            scope: String::new(),
            shared_tokens: 0,
        }
    }
}

/// Result of a creation job: the entry (if any) and whether this process made it.
type CreateResult = Option<(Option<CacheEntry>, bool)>;

/// The live side: the pure [`Engine`] plus everything that acts on its intents.
struct Inner {
    cfg: CachingConfig,
    clock: Clock,
    registry: Registry,
    sizer: Sizer,
    engine: Engine,
    catalog: Catalog,
    /// Creations under way: when each started, and where its result will appear.
    inflight: Mutex<HashMap<String, (tokio::time::Instant, watch::Receiver<CreateResult>)>>,
    renewing: Mutex<HashSet<String>>,
    /// scope → credential, in memory only, to renew and delete that tenant's caches.
    creds: moka::sync::Cache<String, Credential>,
    trace: Option<Box<dyn TraceSink>>,
    upstream: Upstream,
    timeout: Duration,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// Handle to the live caching engine; cheap to clone.
#[derive(Clone)]
pub struct Caching(Arc<Inner>);

/// The handles the engine needs from the gateway.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub upstream: Upstream,
    pub upstream_timeout: Duration,
    pub clock: Clock,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
    /// Prices, minimum sizes and which models can have explicit caches.
    pub catalog: Catalog,
}

impl Caching {
    pub fn new(cfg: CachingConfig, deps: Deps) -> anyhow::Result<Self> {
        let trace: Option<Box<dyn TraceSink>> = match cfg.trace_file.as_os_str().is_empty() {
            true => None,
            false => Some(Box::new(TraceWriter::open(&cfg.trace_file)?)),
        };
        let creds =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(24 * 3600)).build();
        Ok(Caching(Arc::new(Inner {
            registry: Registry::new(deps.store, cfg.registry_capacity),
            sizer: Sizer::new(cfg.initial_bytes_per_token),
            engine: Engine::new(&cfg, deps.catalog.prices().clone()),
            catalog: deps.catalog,
            cfg,
            clock: deps.clock,
            inflight: Mutex::default(),
            renewing: Mutex::default(),
            creds,
            trace,
            upstream: deps.upstream,
            timeout: deps.upstream_timeout,
            tracker: deps.tracker,
            cancel: deps.cancel,
        })))
    }

    pub fn config(&self) -> &CachingConfig {
        &self.0.cfg
    }

    /// Loads still-valid caches from the store and starts the sweeper.
    pub async fn start(&self) {
        let kept = self.0.registry.warm(self.0.clock.now_ms()).await;
        tracing::info!(caches = kept, "cache registry warmed from the store");
        lifecycle::spawn_sweeper(self.clone());
    }

    /// The registry, for the admin listing.
    pub fn entries(&self) -> Vec<CacheEntry> {
        self.0.registry.entries()
    }

    /// The reason for the policy's current decision on a registry key (admin listing).
    pub fn reason(&self, key: &str) -> Option<Reason> {
        self.0.engine.reason(key)
    }

    /// Up to `limit` prefixes the policy tracks, most recently seen first (admin listing).
    pub fn prefixes(&self, limit: usize) -> Vec<PrefixView> {
        self.0.engine.prefixes(limit)
    }

    /// [`Plan::unread`] with caching on: the answer [`Caching::plan`] gives, for the requests
    /// it can be told from the path and the body's [`Shape`](shape::Shape) alone: caching off, a
    /// call outside `models/`, no credential, or no boundary to cache (one turn and no system
    /// instruction or tools: most traffic). These leave no policy state, as in the planner, and
    /// teach the sizer nothing (it learns from the requests it fingerprints).
    pub fn unread(
        &self,
        path: &ApiPath<'_>,
        scope: Option<&str>,
        raw: &[u8],
    ) -> Result<Option<Plan>, serde_json::Error> {
        let settled = |reason| {
            let mut plan = Plan::bypass();
            plan.annotation.reason = Some(reason);
            Some(self.count(plan))
        };
        let e = &self.0;
        if !e.cfg.enabled || path.collection != "models" {
            serde_json::from_slice::<serde::de::IgnoredAny>(raw)?;
            return Ok(settled(if e.cfg.enabled { Reason::NotEligible } else { Reason::CachingOff }));
        }
        let Some(shape) = shape::Shape::scan(raw)? else { return Ok(None) };
        if shape.cached_content {
            return Ok(None);
        }
        if scope.is_none() || !shape.has_boundaries() || path.id.is_none() {
            return Ok(settled(Reason::NotEligible));
        }
        Ok(None)
    }

    /// Decides how to send one generate request (the engine decides; this acts on its intent:
    /// registry look-ups, creation, renewal).
    pub async fn plan(
        &self,
        path: &ApiPath<'_>,
        scope: Option<&str>,
        cred: Option<&Credential>,
        body: &Map<String, Value>,
    ) -> Plan {
        let e = &self.0;
        let bypass = |reason| {
            let mut plan = Plan::bypass();
            plan.annotation.reason = Some(reason);
            self.count(plan)
        };
        if !e.cfg.enabled {
            return bypass(Reason::CachingOff);
        }
        if path.collection != "models" {
            return bypass(Reason::NotEligible);
        }
        if !canonical::is_empty(canonical::get(body, "cachedContent")) {
            return bypass(Reason::ClientCache);
        }
        let (Some(scope), Some(model)) = (scope.map(str::to_string), path.model_name()) else {
            return bypass(Reason::NotEligible);
        };
        let fp = fingerprint(&scope, &model, body);
        let now = e.clock.now_ms();
        let mut plan =
            Plan { model: model.clone(), total_bytes: fp.total_bytes, scope: scope.clone(), ..Plan::bypass() };
        plan.annotation.reason = Some(Reason::NotEligible);
        if fp.boundaries.is_empty() {
            return self.count(plan);
        }
        plan.annotation.outcome = Outcome::Miss;
        plan.boundaries = fp.boundaries.iter().map(|b| (b.key.clone(), b.bytes)).collect();
        let cred = cred.cloned();
        if let Some(c) = &cred {
            e.creds.insert(scope.clone(), c.clone());
        }

        // The engine decides on estimated token counts and the registry's view.
        let estimated: Vec<(String, u64)> =
            fp.boundaries.iter().map(|b| (b.key.clone(), e.sizer.estimate_tokens(&model, b.bytes))).collect();
        let explicit = e.catalog.explicit_caching(&scope, &model, path.version, cred.as_ref());
        let req = Request {
            scope: &scope,
            model: &model,
            now_ms: now,
            boundaries: &estimated,
            min_tokens: explicit.then(|| u64::from(e.catalog.min_tokens(&model))),
        };
        let hots: Vec<Option<Arc<registry::Hot>>> = fp.boundaries.iter().map(|b| e.registry.get(&b.key)).collect();
        let intent = e.engine.decide(&req, |key| {
            let i = fp.boundaries.iter().position(|b| b.key == key)?;
            hots[i].as_ref().map(|h| CacheView::from(&h.snapshot()))
        });
        plan.shared_tokens = intent.shared_tokens;
        plan.annotation.reason = Some(intent.reason);
        for &i in &intent.forget {
            e.registry.remove(&fp.boundaries[i].key).await;
        }

        // Create (single flight, bounded wait), else use what exists.
        if let (Some((i, ttl_ms)), Some(cred)) = (intent.create, cred.clone()) {
            let b = &fp.boundaries[i];
            let found = e
                .registry
                .get_or_load(&b.key)
                .await
                .filter(|x| e.engine.usable(x.expire_ms, now))
                .map(|h| h.snapshot());
            let (outcome, entry) = match found {
                Some(entry) => (Outcome::Hit, Some(entry)),
                None => self.get_or_create(b, ttl_ms, &scope, &model, path.version, body, cred).await,
            };
            if let Some(entry) = entry {
                if outcome == Outcome::Created {
                    plan.overhead_usd = self.creation_overhead(&model, entry.tokens, entry.expire_ms - now);
                }
                self.use_entry(&mut plan, body, &entry, outcome, now);
                return self.count(plan);
            }
            plan.annotation = Annotation::new(outcome);
            if outcome == Outcome::Miss {
                plan.annotation.reason = Some(Reason::Creating);
            }
        } else if intent.create.is_some() {
            // The policy wants a cache, but there is no credential to make it with.
            plan.annotation.reason = Some(Reason::NotEligible);
        }
        if let Some(i) = intent.hit {
            let entry = hots[i].as_ref().expect("the engine used a cache the registry has").snapshot();
            self.use_entry(&mut plan, body, &entry, Outcome::Hit, now);
            if let (Some(ttl_ms), Some(cred)) = (intent.renew_ttl_ms, cred.as_ref()) {
                let extension = (now + ttl_ms - entry.expire_ms).max(0);
                plan.overhead_usd = self.storage_usd(&model, entry.tokens, extension);
                lifecycle::renew(self, &entry, ttl_ms, cred);
            }
        }
        self.count(plan)
    }

    fn count(&self, plan: Plan) -> Plan {
        metrics::counter!(telemetry::CACHE_DECISIONS, "outcome" => plan.annotation.outcome.as_str()).increment(1);
        plan
    }

    fn use_entry(&self, plan: &mut Plan, body: &Map<String, Value>, entry: &CacheEntry, outcome: Outcome, now: i64) {
        plan.annotation = Annotation {
            cache_name: Some(entry.name.clone()),
            prefix_tokens: entry.tokens,
            ..Annotation::new(outcome)
        };
        plan.rewritten = Some(rewrite::rewritten(body, entry.contents, &entry.name));
        plan.key = Some(entry.key.clone());
        if let Some(hot) = self.0.registry.get(&entry.key) {
            self.0.registry.touch(&hot, now);
        }
        metrics::counter!(telemetry::CACHE_HITS).increment(1);
    }

    fn creation_overhead(&self, model: &str, tokens: u64, ttl_ms: i64) -> f64 {
        let price = self.0.catalog.price(model, self.0.clock.now_ms()).row;
        let creation = accounting::creation_usd(price, self.0.catalog.prices().cache_creation, tokens);
        let storage = accounting::storage_usd(price, tokens, ttl_ms);
        let id = model.to_string();
        metrics::counter!(telemetry::CACHE_CREATION_MICRO_USD, "model" => id.clone())
            .increment((creation * 1e6) as u64);
        metrics::counter!(telemetry::CACHE_STORAGE_MICRO_USD, "model" => id).increment((storage * 1e6) as u64);
        creation + storage
    }

    fn storage_usd(&self, model: &str, tokens: u64, ms: i64) -> f64 {
        let price = self.0.catalog.price(model, self.0.clock.now_ms()).row;
        let storage = accounting::storage_usd(price, tokens, ms);
        metrics::counter!(telemetry::CACHE_STORAGE_MICRO_USD, "model" => model.to_string())
            .increment((storage * 1e6) as u64);
        storage
    }

    /// The plan after the upstream rejected the cache it used (deleted or expired behind the
    /// gateway's back): the cache is forgotten and the original request goes as it came.
    pub async fn rejected(&self, plan: Plan) -> Plan {
        if let Some(key) = &plan.key {
            self.invalidate(key).await;
        }
        Plan { annotation: Annotation::new(Outcome::Error), key: None, overhead_usd: 0.0, ..plan }
    }

    /// Forgets a cache the upstream rejected (deleted or expired behind the gateway's back).
    pub async fn invalidate(&self, key: &str) {
        self.0.registry.remove(key).await;
        self.0.engine.gone(key, self.0.clock.now_ms());
    }

    /// Learns from a response's usageMetadata: the bytes/token ratio, implicit caching by the
    /// upstream, tokens served from gateway caches; and records the trace line when enabled.
    pub fn learn(&self, plan: &Plan, counts: &Usage) {
        let e = &self.0;
        let (prompt, cached) = (counts.prompt_tokens, counts.cached_tokens);
        if prompt > 0 {
            e.sizer.observe(&plan.model, plan.total_bytes, prompt);
        }
        if plan.key.is_some() {
            metrics::counter!(telemetry::CACHE_TOKENS_SERVED).increment(cached);
        } else if plan.annotation.outcome != Outcome::Bypass {
            let keys = plan.boundaries.iter().map(|(k, _)| k.as_str());
            e.engine.responded(&plan.scope, &plan.model, keys, plan.shared_tokens, cached);
        }
        if let Some(w) = &e.trace {
            if plan.annotation.outcome != Outcome::Bypass {
                let output = counts.output_tokens + counts.thoughts_tokens;
                let rec = TraceRecord {
                    timestamp: e.clock.now_ms(),
                    model: plan.model.trim_start_matches("models/").to_string(),
                    scope: plan.scope[..16.min(plan.scope.len())].to_string(),
                    boundaries: plan
                        .boundaries
                        .iter()
                        // This response's own ratio gives each boundary's share of its prompt.
                        .map(|(k, bytes)| TraceBoundary {
                            hash: k[..32.min(k.len())].to_string(),
                            tokens: (prompt as f64 * *bytes as f64 / plan.total_bytes.max(1) as f64).round() as u64,
                        })
                        .collect(),
                    prompt_tokens: prompt,
                    output_tokens: output,
                    implicit_cached_tokens: if plan.key.is_none() { cached } else { 0 },
                };
                if let Err(err) = w.record(&rec) {
                    tracing::warn!(%err, "trace record not written");
                }
            }
        }
    }

    /// What a response cost, what it would have cost as it came, and the net saving after the
    /// cache creation and storage this request committed (USD, from the upstream's own usage),
    /// priced at the tier `requested` unless the usage names the tier that served it.
    pub fn account(&self, plan: &Plan, u: &Usage, requested: Service) -> Option<(Costs, Pricing)> {
        let (costs, pricing, row) =
            self.0.catalog.costs(&plan.model, u, requested, plan.overhead_usd, self.0.clock.now_ms())?;
        // The cache's own saving: the tier's discount (as-sent is priced at standard) is not it.
        let gross = crate::accounting::as_sent_usd(row, u, pricing.service) - costs.actual_usd;
        if plan.key.is_some() && gross > 0.0 {
            metrics::counter!(telemetry::CACHE_SAVED_MICRO_USD, "model" => pricing.key.clone())
                .increment((gross * 1e6) as u64);
        }
        Some((costs, pricing))
    }

    /// The catalog the engine decides with.
    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }
}
