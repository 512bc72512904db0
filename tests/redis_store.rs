//! The Redis store against a real `redis-server`: the store contract, an exclusive creation
//! lease with fencing, and failing fast while Redis is down, then recovering without a restart.

mod support;

use gemgate::store::{CacheEntry, RedisStore, Store};
use std::time::Duration;
use support::RedisServer;

fn entry(key: &str, expire_ms: i64) -> CacheEntry {
    CacheEntry::new(key, &format!("cachedContents/{key}"), "models/gemini-2.5-flash", "scope", 8000, 2, 1, expire_ms)
}

fn far() -> i64 {
    gemgate::clock::system_ms() + 3_600_000
}

#[tokio::test]
async fn satisfies_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start_at(&dir.path().join("r.sock"));
    let store = RedisStore::open(&server.url, "t:", Duration::from_millis(500)).unwrap();
    assert!(store.get_cache("a").await.unwrap().is_none());
    let (a, b) = (entry("a", far()), entry("b", far() + 1));
    store.put_cache(&a).await.unwrap();
    store.put_cache(&b).await.unwrap();
    assert_eq!(store.get_cache("a").await.unwrap(), Some(a.clone()));
    let mut all = store.list_caches().await.unwrap();
    all.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(all, vec![a, b]);
    store.remove_cache("a").await.unwrap();
    assert!(store.get_cache("a").await.unwrap().is_none());
    // Entries vanish from Redis at the cache's expiry.
    store.put_cache(&entry("short", gemgate::clock::system_ms() + 1_100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(store.get_cache("short").await.unwrap().is_none());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn lease_is_exclusive_and_fencing_rejects_a_stale_holder() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start_at(&dir.path().join("r.sock"));
    let store = RedisStore::open(&server.url, "t:", Duration::from_millis(500)).unwrap();
    let slow = store.acquire_lease("k", Duration::from_millis(100)).await.unwrap().expect("first holder");
    assert!(store.acquire_lease("k", Duration::from_secs(5)).await.unwrap().is_none(), "lease is exclusive");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let fresh = store.acquire_lease("k", Duration::from_secs(5)).await.unwrap().expect("a lapsed lease is taken over");
    assert!(fresh > slow);
    let mut newer = entry("k", far());
    newer.name = "cachedContents/newer".into();
    assert!(store.put_cache_fenced(&newer, fresh).await.unwrap());
    store.release_lease("k", fresh).await.unwrap();
    let mut stale = entry("k", far());
    stale.name = "cachedContents/stale".into();
    assert!(!store.put_cache_fenced(&stale, slow).await.unwrap(), "the slow holder is fenced off");
    assert_eq!(store.get_cache("k").await.unwrap().unwrap().name, "cachedContents/newer");
}

#[tokio::test]
async fn a_down_server_fails_fast_and_the_same_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let server = RedisServer::start_at(&sock);
    let store = RedisStore::open(&server.url, "t:", Duration::from_millis(200)).unwrap();
    store.ping().await.unwrap();
    drop(server);
    let started = std::time::Instant::now();
    assert!(store.ping().await.is_err());
    assert!(store.get_cache("a").await.is_err());
    assert!(store.acquire_lease("a", Duration::from_secs(1)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3), "bounded: {:?}", started.elapsed());
    let _again = RedisServer::start_at(&sock);
    let mut ok = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the same store reconnects once Redis is back");
}
