//! Random SIGKILLs with two replicas working the same Redis queue at once: replica A is killed at
//! a random moment (0–700 ms: while requests arrive, jobs form, submit and are polled) and
//! restarted, over and over, while replica B keeps working. Nothing acknowledged is lost, nothing
//! is submitted or billed twice.

mod support;

use rand::Rng;
use std::time::Duration;
use support::RedisServer;
use support::deferred::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_of_one_of_two_working_replicas_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_at(&dir.path().join("r.sock"));
    let emu = emulator().await;
    let b = replica(&emu, &redis.url, None);
    let mut acked = Vec::new();
    let mut next = 0;
    for _ in 0..10 {
        let mut a = replica(&emu, &redis.url, None);
        let url = a.url().to_string();
        let n = rand::rng().random_range(3..8);
        // Both replicas take requests, so both hold the credential and both run the worker.
        let first = next;
        next += n;
        let sends = (0..n).map(|k| {
            let to = if k % 3 == 0 { b.url().to_string() } else { url.clone() };
            async move { defer(&to, first + k).await }
        });
        let kill_after = Duration::from_millis(rand::rng().random_range(0..700));
        let (ids, _) = tokio::join!(futures::future::join_all(sends), async {
            tokio::time::sleep(kill_after).await;
            let _ = a.child.kill();
        });
        a.die_within(Duration::ZERO).await;
        acked.extend(ids.into_iter().flatten());
    }
    assert!(acked.len() >= 20, "too few acknowledged to prove anything: {}", acked.len());
    finished(b.url(), &acked, Duration::from_secs(40)).await;
    let (jobs, requests) = assert_exactly_once(b.url(), &emu).await;
    println!("10 kills: {} acknowledged of {next} sent, {requests} queued, {jobs} jobs, each once", acked.len());
}

/// Aborts inside the windows around a job's caches with the Redis queue: the cache belongs to the
/// job, so whichever process picks the job up next finds it recorded (or by name) and reuses or
/// deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_inside_the_cache_windows_lose_duplicate_and_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_at(&dir.path().join("r.sock"));
    let emu = emulator().await;
    crash_inside_cache_windows(&emu, |fp| replica_with(&emu, &redis.url, fp, &CACHE_ENV)).await;
}
