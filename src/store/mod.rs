//! Durable state behind one small trait: the cache registry's lower tier (the deferred queue has
//! its own trait, `deferral::Queue`, on the same backend). Backends: embedded SQLite (default),
//! in-memory (tests), Redis (replicas).

pub mod lock;
mod memory;
pub(crate) mod redis;
mod spend;
mod sqlite;
mod unusable;

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use spend::{SpendFigures, SpendKey, SpendRow};
pub use sqlite::SqliteStore;
pub use unusable::Unusable;

use crate::config::StoreConfig;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A cache the gateway made upstream, as the registry remembers it. Holds no credential: `scope`
/// is a SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Prefix-chain hash (hex); includes scope and model.
    pub key: String,
    /// Upstream resource name, `cachedContents/…`.
    pub name: String,
    /// `models/…`
    pub model: String,
    /// SHA-256 (hex) of the credential that made it.
    pub scope: String,
    /// Size in tokens as the upstream reported it.
    pub tokens: u64,
    /// How many leading `contents` the cache holds.
    pub contents: usize,
    pub created_ms: i64,
    pub expire_ms: i64,
    pub last_used_ms: i64,
    pub hits: u64,
}

impl CacheEntry {
    /// A fresh entry: created at `created_ms`, last used then, no hits yet.
    #[expect(clippy::too_many_arguments, reason = "a plain record; every field is required")]
    pub fn new(
        key: &str,
        name: &str,
        model: &str,
        scope: &str,
        tokens: u64,
        contents: usize,
        created_ms: i64,
        expire_ms: i64,
    ) -> Self {
        Self {
            key: key.into(),
            name: name.into(),
            model: model.into(),
            scope: scope.into(),
            tokens,
            contents,
            created_ms,
            expire_ms,
            last_used_ms: created_ms,
            hits: 0,
        }
    }
}

/// Why a storage backend (the SQLite file, Redis) could not do what was asked. The deferral
/// queue, which lives in the same backends, wraps it in its own `QueueError`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No connection could be made (Redis down, or slower than the timeout to accept one).
    #[error("store: redis: {0}")]
    Unreachable(String),
    #[error("store: timed out")]
    TimedOut,
    /// A record read back is not what the gateway writes.
    #[error("store: corrupt record: {0}")]
    Corrupt(String),
    /// The blocking worker that runs SQLite calls failed (a panic, a poisoned lock).
    #[error("store: worker: {0}")]
    Worker(String),
    /// The SQLite file could not be opened at start-up ([`Unusable`]).
    #[error("store: sqlite file unusable: {0}")]
    Unavailable(String),
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Worker(e.to_string())
    }
}

