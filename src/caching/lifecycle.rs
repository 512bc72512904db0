//! Keeping caches alive while they are hot and letting go when they are not: renewal (PATCH ttl)
//! triggered by a hit near expiry, and a sweeper that drops expired entries, deletes idle ones
//! (when configured) and writes hit counts back to the store.

use super::Caching;
use super::ops::{self, Credential};
use crate::store::CacheEntry;
use crate::telemetry;

/// Renews `entry` in the background if it expires within `renew_before`; one renewal at a time
/// per cache.
pub(super) fn maybe_renew(c: &Caching, entry: &CacheEntry, now: i64, cred: &Credential) {
    let e = &c.0;
    if entry.expire_ms - now > e.cfg.renew_before.as_millis() as i64 {
        return;
    }
    if !e
        .renewing
        .lock()
        .expect("poisoned")
        .insert(entry.key.clone())
    {
        return;
    }
    let (this, key, name, cred) = (
        c.clone(),
        entry.key.clone(),
        entry.name.clone(),
        cred.clone(),
    );
    e.tracker.spawn(async move {
        let e = &this.0;
        match ops::renew(&e.upstream, &name, &cred, e.cfg.ttl, e.timeout).await {
            Ok(expire_ms) => {
                metrics::counter!(telemetry::CACHE_RENEWALS, "result" => "ok").increment(1);
                if let Some(mut cur) = e.registry.get(&key) {
                    cur.expire_ms = if expire_ms > 0 {
                        expire_ms
                    } else {
                        e.clock.now_ms() + e.cfg.ttl.as_millis() as i64
                    };
                    e.registry.insert(cur).await;
                }
            }
            Err(err) => {
                metrics::counter!(telemetry::CACHE_RENEWALS, "result" => "error").increment(1);
                tracing::warn!(?err, "cache renewal failed; it will expire");
            }
        }
        e.renewing.lock().expect("poisoned").remove(&key);
    });
}

/// One pass of the sweeper at time `now`.
pub(super) async fn sweep(c: &Caching, now: i64) {
    let e = &c.0;
    let idle_ms = e.cfg.idle_delete_after.as_millis() as i64;
    for entry in e.registry.entries() {
        if entry.expire_ms <= now {
            e.registry.remove(&entry.key).await;
            metrics::counter!(telemetry::CACHE_DELETIONS, "reason" => "expired").increment(1);
            continue;
        }
        if idle_ms > 0 && now - entry.last_used_ms >= idle_ms {
            if let Some(cred) = e.creds.get(&entry.scope) {
                match ops::delete(&e.upstream, &entry.name, &cred, e.timeout).await {
                    Ok(()) => {
                        metrics::counter!(telemetry::CACHE_DELETIONS, "reason" => "idle")
                            .increment(1);
                        e.registry.remove(&entry.key).await;
                        continue;
                    }
                    Err(err) => tracing::warn!(?err, "idle cache deletion failed"),
                }
            }
        }
        e.registry.flush(&entry).await;
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
