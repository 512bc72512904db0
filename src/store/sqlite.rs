//! Embedded SQLite store (WAL mode): one file, nothing to run. Calls run on the blocking pool.

use super::{CacheEntry, SpendRow, Store, StoreError, StoreResult, spend};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS caches (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    scope TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    contents INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expire_ms INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL,
    hits INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL);";

fn err(e: impl Into<StoreError>) -> StoreError {
    e.into()
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(spend::SQLITE_SCHEMA)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(err)?;
            f(&mut guard).map_err(err)
        })
        .await
        .map_err(err)?
    }
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<CacheEntry> {
    Ok(CacheEntry {
        key: r.get(0)?,
        name: r.get(1)?,
        model: r.get(2)?,
        scope: r.get(3)?,
        tokens: r.get::<_, i64>(4)? as u64,
        contents: r.get::<_, i64>(5)? as usize,
        created_ms: r.get(6)?,
        expire_ms: r.get(7)?,
        last_used_ms: r.get(8)?,
        hits: r.get::<_, i64>(9)? as u64,
    })
}

const COLUMNS: &str = "key, name, model, scope, tokens, contents, created_ms, expire_ms, last_used_ms, hits";

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get_cache(&self, key: &str) -> StoreResult<Option<CacheEntry>> {
        let key = key.to_string();
        self.with(move |c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM caches WHERE key = ?1"), [key], row_to_entry).optional()
        })
        .await
    }

    async fn put_cache(&self, e: &CacheEntry) -> StoreResult<()> {
        let e = e.clone();
        self.with(move |c| {
            c.execute(
                &format!("INSERT OR REPLACE INTO caches ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    e.key,
                    e.name,
                    e.model,
                    e.scope,
                    e.tokens as i64,
                    e.contents as i64,
                    e.created_ms,
                    e.expire_ms,
                    e.last_used_ms,
                    e.hits as i64
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn remove_cache(&self, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.with(move |c| c.execute("DELETE FROM caches WHERE key = ?1", [key]).map(|_| ())).await
    }

    async fn list_caches(&self) -> StoreResult<Vec<CacheEntry>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM caches"))?;
            let rows = stmt.query_map([], row_to_entry)?;
            rows.collect()
        })
        .await
    }

    /// A write, not a read: a full disk or a read-only file takes writes away while reads go on,
    /// and readiness must say so.
    async fn ping(&self) -> StoreResult<()> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.with(move |c| c.execute("INSERT OR REPLACE INTO probe (id, at_ms) VALUES (1, ?1)", [now]).map(|_| ()))
            .await
    }

    async fn add_spend(&self, rows: &[SpendRow], _retention_ms: i64) -> StoreResult<()> {
        let rows = rows.to_vec();
        self.with(move |c| spend::sqlite_add(c, &rows)).await
    }

    async fn spend_rows(&self, from_ms: i64, to_ms: i64) -> StoreResult<Vec<SpendRow>> {
        self.with(move |c| spend::sqlite_rows(c, from_ms, to_ms)).await
    }

    async fn prune_spend(&self, before_ms: i64) -> StoreResult<()> {
        self.with(move |c| spend::sqlite_prune(c, before_ms)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn satisfies_the_store_contract_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/gemgate.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        super::super::contract::round_trip(&store).await;
        super::super::contract::spend_rollups(&store).await;
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        let left = reopened.list_caches().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key, "b");
        assert_eq!(reopened.spend_rows(0, i64::MAX).await.unwrap().len(), 1, "rollups survive a restart");
    }
}
