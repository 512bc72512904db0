//! The deferred queue in SQLite: its own connection to the store's file (WAL, `synchronous=FULL`,
//! so an acknowledged request survives even a power cut), each operation one transaction.

use super::queue::*;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deferred_items (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    model TEXT NOT NULL,
    body BLOB NOT NULL,
    prefix TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    state TEXT NOT NULL,
    job_id TEXT,
    created_ms INTEGER NOT NULL,
    result TEXT,
    result_ms INTEGER,
    webhook INTEGER NOT NULL,          -- 0 none, 1 wanted, 2 delivered, 3 given up
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_next_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deferred_items_group ON deferred_items(state, scope, model);
CREATE INDEX IF NOT EXISTS deferred_items_job ON deferred_items(job_id);
CREATE INDEX IF NOT EXISTS deferred_items_scope ON deferred_items(scope);
CREATE TABLE IF NOT EXISTS deferred_jobs (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    batch TEXT,
    attempts INTEGER NOT NULL,
    resubmits INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    poll_interval_ms INTEGER NOT NULL,
    upstream_state TEXT,
    finished_ms INTEGER
);
CREATE TABLE IF NOT EXISTS deferred_job_caches (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);";

pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: impl Into<crate::store::StoreError>) -> QueueError {
    QueueError::Backend(e.into())
}

impl SqliteQueue {
    /// Opens (or creates) the queue tables in the SQLite file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self::wrap(conn))
    }

    /// A queue that lives in memory only (the `memory` store backend, tests).
    pub fn in_memory() -> anyhow::Result<Self> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self::wrap(conn))
    }

    fn wrap(conn: Connection) -> Self {
        Self { conn: Arc::new(Mutex::new(conn)) }
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> QResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(err)?;
            f(&mut guard).map_err(err)
        })
        .await
        .map_err(err)?
    }
}

const ITEM_COLS: &str = "i.id, i.scope, i.model, i.state, i.job_id, i.created_ms, i.result, \
     i.result_ms, j.batch, j.upstream_state, i.webhook_attempts";

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let result: Option<String> = r.get(6)?;
    Ok(Item {
        id: r.get(0)?,
        scope: r.get(1)?,
        model: r.get(2)?,
        state: ItemState::parse(&r.get::<_, String>(3)?),
        job_id: r.get(4)?,
        created_ms: r.get(5)?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()).and_then(ItemResult::from_json),
        result_ms: r.get(7)?,
        batch: r.get(8)?,
        batch_state: r.get(9)?,
        webhook_attempts: r.get(10)?,
    })
}

const JOB_COLS: &str = "id, scope, model, state, batch, attempts, resubmits, created_ms, next_ms, \
     poll_interval_ms, upstream_state";

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        scope: r.get(1)?,
        model: r.get(2)?,
        state: JobState::parse(&r.get::<_, String>(3)?),
        batch: r.get(4)?,
        attempts: r.get(5)?,
        resubmits: r.get(6)?,
        created_ms: r.get(7)?,
        next_ms: r.get(8)?,
        poll_interval_ms: r.get(9)?,
        upstream_state: r.get(10)?,
    })
}

fn result_text(r: &ItemResult) -> String {
    r.to_json().to_string()
}

