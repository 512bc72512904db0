//! The deferral queue's contract on a real `redis-server`: the same transitions as SQLite (prefix
//! ordering, one result per item, replays changing nothing, resubmission, purge, paging), exclusive
//! claims, and an acknowledged item surviving a SIGKILLed Redis with `appendfsync always`.

mod support;

use gemgate::deferral::queue::{ItemResult, ItemState, Job, JobState, NewItem, Queue};
use gemgate::deferral::{RedisQueue, SqliteQueue};
use serde_json::json;
use std::time::Duration;
use support::RedisServer;

fn item(id: &str, prefix: &str, t: i64) -> NewItem {
    NewItem {
        id: id.into(),
        scope: "scope".into(),
        model: "models/m".into(),
        body: br#"{"contents":[]}"#.to_vec(),
        prefix: prefix.into(),
        created_ms: t,
        webhook: false,
    }
}

fn job(id: &str) -> Job {
    Job {
        id: id.into(),
        scope: "scope".into(),
        model: "models/m".into(),
        state: JobState::Intent,
        batch: None,
        attempts: 0,
        resubmits: 0,
        created_ms: 100,
        next_ms: 100,
        poll_interval_ms: 0,
        upstream_state: None,
    }
}

fn queue(server: &RedisServer) -> RedisQueue {
    RedisQueue::open(&server.url, "t:", Duration::from_millis(500)).unwrap()
}

/// The scenario every backend must pass; run on SQLite too, so the two cannot drift apart.
async fn transitions(q: &dyn Queue) {
    // b-prefixed requests are older, so their prefix group goes first; a's follow together.
    for (id, p, t) in [("1", "a", 5), ("2", "b", 1), ("3", "a", 6), ("4", "b", 2), ("5", "c", 9)] {
        q.enqueue(item(id, p, t)).await.unwrap();
    }
    let g = q.groups().await.unwrap();
    assert_eq!((g.len(), g[0].count, g[0].oldest_ms, g[0].bytes), (1, 5, 1, 75));
    assert_eq!(q.form_job(&job("j1"), 3, u64::MAX, 10).await.unwrap(), 3);
    let inputs: Vec<String> = q.job_inputs("j1").await.unwrap().into_iter().map(|(k, _)| k).collect();
    let mut sorted = inputs.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["1", "2", "4"]);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.queued, stats.assigned, stats.jobs_intent, stats.oldest_queued_ms), (2, 3, 1, Some(6)));

    q.note_attempt("j1", 50).await.unwrap();
    assert_eq!(q.job("j1").await.unwrap().unwrap().attempts, 1, "the attempt is on record before the call");
    q.mark_submitted("j1", "batches/x", 60).await.unwrap();
    let jobs = q.jobs(JobState::Submitted).await.unwrap();
    assert_eq!((jobs[0].attempts, jobs[0].batch.as_deref()), (1, Some("batches/x")));
    assert!(q.jobs(JobState::Intent).await.unwrap().is_empty());
    q.schedule("j1", 70, 10, Some("BATCH_STATE_RUNNING")).await.unwrap();
    assert!(q.due_jobs(JobState::Submitted, 69, 10).await.unwrap().is_empty(), "not due before next_ms");
    assert_eq!(q.due_jobs(JobState::Submitted, 70, 10).await.unwrap()[0].poll_interval_ms, 10);
    assert_eq!(q.open_items("j1").await.unwrap(), 3);
    let it = q.item("1").await.unwrap().unwrap();
    assert_eq!((it.state, it.batch_state.as_deref()), (ItemState::Assigned, Some("BATCH_STATE_RUNNING")));

    // A client cancels item 2 before the job finishes: its result stays CANCELLED.
    assert!(q.resolve("2", &ItemResult::error(499, "c"), 70).await.unwrap());
    let results = vec![
        ("1".to_string(), ItemResult::Response(json!({"candidates": []}))),
        ("2".to_string(), ItemResult::Response(json!({"late": true}))),
    ];
    let n =
        q.finish_job("j1", "BATCH_STATE_SUCCEEDED", &results, &ItemResult::error(500, "missing"), 80).await.unwrap();
    assert_eq!(n, 2, "item 1 from the output, item 4 gets the missing-result error");
    assert!(matches!(q.item("2").await.unwrap().unwrap().result, Some(ItemResult::Error(e)) if e["code"] == 499));
    assert!(matches!(q.item("4").await.unwrap().unwrap().result, Some(ItemResult::Error(e)) if e["code"] == 500));
    assert_eq!(q.item("1").await.unwrap().unwrap().result, Some(ItemResult::Response(json!({"candidates": []}))));
    // Finishing again (a replay after a crash) changes nothing.
    assert_eq!(
        q.finish_job("j1", "BATCH_STATE_SUCCEEDED", &results, &ItemResult::error(500, "x"), 90).await.unwrap(),
        0
    );
    assert!(!q.resolve("1", &ItemResult::error(499, "c"), 95).await.unwrap());

    // The rest: resubmission moves only open items; purge keeps recent results.
    assert_eq!(q.form_job(&job("j2"), 10, u64::MAX, 100).await.unwrap(), 2);
    q.resolve("3", &ItemResult::error(499, "c"), 101).await.unwrap();
    q.resubmit_job("j2", "BATCH_STATE_EXPIRED", &job("j3")).await.unwrap();
    assert_eq!(q.job_inputs("j3").await.unwrap().len(), 1);
    assert_eq!(q.jobs(JobState::Intent).await.unwrap().len(), 1);
    q.finish_job(
        "j3",
        "BATCH_STATE_SUCCEEDED",
        &[("5".into(), ItemResult::Response(json!({})))],
        &ItemResult::error(500, "m"),
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(q.stats().await.unwrap(), Default::default(), "nothing queued, assigned or open");
    assert_eq!(q.purge(500).await.unwrap(), 4, "only results older than the cut");
    assert!(q.item("1").await.unwrap().is_none());
    assert!(q.item("5").await.unwrap().is_some());

    // Paging, newest first, within a scope.
    for id in ["6", "7"] {
        q.enqueue(item(id, "p", 1)).await.unwrap();
    }
    let mut other = item("x", "p", 1);
    other.scope = "other".into();
    q.enqueue(other).await.unwrap();
    let page1 = q.items_of_scope("scope", 2, None).await.unwrap();
    assert_eq!(page1.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["7", "6"]);
    let page2 = q.items_of_scope("scope", 2, Some("6")).await.unwrap();
    assert_eq!(page2.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["5"]);
}

