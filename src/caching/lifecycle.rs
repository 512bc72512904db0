//! Keeping caches alive while they are hot and letting go when they are not: renewal (PATCH ttl)
//! when the policy asks on a use, and a sweeper that asks the policy about every cache (delete
//! early, or let it expire), drops expired entries and writes hit counts back to the store.

use super::Caching;
use super::engine::{CacheView, Sweep};
use super::ops::{self, Credential};
use crate::store::CacheEntry;
use crate::telemetry;

/// Renews `entry` to `ttl_ms` from now in the background; one renewal at a time per cache.
pub(super) fn renew(c: &Caching, entry: &CacheEntry, ttl_ms: i64, cred: &Credential) {
    let e = &c.0;
    if !e.renewing.lock().expect("poisoned").insert(entry.key.clone()) {
        return;
    }
    let (this, key, name, cred) = (c.clone(), entry.key.clone(), entry.name.clone(), cred.clone());
    let ttl = std::time::Duration::from_millis(ttl_ms.max(1_000) as u64);
    e.tracker.spawn(async move {
        let e = &this.0;
        match ops::renew(&e.upstream, &name, &cred, ttl, e.timeout).await {
            Ok(expire_ms) => {
                metrics::counter!(telemetry::CACHE_RENEWALS, "result" => "ok").increment(1);
                let expire_ms = if expire_ms > 0 { expire_ms } else { e.clock.now_ms() + ttl_ms };
                if let Some(hot) = e.registry.get(&key) {
                    let mut cur = hot.snapshot();
                    cur.expire_ms = expire_ms;
                    e.registry.insert(cur).await;
                }
                e.engine.renewed(&key, expire_ms);
            }
            Err(err) => {
                metrics::counter!(telemetry::CACHE_RENEWALS, "result" => "error").increment(1);
                tracing::warn!(?err, "cache renewal failed; it will expire");
            }
        }
        e.renewing.lock().expect("poisoned").remove(&key);
    });
}

/// One pass of the sweeper at time `now`. Stops early on shutdown.
pub(super) async fn sweep(c: &Caching, now: i64) {
    let e = &c.0;
    for hot in e.registry.hots() {
        if e.cancel.is_cancelled() {
            return;
        }
        let verdict = e.engine.sweep(&hot.key, &hot.model, CacheView::from(&hot.snapshot()), now);
        if verdict == Sweep::Expired {
            e.registry.remove(&hot.key).await;
            e.engine.gone(&hot.key, now);
            metrics::counter!(telemetry::CACHE_DELETIONS, "reason" => "expired").increment(1);
            continue;
        }
        if verdict == Sweep::Delete {
            if let Some(cred) = e.creds.get(&hot.scope) {
                match ops::delete(&e.upstream, &hot.name, &cred, e.timeout).await {
                    Ok(()) => {
                        metrics::counter!(telemetry::CACHE_DELETIONS, "reason" => "idle").increment(1);
                        e.registry.remove(&hot.key).await;
                        e.engine.gone(&hot.key, now);
                        continue;
                    }
                    Err(err) => tracing::warn!(?err, "idle cache deletion failed"),
                }
            }
        }
        e.registry.flush(&hot).await;
    }
    metrics::gauge!(telemetry::REGISTRY_ENTRIES).set(e.registry.entry_count() as f64);
}

pub(super) fn spawn_sweeper(c: Caching) {
    let interval_ms = (c.0.cfg.sweep_interval.as_millis() as i64).max(10);
    let tracker = c.0.tracker.clone();
    tracker.spawn(async move {
        loop {
            let pause = c.0.clock.real_duration(interval_ms);
            tokio::select! {
                _ = c.0.cancel.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
            sweep(&c, c.0.clock.now_ms()).await;
        }
    });
}
