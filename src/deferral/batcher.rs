//! From queue to upstream job: flush (count, bytes, age) per (scope, model) into job intents, then
//! submit each intent, reconciling by `displayName` first whenever an earlier create may have
//! reached the upstream. The intent is on disk before the create call is sent.

use super::Inner;
use super::batch_api::{BatchApi, failed_submission};
use super::claims::Held;
use super::credentials::Credential;
use super::queue::{Group, Job, JobState};
use crate::config::DeferralConfig;
use crate::proxy::UpstreamFailure;
use crate::telemetry;

/// Whether a group is due for a flush at `now` (pure; tested on virtual time).
pub fn due(g: &Group, now: i64, cfg: &DeferralConfig) -> bool {
    g.count >= cfg.max_items_per_job
        || g.bytes >= cfg.max_bytes_per_job
        || now - g.oldest_ms >= cfg.max_age.as_millis() as i64
}

/// Delay before retry `attempt` (1-based) of a failed call: doubling from `poll_initial`, capped
/// at `poll_max`.
pub fn retry_delay_ms(attempt: u32, cfg: &DeferralConfig) -> i64 {
    let base = cfg.poll_initial.as_millis() as i64;
    let max = cfg.poll_max.as_millis() as i64;
    base.saturating_mul(1i64 << attempt.saturating_sub(1).min(30)).min(max)
}

/// At most this many jobs are submitted (or polled) per tick; the rest wait for the next one.
pub const DUE_PER_TICK: usize = 500;

pub fn new_job(scope: &str, model: &str, resubmits: u32, now: i64) -> Job {
    Job {
        id: super::new_id(24),
        scope: scope.to_string(),
        model: model.to_string(),
        state: JobState::Intent,
        batch: None,
        attempts: 0,
        resubmits,
        created_ms: now,
        next_ms: now,
        poll_interval_ms: 0,
        upstream_state: None,
    }
}

/// Turns every due group whose credential is known into job intents. With replicas, one at a time
/// (forming is atomic anyway; the claim keeps two replicas from splitting a group into two jobs).
pub async fn flush(d: &Inner) {
    super::claims::with_claim(d, "flush", |_| flush_all(d)).await;
}

async fn flush_all(d: &Inner) {
    for _ in 0..1000 {
        let now = d.clock.now_ms();
        let groups = match d.queue.groups().await {
            Ok(g) => g,
            Err(e) => return tracing::warn!(error = %e, "queue scan failed"),
        };
        let Some(g) = groups.into_iter().find(|g| due(g, now, &d.cfg) && d.creds.get(&g.scope).is_some()) else {
            return;
        };
        let job = new_job(&g.scope, &g.model, 0, now);
        match d.queue.form_job(&job, d.cfg.max_items_per_job, d.cfg.max_bytes_per_job, now).await {
            Ok(0) => return,
            Ok(n) => {
                super::failpoint("formed");
                metrics::counter!(telemetry::DEFER_JOBS, "state" => "formed").increment(1);
                tracing::info!(job = %job.id, model = %g.model, items = n, "batch job formed");
            }
            Err(e) => return tracing::warn!(error = %e, "forming a job failed"),
        }
    }
}

/// Submits due job intents. A job whose create may already have reached the upstream (an attempt
/// is recorded) is looked up by `displayName` first and only created if it is not there.
pub async fn submit(d: &Inner) {
    let intents = match d.queue.due_jobs(JobState::Intent, d.clock.now_ms(), DUE_PER_TICK).await {
        Ok(j) => j,
        Err(e) => return tracing::warn!(error = %e, "job scan failed"),
    };
    for job in intents {
        let now = d.clock.now_ms();
        if job.next_ms > now {
            continue;
        }
        let Some(cred) = d.creds.get(&job.scope) else {
            continue;
        };
        let key = format!("job:{}", job.id);
        super::claims::with_claim(d, &key, |held| submit_claimed(d, held, &job.id, cred)).await;
    }
}

