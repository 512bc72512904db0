//! What was spent and saved, and where: every generate response's final figures (the ones its
//! `x-gemgate-*` headers carry) are summed into hourly rollups per model × tenant × tag ×
//! mechanism, kept in the store, and listed in a bounded ring of recent requests (metadata only).
//! `/gemgate/v1/spend` and the `/gemgate/ui` page read the rollups, never raw logs.

mod api;
mod group;

pub use api::{SpendState, queue, recent, spend, ui_asset, ui_page};
pub use group::{Dim, group};

use crate::caching::Costs;
use crate::clock::Clock;
use crate::config::SpendConfig;
use crate::store::{SpendFigures, SpendKey, SpendRow, Store, StoreResult};
use crate::telemetry;
use http::HeaderMap;
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The optional request header naming what a request is for (a feature, a team, a job).
pub use crate::proxy::TAG_HEADER;
/// What a tag or tenant is counted as once the hour's bound is reached (or a tag is malformed).
pub const OTHER: &str = "other";
/// What a request without a tag or credential is counted as.
pub const NONE: &str = "none";
const MAX_TAG_LEN: usize = 64;
const HOUR_MS: i64 = 3_600_000;
/// Figures not yet written (while the store is away) are kept for at most this many rows.
const MAX_PENDING_ROWS: usize = 100_000;

/// Why a response cost less than it would have without the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Served through a gateway-made cache (its creation and storage netted out).
    ExplicitCache,
    Flex,
    Batch,
    /// The upstream's own implicit caching served part of the prompt.
    Implicit,
    None,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::ExplicitCache => "explicit_cache",
            Mechanism::Flex => "flex",
            Mechanism::Batch => "batch",
            Mechanism::Implicit => "implicit",
            Mechanism::None => "none",
        }
    }

    /// One mechanism per response: a gateway-made cache first (it is what changed the bill
    /// most), then the deferral tier, then implicit hits the upstream reported.
    pub fn of(explicit_cache: bool, tier: Option<&str>, cached_tokens: u64) -> Self {
        match tier {
            _ if explicit_cache => Mechanism::ExplicitCache,
            Some("flex") => Mechanism::Flex,
            Some("batch") => Mechanism::Batch,
            _ if cached_tokens > 0 => Mechanism::Implicit,
            _ => Mechanism::None,
        }
    }
}

/// What the request side knows about a generate call, carried to where its response settles.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub route: &'static str,
    /// The credential's scope (SHA-256, hex), when the request carries one.
    pub scope: Option<String>,
    /// The `x-gemgate-tag` value as sent, when valid (`other` when malformed).
    pub tag: Option<String>,
    pub started: Instant,
}

impl RequestMeta {
    /// `scope`: the request's tenant (the hash of its credential), when it sent one.
    pub fn new(headers: &HeaderMap, scope: Option<String>, stream: bool, started: Instant) -> Self {
        let tag = headers.get(TAG_HEADER).map(|v| match v.to_str().map(str::trim) {
            Ok(t) if valid_tag(t) => t.to_string(),
            _ => OTHER.to_string(),
        });
        RequestMeta { route: if stream { "streamGenerateContent" } else { "generateContent" }, scope, tag, started }
    }
}

/// Tags are short and plain: letters, digits and `._:/-`, at most 64 characters.
fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TAG_LEN
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// A response's final figures, as its headers report them.
pub struct Served<'a> {
    /// The price table's model key (bounded: it comes from the table, not the client).
    pub model: &'a str,
    pub status: u16,
    /// The `x-gemgate-cache` outcome.
    pub outcome: &'a str,
    /// The deferral tier that served it, if any.
    pub tier: Option<&'a str>,
    pub explicit_cache: bool,
    pub costs: Option<Costs>,
    /// Cache creation and storage this request committed (already inside `net_saving_usd`).
    pub overhead_usd: f64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
}

