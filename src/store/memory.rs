//! In-memory store: nothing survives a restart. For tests and throwaway runs.

use super::spend::MemoryRollups;
use super::{CacheEntry, SpendRow, Store, StoreResult};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    caches: Mutex<HashMap<String, CacheEntry>>,
    spend: MemoryRollups,
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get_cache(&self, key: &str) -> StoreResult<Option<CacheEntry>> {
        Ok(self.caches.lock().expect("poisoned").get(key).cloned())
    }
    async fn put_cache(&self, entry: &CacheEntry) -> StoreResult<()> {
        self.caches.lock().expect("poisoned").insert(entry.key.clone(), entry.clone());
        Ok(())
    }
    async fn remove_cache(&self, key: &str) -> StoreResult<()> {
        self.caches.lock().expect("poisoned").remove(key);
        Ok(())
    }
    async fn list_caches(&self) -> StoreResult<Vec<CacheEntry>> {
        Ok(self.caches.lock().expect("poisoned").values().cloned().collect())
    }
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn add_spend(&self, rows: &[SpendRow], _retention_ms: i64) -> StoreResult<()> {
        self.spend.add(rows);
        Ok(())
    }
    async fn spend_rows(&self, from_ms: i64, to_ms: i64) -> StoreResult<Vec<SpendRow>> {
        Ok(self.spend.rows(from_ms, to_ms))
    }
    async fn prune_spend(&self, before_ms: i64) -> StoreResult<()> {
        self.spend.prune(before_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn satisfies_the_store_contract() {
        super::super::contract::round_trip(&super::MemoryStore::default()).await;
        super::super::contract::spend_rollups(&super::MemoryStore::default()).await;
    }
}
