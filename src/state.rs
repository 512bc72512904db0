//! The gateway's shared state: every long-lived handle, built once, cloned cheaply. It sits
//! below the handlers (generate, admin, the deferral API), which take it or a sub-state of it,
//! and below the router (`app`), which only wires it in.

use crate::caching::Caching;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::Config;
use crate::deferral::Deferral;
pub use crate::layers::InFlight;
use crate::proxy::{UploadRoutes, Upstream};
use crate::spend::Spend;
use crate::store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// Why deferral is off although configured: its queue could not be opened.
    deferral_unusable: Option<String>,
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
        let opened = match config.deferral.enabled {
            true => Some(Deferral::new(
                config.deferral.clone(),
                &config.store,
                catalog.clone(),
                upstream.clone(),
                config.upstream.timeout,
                clock.clone(),
                tracker.clone(),
                cancel.clone(),
            )),
            false => None,
        };
        // A SQLite queue that cannot be opened leaves deferral off (marked calls are served at
        // the standard tier, as when the queue fails later) rather than the gateway down; what
        // is queued in the file waits, untouched, for a start on a usable disk.
        let (deferral, deferral_unusable) = match opened {
            Some(Ok(d)) => (Some(d), None),
            Some(Err(e)) if config.store.backend == "sqlite" => {
                let reason = format!("{e:#}");
                tracing::error!(%reason, "the deferral queue cannot be opened; serving without deferral (/readyz degraded)");
                (None, Some(reason))
            }
            Some(Err(e)) => return Err(e),
            None => (None, None),
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
            deferral_unusable,
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
    /// What forwarding a request as it came needs.
    pub fn passthrough(&self) -> crate::proxy::Passthrough<'_> {
        crate::proxy::Passthrough {
            upstream: self.upstream(),
            uploads: self.uploads(),
            max_body_bytes: self.config().server.max_body_bytes,
        }
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
    /// Why deferral is off although configured (its queue could not be opened at start-up).
    pub fn deferral_unusable(&self) -> Option<&str> {
        self.0.deferral_unusable.as_deref()
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
    /// The Prometheus handle, when metrics are exported.
    pub fn metrics(&self) -> &Option<PrometheusHandle> {
        &self.0.metrics
    }
    /// Background work that must finish before exit runs under this tracker.
    pub fn tracker(&self) -> &TaskTracker {
        &self.0.tracker
    }
    /// The count of requests in flight that the layer stack's limit shares with upgraded sessions.
    pub fn in_flight_counter(&self) -> Arc<AtomicUsize> {
        self.0.in_flight.clone()
    }
}

impl axum::extract::FromRef<AppState> for crate::deferral::DeferralState {
    fn from_ref(state: &AppState) -> Self {
        crate::deferral::DeferralState(state.deferral().cloned())
    }
}

impl axum::extract::FromRef<AppState> for crate::spend::SpendState {
    fn from_ref(state: &AppState) -> Self {
        crate::spend::SpendState {
            spend: state.spend().cloned(),
            deferral: state.deferral().cloned(),
            clock: state.clock().clone(),
        }
    }
}
