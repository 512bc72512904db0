//! Gateway configuration: TOML file, then `GEMGATE_SECTION__KEY` environment overrides, then
//! command-line overrides, then one `validate()` that reports every problem at once.

mod catalog;
mod cost_policy;
mod deferral;
mod env;
mod spend;
mod unknown;
mod validate;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use catalog::{CatalogConfig, PricingConfig};
pub use cost_policy::CostPolicyConfig;
pub use deferral::{DeferralConfig, DeferralRule};
pub use spend::SpendConfig;
pub use validate::ConfigErrors;

/// The whole gateway configuration. Every key is documented, with its default, in
/// `config/gemgate.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub telemetry: TelemetryConfig,
    pub store: StoreConfig,
    pub caching: CachingConfig,
    pub deferral: DeferralConfig,
    pub clock: ClockConfig,
    pub pricing: PricingConfig,
    pub catalog: CatalogConfig,
    pub spend: SpendConfig,
}

/// Time scale. Only compressed trace replays change it, and then the emulator must run at the
/// same speed so TTLs, renewals and storage token-seconds compress alike.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// 1.0 is real time; 60.0 runs the gateway's clock sixty times faster.
    pub speed: f64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self { speed: 1.0 }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body forwarded at all (uploads stream through up to this size).
    pub max_body_bytes: u64,
    /// Largest body the gateway parses (generateContent and friends); larger ones get 413.
    pub max_json_body_bytes: u64,
    /// Base URL clients reach the gateway at, used to rewrite resumable-upload URLs. Empty: derived
    /// from the request's `X-Forwarded-Proto`/`X-Forwarded-Host`/`Host` headers.
    pub public_url: String,
    /// Requests served at once (streams count until their last byte); beyond it the gateway
    /// answers 503 at once instead of queueing. 0: no limit.
    pub max_in_flight: usize,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Time allowed for a request's line and header block; slower connections are closed. It
    /// also bounds how long a kept-alive connection may sit idle between requests.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a new connection has to send its first byte; silent connections are closed. 0: no
    /// limit (then only `header_read_timeout` applies, from the first byte on).
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Connections open at once on the listener; beyond it a new connection is answered 503 and
    /// closed. 0: no limit.
    pub max_connections: usize,
    /// Longest pause while a request body arrives; beyond it the client gets 408 and the
    /// connection is closed. 0: no limit.
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Slowest average body rate (bytes per second) accepted once `body_idle_timeout` has been
    /// spent waiting. 0: no limit.
    pub min_body_rate: u64,
    /// When set, `/gemgate/...` and `/metrics` require `Authorization: Bearer <admin_token>`.
    pub admin_token: String,
    /// Threads that serve requests (the tokio runtime's workers). 0: one per CPU core.
    pub worker_threads: usize,
}

