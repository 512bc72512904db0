//! Cache-aware jobs: when a job's requests share a large prefix (system instruction, tools, tool
//! config and leading turns), one explicit cache can hold it for the whole job, so the prefix is
//! paid once (creation, storage for the run, cached reads) instead of once per item at the batch
//! input price. The decision uses the same cost functions and catalog as the live cache policy.
//!
//! The job's cache state is durable in the queue before and after every upstream call, so a crash
//! never leaks a cache or submits a job twice:
//! * `Pending` is recorded before any create call; caches carry the display name
//!   `gemgate-{job}-{group}`, so after a crash they are found again and reused (or deleted).
//! * `Ready` lists the caches the job's requests reference; a retried submission rewrites the
//!   requests the same way.
//! * `Released` is recorded once the caches are deleted (the job reached a terminal state).
//!
//! Fail open: a cache that cannot be created leaves its requests uncached; a request whose result
//! says its cache was missing (expired under a slow job) is resubmitted uncached, once.

use super::Inner;
use super::batch_api::BatchApi;
use super::queue::{ItemResult, Job};
use crate::accounting::{self, CreationBilling, ModelPrice, Service};
use crate::gemini::cached_content as rewrite;
use crate::gemini::canonical;
use crate::gemini::usage::Usage;
use crate::proxy::UpstreamFailure;
use crate::proxy::calls::Created;
use crate::telemetry;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Rough size of a token in request JSON before the upstream has counted it.
const BYTES_PER_TOKEN: u64 = 4;
/// A cache's TTL covers the expected run, half of it again, and this.
const TTL_MARGIN_MS: i64 = 5 * 60_000;
/// A running job's caches are extended once less than this remains.
const EXTEND_WITHIN_MS: i64 = 3 * 60_000;
/// Distinct models whose job run times are remembered.
const MAX_MODELS: u64 = 1000;

/// A job's explicit caches, as the queue records them (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobCaches {
    /// No cache for this job (none pays, creation failed, or a resubmission after cache errors).
    Uncached,
    /// Create calls may have been sent; what they made is found by display name.
    Pending,
    /// The job's requests reference these caches.
    Ready { caches: Vec<Made> },
    /// The job ended and its caches were deleted.
    Released,
}

/// One cache made for a job: the prefix group it holds and how many leading contents moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Made {
    pub group: String,
    pub name: String,
    pub expire_ms: i64,
    pub tokens: u64,
    pub contents: usize,
}

/// Learned run time (formation to results) of jobs per model: a moving average, bounded.
pub struct Runs(moka::sync::Cache<String, i64>);

impl Default for Runs {
    fn default() -> Self {
        Runs(moka::sync::Cache::new(MAX_MODELS))
    }
}

impl Runs {
    pub fn expected_ms(&self, model: &str, default_ms: i64) -> i64 {
        self.0.get(model).unwrap_or(default_ms)
    }

    pub fn observe(&self, model: &str, ms: i64) {
        let next = match self.0.get(model) {
            Some(prev) => (prev * 7 + ms.max(0) * 3) / 10,
            None => ms.max(0),
        };
        self.0.insert(model.to_string(), next);
    }
}

/// Requests of a job that share one cacheable prefix.
struct Group {
    key: String,
    /// Leading contents every member has in common (each member keeps at least one of its own).
    contents: usize,
    /// The first member's body, from which the cache body is cut.
    body: Map<String, Value>,
    members: usize,
    tokens: u64,
}

/// Hash of the fields that move into a cache as a whole.
fn group_key(body: &Map<String, Value>) -> String {
    let get = |k: &str| canonical::get(body, k).cloned().unwrap_or(Value::Null);
    let key = serde_json::json!([get("systemInstruction"), get("tools"), get("toolConfig")]);
    hex::encode(&Sha256::digest(canonical::to_vec(&key))[..6])
}

