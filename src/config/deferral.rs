//! The `[deferral]` section: marking thresholds, batching, polling, failure rules, flex, webhook
//! and service credentials (see docs/deferral.md).

use super::ConfigErrors;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Deferred execution: Batch API and Flex tier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeferralConfig {
    pub enabled: bool,
    /// `auto`: a deadline at least this long goes to the Batch API.
    #[serde(with = "humantime_serde")]
    pub auto_batch_min_deadline: Duration,
    /// `auto`: a deadline at least this long (and shorter than the batch one) goes flex; shorter
    /// deadlines go standard. `auto` without a deadline goes flex.
    #[serde(with = "humantime_serde")]
    pub auto_flex_min_deadline: Duration,
    /// Streaming requests are never batched; marked `batch` they go `flex` or `standard`.
    pub stream_batch_as: String,
    /// Upper bound on `x-gemgate-wait`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// A (scope, model) group is flushed into a job when it has this many requests ...
    pub max_items_per_job: usize,
    /// ... or this many bytes of request bodies ...
    pub max_bytes_per_job: u64,
    /// ... or when its oldest request has waited this long.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Jobs whose input is at least this large go as a JSONL file (Files API) instead of inline.
    pub inline_max_bytes: u64,
    /// How often the background worker looks at the queue, jobs and webhooks.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// With the Redis store, several replicas run the worker: a replica claims a job (or a
    /// webhook) for this long before working on it, renewing at a third of it while it works.
    /// A dead replica's work is taken over once its claim lapses.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// First poll of a submitted job after this long; then doubling up to `poll_max`.
    #[serde(with = "humantime_serde")]
    pub poll_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_max: Duration,
    /// Attempts at submitting a job whose errors are transient (5xx, 429, transport), spaced
    /// like polls (`poll_initial` doubling up to `poll_max`); then the job fails and each of its
    /// requests gets an error result.
    pub max_submit_attempts: u32,
    /// Random spread of each poll delay, as a fraction (0.2 = ±20 %).
    pub poll_jitter: f64,
    /// A job that ends FAILED, EXPIRED or CANCELLED upstream: `resubmit` its requests as a new
    /// job (up to `max_resubmits` times) or `fail` them.
    pub on_job_failure: String,
    pub max_resubmits: u32,
    /// Finished results stay readable this long, then are purged.
    #[serde(with = "humantime_serde")]
    pub result_retention: Duration,
    /// Flex requests the upstream sheds (429/503) are retried this many times ...
    pub flex_retries: u32,
    #[serde(with = "humantime_serde")]
    pub flex_retry_delay: Duration,
    /// ... and then sent `standard` (full price) or answered with the shed error (`fail`).
    pub flex_on_shed: String,
    /// If set, every batch result is also POSTed here, signed with HMAC-SHA256.
    pub webhook_url: String,
    /// Name of the environment variable holding the webhook signing secret.
    pub webhook_secret_env: String,
    pub webhook_max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub webhook_initial_backoff: Duration,
    /// Names of environment variables holding API keys the gateway may use on its own to submit
    /// and poll that key's queued work after a restart (see docs/deferral.md, credentials).
    pub service_key_envs: Vec<String>,
    /// API version used for the gateway's own batch and file calls.
    pub upstream_version: String,
    /// Cache-aware jobs: a job whose requests share a large prefix (system instruction, tools,
    /// leading turns) gets one explicit cache for it when the cost engine says it pays.
    pub cache_shared_prefixes: bool,
    /// How long a job is assumed to run before any job of its model has finished (then the
    /// average of finished jobs is used); sizes the cache's storage cost and TTL.
    #[serde(with = "humantime_serde")]
    pub expected_job_run: Duration,
    /// Rules that defer requests from unmodified applications; the first match wins, and
    /// request headers win over rules.
    pub rules: Vec<DeferralRule>,
}

/// One config rule. Empty matchers match anything.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeferralRule {
    /// SHA-256 (hex) of the credential (`echo -n KEY | sha256sum`).
    pub scope: String,
    /// Model id prefix, e.g. `gemini-2.5-flash` (with or without `models/`).
    pub model: String,
    /// Request path prefix, e.g. `/v1beta/models/`.
    pub path: String,
    /// `name=value`: the request carries this header with this value (`name` alone: present).
    pub header: String,
    /// `batch`, `flex`, `auto` or `standard`.
    pub defer: String,
    /// Deadline assumed for `auto` (humantime), empty: none.
    pub deadline: String,
}

