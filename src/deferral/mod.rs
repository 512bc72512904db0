//! Deferred execution: generate requests marked non-urgent go to the Batch API (through a durable
//! queue, grouped into jobs, polled, results matched back by key) or the Flex tier (synchronous,
//! falling back to standard when shed). See docs/deferral.md for the guarantees and their proof.

mod admission;
mod api;
mod batch_api;
mod batch_cache;
mod batcher;
mod claims;
mod credentials;
mod delivery;
pub mod flex;
pub mod marking;
mod poller;
pub mod queue;
mod redis_lua;
mod redis_queue;
mod sqlite;
mod worker;

pub use api::{DeferralState, cancel_operation, get_operation, list_operations};
pub use credentials::{Credential, Credentials};
pub use delivery::hmac_sha256_hex;
pub use marking::{Marking, Tier};
pub use queue::{ItemResult, Queue};
pub use redis_queue::RedisQueue;
pub use sqlite::SqliteQueue;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::{DeferralConfig, StoreConfig};
use crate::error::GatewayError;
use crate::gemini::canonical;
use crate::gemini::path::ApiPath;
use crate::proxy::Upstream;
use crate::telemetry;
use axum::response::Response;
use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Inner {
    cfg: DeferralConfig,
    queue: Arc<dyn Queue>,
    creds: Credentials,
    upstream: Upstream,
    timeout: Duration,
    clock: Clock,
    /// Bumped whenever results are committed; `x-gemgate-wait` holders watch it.
    results: watch::Sender<u64>,
    /// Wakes the worker early (a new request, a cancellation).
    poke: Notify,
    webhook_secret: Option<Vec<u8>>,
    /// (scope, model) pairs the upstream accepted (see admission.rs).
    admitted: admission::Admitted,
    /// Prices, cache minimums and capabilities for cache-aware jobs (see batch_cache.rs).
    catalog: Catalog,
    /// Learned job run times per model (sizes a job cache's storage and TTL).
    runs: batch_cache::Runs,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// Handle to deferred execution; cheap to clone.
#[derive(Clone)]
pub struct Deferral(Arc<Inner>);

impl Deferral {
    /// Opens the queue in the configured store: the SQLite file, in memory for `memory`, or the
    /// shared Redis for `redis` (then every replica's worker claims jobs before working on them).
    #[expect(clippy::too_many_arguments, reason = "the shared services a deferral worker uses")]
    pub fn new(
        cfg: DeferralConfig,
        store: &StoreConfig,
        catalog: Catalog,
        upstream: Upstream,
        timeout: Duration,
        clock: Clock,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let queue: Arc<dyn Queue> = match store.backend.as_str() {
            "memory" => Arc::new(SqliteQueue::in_memory()?),
            "redis" => Arc::new(RedisQueue::open(&store.redis_url, &store.redis_prefix, store.redis_timeout)?),
            _ => Arc::new(SqliteQueue::open(&store.sqlite_path)?),
        };
        Ok(Self::with_queue(cfg, queue, catalog, upstream, timeout, clock, tracker, cancel))
    }

    #[expect(clippy::too_many_arguments, reason = "the shared services a deferral worker uses")]
    pub fn with_queue(
        cfg: DeferralConfig,
        queue: Arc<dyn Queue>,
        catalog: Catalog,
        upstream: Upstream,
        timeout: Duration,
        clock: Clock,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let webhook_secret = (!cfg.webhook_secret_env.is_empty())
            .then(|| std::env::var(&cfg.webhook_secret_env).ok())
            .flatten()
            .map(String::into_bytes);
        if !cfg.webhook_url.is_empty() && webhook_secret.is_none() {
            tracing::warn!(env = %cfg.webhook_secret_env, "webhook secret variable is not set; webhooks go unsigned");
        }
        Deferral(Arc::new(Inner {
            creds: Credentials::with_service_keys(&cfg.service_key_envs),
            cfg,
            queue,
            upstream,
            timeout,
            clock,
            results: watch::channel(0).0,
            poke: Notify::new(),
            webhook_secret,
            admitted: Default::default(),
            catalog,
            runs: Default::default(),
            tracker,
            cancel,
        }))
    }

    pub fn config(&self) -> &DeferralConfig {
        &self.0.cfg
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.0.queue
    }

    /// Whether a request that cannot be queued is refused (503) rather than served at standard
    /// tier: so with a shared (Redis) queue. There an outage hits every replica at once, and
    /// silently turning all batch traffic into full-price standard calls fleet-wide is a cost
    /// surprise the client did not ask for; a 503 lets it retry or choose `standard` itself.
    pub fn refuses_when_unavailable(&self) -> bool {
        self.0.queue.shared()
    }

    /// Starts the background worker (flush, submit/reconcile, poll, webhooks, purge).
    pub fn start(&self) {
        worker::spawn(self.clone());
    }

    /// Remembers the credential a request carries (in memory only); returns its scope.
    pub fn observe(&self, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
        let (scope, cred) = Credential::scoped(headers, query)?;
        self.observe_tenant(&scope, &cred);
        Some(scope)
    }

    /// [`Deferral::observe`] for a tenant already worked out from the request.
    pub fn observe_tenant(&self, scope: &str, cred: &Credential) {
        if !self.0.creds.remember(scope, cred) {
            // Work of this scope may have been waiting for its credential since a restart.
            self.0.poke.notify_one();
        }
    }

    /// Marks a generate request to `model` (headers, then rules). A malformed header is a 400.
    pub fn mark(
        &self,
        api: &ApiPath<'_>,
        model: &str,
        headers: &HeaderMap,
        path: &str,
        scope: Option<&str>,
    ) -> Result<Option<Marking>, GatewayError> {
        marking::decide(&self.0.cfg, &marking::Request { headers, path, model, scope, stream: api.is_stream() })
    }

    /// Puts a request on the durable queue and answers it (held for `wait`, else 202). `Err`
    /// means nothing was acknowledged: the caller serves the request at standard tier (SQLite)
    /// or refuses it with 503 (a shared queue, see `refuses_when_unavailable`); once the item is
    /// committed the answer is always the operation or its result.
    pub async fn defer(
        &self,
        scope: &str,
        model: &str,
        body: &[u8],
        value: &Value,
        marking: &Marking,
    ) -> Result<Response, queue::QueueError> {
        let id = new_id(32);
        let item = queue::NewItem {
            id: id.clone(),
            scope: scope.to_string(),
            model: model.to_string(),
            body: body.to_vec(),
            prefix: prefix_key(value),
            created_ms: self.0.clock.now_ms(),
            webhook: !self.0.cfg.webhook_url.is_empty(),
        };
        if let Err(e) = self.0.queue.enqueue(item).await {
            // Over the network a timed-out write may still have been applied: if the item is
            // there, it is acknowledged like any other (else it would run without its client
            // knowing, and the client's retry would run it again).
            if !matches!(self.0.queue.item(&id).await, Ok(Some(_))) {
                return Err(e);
            }
        }
        failpoint("enqueued");
        metrics::counter!(telemetry::DEFER_ITEMS, "outcome" => "enqueued").increment(1);
        self.0.poke.notify_one();
        if let Some(wait) = marking.wait.filter(|w| !w.is_zero()) {
            if let Some(item) = self.wait_for(&id, wait).await {
                return Ok(delivery::result_response(&item));
            }
        }
        // From here on the request is acknowledged: never `Err` (that would serve it twice).
        let item = self.0.queue.item(&id).await.ok().flatten();
        Ok(delivery::accepted(&id, item.as_ref()))
    }

    /// Waits up to `bound` (real time) for an item's result. Results stored by this process wake
    /// the waiter at once; with a shared queue another replica may store it, so the item is also
    /// read again every tick (at least every second).
    async fn wait_for(&self, id: &str, bound: Duration) -> Option<queue::Item> {
        let mut rx = self.0.results.subscribe();
        let until = tokio::time::Instant::now() + bound;
        let recheck = match self.0.queue.shared() {
            true => self.0.clock.real_duration(self.0.cfg.tick.as_millis() as i64).min(Duration::from_secs(1)),
            false => bound,
        };
        loop {
            if let Ok(Some(item)) = self.0.queue.item(id).await {
                if item.result.is_some() {
                    return Some(item);
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return None },
                _ = tokio::time::sleep_until(until) => return None,
                _ = tokio::time::sleep(recheck) => {}
                _ = self.0.cancel.cancelled() => return None,
            }
        }
    }
}

/// Wakes every `x-gemgate-wait` holder to look at its item again.
fn results_changed(d: &Inner) {
    d.results.send_modify(|n| *n += 1);
}

/// Crash-test hook: with `GEMGATE_FAILPOINT=<name>` the process aborts when it reaches `<name>`,
/// as a `kill -9` at exactly that point would. Unset in normal operation (one env read).
pub(crate) fn failpoint(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if POINT.get_or_init(|| std::env::var("GEMGATE_FAILPOINT").ok()).as_deref() == Some(name) {
        eprintln!("gemgate: failpoint {name} reached; aborting");
        std::process::abort();
    }
}

/// Random lowercase alphanumeric id.
fn new_id(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// Hash of what requests that could share an upstream (implicit) cache have in common: system
/// instruction, tools, tool config and the first turn.
fn prefix_key(v: &Value) -> String {
    let obj = v.as_object();
    let get = |k: &str| obj.and_then(|o| canonical::get(o, k)).cloned().unwrap_or(Value::Null);
    let first = get("contents").get(0).cloned().unwrap_or(Value::Null);
    let key = serde_json::json!([get("systemInstruction"), get("tools"), get("toolConfig"), first]);
    hex::encode(&Sha256::digest(canonical::to_vec(&key))[..12])
}
