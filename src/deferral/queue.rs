//! The durable queue's contract: deferred requests (items), the batch jobs they go into, and every
//! state change as one atomic store operation. Backends: SQLite (`sqlite.rs`, one process) and
//! Redis (`redis_queue.rs`, shared by replicas, which then claim jobs before working on them).

use serde_json::Value;

/// One deferred request as enqueued. Holds no credential: `scope` is a SHA-256 of it.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// Operation id (also the batch item key).
    pub id: String,
    pub scope: String,
    /// `models/…` or `tunedModels/…`.
    pub model: String,
    /// The request body exactly as the client sent it.
    pub body: Vec<u8>,
    /// Hash of the request's shared prefix (system instruction, tools, first turn), so requests
    /// that share it are put into the same job.
    pub prefix: String,
    pub created_ms: i64,
    /// Whether the result is also to be POSTed to the configured webhook.
    pub webhook: bool,
}

/// Where an item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// On disk, not yet in a job.
    Queued,
    /// In a job (intent or submitted), no result yet.
    Assigned,
    /// Has its one result.
    Done,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "assigned" => Self::Assigned,
            _ => Self::Done,
        }
    }
}

/// The one result of an item: a GenerateContentResponse or a Gemini error object
/// (`{"code": <http>, "message", "status"}`).
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResult {
    Response(Value),
    Error(Value),
}

impl ItemResult {
    pub fn to_json(&self) -> Value {
        match self {
            Self::Response(v) => serde_json::json!({ "response": v }),
            Self::Error(v) => serde_json::json!({ "error": v }),
        }
    }
    pub fn from_json(v: Value) -> Option<Self> {
        let mut v = v;
        let obj = v.as_object_mut()?;
        if let Some(r) = obj.remove("response") {
            return Some(Self::Response(r));
        }
        obj.remove("error").map(Self::Error)
    }
    /// An error result with an HTTP-style code.
    pub fn error(code: u16, message: impl Into<String>) -> Self {
        Self::Error(serde_json::json!({
            "code": code,
            "message": message.into(),
            "status": crate::gemini::error::status_name(code),
        }))
    }
}

/// An item as read back, with what is known of its job.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub scope: String,
    pub model: String,
    pub state: ItemState,
    pub job_id: Option<String>,
    pub created_ms: i64,
    pub result: Option<ItemResult>,
    pub result_ms: Option<i64>,
    /// Upstream batch name and its last polled state, when the job has been submitted.
    pub batch: Option<String>,
    pub batch_state: Option<String>,
    pub webhook_attempts: u32,
}

/// Queued items of one (scope, model), as the batcher sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub scope: String,
    pub model: String,
    pub count: usize,
    pub bytes: u64,
    pub oldest_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Written before the upstream create call; may or may not exist upstream.
    Intent,
    /// Known to exist upstream (`batch` is set); being polled.
    Submitted,
    /// Finished: every item has a result or was moved to a resubmitted job.
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Submitted => "submitted",
            Self::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "intent" => Self::Intent,
            "submitted" => Self::Submitted,
            _ => Self::Done,
        }
    }
}

/// A batch job as the gateway records it. `id` is the gateway's own batch id; the upstream job's
/// `displayName` is `gemgate-{id}`, which is how a job is found again after a crash.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub scope: String,
    pub model: String,
    pub state: JobState,
    /// Upstream `batches/…` once known.
    pub batch: Option<String>,
    /// Create calls started (each is recorded before it is sent).
    pub attempts: u32,
    /// How many times these requests were already resubmitted after a failed job.
    pub resubmits: u32,
    pub created_ms: i64,
    pub next_ms: i64,
    pub poll_interval_ms: i64,
    pub upstream_state: Option<String>,
}

/// Counts for the metrics gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub queued: u64,
    pub assigned: u64,
    pub oldest_queued_ms: Option<i64>,
    pub jobs_intent: u64,
    pub jobs_submitted: u64,
}

/// Why a queue operation failed. The queue lives in the store's backends, so their failures are
/// the store's.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("deferral queue: {0}")]
    Backend(#[from] crate::store::StoreError),
    /// An item with this id is queued already (ids are unique).
    #[error("deferral queue: item {0} exists already")]
    Duplicate(String),
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(e.into())
    }
}

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        Self::Backend(e.into())
    }
}

pub type QResult<T> = Result<T, QueueError>;

