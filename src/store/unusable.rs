//! The store that stands in for a SQLite file the gateway could not open (a read-only or full
//! file system, a damaged file): every call fails with the reason, so caching fails open, spend
//! is not recorded, and `/readyz` reports `degraded` with the reason, while the gateway goes on
//! forwarding. Nothing in the file is touched: work queued in it runs once the gateway starts on
//! a usable disk again.

use super::{CacheEntry, SpendRow, Store, StoreError, StoreResult};

pub struct Unusable(pub String);

impl Unusable {
    fn fail<T>(&self) -> StoreResult<T> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
}

#[async_trait::async_trait]
impl Store for Unusable {
    async fn get_cache(&self, _key: &str) -> StoreResult<Option<CacheEntry>> {
        self.fail()
    }
    async fn put_cache(&self, _entry: &CacheEntry) -> StoreResult<()> {
        self.fail()
    }
    async fn remove_cache(&self, _key: &str) -> StoreResult<()> {
        self.fail()
    }
    async fn list_caches(&self) -> StoreResult<Vec<CacheEntry>> {
        self.fail()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.fail()
    }
    async fn add_spend(&self, _rows: &[SpendRow], _retention_ms: i64) -> StoreResult<()> {
        self.fail()
    }
    async fn spend_rows(&self, _from_ms: i64, _to_ms: i64) -> StoreResult<Vec<SpendRow>> {
        self.fail()
    }
    async fn prune_spend(&self, _before_ms: i64) -> StoreResult<()> {
        self.fail()
    }
}