/// One line of the recent-request list: metadata only, never content.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recent {
    pub time: String,
    pub time_ms: i64,
    pub route: &'static str,
    pub model: String,
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_name: Option<String>,
    pub tag: String,
    pub status: u16,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub mechanism: &'static str,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_saving_usd: Option<f64>,
    pub latency_ms: f64,
}

/// Figures gathered since the last write, and the current hour's bounds on tags and tenants.
#[derive(Default)]
struct Live {
    pending: HashMap<SpendKey, SpendFigures>,
    hour_ms: i64,
    tags: HashSet<String>,
    tenants: HashSet<String>,
    recent: VecDeque<Recent>,
}

impl Live {
    /// `value` if it is among the hour's first `max` distinct values, else `other`.
    fn admit(set: &mut HashSet<String>, value: String, max: usize) -> String {
        if value == NONE || set.contains(&value) {
            return value;
        }
        if set.len() < max {
            set.insert(value.clone());
            return value;
        }
        OTHER.to_string()
    }
}

/// The spend recorder: a cheap `Clone` handle.
#[derive(Clone)]
pub struct Spend(Arc<Inner>);

struct Inner {
    cfg: SpendConfig,
    store: Arc<dyn Store>,
    clock: Clock,
    live: Mutex<Live>,
    /// One write at a time, so a read that flushes sees every earlier figure written.
    writing: tokio::sync::Mutex<()>,
}

impl Spend {
    pub fn new(cfg: SpendConfig, store: Arc<dyn Store>, clock: Clock) -> Self {
        Spend(Arc::new(Inner { cfg, store, clock, live: Mutex::default(), writing: tokio::sync::Mutex::new(()) }))
    }

    pub fn config(&self) -> &SpendConfig {
        &self.0.cfg
    }

    pub fn now_ms(&self) -> i64 {
        self.0.clock.now_ms()
    }

    /// The tenant id shown for a scope: its first 16 hex digits.
    pub fn tenant_id(scope: Option<&str>) -> String {
        scope.map_or_else(|| NONE.to_string(), |s| s[..s.len().min(16)].to_string())
    }

    pub fn tenant_name(&self, tenant: &str) -> Option<String> {
        self.0.cfg.tenant_names.get(tenant).cloned()
    }

