//! The one background loop: every tick (or when poked) it flushes due groups, submits and
//! reconciles intents, polls jobs, sends webhooks, purges old results and refreshes the gauges.
//! One loop means no two steps of this process ever race on the same job.

use super::{Deferral, Inner, batcher, delivery, poller};
use crate::telemetry;
use tracing::Instrument;

pub fn spawn(d: Deferral) {
    let span = tracing::info_span!("deferral");
    let tracker = d.0.tracker.clone();
    tracker.spawn(
        async move {
            let inner = &d.0;
            tracing::info!("deferral worker started");
            let mut last_purge = i64::MIN;
            loop {
                step(inner, &mut last_purge).await;
                let tick = inner.clock.real_duration(inner.cfg.tick.as_millis() as i64);
                tokio::select! {
                    _ = inner.cancel.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {}
                    _ = inner.poke.notified() => {}
                }
            }
            tracing::info!("deferral worker stopped");
        }
        .instrument(span),
    );
}

async fn step(d: &Inner, last_purge: &mut i64) {
    batcher::flush(d).await;
    batcher::submit(d).await;
    poller::poll(d).await;
    delivery::webhooks(d).await;
    let now = d.clock.now_ms();
    if now.saturating_sub(*last_purge) >= 60_000 {
        *last_purge = now;
        let before = now - d.cfg.result_retention.as_millis() as i64;
        match d.queue.purge(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "old deferred results purged"),
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
    }
    if let Ok(s) = d.queue.stats().await {
        metrics::gauge!(telemetry::DEFER_QUEUE_DEPTH, "state" => "queued").set(s.queued as f64);
        metrics::gauge!(telemetry::DEFER_QUEUE_DEPTH, "state" => "in_job").set(s.assigned as f64);
        let age = s.oldest_queued_ms.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        metrics::gauge!(telemetry::DEFER_OLDEST_AGE).set(age);
        metrics::gauge!(telemetry::DEFER_OPEN_JOBS, "state" => "intent").set(s.jobs_intent as f64);
        metrics::gauge!(telemetry::DEFER_OPEN_JOBS, "state" => "submitted").set(s.jobs_submitted as f64);
    }
}
