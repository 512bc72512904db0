//! Making a cache: single flight within the process, a lease across processes sharing a store,
//! and a bounded wait for every request that wants it.

use super::ops::{self, Credential};
use super::{Boundary, CacheView, Caching, Outcome};
use crate::gemini::cached_content as rewrite;
use crate::proxy::FailureSource;
use crate::store::CacheEntry;
use crate::telemetry;
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::watch;

/// How long a replica may hold the right to create one cache before another may try.
const LEASE_TTL: Duration = Duration::from_secs(60);

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

impl Caching {
    /// Single flight: the first request for a key starts the creation (which runs to its end in
    /// the background, within `create_timeout`). Requests wait for it only within `create_wait`
    /// of its start; past that, a slow or hung creation no longer delays anyone: requests go
    /// uncached at once (fail open).
    #[expect(clippy::too_many_arguments, reason = "the request's parts a creation needs")]
    pub(super) async fn get_or_create(
        &self,
        b: &Boundary,
        ttl_ms: i64,
        scope: &str,
        model: &str,
        version: &str,
        body: &Map<String, Value>,
        cred: Credential,
    ) -> (Outcome, Option<CacheEntry>) {
        let e = &self.0;
        let (started, mut rx, leader) = {
            let mut inflight = e.inflight.lock().expect("poisoned");
            match inflight.get(&b.key) {
                Some((started, rx)) => (*started, rx.clone(), false),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let started = tokio::time::Instant::now();
                    inflight.insert(b.key.clone(), (started, rx.clone()));
                    drop(inflight);
                    let display = format!("gemgate:{}", &b.key[..16]);
                    let ttl_secs = ((ttl_ms + 999) / 1000).max(1) as u64;
                    let job = CreateJob {
                        key: b.key.clone(),
                        contents: b.contents,
                        scope: scope.to_string(),
                        model: model.to_string(),
                        version: version.to_string(),
                        body: rewrite::cache_body(body, model, b.contents, ttl_secs, &display),
                        cred,
                    };
                    let this = self.clone();
                    e.tracker.spawn(async move {
                        let result = this.create(job.clone()).await;
                        let _ = tx.send(Some(result));
                        this.0.inflight.lock().expect("poisoned").remove(&job.key);
                    });
                    (started, rx, true)
                }
            }
        };
        match tokio::time::timeout_at(started + e.cfg.create_wait, rx.wait_for(|r| r.is_some())).await {
            Ok(Ok(r)) => match r.clone() {
                Some((Some(entry), made_here)) if leader && made_here => (Outcome::Created, Some(entry)),
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
        let result = match e.registry.get_or_load(&job.key).await.filter(|x| e.engine.usable(x.expire_ms, now)) {
            Some(existing) => (Some(existing.snapshot()), false),
            None => self.create_upstream(&job, token).await,
        };
        if let Err(err) = store.release_lease(&job.key, token).await {
            tracing::debug!(%err, "lease release failed; it will lapse");
        }
        if let (Some(entry), false) = &result {
            e.engine.created(&job.key, CacheView::from(entry), false, e.clock.now_ms());
        }
        result
    }

    /// Polls the store for an entry another replica is creating, for at most `create_wait`.
    async fn await_other(&self, key: &str) -> Option<CacheEntry> {
        let deadline = tokio::time::Instant::now() + self.0.cfg.create_wait;
        loop {
            if let Some(entry) = self.0.registry.get_or_load(key).await {
                return Some(entry.snapshot());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create_upstream(&self, job: &CreateJob, token: u64) -> (Option<CacheEntry>, bool) {
        let e = &self.0;
        let sent = e.clock.now_ms();
        let result = ops::create(&e.upstream, &job.version, &job.cred, &job.body, e.cfg.create_timeout).await;
        let now = e.clock.now_ms();
        match result {
            Ok(c) => {
                metrics::counter!(telemetry::CACHE_CREATIONS, "result" => "ok").increment(1);
                tracing::info!(model = %job.model, tokens = c.tokens, contents = job.contents, "cache created");
                // On this gateway's clock: the upstream's may differ (see `Created::expire_at`).
                let expire_ms = c.expire_at(sent).unwrap_or(now + e.cfg.ttl.as_millis() as i64);
                let entry =
                    CacheEntry::new(&job.key, &c.name, &job.model, &job.scope, c.tokens, job.contents, now, expire_ms);
                if e.registry.insert_fenced(entry.clone(), token).await {
                    e.engine.created(&job.key, CacheView::from(&entry), true, now);
                    return (Some(entry), true);
                }
                // A newer holder won (our lease lapsed while the upstream was slow): drop ours.
                tracing::warn!("cache creation fenced off by a newer one; deleting the duplicate");
                if ops::delete(&e.upstream, &entry.name, &job.cred, e.timeout).await.is_ok() {
                    metrics::counter!(telemetry::CACHE_DELETIONS, "reason" => "fenced").increment(1);
                }
                (e.registry.get_or_load(&job.key).await.map(|h| h.snapshot()), false)
            }
            Err(err) => {
                let kind = if let Some((total, min)) = err.too_small() {
                    tracing::info!(model = %job.model, total, min, "upstream minimum learned");
                    e.catalog.learn_min(&job.model, min);
                    "too_small"
                } else if err.no_explicit_caching() {
                    e.catalog.learn_no_explicit(&job.scope, &job.model);
                    "unsupported"
                } else {
                    tracing::warn!(error = %err, "cache creation failed");
                    match err.source() {
                        FailureSource::Transport => "transport",
                        _ => "upstream_error",
                    }
                };
                metrics::counter!(telemetry::CACHE_CREATIONS, "result" => kind).increment(1);
                e.engine.create_failed(&job.key, now);
                (None, false)
            }
        }
    }
}
