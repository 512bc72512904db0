//! Emulator configuration: TOML with `deny_unknown_fields`, every key defaulted
//! (see config/emulator.toml for the documented file).

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorConfig {
    pub auth: AuthConfig,
    pub clock: ClockConfig,
    pub generation: GenerationConfig,
    pub models: Vec<ModelConfig>,
    pub caching: CachingConfig,
    pub batch: BatchConfig,
    pub files: FilesConfig,
    pub flex: FlexConfig,
    pub priority: PriorityConfig,
    pub faults: FaultConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityConfig {
    /// Fraction of `serviceTier: priority` requests served at the standard tier instead (as an
    /// account over its priority limit is); `usageMetadata.serviceTier` says `standard` then.
    pub downgrade_rate: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Valid API keys. Empty: any non-empty key is accepted.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// Virtual time runs this many times faster than real time.
    pub speed: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationConfig {
    /// Generated answers have between `min_words` and `max_words` words.
    pub min_words: usize,
    pub max_words: usize,
    /// Number of events a streamed answer is split into (at most; header `x-emulator-stream-chunks`).
    pub stream_chunks: usize,
    /// Real-time pause between streamed events.
    #[serde(with = "humantime_serde")]
    pub chunk_delay: Duration,
    /// Upper bound of thinking tokens reported when `thinkingBudget > 0`.
    pub max_thoughts_tokens: u64,
    /// Default embedding size when `outputDimensionality` is not given.
    pub embedding_dimensions: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model id without the `models/` prefix.
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "default_input_limit")]
    pub input_token_limit: u64,
    #[serde(default = "default_output_limit")]
    pub output_token_limit: u64,
    /// Supported methods; default depends on whether the id contains "embedding".
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CachingConfig {
    /// TTL of a cache created without `ttl` or `expireTime`.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Minimum cache size per model: exact id, or a prefix ending in `*`. Longest match wins.
    pub min_tokens: BTreeMap<String, u64>,
    /// Minimum for models not matched by `min_tokens`.
    pub default_min_tokens: u64,
    /// Implicit caching: a prompt repeating the leading turns of one the same caller sent this
    /// recently gets them billed as cached. `0s` (default) turns it off.
    #[serde(with = "humantime_serde")]
    pub implicit_window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Virtual time from submission to SUCCEEDED (RUNNING from half of it).
    #[serde(with = "humantime_serde")]
    pub processing_delay: Duration,
    /// Jobs not done after this become BATCH_STATE_EXPIRED.
    #[serde(with = "humantime_serde")]
    pub expiry: Duration,
    /// Fraction of batch items that fail with gRPC code 4 (DEADLINE_EXCEEDED).
    pub item_error_rate: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Files expire this long after upload.
    #[serde(with = "humantime_serde")]
    pub expiry: Duration,
    /// Largest accepted upload, in bytes.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlexConfig {
    /// Fraction of `serviceTier: flex` requests shed.
    pub shed_rate: f64,
    /// Status of a shed request: 503 (UNAVAILABLE) or 429 (RESOURCE_EXHAUSTED).
    pub shed_status: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Seed of the random generator behind every rate below (and flex shedding, batch item errors).
    pub seed: u64,
    /// Added latency: `latency_ms` plus uniform jitter in `[0, jitter_ms]`.
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub rate_429: f64,
    pub rate_500: f64,
    pub rate_503: f64,
    /// Streams only: an error event after the first event.
    pub midstream_error_rate: f64,
    /// Connection dropped (after the first event for streams, before any byte otherwise).
    pub drop_rate: f64,
    /// `retryDelay` in the RetryInfo of injected 429s.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

fn default_input_limit() -> u64 {
    1_048_576
}

fn default_output_limit() -> u64 {
    65_536
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            auth: AuthConfig::default(),
            clock: ClockConfig::default(),
            generation: GenerationConfig::default(),
            models: default_models(),
            caching: CachingConfig::default(),
            batch: BatchConfig::default(),
            files: FilesConfig::default(),
            flex: FlexConfig::default(),
            priority: PriorityConfig::default(),
            faults: FaultConfig::default(),
        }
    }
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self { speed: 1.0 }
    }
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            min_words: 24,
            max_words: 64,
            stream_chunks: 3,
            chunk_delay: Duration::ZERO,
            max_thoughts_tokens: 256,
            embedding_dimensions: 3072,
        }
    }
}

