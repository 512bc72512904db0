//! Claims for replicas sharing one queue: a replica works on a job only while it holds the job's
//! claim in the store (`SET NX PX` with a random token), renewed every third of `claim_ttl`.

use super::Inner;
use std::future::Future;

/// A claim this replica holds while its work runs.
#[derive(Debug, Clone)]
pub struct Held {
    key: String,
    token: u64,
}

impl Held {
    /// Renews the claim and says whether it is still ours: asked right before an upstream call
    /// that must not be made twice, so a replica whose claim lapsed (a long pause, a partition)
    /// stops before sending.
    pub async fn confirm(&self, d: &Inner) -> bool {
        matches!(d.queue.renew(&self.key, self.token, d.cfg.claim_ttl).await, Ok(true))
    }
}

/// Runs `work` while holding the claim `key`. `None` when another replica holds it, the store is
/// unreachable, or the claim could not be renewed midway: then `work` is dropped at its next
/// await point, exactly as a crash would stop it, which the crash discipline already covers (the
/// replica that takes over reconciles by `displayName` before sending anything again).
pub async fn with_claim<F: Future>(d: &Inner, key: &str, work: impl FnOnce(Held) -> F) -> Option<F::Output> {
    let ttl = d.cfg.claim_ttl;
    let token = match d.queue.claim(key, ttl).await {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(claim = key, error = %e, "claiming failed");
            return None;
        }
    };
    let held = Held { key: key.to_string(), token };
    if !d.queue.shared() {
        return Some(work(held).await);
    }
    let work = work(held);
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break Some(out),
            _ = tokio::time::sleep(ttl / 3) => {
                if !matches!(d.queue.renew(key, token, ttl).await, Ok(true)) {
                    tracing::warn!(claim = key, "claim lost; abandoning the work to whoever takes it over");
                    break None;
                }
            }
        }
    };
    if let Err(e) = d.queue.release(key, token).await {
        tracing::debug!(claim = key, error = %e, "releasing a claim failed; it lapses on its own");
    }
    out
}