impl std::fmt::Debug for ServerConfig {
    /// Every field but the admin token, which shows only whether it is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_json_body_bytes", &self.max_json_body_bytes)
            .field("public_url", &self.public_url)
            .field("max_in_flight", &self.max_in_flight)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("max_connections", &self.max_connections)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .field("min_body_rate", &self.min_body_rate)
            .field("admin_token", &if self.admin_token.is_empty() { "" } else { "*****" })
            .field("worker_threads", &self.worker_threads)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 2 * 1024 * 1024 * 1024 + 64 * 1024 * 1024,
            max_json_body_bytes: 32 * 1024 * 1024,
            public_url: String::new(),
            max_in_flight: 10_000,
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(10),
            max_connections: 8192,
            body_idle_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
            admin_token: String::new(),
            worker_threads: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: String,
    /// Time allowed to open a TCP/TLS connection to the upstream (beyond it: 502).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive (beyond it: 504). Streams are
    /// not cut once the headers are in.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Idle keep-alive connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "https://generativelanguage.googleapis.com".into(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            pool_max_idle_per_host: 256,
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` filter directive, e.g. `info` or `gemgate=debug,info`. `RUST_LOG` wins if set.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Serve Prometheus metrics at `/metrics`.
    pub metrics: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_level: "info".into(), log_format: "text".into(), metrics: true }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (embedded, default), `redis` (shared by replicas) or `memory` (nothing survives).
    pub backend: String,
    /// SQLite database file.
    pub sqlite_path: PathBuf,
    /// Redis URL, for `backend = "redis"`.
    pub redis_url: String,
    /// Prefix of every Redis key the gateway writes.
    pub redis_prefix: String,
    /// Bound on every Redis call; beyond it the gateway fails open.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: "sqlite".into(),
            sqlite_path: PathBuf::from("gemgate.sqlite"),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "gemgate:".into(),
            redis_timeout: Duration::from_millis(250),
        }
    }
}

/// Automatic explicit context caching (see docs/caching.md and docs/cost-policy.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CachingConfig {
    pub enabled: bool,
    /// `cost` (decide from prices and observed arrivals; the default) or `hits` (create once a
    /// prefix has been seen `min_hits` times within `window`, keep it `ttl`).
    pub policy: String,
    /// Older spelling of `pricing.file` (used when that is empty).
    pub pricing_file: PathBuf,
    /// Append a gemgate trace (hashes and token counts, never content) of every generate request
    /// to this file, for `gemgate simulate`; empty: off.
    pub trace_file: PathBuf,
    /// `hits` policy: arrivals within `window` needed to create a cache.
    pub min_hits: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// `hits` policy: TTL given to caches the gateway creates.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// `hits` policy: renew (PATCH ttl) a cache used within this long of its expiry.
    #[serde(with = "humantime_serde")]
    pub renew_before: Duration,
    /// `hits` policy: delete a gateway-made cache nobody used for this long (0s: never).
    #[serde(with = "humantime_serde")]
    pub idle_delete_after: Duration,
    /// How long requests wait for a cache being created, counted from the creation's start: a
    /// request arriving later waits only what is left, and once it has passed, requests go
    /// uncached at once. 0s: never wait.
    #[serde(with = "humantime_serde")]
    pub create_wait: Duration,
    /// Longest a `cachedContents.create` call may take (separate from `upstream.timeout`, which
    /// is sized for long generations); beyond it the creation counts as failed.
    #[serde(with = "humantime_serde")]
    pub create_timeout: Duration,
    /// After a failed creation, the prefix is not tried again for this long.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Bytes per token assumed before the gateway has learned a model's ratio.
    pub initial_bytes_per_token: f64,
    /// Safety margin on estimated sizes before trying a creation (1.1 = 10 % above the minimum).
    pub size_margin: f64,
    /// Add a `gemgate` object inside `usageMetadata` of responses.
    pub annotate_usage_metadata: bool,
    /// Minimum cacheable tokens per model: an id, an id without version suffixes, or a `*`
    /// pattern (the most specific wins); `default` applies otherwise. Minimums the upstream
    /// states in "too small" answers override these.
    pub min_tokens: std::collections::BTreeMap<String, u32>,
    /// Entries kept in the in-process registry tier.
    pub registry_capacity: u64,
    /// How often the sweeper drops expired entries, deletes idle caches and flushes hit counts.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Tuning of the `cost` policy.
    pub cost: CostPolicyConfig,
}

impl Default for CachingConfig {
    fn default() -> Self {
        let min_tokens = [
            ("default", 4096),
            ("gemini-2.0-flash*", 1024),
            ("gemini-2.5-flash", 1024),
            ("gemini-2.5-flash*", 1024),
            ("gemini-2.5-flash-lite", 2048),
            ("gemini-2.5-pro", 2048),
            ("gemini-3*", 4096),
            ("gemini-4-*", 4096),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            enabled: true,
            policy: "cost".into(),
            pricing_file: PathBuf::new(),
            trace_file: PathBuf::new(),
            min_hits: 2,
            window: Duration::from_secs(600),
            ttl: Duration::from_secs(3600),
            renew_before: Duration::from_secs(600),
            idle_delete_after: Duration::ZERO,
            create_wait: Duration::from_secs(5),
            create_timeout: Duration::from_secs(30),
            cooldown: Duration::from_secs(300),
            initial_bytes_per_token: 4.0,
            size_margin: 1.1,
            annotate_usage_metadata: true,
            min_tokens,
            registry_capacity: 1_000_000,
            sweep_interval: Duration::from_secs(30),
            cost: Default::default(),
        }
    }
}

/// Overrides given on the command line; they win over file and environment.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub listen: Option<SocketAddr>,
    pub upstream: Option<String>,
}

impl Config {
    /// The price schedule file in use (`pricing.file`, else `caching.pricing_file`); empty: built in.
    pub fn pricing_file(&self) -> &Path {
        if self.pricing.file.as_os_str().is_empty() { &self.caching.pricing_file } else { &self.pricing.file }
    }

    /// The price schedule in use.
    pub fn price_table(&self) -> anyhow::Result<crate::accounting::PriceTable> {
        let file = self.pricing_file();
        if file.as_os_str().is_empty() {
            Ok(crate::accounting::PriceTable::builtin())
        } else {
            crate::accounting::PriceTable::load(file)
        }
    }

    /// Loads the file (if any), applies environment overrides from `vars`, then CLI overrides,
    /// then validates. All problems are reported together.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        cli: &CliOverrides,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut text = None;
        let mut doc = match file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => match t.parse::<toml::Table>() {
                    Ok(table) => {
                        text = Some(t);
                        table
                    }
                    Err(e) => {
                        errors.push(p.display().to_string(), e.to_string());
                        return Err(errors);
                    }
                },
                Err(e) => {
                    errors.push(p.display().to_string(), format!("cannot read: {e}"));
                    return Err(errors);
                }
            },
            None => toml::Table::new(),
        };
        env::apply(&mut doc, vars, &mut errors);
        let before = errors.0.len();
        unknown::report(&doc, text.as_deref(), &mut errors);
        if errors.0.len() > before {
            return Err(errors);
        }
        let mut config = match Config::deserialize(toml::Value::Table(doc)) {
            Ok(c) => c,
            Err(e) => {
                errors.push("config", e.to_string());
                return Err(errors);
            }
        };
        if let Some(l) = cli.listen {
            config.server.listen = l;
        }
        if let Some(u) = &cli.upstream {
            config.upstream.url = u.clone();
        }
        config.validate(&mut errors);
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    }
}
