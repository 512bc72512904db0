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
mod fingerprint;
mod lifecycle;
pub(crate) mod ops;
mod policy;
pub mod registry;
pub(crate) mod rewrite;
mod rules;
mod sizing;
mod speculate;

pub use annotate::{
    Annotation, Costs, Outcome, Pricing, annotate_body, encode_event, is_final_event, parse_event, sse_events,
};
pub use cost_policy::Decision;
pub use fingerprint::{Boundary, Fingerprint, fingerprint, scope_of};
pub use ops::Credential;
pub use rules::{BoundaryState, Rules};
pub use sizing::{Sizer, parse_too_small};
pub use speculate::{Arrival, ReturnStats};

use crate::accounting::{self, Service};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::CachingConfig;
use crate::gemini::canonical;
use crate::gemini::path::ApiPath;
use crate::proxy::Upstream;
use crate::simulate::trace::{TraceBoundary, TraceRecord, TraceWriter};
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
    /// A request the gateway does not cache: sent as it came.
    pub fn bypass() -> Self {
        Plan {
            annotation: Annotation::new(Outcome::Bypass),
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

struct Engine {
    cfg: CachingConfig,
    clock: Clock,
    registry: Registry,
    sizer: Sizer,
    rules: Rules,
    catalog: Catalog,
    states: moka::sync::Cache<String, Arc<Mutex<BoundaryState>>>,
    /// Per (scope, model): how often a request's own prefix comes back (see speculate.rs).
    returns: moka::sync::Cache<String, Arc<Mutex<ReturnStats>>>,
    /// Creations under way: when each started, and where its result will appear.
    inflight: Mutex<HashMap<String, (tokio::time::Instant, watch::Receiver<CreateResult>)>>,
    renewing: Mutex<HashSet<String>>,
    /// scope → credential, in memory only, to renew and delete that tenant's caches.
    creds: moka::sync::Cache<String, Credential>,
    trace: Option<TraceWriter>,
    upstream: Upstream,
    timeout: Duration,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// Margin before expiry inside which a cache is no longer used.
const EXPIRY_MARGIN_MS: i64 = 5_000;

/// Handle to the caching engine; cheap to clone.
#[derive(Clone)]
pub struct Caching(Arc<Engine>);

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
        let trace =
            if cfg.trace_file.as_os_str().is_empty() { None } else { Some(TraceWriter::open(&cfg.trace_file)?) };
        let states = moka::sync::Cache::builder()
            .max_capacity(cfg.registry_capacity)
            .time_to_idle(Duration::from_secs(6 * 3600))
            .build();
        let creds =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(24 * 3600)).build();
        Ok(Caching(Arc::new(Engine {
            registry: Registry::new(deps.store, cfg.registry_capacity),
            sizer: Sizer::new(cfg.initial_bytes_per_token),
            rules: Rules::from_config(&cfg, deps.catalog.prices().clone()),
            catalog: deps.catalog,
            cfg,
            clock: deps.clock,
            states,
            returns: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(7 * 24 * 3600))
                .build(),
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

    /// What the first-sight rule learns for one tenant (credential scope) and model.
    fn returns(&self, scope: &str, model: &str) -> Arc<Mutex<ReturnStats>> {
        self.0.returns.get_with(format!("{scope}:{model}"), Default::default)
    }

    fn state(&self, key: &str) -> Arc<Mutex<BoundaryState>> {
        self.0.states.get_with(key.to_string(), || Arc::new(Mutex::new(BoundaryState::default())))
    }

    /// Decides how to send one generate request, creating a cache if the policy says so.
    pub async fn plan(
        &self,
        path: &ApiPath<'_>,
        headers: &http::HeaderMap,
        query: Option<&str>,
        body: &Map<String, Value>,
    ) -> Plan {
        let e = &self.0;
        if !e.cfg.enabled || path.collection != "models" || !canonical::is_empty(canonical::get(body, "cachedContent"))
        {
            return self.count(Plan::bypass());
        }
        let (Some(scope), Some(model)) = (scope_of(headers, query), path.model_name()) else {
            return self.count(Plan::bypass());
        };
        let fp = fingerprint(&scope, &model, body);
        let now = e.clock.now_ms();
        let mut plan =
            Plan { model: model.clone(), total_bytes: fp.total_bytes, scope: scope.clone(), ..Plan::bypass() };
        if fp.boundaries.is_empty() {
            return self.count(plan);
        }
        plan.annotation.outcome = Outcome::Miss;
        plan.boundaries = fp.boundaries.iter().map(|b| (b.key.clone(), b.bytes)).collect();
        let cred = Credential::from_request(headers, query);
        if let Some(c) = &cred {
            e.creds.insert(scope.clone(), c.clone());
        }

        // The tenant's first-sight statistics, shared by steps 1 and 2.
        let returns = self.returns(&scope, &model);

        // 1. The longest boundary with a live cache; the policy sees this use.
        let mut hit: Option<(usize, Arc<registry::Hot>, Decision)> = None;
        for (i, b) in fp.boundaries.iter().enumerate().rev() {
            let Some(entry) = e.registry.get(&b.key) else { continue };
            if entry.expire_ms <= now + EXPIRY_MARGIN_MS {
                e.registry.remove(&b.key).await;
                continue;
            }
            let st = self.state(&b.key);
            let mut st = st.lock().expect("poisoned");
            st.sync(Some(&entry), now);
            plan.shared_tokens = entry.tokens;
            let d = e.rules.on_request(
                &model,
                &mut returns.lock().expect("poisoned"),
                &mut st,
                Arrival::new(now, entry.tokens, 0),
            );
            hit = Some((i, entry, d));
            break;
        }

        // 2. Every longer eligible boundary is observed; the longest that should be a cache wins.
        // Models without explicit caching (known from the catalog) have no eligible boundary.
        let min = if e.catalog.explicit_caching(&scope, &model, path.version, cred.as_ref()) {
            e.catalog.min_tokens(&model) as f64 * e.cfg.size_margin
        } else {
            f64::INFINITY
        };
        let covered = hit.as_ref().map_or(0, |(_, entry, _)| entry.tokens);
        let start = hit.as_ref().map_or(0, |(i, _, _)| i + 1);
        let mut chosen: Option<(&Boundary, i64, u64)> = None;
        let eligible: Vec<(&Boundary, u64)> = fp.boundaries[start..]
            .iter()
            .map(|b| (b, e.sizer.estimate_tokens(&model, b.bytes)))
            .filter(|(_, tokens)| *tokens as f64 >= min)
            .collect();
        for (j, (b, tokens)) in eligible.iter().enumerate() {
            let st = self.state(&b.key);
            let mut st = st.lock().expect("poisoned");
            st.sync(None, now);
            if st.stats.arrivals > 0 {
                plan.shared_tokens = *tokens;
            }
            // The request's own prefix may be cached at first sight (speculate.rs).
            let a = Arrival { own_prefix: j + 1 == eligible.len(), ..Arrival::new(now, *tokens, covered) };
            let d = e.rules.on_request(&model, &mut returns.lock().expect("poisoned"), &mut st, a);
            if let Decision::Create { ttl_ms } = d {
                chosen = Some((b, ttl_ms, *tokens));
            }
        }

        // 3. Create (single flight, bounded wait), else use what exists.
        if let (Some((b, ttl_ms, _)), Some(cred)) = (chosen, cred.clone()) {
            let found = e
                .registry
                .get_or_load(&b.key)
                .await
                .filter(|x| x.expire_ms > now + EXPIRY_MARGIN_MS)
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
            plan.annotation.outcome = outcome;
        }
        if let Some((_, entry, decision)) = hit {
            self.use_entry(&mut plan, body, &entry, Outcome::Hit, now);
            if let (Decision::Renew { ttl_ms }, Some(cred)) = (decision, cred.as_ref()) {
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

    /// Forgets a cache the upstream rejected (deleted or expired behind the gateway's back).
    pub async fn invalidate(&self, key: &str) {
        self.0.registry.remove(key).await;
        if let Some(st) = self.0.states.get(key) {
            st.lock().expect("poisoned").stats.on_gone(self.0.clock.now_ms());
        }
    }

    /// Learns from a response's usageMetadata: the bytes/token ratio, implicit caching by the
    /// upstream, tokens served from gateway caches; and records the trace line when enabled.
    pub fn learn(&self, plan: &Plan, usage: &Value) {
        let e = &self.0;
        let prompt = usage.get("promptTokenCount").and_then(Value::as_u64).unwrap_or(0);
        let cached = usage.get("cachedContentTokenCount").and_then(Value::as_u64).unwrap_or(0);
        if prompt > 0 {
            e.sizer.observe(&plan.model, plan.total_bytes, prompt);
        }
        if plan.key.is_some() {
            metrics::counter!(telemetry::CACHE_TOKENS_SERVED).increment(cached);
        } else if plan.annotation.outcome != Outcome::Bypass {
            if plan.shared_tokens > 0 {
                self.returns(&plan.scope, &plan.model)
                    .lock()
                    .expect("poisoned")
                    .note_implicit(plan.shared_tokens, cached);
            }
            for (key, _) in &plan.boundaries {
                if let Some(st) = e.states.get(key) {
                    st.lock().expect("poisoned").last_implicit = cached;
                }
            }
        }
        if let Some(w) = &e.trace {
            if plan.annotation.outcome != Outcome::Bypass {
                let output = usage.get("candidatesTokenCount").and_then(Value::as_u64).unwrap_or(0)
                    + usage.get("thoughtsTokenCount").and_then(Value::as_u64).unwrap_or(0);
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
                if let Err(err) = w.append(&rec) {
                    tracing::warn!(%err, "trace record not written");
                }
            }
        }
    }

    /// What a response cost, what it would have cost as it came, and the net saving after the
    /// cache creation and storage this request committed (USD, from the upstream's own usage),
    /// priced at the tier `requested` unless the usage names the tier that served it.
    pub fn account(&self, plan: &Plan, usage: &Value, requested: Service) -> Option<(Costs, Pricing)> {
        let (costs, pricing) =
            self.0.catalog.costs(&plan.model, usage, requested, plan.overhead_usd, self.0.clock.now_ms())?;
        // The cache's own saving: the tier's discount (as-sent is priced at standard) is not it.
        let u = crate::accounting::Usage::from_usage_metadata(usage);
        let row = self.0.catalog.price(&plan.model, self.0.clock.now_ms()).row;
        let gross = crate::accounting::as_sent_usd(row, &u, pricing.service) - costs.actual_usd;
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

/// True when an upstream error says the referenced cache is gone or unusable.
pub fn is_cache_rejection(status: u16, body: &[u8]) -> bool {
    if status != 403 && status != 400 && status != 404 {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("cachedcontent") || text.contains("cached content") || text.contains("cached_content")
}
