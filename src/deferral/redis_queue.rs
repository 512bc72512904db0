//! The deferred queue in Redis, shared by every replica: each operation one Lua script (atomic),
//! every call bounded by `store.redis_timeout`, claims (`SET NX PX` + token) so one replica at a
//! time works on a job. Durable only as far as Redis persists: see docs/deferral.md.

use super::queue::*;
use super::redis_lua as lua;
use crate::store::StoreError;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;

pub struct RedisQueue {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
}

fn err(e: impl Into<StoreError>) -> QueueError {
    QueueError::Backend(e.into())
}

fn corrupt(what: &str) -> QueueError {
    QueueError::Backend(StoreError::Corrupt(what.to_string()))
}

/// Calls that move whole jobs (forming, inputs, results) carry up to `max_bytes_per_job`: they
/// get this many times the per-call bound.
const BULK: u32 = 20;

type Row = Vec<Option<String>>;

/// A job's cache state expires on its own in Redis after this long (longer than any job runs).
const JOB_CACHE_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

impl RedisQueue {
    /// Does not connect yet: the gateway starts while Redis is down and connects on first use.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self { client: redis::Client::open(url)?, prefix: prefix.to_string(), timeout, conn: Mutex::new(None) })
    }

    async fn conn(&self) -> QResult<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = crate::store::redis::connect(&self.client, self.timeout, self.timeout * BULK).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `script` with the key prefix as `ARGV[1]` and then `args`, within `bound`.
    async fn eval_within<T: redis::FromRedisValue>(
        &self,
        bound: Duration,
        script: &redis::Script,
        args: &[&[u8]],
    ) -> QResult<T> {
        let mut c = self.conn().await?;
        let mut inv = script.prepare_invoke();
        inv.arg(self.prefix.as_bytes());
        for a in args {
            inv.arg(*a);
        }
        tokio::time::timeout(bound, inv.invoke_async(&mut c)).await.map_err(|_| err(StoreError::TimedOut))?.map_err(err)
    }

    async fn eval<T: redis::FromRedisValue>(&self, script: &redis::Script, args: &[&[u8]]) -> QResult<T> {
        self.eval_within(self.timeout, script, args).await
    }

    async fn bulk<T: redis::FromRedisValue>(&self, script: &redis::Script, args: &[&[u8]]) -> QResult<T> {
        self.eval_within(self.timeout * BULK, script, args).await
    }

    fn job_cache_key(&self, job_id: &str) -> String {
        format!("{}q:jobcache:{job_id}", self.prefix)
    }

    fn claim_key(&self, key: &str) -> String {
        format!("{}q:claim:{key}", self.prefix)
    }
}

fn to_item(r: Row) -> QResult<Item> {
    let get = |i: usize| r.get(i).cloned().flatten();
    let num = |i: usize| get(i).and_then(|s| s.parse::<i64>().ok());
    Ok(Item {
        id: get(0).ok_or_else(|| corrupt("item row without id"))?,
        scope: get(1).unwrap_or_default(),
        model: get(2).unwrap_or_default(),
        state: ItemState::parse(&get(3).unwrap_or_default()),
        job_id: get(4),
        created_ms: num(5).unwrap_or_default(),
        result: get(6).and_then(|s| serde_json::from_str(&s).ok()).and_then(ItemResult::from_json),
        result_ms: num(7),
        webhook_attempts: num(8).unwrap_or_default() as u32,
        batch: get(9),
        batch_state: get(10),
    })
}

fn to_job(r: Vec<String>) -> QResult<Job> {
    let mut it = r.into_iter();
    let id = it.next().ok_or_else(|| corrupt("job row without id"))?;
    let mut h = HashMap::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        h.insert(k, v);
    }
    let num = |k: &str| h.get(k).and_then(|s| s.parse::<i64>().ok()).unwrap_or_default();
    Ok(Job {
        id,
        scope: h.get("scope").cloned().unwrap_or_default(),
        model: h.get("model").cloned().unwrap_or_default(),
        state: JobState::parse(h.get("state").map(String::as_str).unwrap_or("done")),
        batch: h.get("batch").cloned(),
        attempts: num("attempts") as u32,
        resubmits: num("resubmits") as u32,
        created_ms: num("created"),
        next_ms: num("next"),
        poll_interval_ms: num("interval"),
        upstream_state: h.get("upstream_state").cloned(),
    })
}