fn contents(body: &Map<String, Value>) -> &[Value] {
    canonical::get(body, "contents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The job's requests grouped by shared prefix (groups of at least two requests).
fn groups(inputs: &[(String, Vec<u8>)]) -> Vec<Group> {
    let mut by_key: BTreeMap<String, Group> = BTreeMap::new();
    for (_, raw) in inputs {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(raw) else { continue };
        if canonical::get(&body, "cachedContent").is_some() {
            continue;
        }
        let key = group_key(&body);
        let own = contents(&body).len().saturating_sub(1);
        match by_key.get_mut(&key) {
            Some(g) => {
                let common = contents(&g.body).iter().zip(contents(&body)).take_while(|(a, b)| a == b).count();
                g.contents = g.contents.min(common).min(own);
                g.members += 1;
            }
            None => {
                by_key.insert(key.clone(), Group { key, contents: own, body, members: 1, tokens: 0 });
            }
        }
    }
    let mut out: Vec<Group> = by_key.into_values().filter(|g| g.members >= 2).collect();
    for g in &mut out {
        let cache = rewrite::cache_body(&g.body, "", g.contents, 0, "");
        g.tokens = canonical::to_vec(&cache).len() as u64 / BYTES_PER_TOKEN;
    }
    out
}

/// Whether one cache pays for `n` requests over a `tokens`-token prefix: what they save by reading
/// it at the batch cached rate instead of the batch input rate, against creating it and storing
/// it for the job's expected run.
pub fn pays(p: &ModelPrice, billing: CreationBilling, n: usize, tokens: u64, run_ms: i64) -> bool {
    let usage = accounting::Usage { prompt_tokens: tokens, ..Default::default() };
    let (input, _, cached) = accounting::rates_for(p, &usage, Service::Batch);
    let saving = n as f64 * tokens as f64 * (input - cached) * 1e-6;
    let cost = accounting::creation_usd(p, billing, tokens) + accounting::storage_usd(p, tokens, run_ms);
    saving > cost
}

fn display_name(job_id: &str, group: &str) -> String {
    format!("gemgate-{job_id}-{group}")
}

async fn load(d: &Inner, job_id: &str) -> Result<Option<JobCaches>, UpstreamFailure> {
    let raw = d.queue.job_cache(job_id).await?;
    Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
}

async fn save(d: &Inner, job_id: &str, state: &JobCaches) -> Result<(), UpstreamFailure> {
    let raw = serde_json::to_string(state).unwrap_or_default();
    d.queue.set_job_cache(job_id, &raw, d.clock.now_ms()).await.map_err(UpstreamFailure::from)
}

/// Marks a job (a resubmission after cache errors) as going out uncached.
pub async fn mark_uncached(d: &Inner, job_id: &str) -> Result<(), UpstreamFailure> {
    save(d, job_id, &JobCaches::Uncached).await
}

fn ttl_ms(d: &Inner, model: &str) -> i64 {
    let run = d.runs.expected_ms(model, d.cfg.expected_job_run.as_millis() as i64);
    run + run / 2 + TTL_MARGIN_MS
}

fn count(event: &'static str, n: usize) {
    metrics::counter!(telemetry::DEFER_JOB_CACHES, "event" => event).increment(n as u64);
}

/// The job's requests as they are to be sent: those of a prefix group with a cache reference it
/// (prefix fields and shared leading contents removed). Creates the caches on first use.
pub async fn prepare(
    d: &Inner,
    api: &BatchApi<'_>,
    job: &Job,
    inputs: Vec<(String, Vec<u8>)>,
) -> Result<Vec<(String, Vec<u8>)>, UpstreamFailure> {
    let caches = match load(d, &job.id).await? {
        Some(JobCaches::Uncached | JobCaches::Released) => return Ok(inputs),
        Some(JobCaches::Ready { .. }) => {
            // A retried submission (after a crash or an outage) may come late: caches near their
            // expiry are extended first.
            extend(d, api, job).await?;
            match load(d, &job.id).await? {
                Some(JobCaches::Ready { caches }) => caches,
                _ => return Ok(inputs),
            }
        }
        pending => create(d, api, job, &inputs, pending.is_some()).await?,
    };
    if caches.is_empty() {
        return Ok(inputs);
    }
    let by_group: BTreeMap<&str, &Made> = caches.iter().map(|m| (m.group.as_str(), m)).collect();
    Ok(inputs
        .into_iter()
        .map(|(key, raw)| match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(body)) if canonical::get(&body, "cachedContent").is_none() => {
                match by_group.get(group_key(&body).as_str()) {
                    Some(m) => (key, rewrite::rewritten(&body, m.contents, &m.name)),
                    None => (key, raw),
                }
            }
            _ => (key, raw),
        })
        .collect())
}

