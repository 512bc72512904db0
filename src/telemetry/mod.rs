//! Logs (tracing) and metrics (Prometheus). Metric names live here, described once at start-up.

mod redact;

pub use redact::{redact_path_and_query, redact_url};

use crate::config::TelemetryConfig;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub const REQUESTS: &str = "gemgate_requests_total";
pub const REQUEST_DURATION: &str = "gemgate_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "gemgate_upstream_duration_seconds";
pub const OVERHEAD: &str = "gemgate_overhead_seconds";
pub const IN_FLIGHT: &str = "gemgate_in_flight_requests";
pub const REQUEST_BYTES: &str = "gemgate_request_bytes_total";
pub const RESPONSE_BYTES: &str = "gemgate_response_bytes_total";
pub const GATEWAY_ERRORS: &str = "gemgate_gateway_errors_total";
pub const CLIENT_TIMEOUTS: &str = "gemgate_client_timeouts_total";
pub const OPEN_CONNECTIONS: &str = "gemgate_open_connections";
pub const CACHE_DECISIONS: &str = "gemgate_cache_decisions_total";
pub const CACHE_CREATIONS: &str = "gemgate_cache_creations_total";
pub const CACHE_RENEWALS: &str = "gemgate_cache_renewals_total";
pub const CACHE_DELETIONS: &str = "gemgate_cache_deletions_total";
pub const CACHE_HITS: &str = "gemgate_cache_hits_total";
pub const CACHE_TOKENS_SERVED: &str = "gemgate_cache_tokens_served_total";
pub const CACHE_RETRIES: &str = "gemgate_cache_fail_open_retries_total";
pub const REGISTRY_ENTRIES: &str = "gemgate_registry_entries";
pub const CACHE_SAVED_MICRO_USD: &str = "gemgate_cache_saved_microdollars_total";
pub const CACHE_STORAGE_MICRO_USD: &str = "gemgate_cache_storage_microdollars_total";
pub const CACHE_CREATION_MICRO_USD: &str = "gemgate_cache_creation_microdollars_total";
pub const DEFER_QUEUE_DEPTH: &str = "gemgate_deferral_queue_depth";
pub const DEFER_OLDEST_AGE: &str = "gemgate_deferral_oldest_queued_age_seconds";
pub const DEFER_OPEN_JOBS: &str = "gemgate_deferral_open_jobs";
pub const DEFER_JOBS: &str = "gemgate_deferral_jobs_total";
pub const DEFER_ITEMS: &str = "gemgate_deferral_items_total";
pub const DEFER_FLEX: &str = "gemgate_deferral_flex_total";
pub const DEFER_WEBHOOKS: &str = "gemgate_deferral_webhooks_total";
pub const DEFER_JOB_CACHES: &str = "gemgate_deferral_job_caches_total";
pub const DEFER_SAVED_MICRO_USD: &str = "gemgate_deferral_saved_microdollars_total";
pub const PRICE_SOURCE: &str = "gemgate_price_source_total";
pub const NET_SAVING_USD: &str = "gemgate_net_saving_usd";

/// Installs the global tracing subscriber. `RUST_LOG` wins over the configured level.
pub fn init_tracing(cfg: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Logs go to stderr: stdout carries only the "listening on" line scripts read.
    if cfg.log_format == "json" {
        let _ = registry.with(fmt::layer().json().with_writer(std::io::stderr)).try_init();
    } else {
        // Colour codes only on a terminal: a log file or collector gets plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let _ = registry.with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).try_init();
    }
}

