//! Polling submitted jobs with doubling, jittered intervals; on a finished job, storing every
//! item's result (matched by key) in one transaction; FAILED / EXPIRED / CANCELLED jobs resubmitted
//! or failed per config; jobs whose every request was cancelled are cancelled upstream.

use super::Inner;
use super::batch_api::BatchApi;
use super::batch_cache;
use super::batcher::{new_job, retry_delay_ms};
use super::credentials::Credential;
use super::queue::{ItemResult, Job, JobState};
use crate::config::DeferralConfig;
use crate::gemini::batch::http_of_grpc;
use crate::proxy::UpstreamFailure;
use crate::telemetry;
use serde_json::Value;

/// Next poll interval: `poll_initial` first, then doubling up to `poll_max`.
pub fn next_interval(prev_ms: i64, cfg: &DeferralConfig) -> i64 {
    let initial = cfg.poll_initial.as_millis() as i64;
    let max = cfg.poll_max.as_millis() as i64;
    if prev_ms <= 0 { initial } else { prev_ms.saturating_mul(2).min(max) }
}

/// Spreads a delay by ±`jitter` using `r` in [0, 1).
pub fn jittered(ms: i64, jitter: f64, r: f64) -> i64 {
    ((ms as f64) * (1.0 + jitter * (2.0 * r - 1.0))).max(1.0) as i64
}

const TERMINAL_FAILURES: [&str; 3] = ["BATCH_STATE_FAILED", "BATCH_STATE_EXPIRED", "BATCH_STATE_CANCELLED"];

/// Polls every submitted job that is due.
pub async fn poll(d: &Inner) {
    let jobs = match d.queue.due_jobs(JobState::Submitted, d.clock.now_ms(), super::batcher::DUE_PER_TICK).await {
        Ok(j) => j,
        Err(e) => return tracing::warn!(error = %e, "job scan failed"),
    };
    for job in jobs {
        if job.next_ms > d.clock.now_ms() {
            continue;
        }
        let Some(cred) = d.creds.get(&job.scope) else {
            continue;
        };
        let key = format!("job:{}", job.id);
        super::claims::with_claim(d, &key, |_| poll_claimed(d, &job.id, cred)).await;
    }
}

/// Polls one job while holding its claim, reading it again first: another replica may have
/// finished it since the scan.
async fn poll_claimed(d: &Inner, id: &str, cred: Credential) {
    let job = match d.queue.job(id).await {
        Ok(Some(j)) if j.state == JobState::Submitted && j.next_ms <= d.clock.now_ms() => j,
        Ok(_) => return,
        Err(e) => return tracing::warn!(job = %id, error = %e, "job read failed"),
    };
    let api = BatchApi { upstream: &d.upstream, cred: &cred, version: &d.cfg.upstream_version, timeout: d.timeout };
    if let Err(e) = poll_one(d, &api, &job).await {
        tracing::warn!(job = %job.id, error = %e, "polling failed; will retry");
        let retry = d.clock.now_ms() + retry_delay_ms(2, &d.cfg);
        let _ = d.queue.schedule(&job.id, retry, job.poll_interval_ms, None).await;
    }
}

async fn poll_one(d: &Inner, api: &BatchApi<'_>, job: &Job) -> Result<(), UpstreamFailure> {
    let Some(batch) = job.batch.as_deref() else {
        return Ok(());
    };
    let op = match api.get(batch).await {
        Ok(op) => op,
        // Deleted upstream (or no longer visible): handled as a failed job.
        Err(UpstreamFailure::Status { status: 403 | 404, .. }) => {
            batch_cache::release(d, api, &job.id).await?;
            return failed(d, job, "BATCH_STATE_DELETED", &Value::Null).await;
        }
        Err(e) => return Err(e),
    };
    let state = op["metadata"]["state"].as_str().unwrap_or("BATCH_STATE_UNSPECIFIED").to_string();
    let now = d.clock.now_ms();
    if state == "BATCH_STATE_SUCCEEDED" {
        let mut results = api.results(&op).await?;
        super::failpoint("fetched");
        d.runs.observe(&job.model, now - job.created_ms);
        let used = batch_cache::used(d, &job.id).await?;
        batch_cache::annotate(d, job, &mut results).await?;
        batch_cache::release(d, api, &job.id).await?;
        if used && results.iter().any(|(_, r)| batch_cache::is_cache_error(r)) {
            return resubmit_cache_errors(d, job, &state, results).await;
        }
        let rest = ItemResult::error(500, "gemgate: the batch output has no result for this request");
        let n = d.queue.finish_job(&job.id, &state, &results, &rest, now).await?;
        super::failpoint("finished");
        let errors = results.iter().filter(|(_, r)| matches!(r, ItemResult::Error(_))).count();
        metrics::counter!(telemetry::DEFER_JOBS, "state" => "succeeded").increment(1);
        metrics::counter!(telemetry::DEFER_ITEMS, "outcome" => "response")
            .increment(results.len().saturating_sub(errors) as u64);
        metrics::counter!(telemetry::DEFER_ITEMS, "outcome" => "error").increment(errors as u64);
        tracing::info!(job = %job.id, results = results.len(), stored = n, errors, "batch job finished");
        super::results_changed(d);
        return Ok(());
    }
    if TERMINAL_FAILURES.contains(&state.as_str()) {
        batch_cache::release(d, api, &job.id).await?;
        return failed(d, job, &state, &op["error"]).await;
    }
    // Still pending or running. If every request of the job was cancelled, cancel the job.
    let open = d.queue.open_items(&job.id).await?;
    if open == 0 {
        let _ = api.cancel(batch).await;
        batch_cache::release(d, api, &job.id).await?;
        let rest = ItemResult::error(499, "cancelled");
        let _ = d.queue.finish_job(&job.id, "CANCELLED_BY_GATEWAY", &[], &rest, now).await;
        metrics::counter!(telemetry::DEFER_JOBS, "state" => "cancelled").increment(1);
        return Ok(());
    }
    batch_cache::extend(d, api, job).await?;
    let interval = next_interval(job.poll_interval_ms, &d.cfg);
    let next = now + jittered(interval, d.cfg.poll_jitter, rand::random::<f64>());
    d.queue.schedule(&job.id, next, interval, Some(&state)).await.map_err(UpstreamFailure::from)
}