    /// Records one response. Cheap and synchronous: it runs on the response path.
    pub fn record(&self, meta: &RequestMeta, s: Served<'_>) {
        let now = self.now_ms();
        let mechanism = Mechanism::of(s.explicit_cache, s.tier, s.cached_tokens);
        let cfg = &self.0.cfg;
        let mut live = self.0.live.lock().expect("poisoned");
        let hour_ms = now.div_euclid(HOUR_MS) * HOUR_MS;
        if hour_ms != live.hour_ms {
            live.hour_ms = hour_ms;
            live.tags.clear();
            live.tenants.clear();
        }
        let tenant = Live::admit(&mut live.tenants, Self::tenant_id(meta.scope.as_deref()), cfg.max_tenants);
        let tag = Live::admit(&mut live.tags, meta.tag.clone().unwrap_or_else(|| NONE.into()), cfg.max_tags);
        if let Some(c) = s.costs {
            let billed = c.actual_usd + s.overhead_usd;
            let figures = SpendFigures {
                requests: 1,
                billed_usd: billed,
                without_gateway_usd: billed + c.net_saving_usd,
                net_saving_usd: c.net_saving_usd,
                prompt_tokens: s.prompt_tokens,
                cached_tokens: s.cached_tokens,
                output_tokens: s.output_tokens,
            };
            let key = SpendKey {
                hour_ms,
                model: s.model.to_string(),
                tenant: tenant.clone(),
                tag: tag.clone(),
                mechanism: mechanism.as_str().into(),
            };
            live.pending.entry(key).or_default().add(&figures);
            metrics::gauge!(telemetry::NET_SAVING_USD, "model" => s.model.to_string(), "mechanism" => mechanism.as_str())
                .increment(c.net_saving_usd);
        }
        if cfg.recent_requests == 0 {
            return;
        }
        if live.recent.len() >= cfg.recent_requests {
            live.recent.pop_back();
        }
        let tenant_name = self.tenant_name(&tenant);
        live.recent.push_front(Recent {
            // Written when the list is read: most lines are never looked at.
            time: String::new(),
            time_ms: now,
            route: meta.route,
            model: s.model.to_string(),
            tenant,
            tenant_name,
            tag,
            status: s.status,
            outcome: s.outcome.to_string(),
            tier: s.tier.map(str::to_string),
            mechanism: mechanism.as_str(),
            prompt_tokens: s.prompt_tokens,
            cached_tokens: s.cached_tokens,
            output_tokens: s.output_tokens,
            cost_usd: s.costs.map(|c| c.actual_usd + s.overhead_usd),
            net_saving_usd: s.costs.map(|c| c.net_saving_usd),
            latency_ms: (meta.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        });
    }

    /// The recent requests, newest first.
    pub fn recent(&self) -> Vec<Recent> {
        let live = self.0.live.lock().expect("poisoned");
        live.recent.iter().map(|r| Recent { time: crate::clock::rfc3339(r.time_ms), ..r.clone() }).collect()
    }

    /// Writes the figures gathered so far to the store. On failure they are kept for the next
    /// try (bounded by `MAX_PENDING_ROWS`).
    pub async fn flush(&self) -> StoreResult<()> {
        let _one = self.0.writing.lock().await;
        let rows: Vec<SpendRow> =
            std::mem::take(&mut self.0.live.lock().expect("poisoned").pending).into_iter().collect();
        if rows.is_empty() {
            return Ok(());
        }
        let retention_ms = self.0.cfg.retention.as_millis() as i64;
        if let Err(e) = self.0.store.add_spend(&rows, retention_ms).await {
            let mut live = self.0.live.lock().expect("poisoned");
            for (k, f) in rows {
                if live.pending.len() >= MAX_PENDING_ROWS && !live.pending.contains_key(&k) {
                    tracing::warn!(
                        "spend rollups: the store is unavailable and the pending figures are full; dropping"
                    );
                    break;
                }
                live.pending.entry(k).or_default().add(&f);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Rollup rows of the hours starting in `[from_ms, to_ms)`, after writing what is pending.
    pub async fn rows(&self, from_ms: i64, to_ms: i64) -> StoreResult<Vec<SpendRow>> {
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "spend rollups: could not write pending figures before a read");
        }
        self.0.store.spend_rows(from_ms, to_ms).await
    }

    /// Writes pending figures every `flush_interval`, and once more on shutdown; forgets hours
    /// past `retention` once an hour.
    pub fn start(&self, tracker: &TaskTracker, cancel: CancellationToken) {
        let me = self.clone();
        tracker.spawn(async move {
            let mut last_prune = None;
            loop {
                let stop = tokio::select! {
                    _ = tokio::time::sleep(me.0.cfg.flush_interval) => false,
                    _ = cancel.cancelled() => true,
                };
                if let Err(e) = me.flush().await {
                    tracing::warn!(error = %e, "spend rollups: write failed; kept for the next try");
                }
                let now = me.now_ms();
                if prune_due(now, last_prune) {
                    last_prune = Some(now);
                    let before = now - me.0.cfg.retention.as_millis() as i64;
                    if let Err(e) = me.0.store.prune_spend(before.div_euclid(HOUR_MS) * HOUR_MS).await {
                        tracing::warn!(error = %e, "spend rollups: pruning old hours failed");
                    }
                }
                if stop {
                    break;
                }
            }
        });
    }
}

/// Old hours are pruned on the first flush and then once an hour. (The first version started from
/// `i64::MIN` and subtracted: an overflow, which panicked the flush task of a debug build and, in
/// a release build, wrapped so that nothing was ever pruned.)
fn prune_due(now_ms: i64, last_ms: Option<i64>) -> bool {
    last_ms.is_none_or(|last| now_ms.saturating_sub(last) >= HOUR_MS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn old_hours_are_pruned_on_the_first_flush_then_hourly() {
        let now = 1_795_000_000_000;
        assert!(super::prune_due(now, None));
        assert!(!super::prune_due(now + super::HOUR_MS - 1, Some(now)));
        assert!(super::prune_due(now + super::HOUR_MS, Some(now)));
    }

    use super::*;

    fn served(net: f64) -> Served<'static> {
        Served {
            model: "gemini-2.5-flash",
            status: 200,
            outcome: "hit",
            tier: None,
            explicit_cache: true,
            costs: Some(Costs { actual_usd: 0.25, as_sent_usd: 0.25 + net + 0.125, net_saving_usd: net }),
            overhead_usd: 0.125,
            prompt_tokens: 10,
            cached_tokens: 8,
            output_tokens: 2,
        }
    }

    fn meta(tag: &str, scope: &str) -> RequestMeta {
        RequestMeta {
            route: "generateContent",
            scope: Some(scope.into()),
            tag: Some(tag.into()),
            started: Instant::now(),
        }
    }

    fn spend(cfg: SpendConfig) -> Spend {
        Spend::new(cfg, Arc::new(crate::store::MemoryStore::default()), Clock::scaled(1.0))
    }

    #[tokio::test]
    async fn tags_and_tenants_beyond_the_hours_bound_count_as_other() {
        let s = spend(SpendConfig { max_tags: 2, max_tenants: 2, recent_requests: 3, ..Default::default() });
        for (i, tag) in ["a", "b", "c", "a", "d"].iter().enumerate() {
            s.record(&meta(tag, &format!("{i:0<64}")), served(0.5));
        }
        let rows = s.rows(0, i64::MAX).await.unwrap();
        let by_tag = group(&rows, &[Dim::Tag]);
        let tags: Vec<(String, u64)> = by_tag.iter().map(|(k, f)| (k[0].clone(), f.requests)).collect();
        assert_eq!(tags, [("a".into(), 2), ("b".into(), 1), ("other".into(), 2)]);
        let tenants: Vec<String> = group(&rows, &[Dim::Tenant]).into_iter().map(|(k, _)| k[0].clone()).collect();
        assert_eq!(tenants.len(), 3, "two tenants and other: {tenants:?}");
        assert!(tenants.contains(&OTHER.to_string()));
        assert_eq!(s.recent().len(), 3, "the recent list is bounded");
        let total = group(&rows, &[]);
        assert!((total[0].1.net_saving_usd - 2.5).abs() < 1e-12);
        assert!((total[0].1.billed_usd - 5.0 * 0.375).abs() < 1e-12, "billed counts the committed overhead");
        assert!((total[0].1.without_gateway_usd - 5.0 * 0.875).abs() < 1e-12);
    }

    #[test]
    fn malformed_tags_count_as_other_and_mechanisms_are_chosen_in_order() {
        let mut h = HeaderMap::new();
        h.insert(TAG_HEADER, "checkout/v2".parse().unwrap());
        assert_eq!(RequestMeta::new(&h, None, false, Instant::now()).tag.as_deref(), Some("checkout/v2"));
        for bad in ["has space", "ünï", &"x".repeat(65)] {
            h.insert(TAG_HEADER, http::HeaderValue::from_bytes(bad.as_bytes()).unwrap());
            assert_eq!(RequestMeta::new(&h, None, false, Instant::now()).tag.as_deref(), Some(OTHER), "{bad}");
        }
        assert_eq!(Mechanism::of(true, Some("flex"), 9), Mechanism::ExplicitCache);
        assert_eq!(Mechanism::of(false, Some("flex"), 9), Mechanism::Flex);
        assert_eq!(Mechanism::of(false, None, 9), Mechanism::Implicit);
        assert_eq!(Mechanism::of(false, Some("priority"), 0), Mechanism::None);
    }
}