/// A queue failure around an upstream call is the gateway's own, and as transient as the queue.
impl From<QueueError> for crate::proxy::UpstreamFailure {
    fn from(e: QueueError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// Every queue operation is atomic: a crash leaves the state before or after it, never between.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Stores a new item durably; returns only once it is committed to disk.
    async fn enqueue(&self, item: NewItem) -> QResult<()>;
    async fn item(&self, id: &str) -> QResult<Option<Item>>;
    /// A scope's items, newest first, after the id `after` (paging).
    async fn items_of_scope(&self, scope: &str, limit: usize, after: Option<&str>) -> QResult<Vec<Item>>;
    /// Gives a result to an item that has none yet. Returns false if it already had one.
    async fn resolve(&self, id: &str, result: &ItemResult, now: i64) -> QResult<bool>;
    /// Queued items grouped by (scope, model).
    async fn groups(&self) -> QResult<Vec<Group>>;
    /// In one transaction: takes up to `max_items` / `max_bytes` queued items of the group
    /// (ordered by prefix, then age, so requests sharing a prefix land together), and records a
    /// job intent holding them. Returns how many items it took (0: no job made).
    async fn form_job(&self, job: &Job, max_items: usize, max_bytes: u64, now: i64) -> QResult<usize>;
    async fn jobs(&self, state: JobState) -> QResult<Vec<Job>>;
    /// Up to `limit` jobs in `state` due at `now` (`next_ms <= now`), soonest first: what a worker
    /// tick looks at, without reading every open job on every tick of every replica.
    async fn due_jobs(&self, state: JobState, now: i64, limit: usize) -> QResult<Vec<Job>> {
        let mut jobs = self.jobs(state).await?;
        jobs.retain(|j| j.next_ms <= now);
        jobs.truncate(limit);
        Ok(jobs)
    }
    /// One job as it is now (read again after claiming it: another replica may have moved it).
    async fn job(&self, id: &str) -> QResult<Option<Job>>;
    /// `(item id, body)` of a job's items that have no result yet.
    async fn job_inputs(&self, job_id: &str) -> QResult<Vec<(String, Vec<u8>)>>;
    /// How many of a job's items have no result yet (asked on every poll of a running job, so
    /// a backend over the network answers it without moving the bodies).
    async fn open_items(&self, job_id: &str) -> QResult<usize> {
        self.job_inputs(job_id).await.map(|v| v.len())
    }
    /// Records that a create call is about to be sent (before sending it).
    async fn note_attempt(&self, job_id: &str, next_ms: i64) -> QResult<()>;
    async fn mark_submitted(&self, job_id: &str, batch: &str, next_ms: i64) -> QResult<()>;
    async fn schedule(&self, job_id: &str, next_ms: i64, interval_ms: i64, upstream_state: Option<&str>)
    -> QResult<()>;
    /// In one transaction: stores results (by item key; items that already have one keep it),
    /// gives `rest` to the job's items still without a result, and marks the job done. Returns
    /// the number of items that got a result.
    async fn finish_job(
        &self,
        job_id: &str,
        upstream_state: &str,
        results: &[(String, ItemResult)],
        rest: &ItemResult,
        now: i64,
    ) -> QResult<usize>;
    /// In one transaction: moves the job's unresolved items into the new job intent `next` and
    /// marks the old job done.
    async fn resubmit_job(&self, job_id: &str, upstream_state: &str, next: &Job) -> QResult<()>;
    /// Items whose result awaits webhook delivery at `now`.
    async fn webhooks_due(&self, now: i64, limit: usize) -> QResult<Vec<Item>>;
    /// After a webhook attempt: delivered, or tried again at `next_ms` (None: give up).
    async fn webhook_attempted(&self, id: &str, delivered: bool, next_ms: Option<i64>) -> QResult<()>;
    /// Deletes results finished before `before_ms` and finished jobs older than it.
    async fn purge(&self, before_ms: i64) -> QResult<usize>;
    async fn stats(&self) -> QResult<Stats>;
    /// The explicit caches a job uses (a JSON state, see `batch_cache.rs`), if one is recorded.
    async fn job_cache(&self, job_id: &str) -> QResult<Option<String>>;
    /// Records a job's cache state durably (replacing the previous one). Purged with old results.
    async fn set_job_cache(&self, job_id: &str, state: &str, now: i64) -> QResult<()>;

    /// True when several gateway processes share this queue: their workers then claim a job
    /// before working on it, and a request that cannot be queued is refused (503), not served
    /// at standard tier.
    fn shared(&self) -> bool {
        false
    }

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> QResult<()> {
        Ok(())
    }

    /// Takes the claim `key` for `ttl`: `Some(token)` when taken, `None` when another holder has
    /// it. A queue used by one process needs none (its one worker loop already serialises work).
    async fn claim(&self, _key: &str, _ttl: std::time::Duration) -> QResult<Option<u64>> {
        Ok(Some(0))
    }

    /// Extends a claim we hold; false when it lapsed (and may be someone else's now).
    async fn renew(&self, _key: &str, _token: u64, _ttl: std::time::Duration) -> QResult<bool> {
        Ok(true)
    }

    async fn release(&self, _key: &str, _token: u64) -> QResult<()> {
        Ok(())
    }
}