/// Decides and creates the job's caches (reusing any an interrupted earlier attempt made).
async fn create(
    d: &Inner,
    api: &BatchApi<'_>,
    job: &Job,
    inputs: &[(String, Vec<u8>)],
    was_pending: bool,
) -> Result<Vec<Made>, UpstreamFailure> {
    let now = d.clock.now_ms();
    let ttl = ttl_ms(d, &job.model);
    let run = d.runs.expected_ms(&job.model, d.cfg.expected_job_run.as_millis() as i64);
    let explicit = d.cfg.cache_shared_prefixes && d.catalog.explicit_caching(&job.scope, &job.model, api.version, None);
    let priced = d.catalog.price(&job.model, now);
    let billing = d.catalog.prices().cache_creation;
    let min = d.catalog.min_tokens(&job.model) as u64;
    let plan: Vec<Group> = match explicit {
        true => groups(inputs)
            .into_iter()
            .filter(|g| g.tokens >= min && pays(priced.row, billing, g.members, g.tokens, run))
            .collect(),
        false => Vec::new(),
    };
    let mut found = if was_pending { list(api, &job.id, now).await? } else { Vec::new() };
    if plan.is_empty() && found.is_empty() {
        save(d, &job.id, &JobCaches::Uncached).await?;
        return Ok(Vec::new());
    }
    if !was_pending {
        save(d, &job.id, &JobCaches::Pending).await?;
        super::failpoint("cache_intent");
    }
    let mut made = Vec::new();
    for g in &plan {
        if let Some(i) = found.iter().position(|f| f.group == g.key) {
            let mut m = found.swap_remove(i);
            m.contents = g.contents;
            count("reused", 1);
            tracing::info!(job = %job.id, cache = %m.name, "reusing the cache an interrupted submission made");
            made.push(m);
            continue;
        }
        let display = display_name(&job.id, &g.key);
        let secs = ((ttl + 999) / 1000).max(1) as u64;
        let body = rewrite::cache_body(&g.body, &job.model, g.contents, secs, &display);
        let path = format!("/{}/cachedContents", api.version);
        let sent = d.clock.now_ms();
        match api.json(http::Method::POST, &path, serde_json::to_vec(&body).ok()).await {
            Ok(v) => {
                let Some(m) = parse(&v, g.key.clone(), g.contents, sent, sent + ttl) else { continue };
                count("created", 1);
                tracing::info!(job = %job.id, cache = %m.name, tokens = m.tokens, items = g.members, "job cache created");
                made.push(m);
                super::failpoint("cache_created");
            }
            Err(e) => {
                count("failed", 1);
                learn(d, job, &e);
                tracing::warn!(job = %job.id, error = %e, "job cache not created; its requests go uncached");
            }
        }
    }
    // Caches an interrupted attempt made for groups no longer planned (their requests were
    // cancelled meanwhile) are not left behind.
    for f in found {
        delete(api, &f.name).await;
    }
    let state = if made.is_empty() { JobCaches::Uncached } else { JobCaches::Ready { caches: made.clone() } };
    save(d, &job.id, &state).await?;
    super::failpoint("cache_recorded");
    Ok(made)
}

/// What a failed create teaches the catalog (the model's minimum, or no explicit caching).
fn learn(d: &Inner, job: &Job, e: &UpstreamFailure) {
    if let Some((_, min)) = e.too_small() {
        d.catalog.learn_min(&job.model, min);
    } else if e.no_explicit_caching() {
        d.catalog.learn_no_explicit(&job.scope, &job.model);
    }
}

/// A job cache from its resource. Its expiry is kept on the gateway's clock: the lifetime the
/// upstream granted counted from `sent_ms`, the gateway's time when it sent the call, never the
/// upstream's absolute `expireTime` (the two clocks need not agree); `fallback_expire` without one.
fn parse(v: &Value, group: String, contents: usize, sent_ms: i64, fallback_expire: i64) -> Option<Made> {
    let c = Created::from_resource(v)?;
    let expire_ms = c.expire_at(sent_ms).unwrap_or(fallback_expire);
    Some(Made { group, name: c.name, expire_ms, tokens: c.tokens, contents })
}