#[async_trait::async_trait]
impl Queue for SqliteQueue {
    async fn enqueue(&self, it: NewItem) -> QResult<()> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO deferred_items (id, scope, model, body, prefix, bytes, state, created_ms, webhook)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8)",
                params![
                    it.id,
                    it.scope,
                    it.model,
                    it.body,
                    it.prefix,
                    it.body.len() as i64,
                    it.created_ms,
                    it.webhook as i64
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn item(&self, id: &str) -> QResult<Option<Item>> {
        let id = id.to_string();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {ITEM_COLS} FROM deferred_items i LEFT JOIN deferred_jobs j ON j.id = i.job_id WHERE i.id = ?1"),
                [id],
                row_to_item,
            )
            .optional()
        })
        .await
    }

    async fn items_of_scope(&self, scope: &str, limit: usize, after: Option<&str>) -> QResult<Vec<Item>> {
        let (scope, after) = (scope.to_string(), after.map(str::to_string));
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ITEM_COLS} FROM deferred_items i LEFT JOIN deferred_jobs j ON j.id = i.job_id
                 WHERE i.scope = ?1 AND (?2 IS NULL OR i.rowid < (SELECT rowid FROM deferred_items WHERE id = ?2))
                 ORDER BY i.rowid DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![scope, after, limit as i64], row_to_item)?;
            rows.collect()
        })
        .await
    }

    async fn resolve(&self, id: &str, result: &ItemResult, now: i64) -> QResult<bool> {
        let (id, text) = (id.to_string(), result_text(result));
        self.with(move |c| {
            c.execute(
                "UPDATE deferred_items SET result = ?2, result_ms = ?3, state = 'done', webhook_next_ms = ?3
                 WHERE id = ?1 AND result IS NULL",
                params![id, text, now],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn groups(&self) -> QResult<Vec<Group>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT scope, model, COUNT(*), SUM(bytes), MIN(created_ms) FROM deferred_items
                 WHERE state = 'queued' GROUP BY scope, model",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Group {
                    scope: r.get(0)?,
                    model: r.get(1)?,
                    count: r.get::<_, i64>(2)? as usize,
                    bytes: r.get::<_, i64>(3)? as u64,
                    oldest_ms: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn form_job(&self, job: &Job, max_items: usize, max_bytes: u64, _now: i64) -> QResult<usize> {
        let job = job.clone();
        self.with(move |c| tx::form_job(c, &job, max_items, max_bytes)).await
    }

    async fn jobs(&self, state: JobState) -> QResult<Vec<Job>> {
        self.with(move |c| {
            let mut stmt =
                c.prepare(&format!("SELECT {JOB_COLS} FROM deferred_jobs WHERE state = ?1 ORDER BY next_ms"))?;
            let rows = stmt.query_map([state.as_str()], row_to_job)?;
            rows.collect()
        })
        .await
    }

    async fn job(&self, id: &str) -> QResult<Option<Job>> {
        let id = id.to_string();
        self.with(move |c| {
            c.query_row(&format!("SELECT {JOB_COLS} FROM deferred_jobs WHERE id = ?1"), [id], row_to_job).optional()
        })
        .await
    }

    async fn job_inputs(&self, job_id: &str) -> QResult<Vec<(String, Vec<u8>)>> {
        let job_id = job_id.to_string();
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT id, body FROM deferred_items WHERE job_id = ?1 AND result IS NULL ORDER BY rowid")?;
            let rows = stmt.query_map([job_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    async fn note_attempt(&self, job_id: &str, next_ms: i64) -> QResult<()> {
        let job_id = job_id.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE deferred_jobs SET attempts = attempts + 1, next_ms = ?2 WHERE id = ?1",
                params![job_id, next_ms],
            )
            .map(|_| ())
        })
        .await
    }

    async fn mark_submitted(&self, job_id: &str, batch: &str, next_ms: i64) -> QResult<()> {
        let (job_id, batch) = (job_id.to_string(), batch.to_string());
        self.with(move |c| {
            c.execute(
                "UPDATE deferred_jobs SET state = 'submitted', batch = ?2, next_ms = ?3 WHERE id = ?1 AND state = 'intent'",
                params![job_id, batch, next_ms],
            )
            .map(|_| ())
        })
        .await
    }

    async fn schedule(
        &self,
        job_id: &str,
        next_ms: i64,
        interval_ms: i64,
        upstream_state: Option<&str>,
    ) -> QResult<()> {
        let (job_id, st) = (job_id.to_string(), upstream_state.map(str::to_string));
        self.with(move |c| {
            c.execute(
                "UPDATE deferred_jobs SET next_ms = ?2, poll_interval_ms = ?3,
                 upstream_state = COALESCE(?4, upstream_state) WHERE id = ?1",
                params![job_id, next_ms, interval_ms, st],
            )
            .map(|_| ())
        })
        .await
    }

    async fn finish_job(
        &self,
        job_id: &str,
        upstream_state: &str,
        results: &[(String, ItemResult)],
        rest: &ItemResult,
        now: i64,
    ) -> QResult<usize> {
        let job_id = job_id.to_string();
        let st = upstream_state.to_string();
        let results: Vec<(String, String)> = results.iter().map(|(k, r)| (k.clone(), result_text(r))).collect();
        let rest = result_text(rest);
        self.with(move |c| tx::finish_job(c, &job_id, &st, &results, &rest, now)).await
    }

    async fn resubmit_job(&self, job_id: &str, upstream_state: &str, next: &Job) -> QResult<()> {
        let (job_id, st, next) = (job_id.to_string(), upstream_state.to_string(), next.clone());
        self.with(move |c| tx::resubmit_job(c, &job_id, &st, &next)).await
    }

    async fn webhooks_due(&self, now: i64, limit: usize) -> QResult<Vec<Item>> {
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ITEM_COLS} FROM deferred_items i LEFT JOIN deferred_jobs j ON j.id = i.job_id
                 WHERE i.webhook = 1 AND i.result IS NOT NULL AND i.webhook_next_ms <= ?1
                 ORDER BY i.webhook_next_ms LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, limit as i64], row_to_item)?;
            rows.collect()
        })
        .await
    }

    async fn webhook_attempted(&self, id: &str, delivered: bool, next_ms: Option<i64>) -> QResult<()> {
        let id = id.to_string();
        let state = match (delivered, next_ms) {
            (true, _) => 2,
            (false, Some(_)) => 1,
            (false, None) => 3,
        };
        self.with(move |c| {
            c.execute(
                "UPDATE deferred_items SET webhook = ?2, webhook_attempts = webhook_attempts + 1,
                 webhook_next_ms = COALESCE(?3, webhook_next_ms) WHERE id = ?1",
                params![id, state, next_ms],
            )
            .map(|_| ())
        })
        .await
    }

    async fn purge(&self, before_ms: i64) -> QResult<usize> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM deferred_items WHERE result IS NOT NULL AND result_ms < ?1 AND webhook != 1",
                [before_ms],
            )?;
            tx.execute(
                "DELETE FROM deferred_jobs WHERE state = 'done' AND finished_ms < ?1
                 AND NOT EXISTS (SELECT 1 FROM deferred_items i WHERE i.job_id = deferred_jobs.id)",
                [before_ms],
            )?;
            tx.execute(
                "DELETE FROM deferred_job_caches WHERE updated_ms < ?1
                 AND job_id NOT IN (SELECT id FROM deferred_jobs WHERE state != 'done')",
                [before_ms],
            )?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn stats(&self) -> QResult<Stats> {
        self.with(tx::stats).await
    }

    async fn job_cache(&self, job_id: &str) -> QResult<Option<String>> {
        let id = job_id.to_string();
        self.with(move |c| {
            c.query_row("SELECT state FROM deferred_job_caches WHERE job_id = ?1", [id], |r| r.get(0)).optional()
        })
        .await
    }

    async fn set_job_cache(&self, job_id: &str, state: &str, now: i64) -> QResult<()> {
        let (id, st) = (job_id.to_string(), state.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO deferred_job_caches (job_id, state, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(job_id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                params![id, st, now],
            )
            .map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;

#[path = "sqlite_tx.rs"]
mod tx;