/// A finished job some of whose requests failed because the cache they referenced was gone (it
/// expired under a slow job): every other result is stored, and those requests go again, uncached,
/// in a new job. Repeating this after a crash is harmless: stored results are kept, not replaced.
async fn resubmit_cache_errors(
    d: &Inner,
    job: &Job,
    state: &str,
    results: Vec<(String, ItemResult)>,
) -> Result<(), UpstreamFailure> {
    let now = d.clock.now_ms();
    let (mut stored, mut responses) = (0u64, 0u64);
    for (key, r) in results.iter().filter(|(_, r)| !batch_cache::is_cache_error(r)) {
        if d.queue.resolve(key, r, now).await? {
            stored += 1;
            responses += matches!(r, ItemResult::Response(_)) as u64;
        }
    }
    let next = new_job(&job.scope, &job.model, job.resubmits, now);
    batch_cache::mark_uncached(d, &next.id).await?;
    d.queue.resubmit_job(&job.id, state, &next).await?;
    let retried = (results.len() as u64).saturating_sub(stored);
    metrics::counter!(telemetry::DEFER_JOB_CACHES, "event" => "resubmitted").increment(retried);
    metrics::counter!(telemetry::DEFER_ITEMS, "outcome" => "response").increment(responses);
    metrics::counter!(telemetry::DEFER_ITEMS, "outcome" => "error").increment(stored - responses);
    tracing::warn!(job = %job.id, next = %next.id, stored, "requests whose job cache was gone go again uncached");
    super::results_changed(d);
    Ok(())
}

/// A job that ended without results: resubmit its open requests as a new job, or fail them.
async fn failed(d: &Inner, job: &Job, state: &str, error: &Value) -> Result<(), UpstreamFailure> {
    let now = d.clock.now_ms();
    let label = state.trim_start_matches("BATCH_STATE_").to_ascii_lowercase();
    metrics::counter!(telemetry::DEFER_JOBS, "state" => label).increment(1);
    let open = d.queue.open_items(&job.id).await?;
    if open > 0 && d.cfg.on_job_failure == "resubmit" && job.resubmits < d.cfg.max_resubmits {
        let next = new_job(&job.scope, &job.model, job.resubmits + 1, now);
        tracing::warn!(job = %job.id, state, next = %next.id, "batch job ended without results; resubmitting");
        metrics::counter!(telemetry::DEFER_JOBS, "state" => "resubmitted").increment(1);
        return d.queue.resubmit_job(&job.id, state, &next).await.map_err(UpstreamFailure::from);
    }
    let rest = match state {
        "BATCH_STATE_EXPIRED" => {
            ItemResult::error(504, "gemgate: the batch job expired before this request was processed")
        }
        "BATCH_STATE_CANCELLED" => ItemResult::error(499, "gemgate: the batch job was cancelled upstream"),
        _ => {
            let code = error["code"].as_i64().map(http_of_grpc).unwrap_or(500);
            let msg = error["message"].as_str().unwrap_or("the batch job failed");
            ItemResult::error(code, format!("gemgate: {msg}"))
        }
    };
    tracing::warn!(job = %job.id, state, items = open, "batch job ended without results; failing its requests");
    let n = d.queue.finish_job(&job.id, state, &[], &rest, now).await?;
    metrics::counter!(telemetry::DEFER_ITEMS, "outcome" => "error").increment(n as u64);
    super::results_changed(d);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn poll_intervals_double_to_the_cap_and_jitter_stays_in_bounds() {
        let cfg = DeferralConfig {
            poll_initial: Duration::from_secs(10),
            poll_max: Duration::from_secs(60),
            ..Default::default()
        };
        let mut i = 0;
        let seq: Vec<i64> = (0..5)
            .map(|_| {
                i = next_interval(i, &cfg);
                i
            })
            .collect();
        assert_eq!(seq, vec![10_000, 20_000, 40_000, 60_000, 60_000]);
        assert_eq!(jittered(10_000, 0.2, 0.0), 8_000);
        assert_eq!(jittered(10_000, 0.2, 0.5), 10_000);
        assert!(jittered(10_000, 0.2, 0.999_999) <= 12_000);
    }
}