impl Default for DeferralConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            auto_batch_min_deadline: Duration::from_secs(24 * 3600),
            auto_flex_min_deadline: Duration::from_secs(600),
            stream_batch_as: "flex".into(),
            max_wait: Duration::from_secs(3600),
            max_items_per_job: 1000,
            max_bytes_per_job: 100 * 1024 * 1024,
            max_age: Duration::from_secs(60),
            inline_max_bytes: 19 * 1024 * 1024,
            tick: Duration::from_secs(1),
            claim_ttl: Duration::from_secs(30),
            poll_initial: Duration::from_secs(10),
            poll_max: Duration::from_secs(300),
            max_submit_attempts: 8,
            poll_jitter: 0.2,
            on_job_failure: "resubmit".into(),
            max_resubmits: 1,
            result_retention: Duration::from_secs(24 * 3600),
            flex_retries: 1,
            flex_retry_delay: Duration::from_secs(1),
            flex_on_shed: "standard".into(),
            webhook_url: String::new(),
            webhook_secret_env: String::new(),
            webhook_max_attempts: 8,
            webhook_initial_backoff: Duration::from_secs(1),
            service_key_envs: Vec::new(),
            upstream_version: "v1beta".into(),
            cache_shared_prefixes: true,
            expected_job_run: Duration::from_secs(1800),
            rules: Vec::new(),
        }
    }
}

const DEFERS: [&str; 5] = ["batch", "flex", "auto", "priority", "standard"];

impl DeferralConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        let mut bad = |k: &str, p: &str| errors.push(format!("deferral.{k}"), p.to_string());
        if self.auto_flex_min_deadline > self.auto_batch_min_deadline {
            bad("auto_flex_min_deadline", "must not exceed deferral.auto_batch_min_deadline");
        }
        if !matches!(self.stream_batch_as.as_str(), "flex" | "standard") {
            bad("stream_batch_as", "must be `flex` or `standard`");
        }
        if self.max_items_per_job == 0 {
            bad("max_items_per_job", "must be at least 1");
        }
        if self.max_bytes_per_job == 0 {
            bad("max_bytes_per_job", "must be greater than 0");
        }
        if self.inline_max_bytes == 0 || self.inline_max_bytes > 20 * 1000 * 1000 {
            bad("inline_max_bytes", "must be between 1 and 20000000 (20 MB)");
        }
        if self.tick.is_zero() {
            bad("tick", "must be greater than 0");
        }
        if self.expected_job_run < Duration::from_secs(1) {
            bad("expected_job_run", "must be at least 1s");
        }
        if self.claim_ttl < Duration::from_millis(300) {
            bad("claim_ttl", "must be at least 300ms");
        }
        if self.poll_initial.is_zero() || self.poll_max < self.poll_initial {
            bad("poll_max", "poll_initial must be > 0 and poll_max >= poll_initial");
        }
        if self.max_submit_attempts == 0 {
            bad("max_submit_attempts", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.poll_jitter) {
            bad("poll_jitter", "must be in [0, 1)");
        }
        if !matches!(self.on_job_failure.as_str(), "resubmit" | "fail") {
            bad("on_job_failure", "must be `resubmit` or `fail`");
        }
        if !matches!(self.flex_on_shed.as_str(), "standard" | "fail") {
            bad("flex_on_shed", "must be `standard` or `fail`");
        }
        if !self.webhook_url.is_empty() && url::Url::parse(&self.webhook_url).is_err() {
            bad("webhook_url", "not a URL");
        }
        if !self.webhook_url.is_empty() && self.webhook_secret_env.is_empty() {
            bad("webhook_secret_env", "must name an environment variable when webhook_url is set");
        }
        if !crate::gemini::path::is_version(&self.upstream_version) {
            bad("upstream_version", "must be v1, v1beta or v1alpha");
        }
        for (i, r) in self.rules.iter().enumerate() {
            if !DEFERS.contains(&r.defer.as_str()) {
                bad(&format!("rules[{i}].defer"), "must be batch, flex, auto, priority or standard");
            }
            if !r.deadline.is_empty() && humantime::parse_duration(&r.deadline).is_err() {
                bad(&format!("rules[{i}].deadline"), "not a duration");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{CliOverrides, Config};

    #[test]
    fn bad_deferral_values_are_reported_with_their_keys() {
        let vars = [
            ("GEMGATE_DEFERRAL__STREAM_BATCH_AS", "batch"),
            ("GEMGATE_DEFERRAL__ON_JOB_FAILURE", "retry"),
            ("GEMGATE_DEFERRAL__INLINE_MAX_BYTES", "30000000"),
            ("GEMGATE_DEFERRAL__WEBHOOK_URL", "http://hooks.example/x"),
            ("GEMGATE_DEFERRAL__AUTO_FLEX_MIN_DEADLINE", "2days"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        let text = Config::load(None, vars, &CliOverrides::default()).unwrap_err().to_string();
        for key in [
            "deferral.stream_batch_as",
            "deferral.on_job_failure",
            "deferral.inline_max_bytes",
            "deferral.webhook_secret_env",
            "deferral.auto_flex_min_deadline",
        ] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
    }
}