/// A job's hash as field/value pairs (absent options left out).
fn job_fields(j: &Job) -> Vec<Vec<u8>> {
    let mut f: Vec<(&str, String)> = vec![
        ("scope", j.scope.clone()),
        ("model", j.model.clone()),
        ("state", j.state.as_str().into()),
        ("attempts", j.attempts.to_string()),
        ("resubmits", j.resubmits.to_string()),
        ("created", j.created_ms.to_string()),
        ("next", j.next_ms.to_string()),
        ("interval", j.poll_interval_ms.to_string()),
    ];
    if let Some(b) = &j.batch {
        f.push(("batch", b.clone()));
    }
    if let Some(s) = &j.upstream_state {
        f.push(("upstream_state", s.clone()));
    }
    f.into_iter().flat_map(|(k, v)| [k.as_bytes().to_vec(), v.into_bytes()]).collect()
}

fn result_text(r: &ItemResult) -> String {
    r.to_json().to_string()
}

#[async_trait::async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, it: NewItem) -> QResult<()> {
        let (bytes, created) = (it.body.len().to_string(), it.created_ms.to_string());
        let webhook = if it.webhook { "1" } else { "0" };
        let args: [&[u8]; 8] = [
            it.id.as_bytes(),
            it.scope.as_bytes(),
            it.model.as_bytes(),
            &it.body,
            it.prefix.as_bytes(),
            bytes.as_bytes(),
            created.as_bytes(),
            webhook.as_bytes(),
        ];
        let n: i64 = self.eval(&lua::ENQUEUE, &args).await?;
        if n == 0 {
            return Err(QueueError::Duplicate(it.id.clone()));
        }
        Ok(())
    }

    async fn item(&self, id: &str) -> QResult<Option<Item>> {
        let row: Option<Row> = self.eval(&lua::ITEM, &[id.as_bytes()]).await?;
        row.map(to_item).transpose()
    }

    async fn items_of_scope(&self, scope: &str, limit: usize, after: Option<&str>) -> QResult<Vec<Item>> {
        let limit = limit.to_string();
        let args: [&[u8]; 3] = [scope.as_bytes(), limit.as_bytes(), after.unwrap_or("").as_bytes()];
        let rows: Vec<Row> = self.eval(&lua::ITEMS_OF_SCOPE, &args).await?;
        rows.into_iter().map(to_item).collect()
    }

    async fn resolve(&self, id: &str, result: &ItemResult, now: i64) -> QResult<bool> {
        let (text, now) = (result_text(result), now.to_string());
        let n: i64 = self.eval(&lua::RESOLVE, &[id.as_bytes(), text.as_bytes(), now.as_bytes()]).await?;
        Ok(n == 1)
    }

    async fn groups(&self) -> QResult<Vec<Group>> {
        let flat: Vec<String> = self.eval(&lua::GROUPS, &[]).await?;
        let mut out = Vec::new();
        for c in flat.chunks_exact(4) {
            let Some((scope, model)) = c[0].split_once('|') else { continue };
            out.push(Group {
                scope: scope.to_string(),
                model: model.to_string(),
                count: c[1].parse().unwrap_or_default(),
                bytes: c[2].parse().unwrap_or_default(),
                oldest_ms: c[3].parse::<f64>().unwrap_or_default() as i64,
            });
        }
        Ok(out)
    }

    async fn form_job(&self, job: &Job, max_items: usize, max_bytes: u64, _now: i64) -> QResult<usize> {
        let head = [job.id.clone(), job.scope.clone(), job.model.clone(), max_items.to_string(), max_bytes.to_string()];
        let next = job.next_ms.to_string();
        let fields = job_fields(job);
        let mut args: Vec<&[u8]> = head.iter().map(|s| s.as_bytes()).collect();
        args.push(next.as_bytes());
        args.extend(fields.iter().map(Vec::as_slice));
        let n: i64 = self.bulk(&lua::FORM_JOB, &args).await?;
        Ok(n as usize)
    }

    async fn jobs(&self, state: JobState) -> QResult<Vec<Job>> {
        let rows: Vec<Vec<String>> = self.eval(&lua::DUE_JOBS, &[state.as_str().as_bytes(), b"+inf", b"-1"]).await?;
        rows.into_iter().map(to_job).collect()
    }

    async fn due_jobs(&self, state: JobState, now: i64, limit: usize) -> QResult<Vec<Job>> {
        let (now, limit) = (now.to_string(), limit.to_string());
        let args: [&[u8]; 3] = [state.as_str().as_bytes(), now.as_bytes(), limit.as_bytes()];
        let rows: Vec<Vec<String>> = self.eval(&lua::DUE_JOBS, &args).await?;
        rows.into_iter().map(to_job).collect()
    }

    async fn job(&self, id: &str) -> QResult<Option<Job>> {
        let row: Option<Vec<String>> = self.eval(&lua::JOB, &[id.as_bytes()]).await?;
        row.map(to_job).transpose()
    }

    async fn job_inputs(&self, job_id: &str) -> QResult<Vec<(String, Vec<u8>)>> {
        let flat: Vec<Vec<u8>> = self.bulk(&lua::JOB_INPUTS, &[job_id.as_bytes()]).await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(id), Some(body)) = (it.next(), it.next()) {
            out.push((String::from_utf8_lossy(&id).into_owned(), body));
        }
        Ok(out)
    }

    async fn open_items(&self, job_id: &str) -> QResult<usize> {
        let n: i64 = self.eval(&lua::OPEN_ITEMS, &[job_id.as_bytes()]).await?;
        Ok(n as usize)
    }

    async fn note_attempt(&self, job_id: &str, next_ms: i64) -> QResult<()> {
        let next = next_ms.to_string();
        self.eval::<i64>(&lua::NOTE_ATTEMPT, &[job_id.as_bytes(), next.as_bytes()]).await.map(|_| ())
    }

    async fn mark_submitted(&self, job_id: &str, batch: &str, next_ms: i64) -> QResult<()> {
        let next = next_ms.to_string();
        let args: [&[u8]; 3] = [job_id.as_bytes(), batch.as_bytes(), next.as_bytes()];
        self.eval::<i64>(&lua::MARK_SUBMITTED, &args).await.map(|_| ())
    }

    async fn schedule(
        &self,
        job_id: &str,
        next_ms: i64,
        interval_ms: i64,
        upstream_state: Option<&str>,
    ) -> QResult<()> {
        let (next, interval) = (next_ms.to_string(), interval_ms.to_string());
        let args: [&[u8]; 4] =
            [job_id.as_bytes(), next.as_bytes(), interval.as_bytes(), upstream_state.unwrap_or("").as_bytes()];
        self.eval::<i64>(&lua::SCHEDULE, &args).await.map(|_| ())
    }

    async fn finish_job(
        &self,
        job_id: &str,
        upstream_state: &str,
        results: &[(String, ItemResult)],
        rest: &ItemResult,
        now: i64,
    ) -> QResult<usize> {
        let (now, rest) = (now.to_string(), result_text(rest));
        let texts: Vec<String> = results.iter().map(|(_, r)| result_text(r)).collect();
        let mut args: Vec<&[u8]> = vec![job_id.as_bytes(), upstream_state.as_bytes(), now.as_bytes(), rest.as_bytes()];
        for ((key, _), text) in results.iter().zip(&texts) {
            args.push(key.as_bytes());
            args.push(text.as_bytes());
        }
        let n: i64 = self.bulk(&lua::FINISH_JOB, &args).await?;
        Ok(n as usize)
    }

    async fn resubmit_job(&self, job_id: &str, upstream_state: &str, next: &Job) -> QResult<()> {
        let (now, next_ms) = (next.created_ms.to_string(), next.next_ms.to_string());
        let fields = job_fields(next);
        let mut args: Vec<&[u8]> =
            vec![job_id.as_bytes(), upstream_state.as_bytes(), now.as_bytes(), next.id.as_bytes(), next_ms.as_bytes()];
        args.extend(fields.iter().map(Vec::as_slice));
        self.bulk::<i64>(&lua::RESUBMIT_JOB, &args).await.map(|_| ())
    }

    async fn webhooks_due(&self, now: i64, limit: usize) -> QResult<Vec<Item>> {
        let (now, limit) = (now.to_string(), limit.to_string());
        let rows: Vec<Row> = self.eval(&lua::WEBHOOKS_DUE, &[now.as_bytes(), limit.as_bytes()]).await?;
        rows.into_iter().map(to_item).collect()
    }

    async fn webhook_attempted(&self, id: &str, delivered: bool, next_ms: Option<i64>) -> QResult<()> {
        let state = match (delivered, next_ms) {
            (true, _) => "2",
            (false, Some(_)) => "1",
            (false, None) => "3",
        };
        let next = next_ms.map(|n| n.to_string()).unwrap_or_default();
        let args: [&[u8]; 3] = [id.as_bytes(), state.as_bytes(), next.as_bytes()];
        self.eval::<i64>(&lua::WEBHOOK_ATTEMPTED, &args).await.map(|_| ())
    }

    async fn purge(&self, before_ms: i64) -> QResult<usize> {
        // In slices of 1000, each one bounded call, until a slice is short or deletes nothing
        // (its head is all pending webhooks): at 5,000 results/s one slice a minute would not
        // keep up.
        let before = before_ms.to_string();
        let mut total = 0;
        for _ in 0..1000 {
            let (n, seen): (usize, usize) = self.bulk(&lua::PURGE, &[before.as_bytes()]).await?;
            total += n;
            if seen < 1000 || n == 0 {
                break;
            }
        }
        Ok(total)
    }

    async fn stats(&self) -> QResult<Stats> {
        let v: Vec<i64> = self.eval(&lua::STATS, &[]).await?;
        let at = |i: usize| v.get(i).copied().unwrap_or_default();
        Ok(Stats {
            queued: at(0) as u64,
            assigned: at(1) as u64,
            jobs_intent: at(2) as u64,
            jobs_submitted: at(3) as u64,
            oldest_queued_ms: (at(4) >= 0 && at(0) > 0).then(|| at(4)),
        })
    }

    async fn job_cache(&self, job_id: &str) -> QResult<Option<String>> {
        let mut c = self.conn().await?;
        let key = self.job_cache_key(job_id);
        tokio::time::timeout(self.timeout, redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut c))
            .await
            .map_err(|_| err(StoreError::TimedOut))?
            .map_err(err)
    }

    async fn set_job_cache(&self, job_id: &str, state: &str, _now: i64) -> QResult<()> {
        let mut c = self.conn().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.job_cache_key(job_id)).arg(state).arg("PX").arg(JOB_CACHE_KEEP.as_millis() as u64);
        tokio::time::timeout(self.timeout, cmd.query_async::<()>(&mut c))
            .await
            .map_err(|_| err(StoreError::TimedOut))?
            .map_err(err)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn ping(&self) -> QResult<()> {
        let mut c = self.conn().await?;
        tokio::time::timeout(self.timeout, redis::cmd("PING").query_async::<String>(&mut c))
            .await
            .map_err(|_| err(StoreError::TimedOut))?
            .map_err(err)
            .map(|_| ())
    }

    async fn claim(&self, key: &str, ttl: Duration) -> QResult<Option<u64>> {
        let token: u64 = rand::random::<u64>() >> 1;
        let mut c = self.conn().await?;
        let cmd = redis::cmd("SET")
            .arg(self.claim_key(key))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .to_owned();
        let ok: Option<String> = tokio::time::timeout(self.timeout, cmd.query_async(&mut c))
            .await
            .map_err(|_| err(StoreError::TimedOut))?
            .map_err(err)?;
        Ok(ok.map(|_| token))
    }

    async fn renew(&self, key: &str, token: u64, ttl: Duration) -> QResult<bool> {
        let mut c = self.conn().await?;
        let mut inv = lua::RENEW.key(self.claim_key(key));
        inv.arg(token).arg(ttl.as_millis() as u64);
        let n: i64 = tokio::time::timeout(self.timeout, inv.invoke_async(&mut c))
            .await
            .map_err(|_| err(StoreError::TimedOut))?
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn release(&self, key: &str, token: u64) -> QResult<()> {
        let mut c = self.conn().await?;
        let mut inv = lua::RELEASE.key(self.claim_key(key));
        inv.arg(token);
        tokio::time::timeout(self.timeout, inv.invoke_async::<i64>(&mut c))
            .await
            .map_err(|_| err(StoreError::TimedOut))?
            .map_err(err)
            .map(|_| ())
    }
}