#[tokio::test]
async fn redis_queue_passes_the_same_transitions_as_sqlite() {
    transitions(&SqliteQueue::in_memory().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start_at(&dir.path().join("r.sock"));
    let q = queue(&server);
    transitions(&q).await;
    assert!(q.enqueue(item("6", "p", 1)).await.is_err(), "an id is never queued twice");
}

#[tokio::test]
async fn a_claim_is_exclusive_until_released_or_lapsed() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start_at(&dir.path().join("r.sock"));
    let (a, b) = (queue(&server), queue(&server));
    let ttl = Duration::from_millis(400);
    let t = a.claim("job:1", ttl).await.unwrap().expect("free claim");
    assert_eq!(b.claim("job:1", ttl).await.unwrap(), None, "held by a");
    assert!(a.renew("job:1", t, ttl).await.unwrap());
    assert!(!b.renew("job:1", t ^ 1, ttl).await.unwrap(), "only the holder renews");
    a.release("job:1", t).await.unwrap();
    let tb = b.claim("job:1", ttl).await.unwrap().expect("released");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!b.renew("job:1", tb, ttl).await.unwrap(), "lapsed: b must stop");
    assert!(a.claim("job:1", ttl).await.unwrap().is_some(), "a dead holder's claim is taken over");
}

#[tokio::test]
async fn an_acknowledged_item_survives_a_killed_redis_with_appendfsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let server = RedisServer::start_durable(&sock, dir.path());
    let q = queue(&server);
    for i in 0..50 {
        q.enqueue(item(&i.to_string(), "p", i)).await.unwrap();
    }
    q.form_job(&job("j1"), 10, u64::MAX, 5).await.unwrap();
    q.note_attempt("j1", 9).await.unwrap();
    server.kill();
    assert!(q.item("1").await.is_err(), "Redis is down: an error, quickly, not a hang");
    let _server = RedisServer::start_durable(&sock, dir.path());
    // The same queue handle reconnects by itself.
    let mut back = None;
    for _ in 0..50 {
        if let Ok(s) = q.stats().await {
            back = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = back.expect("reconnected without a restart");
    assert_eq!((stats.queued, stats.assigned), (40, 10));
    let intents = q.jobs(JobState::Intent).await.unwrap();
    assert_eq!((intents.len(), intents[0].attempts), (1, 1), "the attempt is remembered: reconcile before resending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_every_old_result_not_just_one_slice() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start_at(&dir.path().join("r.sock"));
    let q = std::sync::Arc::new(queue(&server));
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..650 {
                    let id = format!("{w}-{i}");
                    q.enqueue(item(&id, "p", 1)).await.unwrap();
                    q.resolve(&id, &ItemResult::error(499, "c"), 10).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(q.purge(11).await.unwrap(), 2600);
    assert!(q.items_of_scope("scope", 10, None).await.unwrap().is_empty());
}