impl Default for CachingConfig {
    fn default() -> Self {
        let min_tokens = [
            ("gemini-2.5-flash*", 1024),
            ("gemini-2.5-flash-lite*", 2048),
            ("gemini-2.5-pro", 4096),
            ("gemini-3*", 4096),
            ("gemini-4*", 4096),
            ("gemini-flash-latest", 4096),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            default_ttl: Duration::from_secs(3600),
            min_tokens,
            default_min_tokens: 1024,
            implicit_window: Duration::ZERO,
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { processing_delay: Duration::from_secs(2), expiry: Duration::from_secs(48 * 3600), item_error_rate: 0.0 }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self { expiry: Duration::from_secs(48 * 3600), max_bytes: 2 * 1024 * 1024 * 1024 }
    }
}

impl Default for FlexConfig {
    fn default() -> Self {
        Self { shed_rate: 0.0, shed_status: 503 }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            latency_ms: 0,
            jitter_ms: 0,
            rate_429: 0.0,
            rate_500: 0.0,
            rate_503: 0.0,
            midstream_error_rate: 0.0,
            drop_rate: 0.0,
            retry_delay: Duration::from_secs(9),
        }
    }
}

/// Methods of the Gemini 4 models: implicit caching only, so no `createCachedContent`.
const IMPLICIT_ONLY: [&str; 3] = ["generateContent", "countTokens", "batchGenerateContent"];

