//! Redis store, for many gateway replicas sharing one registry. Entries expire in Redis at the
//! cache's own expiry; creation is single-flight across replicas through a lease (`SET NX PX`)
//! with a fencing token, so a slow holder cannot overwrite a newer entry. Every call is bounded
//! by a short timeout: when Redis is down the gateway fails open instead of waiting.

use super::{CacheEntry, SpendRow, Store, StoreError, StoreResult, spend};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::Mutex;

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
}

fn err(e: impl Into<StoreError>) -> StoreError {
    e.into()
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

/// The next fencing token of a key. The counter expires a week after the last creation attempt
/// (so a prefix that went cold leaves nothing behind); no lease holder lives that long.
static NEXT_TOKEN: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new("local t = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[1]) return t")
});
const FENCE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Releases a lease only if we still hold it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Opens a self-reconnecting connection, failing within about `timeout` when Redis is down. The
/// manager's own first connect retries with backoff for seconds, so a plain connection is tried
/// first: callers (a request, the worker) learn at once that Redis is away and fail open.
pub(crate) async fn connect(
    client: &redis::Client,
    timeout: Duration,
    response_timeout: Duration,
) -> Result<ConnectionManager, StoreError> {
    let probe = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| StoreError::Unreachable("connect timed out".into()))?
        .map_err(|e| StoreError::Unreachable(e.to_string()))?;
    drop(probe);
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(response_timeout)
        .set_number_of_retries(1)
        .set_max_delay(200);
    tokio::time::timeout(timeout * 4, ConnectionManager::new_with_config(client.clone(), cfg))
        .await
        .map_err(|_| StoreError::Unreachable("connect timed out".into()))?
        .map_err(|e| StoreError::Unreachable(e.to_string()))
}

impl RedisStore {
    /// Does not connect yet: the gateway starts (and stays up) while Redis is down.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self { client: redis::Client::open(url)?, prefix: prefix.to_string(), timeout, conn: Mutex::new(None) })
    }

    async fn conn(&self) -> StoreResult<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = connect(&self.client, self.timeout, self.timeout).await.map_err(err)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        let mut c = self.conn().await?;
        tokio::time::timeout(self.timeout, cmd.query_async(&mut c))
            .await
            .map_err(|_| StoreError::TimedOut)?
            .map_err(err)
    }

    fn k(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn get_cache(&self, key: &str) -> StoreResult<Option<CacheEntry>> {
        let raw: Option<String> = self.run(redis::cmd("GET").arg(self.k("cache", key))).await?;
        raw.map(|s| serde_json::from_str(&s).map_err(err)).transpose()
    }

    async fn put_cache(&self, e: &CacheEntry) -> StoreResult<()> {
        let json = serde_json::to_string(e).map_err(err)?;
        let at = e.expire_ms.max(crate::clock::system_ms() + 1_000);
        self.run::<()>(redis::cmd("SET").arg(self.k("cache", &e.key)).arg(json).arg("PXAT").arg(at)).await
    }

    async fn remove_cache(&self, key: &str) -> StoreResult<()> {
        self.run::<()>(redis::cmd("DEL").arg(self.k("cache", key))).await
    }

    async fn list_caches(&self) -> StoreResult<Vec<CacheEntry>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        let pattern = self.k("cache", "*");
        loop {
            let (next, keys): (u64, Vec<String>) =
                self.run(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000)).await?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> = self.run(redis::cmd("MGET").arg(&keys)).await?;
                out.extend(values.into_iter().flatten().filter_map(|s| serde_json::from_str(&s).ok()));
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
        let mut c = self.conn().await?;
        let mut inv = NEXT_TOKEN.key(self.k("fence", key));
        inv.arg(FENCE_TTL_MS);
        let token: u64 = tokio::time::timeout(self.timeout, inv.invoke_async(&mut c))
            .await
            .map_err(|_| StoreError::TimedOut)?
            .map_err(err)?;
        let ok: Option<String> = self
            .run(redis::cmd("SET").arg(self.k("lease", key)).arg(token).arg("NX").arg("PX").arg(ttl.as_millis() as u64))
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
            .map_err(|_| StoreError::TimedOut)?
            .map_err(err)?;
        Ok(())
    }

    async fn put_cache_fenced(&self, e: &CacheEntry, token: u64) -> StoreResult<bool> {
        let json = serde_json::to_string(e).map_err(err)?;
        let at = e.expire_ms.max(crate::clock::system_ms() + 1_000);
        let mut c = self.conn().await?;
        let script = redis::Script::new(FENCED_PUT);
        let mut inv = script.key(self.k("cache", &e.key));
        inv.key(self.k("lease", &e.key)).key(self.k("cachefence", &e.key)).arg(json).arg(token).arg(at);
        let done: i64 = tokio::time::timeout(self.timeout, inv.invoke_async(&mut c))
            .await
            .map_err(|_| StoreError::TimedOut)?
            .map_err(err)?;
        Ok(done == 1)
    }

    async fn add_spend(&self, rows: &[SpendRow], retention_ms: i64) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let pipe = spend::redis_add_pipeline(&self.prefix, rows, retention_ms);
        let mut c = self.conn().await?;
        tokio::time::timeout(self.timeout * 4, pipe.query_async::<()>(&mut c))
            .await
            .map_err(|_| StoreError::TimedOut)?
            .map_err(err)
    }

    async fn spend_rows(&self, from_ms: i64, to_ms: i64) -> StoreResult<Vec<SpendRow>> {
        let hours: Vec<i64> = spend::hours(from_ms, to_ms).collect();
        let mut pipe = redis::pipe();
        for h in &hours {
            pipe.cmd("HGETALL").arg(self.k("spend", &h.to_string()));
        }
        let mut c = self.conn().await?;
        let all: Vec<std::collections::HashMap<String, String>> =
            tokio::time::timeout(self.timeout * 4, pipe.query_async(&mut c))
                .await
                .map_err(|_| StoreError::TimedOut)?
                .map_err(err)?;
        let mut out = Vec::new();
        for (h, fields) in hours.into_iter().zip(all) {
            out.extend(spend::redis_parse(h, fields)?);
        }
        Ok(out)
    }

    /// Each hour's hash also expires by itself, `retention_ms` after its hour.
    async fn prune_spend(&self, before_ms: i64) -> StoreResult<()> {
        let pattern = self.k("spend", "*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) =
                self.run(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000)).await?;
            let old: Vec<&String> = keys
                .iter()
                .filter(|k| k.rsplit(':').next().and_then(|h| h.parse::<i64>().ok()).is_some_and(|h| h < before_ms))
                .collect();
            if !old.is_empty() {
                self.run::<()>(redis::cmd("DEL").arg(old)).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
