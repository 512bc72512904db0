//! Deferred execution across replicas sharing one real `redis-server`, with spawned binaries in
//! front of the in-process emulator: lookups from any replica, replicas SIGKILLed or aborted in
//! the middle of a batch and their work finished by another exactly once, a Redis restart losing
//! nothing acknowledged, Redis down: batch requests refused with 503, plain ones still served, and
//! webhooks POSTed once although both replicas deliver, a held connection (`x-gemgate-wait`)
//! answered with a result another replica stored.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::RedisServer;
use support::deferred::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_deferred_through_one_replica_are_read_through_another_and_done_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_at(&dir.path().join("r.sock"));
    let emu = emulator().await;
    let (a, b) = (replica(&emu, &redis.url, None), replica(&emu, &redis.url, None));
    let id = defer(a.url(), 1).await.expect("acknowledged by a");
    let op = support::get_json(&format!("{}/gemgate/v1/operations/{id}", b.url()), Some(KEY)).await;
    assert_eq!(op["name"], format!("operations/{id}"), "b sees a's operation at once: {op}");
    let other = support::client()
        .get(format!("{}/gemgate/v1/operations/{id}", b.url()))
        .header("x-goog-api-key", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "operations stay scoped to their credential on every replica");
    let done = finished(b.url(), std::slice::from_ref(&id), Duration::from_secs(20)).await;
    let listed = support::get_json(&format!("{}/gemgate/v1/operations", a.url()), Some(KEY)).await;
    assert_eq!(listed["operations"][0], done[&id], "a lists the result b read");
    // Both replicas now hold the credential and run their workers on the same queue at once:
    // claims keep them from submitting or polling the same job twice.
    let sends = (1..41).map(|i| defer(if i % 2 == 0 { a.url() } else { b.url() }, i));
    let ids: Vec<String> = futures::future::join_all(sends).await.into_iter().flatten().collect();
    assert_eq!(ids.len(), 40);
    finished(a.url(), &ids, Duration::from_secs(30)).await;
    let (jobs, requests) = assert_exactly_once(b.url(), &emu).await;
    assert_eq!(requests, 41);
    assert!(jobs >= 9, "at most 5 requests per job: {jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_mid_batch_leave_work_that_another_finishes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_at(&dir.path().join("r.sock"));
    let emu = emulator().await;
    // b runs throughout but gets no request (so no credential) until the end: it cannot race the
    // dying replicas, and at the end it alone finishes what they left.
    let b = replica(&emu, &redis.url, None);
    let mut acked = Vec::new();
    let mut next = 0;
    // Aborts inside each window of the crash discipline, then one plain SIGKILL after the acks.
    let rounds = [Some("formed"), Some("attempt_noted"), Some("created"), Some("fetched"), Some("finished"), None];
    for fp in rounds {
        let mut a = replica(&emu, &redis.url, fp);
        if let Some(url) = a.url.clone() {
            let ids = futures::future::join_all((0..4).map(|k| defer(&url, next + k))).await;
            next += 4;
            acked.extend(ids.into_iter().flatten());
        }
        let bound = if fp.is_some() { Duration::from_secs(3) } else { Duration::from_millis(250) };
        a.die_within(bound).await;
    }
    assert!(acked.len() >= 12, "too few acknowledged to prove anything: {}", acked.len());
    let results = finished(b.url(), &acked, Duration::from_secs(40)).await;
    for (id, op) in &results {
        let again = support::get_json(&format!("{}/gemgate/v1/operations/{id}", b.url()), Some(KEY)).await;
        assert_eq!(&again, op, "one result, the same every time");
    }
    let (jobs, requests) = assert_exactly_once(b.url(), &emu).await;
    let unique: BTreeSet<_> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len());
    println!("{} acknowledged, {requests} queued, {jobs} jobs, each once", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing_acknowledged_and_the_replica_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let redis = RedisServer::start_durable(&sock, dir.path());
    let url = redis.url.clone();
    let emu = emulator().await;
    let a = replica(&emu, &url, None);
    let ids: Vec<String> =
        futures::future::join_all((0..12).map(|i| defer(a.url(), i))).await.into_iter().flatten().collect();
    assert_eq!(ids.len(), 12);
    // Mid-batch: some jobs formed or submitted, some requests still queued.
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.kill();
    let ready = support::get_json(&format!("{}/readyz", a.url()), None).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _redis = RedisServer::start_durable(&sock, dir.path());
    finished(a.url(), &ids, Duration::from_secs(30)).await;
    let ready = support::get_json(&format!("{}/readyz", a.url()), None).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_exactly_once(a.url(), &emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_batch_requests_get_503_quickly_and_plain_ones_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let emu = emulator().await;
    let a = replica(&emu, &format!("redis+unix://{}", sock.display()), None);
    let t = Instant::now();
    let (status, body) = send(a.url(), 1, true).await.unwrap();
    assert_eq!((status, body["error"]["status"].as_str()), (503, Some("UNAVAILABLE")), "{body}");
    assert!(t.elapsed() < Duration::from_secs(2), "refused quickly, not after a hang: {:?}", t.elapsed());
    let (status, body) = send(a.url(), 2, false).await.unwrap();
    assert_eq!(status, 200, "caching fails open: {body}");
    let ready = support::get_json(&format!("{}/readyz", a.url()), None).await;
    assert_eq!(
        (ready["status"].as_str(), ready["deferral_queue"].as_str().map(|s| s.starts_with("unavailable"))),
        (Some("degraded"), Some(true))
    );
    let op = support::client()
        .get(format!("{}/gemgate/v1/operations/whatever", a.url()))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(op.status(), 503, "a lookup cannot answer either, and says so as transient");
    // Redis comes up: the same process accepts batch work again, no restart.
    let _redis = RedisServer::start_at(&sock);
    let until = Instant::now() + Duration::from_secs(10);
    let id = loop {
        if let Some(id) = defer(a.url(), 3).await {
            break id;
        }
        assert!(Instant::now() < until, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    finished(a.url(), &[id], Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_post_each_result_to_the_webhook_once() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<BTreeMap<String, usize>>> = Default::default();
    let log = seen.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: http::HeaderMap| {
            let log = log.clone();
            async move {
                let id = h["x-gemgate-operation"].to_str().unwrap().to_string();
                *log.lock().unwrap().entry(id).or_default() += 1;
                "ok"
            }
        }),
    );
    let hook = format!("http://{}/hook", support::serve(hook).await);
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_at(&dir.path().join("r.sock"));
    let emu = emulator().await;
    let env = [
        ("GEMGATE_DEFERRAL__WEBHOOK_URL", hook.as_str()),
        ("GEMGATE_DEFERRAL__WEBHOOK_SECRET_ENV", "REDIS_TEST_WEBHOOK_SECRET"),
        ("REDIS_TEST_WEBHOOK_SECRET", "s3cret"),
    ];
    let (a, b) = (replica_with(&emu, &redis.url, None, &env), replica_with(&emu, &redis.url, None, &env));
    let sends = (0..10).map(|i| defer(if i % 2 == 0 { a.url() } else { b.url() }, i));
    let ids: Vec<String> = futures::future::join_all(sends).await.into_iter().flatten().collect();
    assert_eq!(ids.len(), 10);
    finished(a.url(), &ids, Duration::from_secs(20)).await;
    let until = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < ids.len() {
        assert!(Instant::now() < until, "webhooks missing: {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both workers scan for due webhooks every 20 ms; give a duplicate time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap().clone();
    assert!(seen.values().all(|n| *n == 1), "a result was POSTed more than once: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_connection_gets_the_result_another_replica_stored() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_at(&dir.path().join("r.sock"));
    let emu = emulator().await;
    // a's worker only runs when poked (on its enqueue, before the group is due): b does the work.
    let a = replica_with(&emu, &redis.url, None, &[("GEMGATE_DEFERRAL__TICK", "1h")]);
    let b = replica(&emu, &redis.url, None);
    support::get_json(&format!("{}/gemgate/v1/operations", b.url()), Some(KEY)).await;
    let t = Instant::now();
    let r = support::client()
        .post(format!("{}/v1beta/models/gemini-2.5-flash:generateContent", a.url()))
        .header("x-goog-api-key", KEY)
        .header("x-gemgate-defer", "batch")
        .header("x-gemgate-wait", "20s")
        .json(&request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the held connection got the result, not the 202 after the wait");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let body: Value = r.json().await.unwrap();
    assert!(body["candidates"].is_array(), "{body}");
}
