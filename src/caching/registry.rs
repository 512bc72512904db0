//! The cache registry: an in-process tier (moka) in front of the durable store. Lookups on the
//! request path read only the in-process tier; the store is read at start-up (so a restarted
//! gateway keeps using its still-valid caches) and just before a creation (so a cache another
//! process made is found instead of duplicated). Never a `cachedContents.list` upstream.

use crate::store::{CacheEntry, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// An entry of the in-process tier. Lookups hand out an `Arc` (no copy of the strings), and a
/// hit only bumps two atomics: the hot path never rewrites the map.
#[derive(Debug)]
pub struct Hot {
    entry: CacheEntry,
    hits: AtomicU64,
    last_used_ms: AtomicI64,
    /// Hit count last written to the store.
    flushed_hits: AtomicU64,
}

impl Hot {
    fn new(entry: CacheEntry) -> Arc<Self> {
        Arc::new(Hot {
            hits: AtomicU64::new(entry.hits),
            last_used_ms: AtomicI64::new(entry.last_used_ms),
            flushed_hits: AtomicU64::new(entry.hits),
            entry,
        })
    }

    /// The entry with its current hit count and last use.
    pub fn snapshot(&self) -> CacheEntry {
        CacheEntry {
            hits: self.hits.load(Ordering::Relaxed),
            last_used_ms: self.last_used_ms.load(Ordering::Relaxed),
            ..self.entry.clone()
        }
    }
}

impl std::ops::Deref for Hot {
    type Target = CacheEntry;
    fn deref(&self) -> &CacheEntry {
        &self.entry
    }
}

pub struct Registry {
    hot: moka::sync::Cache<String, Arc<Hot>>,
    store: Arc<dyn Store>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, capacity: u64) -> Self {
        Self { hot: moka::sync::Cache::builder().max_capacity(capacity).build(), store }
    }

    /// In-process lookup only (the hot path).
    pub fn get(&self, key: &str) -> Option<Arc<Hot>> {
        self.hot.get(key)
    }

    /// In-process, then the store; a store hit is promoted.
    pub async fn get_or_load(&self, key: &str) -> Option<Arc<Hot>> {
        if let Some(e) = self.hot.get(key) {
            return Some(e);
        }
        match self.store.get_cache(key).await {
            Ok(Some(e)) => {
                let hot = Hot::new(e);
                self.hot.insert(key.to_string(), hot.clone());
                Some(hot)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(%err, "registry: store lookup failed");
                None
            }
        }
    }

    /// Records an entry in both tiers. A store failure is logged; the entry still serves this
    /// process.
    pub async fn insert(&self, entry: CacheEntry) {
        self.hot.insert(entry.key.clone(), Hot::new(entry.clone()));
        if let Err(err) = self.store.put_cache(&entry).await {
            tracing::warn!(%err, "registry: store write failed");
        }
    }

    /// Records an entry made under lease `token`: written to the store only if no newer lease or
    /// entry exists there. Returns false when fenced off (then nothing is recorded). A store
    /// failure keeps the entry in-process (fail open).
    pub async fn insert_fenced(&self, entry: CacheEntry, token: u64) -> bool {
        match self.store.put_cache_fenced(&entry, token).await {
            Ok(false) => false,
            Ok(true) => {
                self.hot.insert(entry.key.clone(), Hot::new(entry));
                true
            }
            Err(err) => {
                tracing::warn!(%err, "registry: fenced store write failed");
                self.hot.insert(entry.key.clone(), Hot::new(entry));
                true
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Counts a use (in-process only; the sweeper writes counts back to the store).
    pub fn touch(&self, hot: &Hot, now_ms: i64) {
        hot.hits.fetch_add(1, Ordering::Relaxed);
        hot.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub async fn remove(&self, key: &str) {
        self.hot.invalidate(key);
        if let Err(err) = self.store.remove_cache(key).await {
            tracing::warn!(%err, "registry: store delete failed");
        }
    }

    /// Loads the store's still-valid entries into the in-process tier; drops expired ones.
    pub async fn warm(&self, now_ms: i64) -> usize {
        let entries = match self.store.list_caches().await {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(%err, "registry: could not warm from the store");
                return 0;
            }
        };
        let mut kept = 0;
        for e in entries {
            if e.expire_ms > now_ms {
                self.hot.insert(e.key.clone(), Hot::new(e));
                kept += 1;
            } else {
                let _ = self.store.remove_cache(&e.key).await;
            }
        }
        kept
    }

    /// The in-process tier's entries (cheap: shared handles, no copies).
    pub fn hots(&self) -> Vec<Arc<Hot>> {
        self.hot.iter().map(|(_, e)| e).collect()
    }

    /// Snapshot of the in-process tier.
    pub fn entries(&self) -> Vec<CacheEntry> {
        self.hot.iter().map(|(_, e)| e.snapshot()).collect()
    }

    pub fn entry_count(&self) -> u64 {
        self.hot.run_pending_tasks();
        self.hot.entry_count()
    }

    /// Writes an entry's in-process hit count and last use back to the store, if they changed
    /// since the last write.
    pub async fn flush(&self, hot: &Hot) {
        let hits = hot.hits.load(Ordering::Relaxed);
        if hot.flushed_hits.load(Ordering::Relaxed) == hits {
            return;
        }
        match self.store.put_cache(&hot.snapshot()).await {
            Ok(()) => hot.flushed_hits.store(hits, Ordering::Relaxed),
            Err(err) => tracing::warn!(%err, "registry: store flush failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, contract::entry};

    #[tokio::test]
    async fn warm_start_keeps_valid_entries_and_drops_expired_ones() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        store.put_cache(&entry("live", 10_000)).await.unwrap();
        store.put_cache(&entry("dead", 10)).await.unwrap();
        let reg = Registry::new(store.clone(), 100);
        assert_eq!(reg.warm(1_000).await, 1);
        assert!(reg.get("live").is_some());
        assert!(reg.get("dead").is_none());
        assert!(store.get_cache("dead").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn store_entries_are_found_before_creating() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let reg = Registry::new(store.clone(), 100);
        store.put_cache(&entry("other-process", 10_000)).await.unwrap();
        assert!(reg.get("other-process").is_none());
        assert!(reg.get_or_load("other-process").await.is_some());
        assert!(reg.get("other-process").is_some());
    }
}
