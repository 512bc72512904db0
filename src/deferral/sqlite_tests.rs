//! The queue contract on SQLite: every transition, exactly-one results, and survival of a reopen.

use super::*;
use serde_json::json;

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
    crate::deferral::batcher::new_job("scope", "models/m", 0, 100).tap_id(id)
}

trait TapId {
    fn tap_id(self, id: &str) -> Self;
}
impl TapId for Job {
    fn tap_id(mut self, id: &str) -> Self {
        self.id = id.into();
        self
    }
}

#[tokio::test]
async fn jobs_group_by_prefix_and_results_are_given_once() {
    let q = SqliteQueue::in_memory().unwrap();
    // b-prefixed requests are older, so their prefix group goes first; a's follow together.
    for (id, p, t) in [("1", "a", 5), ("2", "b", 1), ("3", "a", 6), ("4", "b", 2), ("5", "c", 9)] {
        q.enqueue(item(id, p, t)).await.unwrap();
    }
    let g = q.groups().await.unwrap();
    assert_eq!((g.len(), g[0].count, g[0].oldest_ms), (1, 5, 1));
    assert_eq!(q.form_job(&job("j1"), 3, u64::MAX, 10).await.unwrap(), 3);
    let inputs: Vec<String> = q.job_inputs("j1").await.unwrap().into_iter().map(|(k, _)| k).collect();
    let mut sorted = inputs.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["1", "2", "4"]);
    assert_eq!(q.stats().await.unwrap().queued, 2);

    q.note_attempt("j1", 50).await.unwrap();
    q.mark_submitted("j1", "batches/x", 60).await.unwrap();
    let jobs = q.jobs(JobState::Submitted).await.unwrap();
    assert_eq!((jobs[0].attempts, jobs[0].batch.as_deref()), (1, Some("batches/x")));

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
    // Finishing again (a replay after a crash) changes nothing.
    assert_eq!(
        q.finish_job("j1", "BATCH_STATE_SUCCEEDED", &results, &ItemResult::error(500, "x"), 90).await.unwrap(),
        0
    );
    assert!(!q.resolve("1", &ItemResult::error(499, "c"), 95).await.unwrap());
}

#[tokio::test]
async fn resubmission_moves_open_items_and_purge_keeps_recent_results() {
    let q = SqliteQueue::in_memory().unwrap();
    for id in ["1", "2"] {
        q.enqueue(item(id, "p", 1)).await.unwrap();
    }
    q.form_job(&job("j1"), 10, u64::MAX, 5).await.unwrap();
    q.resolve("1", &ItemResult::error(499, "c"), 6).await.unwrap();
    q.resubmit_job("j1", "BATCH_STATE_EXPIRED", &job("j2")).await.unwrap();
    assert_eq!(q.job_inputs("j2").await.unwrap().len(), 1);
    assert_eq!(q.jobs(JobState::Intent).await.unwrap().len(), 1);
    q.finish_job(
        "j2",
        "BATCH_STATE_SUCCEEDED",
        &[("2".into(), ItemResult::Response(json!({})))],
        &ItemResult::error(500, "m"),
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(q.purge(500).await.unwrap(), 1, "only the result older than the cut");
    assert!(q.item("1").await.unwrap().is_none());
    assert!(q.item("2").await.unwrap().is_some());
}

#[tokio::test]
async fn an_acknowledged_item_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    {
        let q = SqliteQueue::open(&path).unwrap();
        q.enqueue(item("1", "p", 1)).await.unwrap();
        q.form_job(&job("j1"), 10, u64::MAX, 5).await.unwrap();
        q.note_attempt("j1", 9).await.unwrap();
    }
    let q = SqliteQueue::open(&path).unwrap();
    let intents = q.jobs(JobState::Intent).await.unwrap();
    assert_eq!((intents.len(), intents[0].attempts), (1, 1), "the attempt is remembered: reconcile before resending");
    assert_eq!(q.item("1").await.unwrap().unwrap().state, ItemState::Assigned);
}

#[tokio::test]
async fn listing_pages_newest_first_within_a_scope() {
    let q = SqliteQueue::in_memory().unwrap();
    for id in ["1", "2", "3"] {
        q.enqueue(item(id, "p", 1)).await.unwrap();
    }
    let mut other = item("x", "p", 1);
    other.scope = "other".into();
    q.enqueue(other).await.unwrap();
    let page1 = q.items_of_scope("scope", 2, None).await.unwrap();
    assert_eq!(page1.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["3", "2"]);
    let page2 = q.items_of_scope("scope", 2, Some("2")).await.unwrap();
    assert_eq!(page2.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["1"]);
}
