//! The multi-statement transactions of the SQLite queue, each one all-or-nothing.

use super::*;
use std::collections::HashMap;

pub(super) fn insert_job(tx: &Transaction<'_>, j: &Job) -> rusqlite::Result<()> {
    tx.execute(
        &format!("INSERT INTO deferred_jobs ({JOB_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"),
        params![
            j.id,
            j.scope,
            j.model,
            j.state.as_str(),
            j.batch,
            j.attempts,
            j.resubmits,
            j.created_ms,
            j.next_ms,
            j.poll_interval_ms,
            j.upstream_state
        ],
    )?;
    Ok(())
}

/// Takes up to `max_items` / `max_bytes` queued items of the job's group, prefix groups in the order
/// of their oldest request (within a prefix, oldest first), and writes the job intent.
pub(super) fn form_job(c: &mut Connection, job: &Job, max_items: usize, max_bytes: u64) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    let mut rows: Vec<(String, String, i64, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT id, prefix, bytes, created_ms FROM deferred_items
                 WHERE state = 'queued' AND scope = ?1 AND model = ?2",
        )?;
        let it = stmt.query_map(params![job.scope, job.model], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        it.collect::<rusqlite::Result<_>>()?
    };
    // Prefix groups in the order of their oldest request; within a prefix, oldest first.
    let mut first: HashMap<String, i64> = HashMap::new();
    for (_, p, _, t) in &rows {
        let e = first.entry(p.clone()).or_insert(*t);
        *e = (*e).min(*t);
    }
    rows.sort_by(|a, b| (first[&a.1], &a.1, a.3).cmp(&(first[&b.1], &b.1, b.3)));
    let (mut n, mut bytes) = (0usize, 0u64);
    for (id, _, b, _) in &rows {
        if n >= max_items || (n > 0 && bytes + *b as u64 > max_bytes) {
            break;
        }
        tx.execute("UPDATE deferred_items SET state = 'assigned', job_id = ?2 WHERE id = ?1", params![id, job.id])?;
        n += 1;
        bytes += *b as u64;
    }
    if n > 0 {
        insert_job(&tx, job)?;
    }
    tx.commit()?;
    Ok(n)
}

/// Stores results by key (first result wins), gives `rest` to the job's other open items and
/// marks the job done, all in one transaction.
pub(super) fn finish_job(
    c: &mut Connection,
    job_id: &str,
    st: &str,
    results: &[(String, String)],
    rest: &str,
    now: i64,
) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    let mut n = 0;
    for (key, text) in results {
        n += tx.execute(
            "UPDATE deferred_items SET result = ?3, result_ms = ?4, state = 'done', webhook_next_ms = ?4
                 WHERE id = ?1 AND job_id = ?2 AND result IS NULL",
            params![key, job_id, text, now],
        )?;
    }
    n += tx.execute(
        "UPDATE deferred_items SET result = ?2, result_ms = ?3, state = 'done', webhook_next_ms = ?3
             WHERE job_id = ?1 AND result IS NULL",
        params![job_id, rest, now],
    )?;
    tx.execute(
        "UPDATE deferred_jobs SET state = 'done', upstream_state = ?2, finished_ms = ?3 WHERE id = ?1",
        params![job_id, st, now],
    )?;
    tx.commit()?;
    Ok(n)
}

/// Moves the job's open items into the new intent `next` and marks the old job done.
pub(super) fn resubmit_job(c: &mut Connection, job_id: &str, st: &str, next: &Job) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    insert_job(&tx, next)?;
    tx.execute("UPDATE deferred_items SET job_id = ?2 WHERE job_id = ?1 AND result IS NULL", params![job_id, next.id])?;
    tx.execute(
        "UPDATE deferred_jobs SET state = 'done', upstream_state = ?2, finished_ms = ?3 WHERE id = ?1",
        params![job_id, st, next.created_ms],
    )?;
    tx.commit()
}

/// Counts for the gauges.
pub(super) fn stats(c: &mut Connection) -> rusqlite::Result<Stats> {
    let (queued, oldest): (i64, Option<i64>) =
        c.query_row("SELECT COUNT(*), MIN(created_ms) FROM deferred_items WHERE state = 'queued'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
    Ok(Stats {
        queued: queued as u64,
        oldest_queued_ms: oldest,
        assigned: count("SELECT COUNT(*) FROM deferred_items WHERE state = 'assigned'")? as u64,
        jobs_intent: count("SELECT COUNT(*) FROM deferred_jobs WHERE state = 'intent'")? as u64,
        jobs_submitted: count("SELECT COUNT(*) FROM deferred_jobs WHERE state = 'submitted'")? as u64,
    })
}