impl<T> From<std::sync::PoisonError<T>> for StoreError {
    fn from(_: std::sync::PoisonError<T>) -> Self {
        Self::Worker("the connection lock is poisoned".into())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get_cache(&self, key: &str) -> StoreResult<Option<CacheEntry>>;
    async fn put_cache(&self, entry: &CacheEntry) -> StoreResult<()>;
    async fn remove_cache(&self, key: &str) -> StoreResult<()>;
    /// Every entry; for start-up warming, the admin listing and the sweeper, never per request.
    async fn list_caches(&self) -> StoreResult<Vec<CacheEntry>>;
    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// True when several gateway processes share this store (creation then needs a lease).
    fn shared(&self) -> bool {
        false
    }

    /// Takes the creation lease for `key` for `ttl`; `Some(fencing token)` when taken. A store
    /// used by one process needs no lease: in-process single flight already holds.
    async fn acquire_lease(&self, _key: &str, _ttl: std::time::Duration) -> StoreResult<Option<u64>> {
        Ok(Some(0))
    }

    async fn release_lease(&self, _key: &str, _token: u64) -> StoreResult<()> {
        Ok(())
    }

    /// Writes `entry` unless a newer lease or entry exists; false when fenced off.
    async fn put_cache_fenced(&self, entry: &CacheEntry, _token: u64) -> StoreResult<bool> {
        self.put_cache(entry).await.map(|_| true)
    }

    /// Adds `rows` to the spend rollups (summing into existing rows). A backend that expires
    /// rows by itself keeps them `retention_ms` past their hour.
    async fn add_spend(&self, rows: &[SpendRow], retention_ms: i64) -> StoreResult<()>;
    /// The rollup rows whose hour starts in `[from_ms, to_ms)`.
    async fn spend_rows(&self, from_ms: i64, to_ms: i64) -> StoreResult<Vec<SpendRow>>;
    /// Forgets rollup rows of hours before `before_ms`.
    async fn prune_spend(&self, before_ms: i64) -> StoreResult<()>;
}

/// Opens the configured backend. A SQLite file that cannot be opened (read-only or full file
/// system, damaged file) does not stop the gateway: it starts on [`Unusable`], degraded.
pub fn open(cfg: &StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match cfg.backend.as_str() {
        "memory" => Arc::new(MemoryStore::default()),
        "redis" => Arc::new(RedisStore::open(&cfg.redis_url, &cfg.redis_prefix, cfg.redis_timeout)?),
        _ => match SqliteStore::open(&cfg.sqlite_path) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let reason = format!("{}: {e:#}", cfg.sqlite_path.display());
                tracing::error!(%reason, "the SQLite store cannot be opened; serving without it (caching and spend off, /readyz degraded)");
                Arc::new(Unusable(reason))
            }
        },
    })
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every backend must show; each backend's tests call these.
    use super::*;

    pub fn entry(key: &str, expire_ms: i64) -> CacheEntry {
        CacheEntry::new(
            key,
            &format!("cachedContents/{key}"),
            "models/gemini-2.5-flash",
            &"s".repeat(64),
            8000,
            2,
            1,
            expire_ms,
        )
    }

    pub async fn round_trip(store: &dyn Store) {
        assert_eq!(store.get_cache("a").await.unwrap(), None);
        store.put_cache(&entry("a", 10)).await.unwrap();
        store.put_cache(&entry("b", 20)).await.unwrap();
        assert_eq!(store.get_cache("a").await.unwrap(), Some(entry("a", 10)));
        let mut updated = entry("a", 99);
        updated.hits = 7;
        updated.last_used_ms = 50;
        store.put_cache(&updated).await.unwrap();
        assert_eq!(store.get_cache("a").await.unwrap(), Some(updated));
        let mut all = store.list_caches().await.unwrap();
        all.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(all.len(), 2);
        store.remove_cache("a").await.unwrap();
        assert_eq!(store.get_cache("a").await.unwrap(), None);
        store.ping().await.unwrap();
    }

    fn spend_row(hour: i64, tag: &str, net: f64) -> SpendRow {
        let key = SpendKey {
            hour_ms: hour * 3_600_000,
            model: "gemini-2.5-flash".into(),
            tenant: "0123456789abcdef".into(),
            tag: tag.into(),
            mechanism: "explicit_cache".into(),
        };
        let f = SpendFigures {
            requests: 1,
            billed_usd: 0.5,
            without_gateway_usd: 0.5 + net,
            net_saving_usd: net,
            prompt_tokens: 100,
            cached_tokens: 80,
            output_tokens: 7,
        };
        (key, f)
    }

    /// Rows with the same key are summed; rows are read back by hour range; pruning forgets
    /// old hours.
    pub async fn spend_rollups(store: &dyn Store) {
        let day = 24 * 3_600_000;
        store.add_spend(&[spend_row(10, "a", 0.25), spend_row(10, "b", -0.125)], day).await.unwrap();
        store.add_spend(&[spend_row(10, "a", 0.25), spend_row(12, "a", 1.0)], day).await.unwrap();
        let mut rows = store.spend_rows(10 * 3_600_000, 12 * 3_600_000).await.unwrap();
        rows.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].0.tag.as_str(), rows[0].1.requests), ("a", 2));
        assert!((rows[0].1.net_saving_usd - 0.5).abs() < 1e-12 && rows[0].1.prompt_tokens == 200, "{rows:?}");
        assert!((rows[1].1.net_saving_usd + 0.125).abs() < 1e-12, "{rows:?}");
        assert_eq!(store.spend_rows(0, 13 * 3_600_000).await.unwrap().len(), 3);
        store.prune_spend(11 * 3_600_000).await.unwrap();
        let left = store.spend_rows(0, 13 * 3_600_000).await.unwrap();
        assert!(left.iter().all(|(k, _)| k.hour_ms == 12 * 3_600_000), "{left:?}");
    }
}
