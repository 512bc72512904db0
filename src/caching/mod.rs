//! Automatic explicit context caching: notice long shared prefixes, put them into a Gemini
//! explicit cache once, and rewrite later requests to reference it. Fails open everywhere.
//!
//! Public surface: [`Caching::plan`] before a generate call, [`Caching::learn`] with the
//! response's usage, [`Caching::invalidate`] when the upstream rejects a cache, and the sweeper.

mod annotate;
mod fingerprint;
mod lifecycle;
mod ops;
mod policy;
pub mod registry;
mod rewrite;
mod sizing;

pub use annotate::{
    Annotation, Outcome, annotate_body, encode_event, is_final_event, parse_event, sse_events,
};
pub use fingerprint::{Boundary, Fingerprint, fingerprint, scope_of};
pub use ops::Credential;
pub use policy::{Decision, Observed, Rule, decide};
pub use sizing::{Sizer, parse_too_small};

use crate::clock::Clock;
use crate::config::CachingConfig;
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
}

impl Plan {
    fn bypass() -> Self {
        Plan {
            annotation: Annotation {
                outcome: Outcome::Bypass,
                cache_name: None,
                prefix_tokens: 0,
            },
            rewritten: None,
            key: None,
            model: String::new(),
            total_bytes: 0,
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
    observed: moka::sync::Cache<String, Arc<Mutex<Observed>>>,
    inflight: Mutex<HashMap<String, watch::Receiver<CreateResult>>>,
    renewing: Mutex<HashSet<String>>,
    /// scope → credential, in memory only, to renew and delete that tenant's caches.
    creds: moka::sync::Cache<String, Credential>,
    upstream: Upstream,
    timeout: Duration,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// How long a replica may hold the right to create one cache before another may try.
const LEASE_TTL: Duration = Duration::from_secs(60);

/// Handle to the caching engine; cheap to clone.
#[derive(Clone)]
pub struct Caching(Arc<Engine>);

impl Caching {
    pub fn new(
        cfg: CachingConfig,
        store: Arc<dyn Store>,
        upstream: Upstream,
        upstream_timeout: Duration,
        clock: Clock,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let observed = moka::sync::Cache::builder()
            .max_capacity(cfg.registry_capacity)
            .time_to_idle(cfg.window.max(Duration::from_secs(1)) * 2)
            .build();
        let creds = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(24 * 3600))
            .build();
        Caching(Arc::new(Engine {
            registry: Registry::new(store, cfg.registry_capacity),
            sizer: Sizer::new(cfg.min_tokens.clone(), cfg.initial_bytes_per_token),
            cfg,
            clock,
            observed,
            inflight: Mutex::default(),
            renewing: Mutex::default(),
            creds,
            upstream,
            timeout: upstream_timeout,
            tracker,
            cancel,
        }))
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

    fn rule(&self) -> Rule {
        Rule {
            min_hits: self.0.cfg.min_hits,
            window_ms: self.0.cfg.window.as_millis() as i64,
        }
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
        if !e.cfg.enabled
            || path.collection != "models"
            || !canonical::is_empty(canonical::get(body, "cachedContent"))
        {
            return self.count(Plan::bypass());
        }
        let (Some(scope), Some(model)) = (scope_of(headers, query), path.model_name()) else {
            return self.count(Plan::bypass());
        };
        let fp = fingerprint(&scope, &model, body);
        let mut plan = Plan {
            model: model.clone(),
            total_bytes: fp.total_bytes,
            ..Plan::bypass()
        };
        if fp.boundaries.is_empty() {
            return self.count(plan);
        }
        plan.annotation.outcome = Outcome::Miss;
        let now = e.clock.now_ms();
        let cred = Credential::from_request(headers, query);
        if let Some(c) = &cred {
            e.creds.insert(scope.clone(), c.clone());
        }

        // 1. An existing cache, longest boundary first.
        for b in fp.boundaries.iter().rev() {
            if let Some(entry) = e.registry.get(&b.key) {
                if entry.expire_ms > now + 5_000 {
                    self.use_entry(&mut plan, body, &entry, Outcome::Hit, now, cred.as_ref());
                    return self.count(plan);
                }
                e.registry.remove(&b.key).await;
            }
        }

        // 2. Observe every boundary; create for the longest eligible one the policy picks.
        let rule = self.rule();
        let min = e.sizer.min_tokens(&model) as f64 * e.cfg.size_margin;
        let mut chosen: Option<&Boundary> = None;
        for b in fp.boundaries.iter().rev() {
            let obs = e
                .observed
                .get_with(b.key.clone(), || Arc::new(Mutex::new(Observed::default())));
            let mut o = obs.lock().expect("poisoned");
            o.record(now, &rule);
            let eligible = e.sizer.estimate_tokens(&model, b.bytes) as f64 >= min;
            if chosen.is_none() && eligible && decide(&o, now, &rule) == Decision::Create {
                chosen = Some(b);
            }
        }
        let (Some(b), Some(cred)) = (chosen, cred) else {
            return self.count(plan);
        };
        // Made by another process (or before a restart the warm-up missed)?
        if let Some(entry) = e
            .registry
            .get_or_load(&b.key)
            .await
            .filter(|x| x.expire_ms > now + 5_000)
        {
            self.use_entry(&mut plan, body, &entry, Outcome::Hit, now, Some(&cred));
            return self.count(plan);
        }
        let (outcome, entry) = self
            .get_or_create(b, &scope, &model, path.version, body, cred.clone())
            .await;
        plan.annotation.outcome = outcome;
        if let Some(entry) = entry {
            self.use_entry(&mut plan, body, &entry, outcome, now, Some(&cred));
        }
        self.count(plan)
    }

    fn count(&self, plan: Plan) -> Plan {
        metrics::counter!(telemetry::CACHE_DECISIONS, "outcome" => plan.annotation.outcome.as_str()).increment(1);
        plan
    }

    fn use_entry(
        &self,
        plan: &mut Plan,
        body: &Map<String, Value>,
        entry: &CacheEntry,
        outcome: Outcome,
        now: i64,
        cred: Option<&Credential>,
    ) {
        plan.annotation = Annotation {
            outcome,
            cache_name: Some(entry.name.clone()),
            prefix_tokens: entry.tokens,
        };
        plan.rewritten = Some(rewrite::rewritten(body, entry.contents, &entry.name));
        plan.key = Some(entry.key.clone());
        self.0.registry.touch(&entry.key, now);
        metrics::counter!(telemetry::CACHE_HITS).increment(1);
        if let Some(cred) = cred {
            lifecycle::maybe_renew(self, entry, now, cred);
        }
    }

    /// Single flight: the first request for a key starts the creation (which runs to its end in
    /// the background); every request waits for it at most `create_wait`.
    async fn get_or_create(
        &self,
        b: &Boundary,
        scope: &str,
        model: &str,
        version: &str,
        body: &Map<String, Value>,
        cred: Credential,
    ) -> (Outcome, Option<CacheEntry>) {
        let e = &self.0;
        let (mut rx, leader) = {
            let mut inflight = e.inflight.lock().expect("poisoned");
            match inflight.get(&b.key) {
                Some(rx) => (rx.clone(), false),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(b.key.clone(), rx.clone());
                    let display = format!("gemgate:{}", &b.key[..16]);
                    let cache_body =
                        rewrite::cache_body(body, model, b.contents, e.cfg.ttl.as_secs(), &display);
                    let job = CreateJob {
                        key: b.key.clone(),
                        contents: b.contents,
                        scope: scope.to_string(),
                        model: model.to_string(),
                        version: version.to_string(),
                        body: cache_body,
                        cred,
                    };
                    let this = self.clone();
                    e.tracker.spawn(async move {
                        let result = this.create(job.clone()).await;
                        let _ = tx.send(Some(result));
                        this.0.inflight.lock().expect("poisoned").remove(&job.key);
                    });
                    (rx, true)
                }
            }
        };
        let wait = e.cfg.create_wait;
        let done = tokio::time::timeout(wait, rx.wait_for(|r| r.is_some())).await;
        match done {
            Ok(Ok(r)) => match r.clone() {
                Some((Some(entry), made_here)) if leader && made_here => {
                    (Outcome::Created, Some(entry))
                }
                Some((Some(entry), _)) => (Outcome::Hit, Some(entry)),
                Some((None, _)) if leader => (Outcome::Error, None),
                _ => (Outcome::Miss, None),
            },
            _ => (Outcome::Miss, None),
        }
    }

    /// Creates the cache for `job`, under a cross-process lease when the store is shared.
    async fn create(&self, job: CreateJob) -> (Option<CacheEntry>, bool) {
        let e = &self.0;
        let store = e.registry.store().clone();
        let token = match store.acquire_lease(&job.key, LEASE_TTL).await {
            Ok(Some(t)) => t,
            // Another replica is creating it: wait for its entry (bounded), never duplicate.
            Ok(None) => return (self.await_other(&job.key).await, false),
            Err(err) => {
                tracing::warn!(%err, "store unavailable; not creating (fail open)");
                return (None, false);
            }
        };
        let now = e.clock.now_ms();
        let result = match e
            .registry
            .get_or_load(&job.key)
            .await
            .filter(|x| x.expire_ms > now + 5_000)
        {
            Some(existing) => (Some(existing), false),
            None => self.create_upstream(&job, token).await,
        };
        if let Err(err) = store.release_lease(&job.key, token).await {
            tracing::debug!(%err, "lease release failed; it will lapse");
        }
        result
    }

    /// Polls the store for an entry another replica is creating, for at most `create_wait`.
    async fn await_other(&self, key: &str) -> Option<CacheEntry> {
        let deadline = tokio::time::Instant::now() + self.0.cfg.create_wait;
        loop {
            if let Some(entry) = self.0.registry.get_or_load(key).await {
                return Some(entry);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create_upstream(&self, job: &CreateJob, token: u64) -> (Option<CacheEntry>, bool) {
        let e = &self.0;
        let result = ops::create(&e.upstream, &job.version, &job.cred, &job.body, e.timeout).await;
        let now = e.clock.now_ms();
        match result {
            Ok(c) => {
                metrics::counter!(telemetry::CACHE_CREATIONS, "result" => "ok").increment(1);
                tracing::info!(model = %job.model, tokens = c.tokens, contents = job.contents, "cache created");
                let entry = CacheEntry {
                    key: job.key.clone(),
                    name: c.name,
                    model: job.model.clone(),
                    scope: job.scope.clone(),
                    tokens: c.tokens,
                    contents: job.contents,
                    created_ms: now,
                    expire_ms: if c.expire_ms > 0 {
                        c.expire_ms
                    } else {
                        now + e.cfg.ttl.as_millis() as i64
                    },
                    last_used_ms: now,
                    hits: 0,
                };
                if e.registry.insert_fenced(entry.clone(), token).await {
                    return (Some(entry), true);
                }
                // A newer holder won (our lease lapsed while the upstream was slow): drop ours.
                tracing::warn!("cache creation fenced off by a newer one; deleting the duplicate");
                if ops::delete(&e.upstream, &entry.name, &job.cred, e.timeout)
                    .await
                    .is_ok()
                {
                    metrics::counter!(telemetry::CACHE_DELETIONS, "reason" => "fenced")
                        .increment(1);
                }
                (e.registry.get_or_load(&job.key).await, false)
            }
            Err(err) => {
                let kind = match &err {
                    ops::OpError::TooSmall { min, total } => {
                        tracing::info!(model = %job.model, total, min, "upstream minimum learned");
                        e.sizer.learn_min(&job.model, *min);
                        "too_small"
                    }
                    ops::OpError::Status(s, m) => {
                        tracing::warn!(status = s, message = %m, "cache creation failed");
                        "upstream_error"
                    }
                    ops::OpError::Transport(m) => {
                        tracing::warn!(error = %m, "cache creation failed");
                        "transport"
                    }
                };
                metrics::counter!(telemetry::CACHE_CREATIONS, "result" => kind).increment(1);
                if let Some(obs) = e.observed.get(&job.key) {
                    obs.lock().expect("poisoned").cooldown_until =
                        now + e.cfg.cooldown.as_millis() as i64;
                }
                (None, false)
            }
        }
    }

    /// Forgets a cache the upstream rejected (deleted or expired behind the gateway's back).
    pub async fn invalidate(&self, key: &str) {
        self.0.registry.remove(key).await;
    }

    /// Learns from a response's usageMetadata: the bytes/token ratio, and tokens served.
    pub fn learn(&self, plan: &Plan, usage: &Value) {
        if let Some(prompt) = usage.get("promptTokenCount").and_then(Value::as_u64) {
            self.0.sizer.observe(&plan.model, plan.total_bytes, prompt);
        }
        if plan.key.is_some() {
            let cached = usage
                .get("cachedContentTokenCount")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            metrics::counter!(telemetry::CACHE_TOKENS_SERVED).increment(cached);
        }
    }
}

#[derive(Clone)]
struct CreateJob {
    key: String,
    contents: usize,
    scope: String,
    model: String,
    version: String,
    body: Value,
    cred: Credential,
}

/// True when an upstream error says the referenced cache is gone or unusable.
pub fn is_cache_rejection(status: u16, body: &[u8]) -> bool {
    if status != 403 && status != 400 && status != 404 {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("cachedcontent")
        || text.contains("cached content")
        || text.contains("cached_content")
}