/// The caches the tenant has whose display name says they belong to `job_id`. Their lifetimes
/// are counted from `now_ms` (an upper bound: each was granted at its last update, before).
async fn list(api: &BatchApi<'_>, job_id: &str, now_ms: i64) -> Result<Vec<Made>, UpstreamFailure> {
    let prefix = display_name(job_id, "");
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let mut path = format!("/{}/cachedContents?pageSize=1000", api.version);
        if !token.is_empty() {
            path.push_str("&pageToken=");
            path.push_str(&url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>());
        }
        let page = api.json(http::Method::GET, &path, None).await?;
        for c in page["cachedContents"].as_array().into_iter().flatten() {
            if let Some(group) = c["displayName"].as_str().and_then(|n| n.strip_prefix(&prefix)) {
                out.extend(parse(c, group.to_string(), 0, now_ms, 0));
            }
        }
        match page["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    Ok(out)
}

async fn delete(api: &BatchApi<'_>, name: &str) {
    match api.json(http::Method::DELETE, &format!("/v1beta/{name}"), None).await {
        Ok(_) | Err(UpstreamFailure::Status { status: 403 | 404, .. }) => count("deleted", 1),
        Err(e) => tracing::warn!(cache = %name, error = %e, "deleting a job cache failed; it expires at its TTL"),
    }
}

/// Deletes the job's caches (the job reached a terminal state) and records that they are gone.
/// Safe to repeat: a crash before the record only means deleting again.
pub async fn release(d: &Inner, api: &BatchApi<'_>, job_id: &str) -> Result<(), UpstreamFailure> {
    let names: Vec<String> = match load(d, job_id).await? {
        Some(JobCaches::Ready { caches }) => caches.into_iter().map(|m| m.name).collect(),
        Some(JobCaches::Pending) => list(api, job_id, d.clock.now_ms()).await?.into_iter().map(|m| m.name).collect(),
        _ => return Ok(()),
    };
    for name in &names {
        delete(api, name).await;
    }
    super::failpoint("cache_deleted");
    save(d, job_id, &JobCaches::Released).await
}

/// A running job whose caches near their expiry gets their TTL extended by another expected run.
pub async fn extend(d: &Inner, api: &BatchApi<'_>, job: &Job) -> Result<(), UpstreamFailure> {
    let Some(JobCaches::Ready { mut caches }) = load(d, &job.id).await? else { return Ok(()) };
    let now = d.clock.now_ms();
    let mut changed = false;
    for m in caches.iter_mut().filter(|m| m.expire_ms - now < EXTEND_WITHIN_MS) {
        let ttl = ttl_ms(d, &job.model);
        let body = serde_json::json!({"ttl": format!("{}s", (ttl / 1000).max(1))});
        let sent = d.clock.now_ms();
        match api.json(http::Method::PATCH, &format!("/v1beta/{}", m.name), serde_json::to_vec(&body).ok()).await {
            Ok(v) => {
                m.expire_ms = Created::from_resource(&v).and_then(|c| c.expire_at(sent)).unwrap_or(sent + ttl);
                changed = true;
                count("extended", 1);
            }
            Err(e) => tracing::warn!(job = %job.id, error = %e, "extending a job cache failed"),
        }
    }
    if changed {
        save(d, &job.id, &JobCaches::Ready { caches }).await?;
    }
    Ok(())
}

/// Adds the gateway's annotation (the one `usageMetadata.gemgate` builder) to a finished job's
/// responses before they are stored: the cost at the batch tier, the cost as sent at the standard
/// tier, and the net saving after each cached request's share of the job's caches (creation, and
/// storage from the job's formation until now).
pub async fn annotate(d: &Inner, job: &Job, results: &mut [(String, ItemResult)]) -> Result<(), UpstreamFailure> {
    let now = d.clock.now_ms();
    let caches = match load(d, &job.id).await? {
        Some(JobCaches::Ready { caches }) => caches,
        _ => Vec::new(),
    };
    let readers = results
        .iter()
        .filter(|(_, r)| matches!(r, ItemResult::Response(v) if Usage::of_response(v).cached_tokens > 0))
        .count();
    let p = d.catalog.price(&job.model, now).row;
    let billing = d.catalog.prices().cache_creation;
    let overhead: f64 = caches
        .iter()
        .map(|m| {
            accounting::creation_usd(p, billing, m.tokens) + accounting::storage_usd(p, m.tokens, now - job.created_ms)
        })
        .sum();
    let share = if readers > 0 { overhead / readers as f64 } else { 0.0 };
    for (_, r) in results.iter_mut() {
        let ItemResult::Response(v) = r else { continue };
        // A batch item is billed at the batch tier whatever tier its usage names.
        let usage = accounting::Usage { served: None, ..accounting::Usage::from_usage_metadata(&v["usageMetadata"]) };
        let cached = usage.cached_tokens;
        let from_cache = cached > 0 && !caches.is_empty();
        let overhead = if from_cache { share } else { 0.0 };
        let Some((costs, pricing, _)) = d.catalog.costs(&job.model, &usage, Service::Batch, overhead, now) else {
            continue;
        };
        let outcome = if from_cache { crate::caching::Outcome::Hit } else { crate::caching::Outcome::Bypass };
        let tier = super::Tier::Batch;
        let a = crate::caching::Annotation {
            prefix_tokens: cached,
            costs: Some(costs),
            pricing: Some(pricing),
            tier: Some((tier.as_str(), tier.discount())),
            ..crate::caching::Annotation::new(outcome)
        };
        a.apply(v);
    }
    Ok(())
}

/// Whether the job's requests were sent referencing caches.
pub async fn used(d: &Inner, job_id: &str) -> Result<bool, UpstreamFailure> {
    Ok(matches!(load(d, job_id).await?, Some(JobCaches::Ready { .. } | JobCaches::Released)))
}

/// Whether an item's error says the cache it referenced was gone (expired or deleted).
pub fn is_cache_error(r: &ItemResult) -> bool {
    let ItemResult::Error(e) = r else { return false };
    let code = e["code"].as_u64().unwrap_or(0);
    let msg = e["message"].as_str().unwrap_or("").to_ascii_lowercase();
    matches!(code, 400 | 403 | 404) && (msg.contains("cachedcontent") || msg.contains("cached content"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::PriceTable;
    use serde_json::json;

    fn body(doc: &str, q: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "systemInstruction": {"parts": [{"text": doc}]},
            "contents": [{"role": "user", "parts": [{"text": q}]}],
            "generationConfig": {"temperature": 0}
        }))
        .unwrap()
    }

    #[test]
    fn requests_group_by_prefix_and_keep_their_own_turn() {
        let a = "a".repeat(8000);
        let b = "b".repeat(4000);
        let inputs: Vec<(String, Vec<u8>)> = vec![
            ("1".into(), body(&a, "q1")),
            ("2".into(), body(&b, "q2")),
            ("3".into(), body(&a, "q3")),
            ("4".into(), body(&b, "q4")),
            ("5".into(), body("alone", "q5")),
        ];
        let mut g = groups(&inputs);
        g.sort_by_key(|g| g.tokens);
        assert_eq!(g.len(), 2, "the lone request has no group");
        assert!(g.iter().all(|g| g.members == 2 && g.contents == 0));
        assert!(g[0].tokens >= 1000 && g[1].tokens >= 2000, "{} {}", g[0].tokens, g[1].tokens);
    }

    #[test]
    fn shared_leading_turns_move_into_the_cache_but_each_request_keeps_one() {
        let turn = |t: &str| json!({"role": "user", "parts": [{"text": t}]});
        let mk = |last: &str| serde_json::to_vec(&json!({"contents": [turn("doc"), turn("ack"), turn(last)]})).unwrap();
        let g = groups(&[("1".into(), mk("x")), ("2".into(), mk("y"))]);
        assert_eq!(g[0].contents, 2);
        let same = groups(&[("1".into(), mk("x")), ("2".into(), mk("x"))]);
        assert_eq!(same[0].contents, 2, "identical requests still keep their last turn");
    }

    #[test]
    fn a_cache_pays_for_many_items_over_a_long_prefix_not_for_few_over_a_short_one() {
        let prices = PriceTable::builtin();
        let p = prices.price_for("gemini-2.5-flash").0;
        let hour = 3_600_000;
        assert!(pays(p, prices.cache_creation, 20, 12_000, hour));
        assert!(!pays(p, prices.cache_creation, 1, 12_000, hour), "one item never repays the creation");
        assert!(!pays(p, prices.cache_creation, 2, 12_000, 48 * hour), "storage for a long run outweighs two reads");
    }

    #[test]
    fn run_times_are_learned_per_model() {
        let r = Runs::default();
        assert_eq!(r.expected_ms("m", 1000), 1000);
        r.observe("m", 10_000);
        r.observe("m", 20_000);
        assert_eq!(r.expected_ms("m", 1000), 13_000);
    }

    #[test]
    fn cache_errors_are_recognised() {
        let gone = ItemResult::error(403, "CachedContent not found (or permission denied)");
        assert!(is_cache_error(&gone));
        assert!(!is_cache_error(&ItemResult::error(500, "internal")));
        assert!(!is_cache_error(&ItemResult::Response(json!({}))));
    }

    #[test]
    fn states_round_trip_as_json() {
        let s = JobCaches::Ready {
            caches: vec![Made {
                group: "g".into(),
                name: "cachedContents/x".into(),
                expire_ms: 5,
                tokens: 9,
                contents: 1,
            }],
        };
        let raw = serde_json::to_string(&s).unwrap();
        assert!(raw.contains("\"state\":\"ready\""), "{raw}");
        assert_eq!(serde_json::from_str::<JobCaches>(&raw).unwrap(), s);
    }
}
