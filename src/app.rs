//! Application state, the route table and the layer stack: the two places structure is declared.

use crate::caching::Caching;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::Config;
use crate::deferral::Deferral;
use crate::proxy::{UploadRoutes, Upstream};
use crate::spend::Spend;
use crate::store::Store;
use crate::telemetry;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

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
                catalog.clone(),
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

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the gateway's router.
///
/// Layers, outermost first (a request passes them top to bottom, a response bottom to top):
/// 1. `SetRequestId`: gives every request an `x-request-id` (the client's, or a new UUID) before
///    anything logs, so every line of a request carries the same id.
/// 2. `observe`: the request span, access log, request/latency/overhead metrics and the in-flight
///    gauge. It sits outside the handlers so gateway errors are measured like any response, and
///    inside the id layer so it can log the id.
/// 3. `PropagateRequestId`: copies the id onto the response for the client to quote.
/// 4. `refuse_unsafe_paths`: 400 for paths with `.`/`..` segments or encoded separators, before
///    any handler or the upstream could resolve them into another path.
/// 5. request decompression (gzip), so every handler reads plain bytes.
/// 6. `admin_token::guard`: the admin token on `/gemgate/...` and `/metrics` when configured
///    (the static `/gemgate/ui` files excepted: they hold no data).
///
/// Body limits are enforced in the handlers, not by a layer, because the limit depends on the
/// route (parsed JSON vs streamed uploads) and the error must be Gemini's JSON, not plain text.
pub fn build_app(state: AppState) -> Router {
    Router::new()
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
        .with_state(state.clone())
        // Outside the routes, so every `/gemgate/...` route is covered. axum applies a layer to the
        // routes added before it: add new routes above this line.
        .layer(middleware::from_fn_with_state(state.clone(), crate::admin_token::guard))
        .layer(middleware::from_fn(refuse_unsafe_paths))
        // gzip request bodies are inflated before any handler reads them; body limits apply to
        // the inflated bytes. Other encodings pass through to the upstream untouched.
        .layer(
            tower::ServiceBuilder::new()
                .layer(RequestDecompressionLayer::new().pass_through_unaccepted(true))
                .map_request(|req: http::Request<_>| req.map(Body::new)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// Refuses paths that URL resolution would turn into another path (see `path::check_safe`),
/// before any route, guard or forwarding sees them.
async fn refuse_unsafe_paths(req: Request, next: Next) -> Response {
    match crate::gemini::path::check_safe(req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(what) => {
            let msg = format!("Invalid request path: it contains {what}, which the gateway does not forward.");
            crate::gemini::GeminiError::invalid_argument(msg).into_response()
        }
    }
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

tokio::task_local! {
    static UPSTREAM_TIME: Cell<Duration>;
}

/// Adds time spent waiting for the upstream to the current request's account, so the overhead
/// histogram can subtract it. Outside a request (background tasks) it does nothing.
pub fn record_upstream_time(d: Duration) {
    metrics::histogram!(telemetry::UPSTREAM_DURATION).record(d.as_secs_f64());
    let _ = UPSTREAM_TIME.try_with(|c| c.set(c.get() + d));
}

async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = crate::gemini::path::method_label(req.method());
    let route = match crate::gemini::path::parse(req.uri().path()) {
        Some(p) => p.route_label(),
        None if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") => req.uri().path()[1..].to_string(),
        None if req.uri().path().starts_with("/gemgate/") => "gemgate".into(),
        None if req.uri().path().starts_with("/ws/") => "ws".into(),
        None => "other".into(),
    };
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let path = telemetry::redact_path_and_query(req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let in_flight = InFlight::enter(&state.0.in_flight);
    let limit = state.config().server.max_in_flight;
    let (resp, upstream) = if limit > 0 && in_flight.count > limit {
        // Shed load rather than queue without bound: a clear, retryable 503 now beats memory
        // growing until the process dies.
        (crate::error::GatewayError::Overloaded(limit).into_response(), Duration::ZERO)
    } else {
        UPSTREAM_TIME
            .scope(Cell::new(Duration::ZERO), async {
                let resp = next.run(req).await;
                (resp, UPSTREAM_TIME.with(|c| c.get()))
            })
            .instrument(span.clone())
            .await
    };
    let total = started.elapsed();
    let status = resp.status().as_u16();
    metrics::counter!(telemetry::REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string()).increment(1);
    metrics::histogram!(telemetry::REQUEST_DURATION, "route" => route).record(total.as_secs_f64());
    if !upstream.is_zero() {
        metrics::histogram!(telemetry::OVERHEAD).record(total.saturating_sub(upstream).as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(path = %path, status, ms = millis(total), upstream_ms = millis(upstream), "served");
    });
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::new(GuardedBody { inner: body, _guard: in_flight }))
}

/// Milliseconds rounded to the microsecond, so logs carry `12.345`, not float noise.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Holds the in-flight count (and gauge) up until the response body is finished or dropped.
pub struct InFlight {
    counter: Arc<AtomicUsize>,
    /// Requests in flight, this one included, when it entered.
    count: usize,
}

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        metrics::gauge!(telemetry::IN_FLIGHT).increment(1.0);
        let count = counter.fetch_add(1, Ordering::Relaxed) + 1;
        InFlight { counter: counter.clone(), count }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::IN_FLIGHT).decrement(1.0);
    }
}

struct GuardedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
