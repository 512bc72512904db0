//! Redis store, for many gateway replicas sharing one registry. Entries expire in Redis at the
//! cache's own expiry; creation is single-flight across replicas through a lease (`SET NX PX`)
//! with a fencing token, so a slow holder cannot overwrite a newer entry. Every call is bounded
//! by a short timeout: when Redis is down the gateway fails open instead of waiting.

use super::{CacheEntry, Store, StoreError, StoreResult};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::Mutex;

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Writes the entry only if no newer lease or newer entry exists (fencing).
const FENCED_PUT: &str = r"
local lease = redis.call('GET', KEYS[2])
if lease and tonumber(lease) > tonumber(ARGV[2]) then return 0 end
local f = redis.call('GET', KEYS[3])
if f and tonumber(f) > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
redis.call('SET', KEYS[3], ARGV[2], 'PXAT', ARGV[3])
return 1
";

/// Releases a lease only if we still hold it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

impl RedisStore {
    /// Does not connect yet: the gateway starts (and stays up) while Redis is down.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: prefix.to_string(),
            timeout,
            conn: Mutex::new(None),
        })
    }

    async fn conn(&self) -> StoreResult<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let c = tokio::time::timeout(
            self.timeout * 4,
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await
        .map_err(|_| err("redis: connect timed out"))?
        .map_err(err)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        let mut c = self.conn().await?;
        tokio::time::timeout(self.timeout, cmd.query_async(&mut c))
            .await
            .map_err(|_| err("redis: timed out"))?
            .map_err(err)
    }

    fn k(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn get_cache(&self, key: &str) -> StoreResult<Option<CacheEntry>> {
        let raw: Option<String> = self
            .run(redis::cmd("GET").arg(self.k("cache", key)))
            .await?;
        raw.map(|s| serde_json::from_str(&s).map_err(err))
            .transpose()
    }

    async fn put_cache(&self, e: &CacheEntry) -> StoreResult<()> {
        let json = serde_json::to_string(e).map_err(err)?;
        let at = e.expire_ms.max(crate::clock::system_ms() + 1_000);
        self.run::<()>(
            redis::cmd("SET")
                .arg(self.k("cache", &e.key))
                .arg(json)
                .arg("PXAT")
                .arg(at),
        )
        .await
    }

    async fn remove_cache(&self, key: &str) -> StoreResult<()> {
        self.run::<()>(redis::cmd("DEL").arg(self.k("cache", key)))
            .await
    }

    async fn list_caches(&self) -> StoreResult<Vec<CacheEntry>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        let pattern = self.k("cache", "*");
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> = self.run(redis::cmd("MGET").arg(&keys)).await?;
                out.extend(
                    values
                        .into_iter()
                        .flatten()
                        .filter_map(|s| serde_json::from_str(&s).ok()),
                );
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    fn shared(&self) -> bool {
        true
    }

    async fn acquire_lease(&self, key: &str, ttl: Duration) -> StoreResult<Option<u64>> {
        let token: u64 = self
            .run(redis::cmd("INCR").arg(self.k("fence", key)))
            .await?;
        let ok: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(self.k("lease", key))
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64),
            )
            .await?;
        Ok(ok.map(|_| token))
    }

    async fn release_lease(&self, key: &str, token: u64) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let script = redis::Script::new(RELEASE);
        let mut inv = script.key(self.k("lease", key));
        inv.arg(token);
        tokio::time::timeout(self.timeout, inv.invoke_async::<i64>(&mut c))
            .await
            .map_err(|_| err("redis: timed out"))?
            .map_err(err)?;
        Ok(())
    }

    async fn put_cache_fenced(&self, e: &CacheEntry, token: u64) -> StoreResult<bool> {
        let json = serde_json::to_string(e).map_err(err)?;
        let at = e.expire_ms.max(crate::clock::system_ms() + 1_000);
        let mut c = self.conn().await?;
        let script = redis::Script::new(FENCED_PUT);
        let mut inv = script.key(self.k("cache", &e.key));
        inv.key(self.k("lease", &e.key))
            .key(self.k("cachefence", &e.key))
            .arg(json)
            .arg(token)
            .arg(at);
        let done: i64 = tokio::time::timeout(self.timeout, inv.invoke_async(&mut c))
            .await
            .map_err(|_| err("redis: timed out"))?
            .map_err(err)?;
        Ok(done == 1)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A real `redis-server` on a Unix socket in a temporary directory, killed on drop.

    pub struct RedisServer {
        child: std::process::Child,
        pub url: String,
        _dir: Option<tempfile::TempDir>,
    }

    impl RedisServer {
        pub fn start() -> RedisServer {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Self::start_at(&dir.path().join("redis.sock"));
            s._dir = Some(dir);
            s
        }

        /// Starts a server on a given socket path (to restart one where it was).
        pub fn start_at(sock: &std::path::Path) -> RedisServer {
            let sock = sock.to_path_buf();
            let _ = std::fs::remove_file(&sock);
            let child = std::process::Command::new("redis-server")
                .args(["--port", "0", "--unixsocket"])
                .arg(&sock)
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server); .ci/run installs it");
            for _ in 0..200 {
                if sock.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            RedisServer {
                child,
                url: format!("redis+unix://{}", sock.display()),
                _dir: None,
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::RedisServer;
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn satisfies_the_store_contract() {
        let server = RedisServer::start();
        let store = RedisStore::open(&server.url, "t:", Duration::from_millis(500)).unwrap();
        // Entries expire in Redis at their expiry, so give the contract far-future ones.
        let far = crate::clock::system_ms() + 3_600_000;
        store.put_cache(&contract::entry("x", far)).await.unwrap();
        assert_eq!(store.get_cache("x").await.unwrap().unwrap().expire_ms, far);
        store.remove_cache("x").await.unwrap();
        assert!(store.get_cache("x").await.unwrap().is_none());
        let a = contract::entry("a", far);
        let b = contract::entry("b", far + 1);
        store.put_cache(&a).await.unwrap();
        store.put_cache(&b).await.unwrap();
        let mut all = store.list_caches().await.unwrap();
        all.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(all, vec![a, b]);
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn lease_is_exclusive_and_fencing_rejects_a_stale_holder() {
        let server = RedisServer::start();
        let store = RedisStore::open(&server.url, "t:", Duration::from_millis(500)).unwrap();
        let far = crate::clock::system_ms() + 3_600_000;
        let slow = store
            .acquire_lease("k", Duration::from_millis(100))
            .await
            .unwrap()
            .expect("first holder");
        assert!(
            store
                .acquire_lease("k", Duration::from_secs(5))
                .await
                .unwrap()
                .is_none(),
            "lease is exclusive"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        let fresh = store
            .acquire_lease("k", Duration::from_secs(5))
            .await
            .unwrap()
            .expect("lapsed lease is taken over");
        assert!(fresh > slow);
        let mut newer = contract::entry("k", far);
        newer.name = "cachedContents/newer".into();
        assert!(store.put_cache_fenced(&newer, fresh).await.unwrap());
        store.release_lease("k", fresh).await.unwrap();
        let mut stale = contract::entry("k", far);
        stale.name = "cachedContents/stale".into();
        assert!(
            !store.put_cache_fenced(&stale, slow).await.unwrap(),
            "slow holder is fenced off"
        );
        assert_eq!(
            store.get_cache("k").await.unwrap().unwrap().name,
            "cachedContents/newer"
        );
    }

    #[tokio::test]
    async fn a_down_server_fails_fast_and_recovery_needs_no_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("r.sock");
        let server = RedisServer::start_at(&sock);
        let store = RedisStore::open(&server.url, "t:", Duration::from_millis(200)).unwrap();
        store.ping().await.unwrap();
        drop(server);
        let started = std::time::Instant::now();
        assert!(store.ping().await.is_err());
        assert!(store.get_cache("a").await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded: {:?}",
            started.elapsed()
        );
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
}