/// Builds the Prometheus recorder and installs it globally (once per process; later calls reuse
/// the first handle, which is what in-process tests need).
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = &[
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), latency)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            let _ = HOT.set(Hot::register());
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests by matched route, method and status");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Time until response headers were sent");
    describe_histogram!(UPSTREAM_DURATION, Unit::Seconds, "Upstream time until its response headers");
    describe_histogram!(OVERHEAD, Unit::Seconds, "Gateway overhead: total minus upstream time");
    describe_gauge!(IN_FLIGHT, "Requests being served, streams until their last byte");
    describe_counter!(REQUEST_BYTES, Unit::Bytes, "Request body bytes received from clients");
    describe_counter!(RESPONSE_BYTES, Unit::Bytes, "Response body bytes sent to clients");
    describe_counter!(GATEWAY_ERRORS, "Errors the gateway itself originated, by kind");
    describe_counter!(CLIENT_TIMEOUTS, "Client connections closed or requests refused for being too slow, by kind");
    describe_gauge!(OPEN_CONNECTIONS, "Client connections open on the listener");
    describe_counter!(CACHE_DECISIONS, "Caching decisions by outcome");
    describe_counter!(CACHE_CREATIONS, "cachedContents.create calls by result");
    describe_counter!(CACHE_RENEWALS, "TTL renewals (PATCH) by result");
    describe_counter!(CACHE_DELETIONS, "Caches deleted by the gateway, by reason");
    describe_counter!(CACHE_HITS, "Requests served through a gateway-made cache");
    describe_counter!(CACHE_TOKENS_SERVED, "Prompt tokens the upstream served from gateway caches");
    describe_counter!(CACHE_RETRIES, "Rewritten requests resent as they came after a cache error");
    describe_gauge!(REGISTRY_ENTRIES, "Entries in the in-process cache registry");
    describe_counter!(CACHE_SAVED_MICRO_USD, "Estimated gross saving of cache hits, in millionths of a USD, by model");
    describe_counter!(CACHE_STORAGE_MICRO_USD, "Estimated cache storage committed, in millionths of a USD, by model");
    describe_counter!(CACHE_CREATION_MICRO_USD, "Estimated cache creation cost, in millionths of a USD, by model");
    describe_gauge!(
        DEFER_QUEUE_DEPTH,
        "Deferred requests waiting: queued (no job yet) or in_job (submitted, no result yet)"
    );
    describe_gauge!(DEFER_OLDEST_AGE, Unit::Seconds, "Age of the oldest deferred request not yet in a job");
    describe_gauge!(DEFER_OPEN_JOBS, "Batch jobs by state: intent or submitted");
    describe_counter!(
        DEFER_JOBS,
        "Batch job transitions: formed, submitted, reconciled, succeeded, failed, expired, cancelled, resubmitted, rejected"
    );
    describe_counter!(DEFER_ITEMS, "Deferred requests by outcome: enqueued, response, error, cancelled");
    describe_counter!(DEFER_FLEX, "Flex attempts by outcome: served, shed, fallback_standard");
    describe_counter!(DEFER_WEBHOOKS, "Webhook deliveries by outcome");
    describe_counter!(
        DEFER_SAVED_MICRO_USD,
        "What the flex and batch tiers saved against the standard tier, in millionths of a USD, by tier and model"
    );
    describe_counter!(
        DEFER_JOB_CACHES,
        "Explicit caches of batch jobs by event: created, reused, failed, extended, deleted, resubmitted"
    );
    describe_counter!(
        PRICE_SOURCE,
        "Priced responses by model and where the price came from: table, family or default (a guess)"
    );
    describe_gauge!(
        NET_SAVING_USD,
        Unit::Count,
        "Net saving (USD) reported on responses since start, by model and mechanism: the sum of \
         x-gemgate-net-saving-usd; negative while caches cost more than they saved"
    );
}

/// Handles to the label-free metrics every request updates, registered once when the recorder
/// is installed. `metrics::counter!(NAME)` looks its key up in the recorder's registry on every
/// call (a hash and a lock); a handle is the counter itself.
pub struct Hot {
    pub in_flight: metrics::Gauge,
    pub request_bytes: metrics::Counter,
    pub response_bytes: metrics::Counter,
    pub upstream_duration: metrics::Histogram,
    pub overhead: metrics::Histogram,
}

static HOT: std::sync::OnceLock<Hot> = std::sync::OnceLock::new();

impl Hot {
    fn register() -> Self {
        Self {
            in_flight: metrics::gauge!(IN_FLIGHT),
            request_bytes: metrics::counter!(REQUEST_BYTES),
            response_bytes: metrics::counter!(RESPONSE_BYTES),
            upstream_duration: metrics::histogram!(UPSTREAM_DURATION),
            overhead: metrics::histogram!(OVERHEAD),
        }
    }
}

/// The per-request metric handles; before [`install_metrics`] (no recorder), handles that
/// record nothing, as the macros would.
pub fn hot() -> &'static Hot {
    static NOOP: std::sync::LazyLock<Hot> = std::sync::LazyLock::new(|| Hot {
        in_flight: metrics::Gauge::noop(),
        request_bytes: metrics::Counter::noop(),
        response_bytes: metrics::Counter::noop(),
        upstream_duration: metrics::Histogram::noop(),
        overhead: metrics::Histogram::noop(),
    });
    HOT.get().unwrap_or(&NOOP)
}

/// The `status` label of a response: a static string per code, so counting a request allocates
/// no label text.
pub fn status_label(status: http::StatusCode) -> &'static str {
    static LABELS: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| (100..1000u16).map(|c| c.to_string()).collect());
    LABELS.get(usize::from(status.as_u16()).wrapping_sub(100)).map_or("other", String::as_str)
}

tokio::task_local! {
    static UPSTREAM_TIME: std::cell::Cell<std::time::Duration>;
}

/// Adds time spent waiting for the upstream to the current request's account, so the overhead
/// histogram can subtract it. Outside a request (background tasks) it does nothing.
pub fn record_upstream_time(d: std::time::Duration) {
    hot().upstream_duration.record(d.as_secs_f64());
    let _ = UPSTREAM_TIME.try_with(|c| c.set(c.get() + d));
}

/// Runs one request's handling with its own upstream-time account, which [`upstream_time`] reads.
pub fn upstream_time_scope<F: std::future::Future>(
    f: F,
) -> tokio::task::futures::TaskLocalFuture<std::cell::Cell<std::time::Duration>, F> {
    UPSTREAM_TIME.scope(std::cell::Cell::new(std::time::Duration::ZERO), f)
}

/// Time the current request has spent waiting for the upstream so far (zero outside a request).
pub fn upstream_time() -> std::time::Duration {
    UPSTREAM_TIME.try_with(std::cell::Cell::get).unwrap_or_default()
}