/// Submits one job intent while holding its claim, reading it again first: another replica may
/// have submitted it (or recorded an attempt) since the scan.
async fn submit_claimed(d: &Inner, held: Held, id: &str, cred: Credential) {
    let job = match d.queue.job(id).await {
        Ok(Some(j)) if j.state == JobState::Intent && j.next_ms <= d.clock.now_ms() => j,
        Ok(_) => return,
        Err(e) => return tracing::warn!(job = %id, error = %e, "job read failed"),
    };
    let now = d.clock.now_ms();
    let api = BatchApi { upstream: &d.upstream, cred: &cred, version: &d.cfg.upstream_version, timeout: d.timeout };
    if let Err(e) = submit_one(d, &api, &job, &held).await {
        let retry = now + retry_delay_ms(job.attempts + 1, &d.cfg);
        let attempts = job.attempts + 1;
        let result = if !e.retryable() {
            tracing::warn!(job = %job.id, error = %e, "batch submission rejected; failing its requests");
            failed_submission(&e)
        } else if attempts < d.cfg.max_submit_attempts {
            tracing::warn!(job = %job.id, error = %e, attempts, "batch submission failed; will reconcile and retry");
            let _ = d.queue.schedule(&job.id, retry, 0, None).await;
            return;
        } else {
            tracing::warn!(job = %job.id, error = %e, attempts, "batch submission kept failing; failing its requests");
            let msg = format!("gemgate: the batch job could not be submitted after {attempts} attempts: {e}");
            super::ItemResult::error(503, msg)
        };
        metrics::counter!(telemetry::DEFER_JOBS, "state" => "rejected").increment(1);
        if let Err(e) = super::batch_cache::release(d, &api, &job.id).await {
            tracing::warn!(job = %job.id, error = %e, "releasing the job's caches failed");
        }
        if let Ok(n) = d.queue.finish_job(&job.id, "REJECTED", &[], &result, now).await {
            metrics::counter!(telemetry::DEFER_ITEMS, "outcome" => "error").increment(n as u64);
        }
        super::results_changed(d);
    }
}

async fn submit_one(d: &Inner, api: &BatchApi<'_>, job: &Job, held: &Held) -> Result<(), UpstreamFailure> {
    let now = d.clock.now_ms();
    let first_poll = now + d.cfg.poll_initial.as_millis() as i64;
    if job.attempts > 0 {
        let found = match api.find(&job.id).await {
            Ok(found) => found,
            Err(e) => {
                // A failed look-up is an attempt too, or an upstream that keeps failing it would
                // keep the job retrying forever.
                let _ = d.queue.note_attempt(&job.id, now + retry_delay_ms(job.attempts + 1, &d.cfg)).await;
                return Err(e);
            }
        };
        if let Some(batch) = found {
            tracing::info!(job = %job.id, %batch, "reconciled: job already exists upstream");
            metrics::counter!(telemetry::DEFER_JOBS, "state" => "reconciled").increment(1);
            return record(d, &job.id, &batch, first_poll).await;
        }
    }
    let inputs = d.queue.job_inputs(&job.id).await?;
    // Decided (and the caches made) before the attempt is noted: a crash in between finds them
    // recorded or by name, and the job is still only an intent.
    if !held.confirm(d).await {
        return Err(UpstreamFailure::Internal("lost the job's claim before making its caches".into()));
    }
    let inputs = super::batch_cache::prepare(d, api, job, inputs).await?;
    if inputs.is_empty() {
        // Every request was cancelled before submission.
        let rest = super::ItemResult::error(499, "cancelled");
        let _ = d.queue.finish_job(&job.id, "NOT_SUBMITTED", &[], &rest, now).await;
        return Ok(());
    }
    // The attempt is durable before the call: after a crash the job is reconciled, not resent.
    let retry = now + retry_delay_ms(job.attempts + 1, &d.cfg);
    if !held.confirm(d).await {
        return Err(UpstreamFailure::Internal("lost the job's claim before sending".into()));
    }
    d.queue.note_attempt(&job.id, retry).await?;
    super::failpoint("attempt_noted");
    let batch = api.create(&job.model, &job.id, &inputs, d.cfg.inline_max_bytes).await?;
    super::failpoint("created");
    metrics::counter!(telemetry::DEFER_JOBS, "state" => "submitted").increment(1);
    tracing::info!(job = %job.id, %batch, items = inputs.len(), "batch job submitted");
    record(d, &job.id, &batch, first_poll).await
}