/// The built-in model list: the late-2026 lineup plus a few older models.
pub fn default_models() -> Vec<ModelConfig> {
    let m = |id: &str, name: &str, input: u64, output: u64| ModelConfig {
        id: id.to_string(),
        display_name: Some(name.to_string()),
        input_token_limit: input,
        output_token_limit: output,
        methods: None,
    };
    let implicit_only = |id: &str, name: &str| ModelConfig {
        methods: Some(IMPLICIT_ONLY.iter().map(|s| s.to_string()).collect()),
        ..m(id, name, 1_048_576, 65_536)
    };
    vec![
        m("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536),
        m("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536),
        m("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_048_576, 65_536),
        m("gemini-3-pro-preview", "Gemini 3 Pro Preview", 1_048_576, 65_536),
        m("gemini-3.1-pro-preview", "Gemini 3.1 Pro Preview", 1_048_576, 65_536),
        m("gemini-3.5-flash", "Gemini 3.5 Flash", 1_048_576, 65_536),
        m("gemini-3.6-flash", "Gemini 3.6 Flash", 1_048_576, 65_536),
        m("gemini-3.7-flash", "Gemini 3.7 Flash", 1_048_576, 65_536),
        m("gemini-3.8-flash", "Gemini 3.8 Flash", 1_048_576, 65_536),
        m("gemini-3.5-flash-lite", "Gemini 3.5 Flash-Lite", 1_048_576, 65_536),
        m("gemini-3.1-flash-lite", "Gemini 3.1 Flash-Lite", 1_048_576, 65_536),
        m("gemini-flash-latest", "Gemini Flash Latest", 1_048_576, 65_536),
        implicit_only("gemini-4-argon", "Gemini 4 Argon"),
        implicit_only("gemini-4-carbon", "Gemini 4 Carbon"),
        implicit_only("gemini-4-neon", "Gemini 4 Neon"),
        implicit_only("gemini-4-hydrogen", "Gemini 4 Hydrogen"),
        m("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576, 8_192),
        m("gemini-embedding-001", "Gemini Embedding 001", 2_048, 1),
    ]
}

impl EmulatorConfig {
    /// Reads `path` (or returns the defaults) and validates it, reporting every problem at once.
    pub fn load(path: Option<&Path>) -> anyhow::Result<EmulatorConfig> {
        let cfg = match path {
            None => EmulatorConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges; the error lists every offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !(self.clock.speed.is_finite() && self.clock.speed > 0.0) {
            problems.push("clock.speed must be > 0".to_string());
        }
        let rates = [
            ("batch.item_error_rate", self.batch.item_error_rate),
            ("flex.shed_rate", self.flex.shed_rate),
            ("priority.downgrade_rate", self.priority.downgrade_rate),
            ("faults.rate_429", self.faults.rate_429),
            ("faults.rate_500", self.faults.rate_500),
            ("faults.rate_503", self.faults.rate_503),
            ("faults.midstream_error_rate", self.faults.midstream_error_rate),
            ("faults.drop_rate", self.faults.drop_rate),
        ];
        for (key, v) in rates {
            if !(0.0..=1.0).contains(&v) {
                problems.push(format!("{key} must be within [0, 1], got {v}"));
            }
        }
        if !matches!(self.flex.shed_status, 429 | 503) {
            problems.push(format!("flex.shed_status must be 429 or 503, got {}", self.flex.shed_status));
        }
        if self.generation.min_words == 0 || self.generation.min_words > self.generation.max_words {
            problems.push("generation.min_words must be >= 1 and <= generation.max_words".to_string());
        }
        if self.generation.stream_chunks == 0 {
            problems.push("generation.stream_chunks must be >= 1".to_string());
        }
        if self.models.is_empty() {
            problems.push("models must list at least one model".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid emulator config:\n  {}", problems.join("\n  "))
        }
    }

    /// The minimum cache size for `model` (id without `models/`).
    pub fn min_cache_tokens(&self, model: &str) -> u64 {
        if let Some(v) = self.caching.min_tokens.get(model) {
            return *v;
        }
        self.caching
            .min_tokens
            .iter()
            .filter_map(|(k, v)| k.strip_suffix('*').filter(|p| model.starts_with(p)).map(|p| (p.len(), *v)))
            .max_by_key(|(len, _)| *len)
            .map_or(self.caching.default_min_tokens, |(_, v)| v)
    }

    pub fn model(&self, id: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_cache_tokens_prefers_exact_then_longest_prefix() {
        let c = EmulatorConfig::default();
        assert_eq!(c.min_cache_tokens("gemini-2.5-pro"), 4096);
        assert_eq!(c.min_cache_tokens("gemini-2.5-flash-preview-x"), 1024);
        assert_eq!(c.min_cache_tokens("gemini-2.0-flash"), 1024);
    }

    #[test]
    fn unknown_keys_are_rejected_and_bad_values_reported_together() {
        assert!(toml::from_str::<EmulatorConfig>("[clock]\nspeeed = 2.0").is_err());
        let c: EmulatorConfig = toml::from_str("[clock]\nspeed = 0.0\n[flex]\nshed_rate = 2.0").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("clock.speed") && err.contains("flex.shed_rate"), "{err}");
    }

    #[test]
    fn documented_file_parses_to_the_defaults() {
        let text = include_str!("../../config/emulator.toml");
        let c: EmulatorConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        let d = EmulatorConfig::default();
        assert_eq!(c.caching.min_tokens, d.caching.min_tokens);
        assert_eq!(c.batch.processing_delay, d.batch.processing_delay);
        assert_eq!(c.faults.retry_delay, d.faults.retry_delay);
        assert_eq!(c.generation.stream_chunks, d.generation.stream_chunks);
        assert_eq!(c.models.len(), d.models.len());
    }

    #[test]
    fn durations_use_humantime() {
        let c: EmulatorConfig = toml::from_str("[batch]\nprocessing_delay = \"100ms\"").unwrap();
        assert_eq!(c.batch.processing_delay, Duration::from_millis(100));
    }
}
