//! Application state, the route table and the layer stack: the two places structure is declared.

use crate::caching::Caching;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::Config;
use crate::deferral::Deferral;
use crate::proxy::{UploadRoutes, Upstream};
use crate::spend::Spend;
use crate::store::Store;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::layers::{InFlight, record_upstream_time};

/// Handles shared by every request; built once, cloned cheaply.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    upstream: Upstream,
    uploads: UploadRoutes,
    metrics: Option<PrometheusHandle>,
    store: Arc<dyn Store>,
    caching: Option<Caching>,
    deferral: Option<Deferral>,
    spend: Option<Spend>,
    catalog: Catalog,
    clock: Clock,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Requests being served now (streams until their last byte), for load shedding.
    in_flight: Arc<AtomicUsize>,
}

impl AppState {
    /// Builds the state with the configured store and the system clock.
    pub fn new(config: Config, metrics: Option<PrometheusHandle>) -> anyhow::Result<Self> {
        let store = crate::store::open(&config.store)?;
        let clock = Clock::scaled(config.clock.speed);
        Self::with_parts(config, metrics, store, clock)
    }

    /// Builds the state around a given store and clock (tests, simulation).
    pub fn with_parts(
        config: Config,
        metrics: Option<PrometheusHandle>,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let upstream = Upstream::new(&config.upstream)?;
        let uploads = UploadRoutes::new(&config.server.public_url);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let catalog = Catalog::new(
            config.catalog.clone(),
            config.price_table()?,
            config.caching.min_tokens.clone(),
            upstream.clone(),
            config.upstream.timeout,
            tracker.clone(),
        );
        let caching = if config.caching.enabled {
            let deps = crate::caching::Deps {
                store: store.clone(),
                upstream: upstream.clone(),
                upstream_timeout: config.upstream.timeout,
                clock: clock.clone(),
                tracker: tracker.clone(),
                cancel: cancel.clone(),
                catalog: catalog.clone(),
            };
            Some(Caching::new(config.caching.clone(), deps)?)
        } else {
            None
        };
        let deferral = match config.deferral.enabled {
            true => Some(Deferral::new(
                config.deferral.clone(),
                &config.store,
                upstream.clone(),
                config.upstream.timeout,
                clock.clone(),
                tracker.clone(),
                cancel.clone(),
            )?),
            false => None,
        };
        let spend = config.spend.enabled.then(|| Spend::new(config.spend.clone(), store.clone(), clock.clone()));
        Ok(Self(Arc::new(Inner {
            spend,
            config,
            upstream,
            uploads,
            metrics,
            store,
            caching,
            deferral,
            catalog,
            clock,
            cancel,
            tracker,
            in_flight: Arc::default(),
        })))
    }

    /// Starts background work (registry warm-up, sweeper). Call once after building.
    pub async fn start(&self) {
        if let Some(warning) = self.price_staleness() {
            tracing::warn!("{warning}");
        }
        if let Some(c) = &self.0.caching {
            c.start().await;
        }
        if let Some(d) = &self.0.deferral {
            d.start();
        }
        if let Some(s) = &self.0.spend {
            s.start(&self.0.tracker, self.0.cancel.clone());
        }
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }
    pub fn uploads(&self) -> &UploadRoutes {
        &self.0.uploads
    }
    pub fn caching(&self) -> Option<&Caching> {
        self.0.caching.as_ref()
    }
    pub fn deferral(&self) -> Option<&Deferral> {
        self.0.deferral.as_ref()
    }
    /// Spend rollups and the recent-request list (`[spend]`).
    pub fn spend(&self) -> Option<&Spend> {
        self.0.spend.as_ref()
    }
    /// Prices, minimum cache sizes and model capabilities.
    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }
    /// A warning when the price table is older than `pricing.stale_after`.
    pub fn price_staleness(&self) -> Option<String> {
        let today = crate::accounting::day_of_ms(self.0.clock.now_ms());
        self.0.catalog.prices().staleness(today, self.0.config.pricing.stale_after)
    }
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }
    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }
    /// Cancelled when the gateway shuts down; background work watches it.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.0.cancel
    }
    /// An in-flight slot held for as long as the returned guard lives (upgraded sessions).
    pub fn hold_in_flight(&self) -> InFlight {
        InFlight::enter(&self.0.in_flight)
    }
    /// Background work that must finish before exit runs under this tracker.
    pub fn tracker(&self) -> &TaskTracker {
        &self.0.tracker
    }
}

/// The router inside the gateway's layer stack: what `serve` runs for every request.
pub type App = crate::layers::Stack<Router>;

/// Builds the gateway: the route table inside the layer stack ([`crate::layers::stack`], where
/// the order of the layers and the reason for each is written down).
///
/// Body limits are enforced in the handlers, not by a layer, because the limit depends on the
/// route (parsed JSON vs streamed uploads) and the error must be Gemini's JSON, not plain text.
pub fn build_app(state: AppState) -> App {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/gemgate/v1/caches", get(crate::admin::list_caches))
        .route("/gemgate/v1/operations", get(crate::deferral::list_operations))
        .route(
            "/gemgate/v1/operations/{id}",
            get(crate::deferral::get_operation).delete(crate::deferral::cancel_operation),
        )
        .route("/gemgate/v1/spend", get(crate::spend::spend))
        .route("/gemgate/v1/requests", get(crate::spend::recent))
        .route("/gemgate/v1/queue", get(crate::spend::queue))
        .route("/gemgate/ui", get(crate::spend::ui_page))
        .route("/gemgate/ui/{asset}", get(crate::spend::ui_asset))
        .fallback(crate::generate::dispatch)
        .method_not_allowed_fallback(|req: Request| async move {
            let msg = format!("gemgate: {} is not allowed on {}", req.method(), req.uri().path());
            crate::gemini::GeminiError::new(405, msg).into_response()
        })
        .with_state(state.clone());
    crate::layers::stack(router, state.0.in_flight.clone(), &state.config().server)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.cancel_token().is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "shutting down"})))
            .into_response();
    }
    // The store and the deferral queue are reported, but their outage does not make the replica
    // unready: caching fails open and standard traffic still flows, so taking every replica out
    // of rotation during a Redis outage would turn a degraded service into none.
    let describe = |r: Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    let store = describe(state.store().ping().await.map_err(|e| e.to_string()));
    let queue = match state.deferral() {
        Some(d) => describe(d.queue().ping().await.map_err(|e| e.to_string())),
        None => "disabled".to_string(),
    };
    let status = if store == "ok" && matches!(queue.as_str(), "ok" | "disabled") { "ready" } else { "degraded" };
    // A stale price table makes every reported cost doubtful, not the gateway unready.
    let pricing = state.price_staleness().map_or_else(|| "ok".to_string(), |w| format!("stale: {w}"));
    let body = serde_json::json!({"status": status, "store": store, "deferral_queue": queue, "pricing": pricing});
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match &state.0.metrics {
        Some(h) if state.config().telemetry.metrics => h.render().into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