async fn record(d: &Inner, job: &str, batch: &str, next: i64) -> Result<(), UpstreamFailure> {
    d.queue.mark_submitted(job, batch, next).await?;
    d.queue.schedule(job, next, d.cfg.poll_initial.as_millis() as i64, None).await.map_err(UpstreamFailure::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn group(count: usize, bytes: u64, oldest_ms: i64) -> Group {
        Group { scope: "s".into(), model: "models/m".into(), count, bytes, oldest_ms }
    }

    #[test]
    fn flushes_by_count_bytes_or_age_on_virtual_time() {
        let cfg = DeferralConfig {
            max_items_per_job: 10,
            max_bytes_per_job: 1000,
            max_age: Duration::from_secs(30),
            ..Default::default()
        };
        let t0 = 1_000_000;
        assert!(!due(&group(3, 100, t0), t0 + 29_999, &cfg));
        assert!(due(&group(3, 100, t0), t0 + 30_000, &cfg));
        assert!(due(&group(10, 100, t0), t0, &cfg));
        assert!(due(&group(1, 1000, t0), t0, &cfg));
    }

    #[tokio::test]
    async fn groups_flush_on_virtual_time_and_only_with_a_known_credential() {
        use crate::clock::Clock;
        use crate::deferral::queue::{NewItem, Queue};
        use crate::deferral::{Deferral, SqliteQueue};
        use std::sync::Arc;
        let clock = Clock::manual(1_000_000);
        let cfg = DeferralConfig { max_age: Duration::from_secs(60), ..Default::default() };
        let queue = Arc::new(SqliteQueue::in_memory().unwrap());
        let upstream = crate::proxy::Upstream::new(&Default::default()).unwrap();
        let catalog = crate::catalog::Catalog::new(
            Default::default(),
            crate::accounting::PriceTable::builtin(),
            Default::default(),
            upstream.clone(),
            Duration::from_secs(1),
            Default::default(),
        );
        let d = Deferral::with_queue(
            cfg,
            queue.clone(),
            catalog,
            upstream,
            Duration::from_secs(1),
            clock.clone(),
            Default::default(),
            Default::default(),
        );
        let mut h = http::HeaderMap::new();
        h.insert("x-goog-api-key", "k".parse().unwrap());
        let scope = d.observe(&h, None).unwrap();
        for (id, scope) in [("a", scope.as_str()), ("b", "a-scope-whose-key-is-unknown")] {
            let item = NewItem {
                id: id.into(),
                scope: scope.into(),
                model: "models/m".into(),
                body: b"{}".to_vec(),
                prefix: "p".into(),
                created_ms: clock.now_ms(),
                webhook: false,
            };
            queue.enqueue(item).await.unwrap();
        }
        let intents = || async { queue.jobs(JobState::Intent).await.unwrap() };
        flush(&d.0).await;
        clock.advance_ms(59_999);
        flush(&d.0).await;
        assert!(intents().await.is_empty(), "not old enough yet");
        clock.advance_ms(1);
        flush(&d.0).await;
        let jobs = intents().await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].scope, scope, "the other scope waits for its credential");
        assert_eq!(queue.stats().await.unwrap().queued, 1);
    }

    #[test]
    fn retry_delays_double_and_cap() {
        let cfg = DeferralConfig {
            poll_initial: Duration::from_secs(2),
            poll_max: Duration::from_secs(10),
            ..Default::default()
        };
        let d: Vec<i64> = (1..6).map(|a| retry_delay_ms(a, &cfg)).collect();
        assert_eq!(d, vec![2_000, 4_000, 8_000, 10_000, 10_000]);
    }
}
