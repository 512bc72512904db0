//! Request-path lookup in the cache registry (in-process tier) holding 100,000 entries, backed by
//! the in-memory store.

use criterion::{Criterion, criterion_group, criterion_main};
use gemgate::caching::registry::Registry;
use gemgate::store::{CacheEntry, MemoryStore, Store};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::sync::Arc;

const ENTRIES: usize = 100_000;

fn key(i: usize) -> String {
    hex::encode(Sha256::digest(format!("bench-registry-{i}").as_bytes()))
}

fn entry(i: usize) -> CacheEntry {
    CacheEntry {
        key: key(i),
        name: format!("cachedContents/bench{i:08}"),
        model: "models/gemini-2.5-flash".into(),
        scope: hex::encode(Sha256::digest(b"bench-key")),
        tokens: 8000,
        contents: 1,
        created_ms: 1,
        expire_ms: i64::MAX / 2,
        last_used_ms: 1,
        hits: 0,
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    // The gateway's default registry capacity.
    let reg = Registry::new(store, 1_000_000);
    rt.block_on(async {
        for i in 0..ENTRIES {
            reg.insert(entry(i)).await;
        }
    });
    assert_eq!(reg.entry_count(), ENTRIES as u64);
    let keys: Vec<String> = (0..ENTRIES).map(key).collect();
    let misses: Vec<String> = (0..1024).map(|i| key(ENTRIES + i)).collect();

    let mut g = c.benchmark_group("registry");
    // A stride through the keys so consecutive lookups touch unrelated entries.
    let mut i = 0usize;
    g.bench_function("get-hit/100k", |b| {
        b.iter(|| {
            i = (i + 7919) % ENTRIES;
            let e = reg.get(black_box(&keys[i]));
            debug_assert!(e.is_some());
            e
        })
    });
    let mut j = 0usize;
    g.bench_function("get-miss/100k", |b| {
        b.iter(|| {
            j = (j + 1) % misses.len();
            reg.get(black_box(&misses[j]))
        })
    });
    let mut k = 0usize;
    // What a hit does: look the entry up and count the use.
    g.bench_function("get-and-touch/100k", |b| {
        b.iter(|| {
            k = (k + 7919) % ENTRIES;
            if let Some(hot) = reg.get(black_box(&keys[k])) {
                reg.touch(&hot, 2);
            }
        })
    });
    g.finish();
}

criterion_group!(registry_benches, benches);
criterion_main!(registry_benches);
