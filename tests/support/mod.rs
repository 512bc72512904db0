//! Shared helpers for integration tests: serve routers on port 0, start gateways in-process.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use gemgate::config::{CliOverrides, Config};
use std::net::SocketAddr;

/// Serves `router` on 127.0.0.1:0 in the background and returns its address.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// Default config pointed at `upstream`, with an in-memory store.
pub fn config(upstream: &str) -> Config {
    let vars = [
        ("GEMGATE_STORE__BACKEND".to_string(), "memory".to_string()),
        ("GEMGATE_UPSTREAM__URL".to_string(), upstream.to_string()),
    ];
    Config::load(None, vars, &CliOverrides::default()).expect("valid test config")
}

/// Starts a gateway in-process with `config` and returns its base URL.
pub async fn gateway(config: Config) -> String {
    let metrics = gemgate::telemetry::install_metrics();
    let state = gemgate::AppState::new(config, Some(metrics)).unwrap();
    state.start().await;
    let addr = serve(gemgate::build_app(state)).await;
    format!("http://{addr}")
}

/// A reqwest client that keeps compressed bodies as they are and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
