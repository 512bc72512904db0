//! Shared helpers for integration tests: serve routers on port 0, start gateways in-process.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod binary;
pub mod deferred;
pub mod raw;

use gemgate::config::{CliOverrides, Config};
use std::net::SocketAddr;

/// Serves `router` on 127.0.0.1:0 in the background and returns its address.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(gemgate::net::with_nodelay(listener), router).await.unwrap();
    });
    addr
}

/// Default config pointed at `upstream`, with an in-memory store.
pub fn config(upstream: &str) -> Config {
    let vars = [
        ("GEMGATE_STORE__BACKEND".to_string(), "memory".to_string()),
        ("GEMGATE_UPSTREAM__URL".to_string(), upstream.to_string()),
        // The emulator caches implicitly only when told to, so there is nothing to measure before
        // making caches; the tests that exercise that measurement set their own value.
        ("GEMGATE_CACHING__COST__IMPLICIT_PROBES".to_string(), "0".to_string()),
    ];
    Config::load(None, vars, &CliOverrides::default()).expect("valid test config")
}

/// Starts a gateway in-process with `config` (served as `gemgate serve` serves it: header and
/// body limits, upgrades) and returns its base URL.
pub async fn gateway(config: Config) -> String {
    let metrics = gemgate::telemetry::install_metrics();
    let state = gemgate::AppState::new(config, Some(metrics)).unwrap();
    state.start().await;
    let limits = gemgate::listener::ClientLimits::from_config(&state.config().server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = state.cancel_token().clone();
    tokio::spawn(gemgate::listener::serve(listener, gemgate::build_app(state), limits, cancel));
    format!("http://{addr}")
}

/// A reqwest client that keeps compressed bodies as they are and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A forwarding proxy that records every (method, path) it sees, so a test can assert how many
/// times the upstream was called for what, and every request whole (path and query, headers,
/// body) for tests that look for what must never reach the upstream.
pub struct Recorder {
    pub url: String,
    calls: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    whole: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    pub async fn start(upstream: &str) -> Recorder {
        use axum::extract::Request;
        use axum::response::IntoResponse;
        let calls: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
        let whole: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let (log, dump) = (calls.clone(), whole.clone());
        let upstream = upstream.to_string();
        let http = reqwest::Client::new();
        let router = axum::Router::new().fallback(move |req: Request| {
            let (log, dump, upstream, http) = (log.clone(), dump.clone(), upstream.clone(), http.clone());
            async move {
                let (parts, body) = req.into_parts();
                log.lock().unwrap().push((parts.method.to_string(), parts.uri.path().to_string()));
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let mut text = format!("{} {pq}\n", parts.method);
                for (k, v) in &parts.headers {
                    text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                }
                text.push_str(&String::from_utf8_lossy(&body));
                dump.lock().unwrap().push(text);
                let mut headers = parts.headers.clone();
                headers.remove("host");
                let resp = http
                    .request(parts.method, format!("{upstream}{pq}"))
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let headers = resp.headers().clone();
                let bytes = resp.bytes().await.unwrap();
                let mut out = (status, bytes).into_response();
                for (k, v) in headers.iter() {
                    if k != "content-length" && k != "transfer-encoding" {
                        out.headers_mut().insert(k.clone(), v.clone());
                    }
                }
                out
            }
        });
        let addr = serve(router).await;
        Recorder { url: format!("http://{addr}"), calls, whole }
    }

    /// How many recorded requests contain `needle` anywhere: path, query, headers or body.
    pub fn containing(&self, needle: &str) -> usize {
        self.whole.lock().unwrap().iter().filter(|r| r.contains(needle)).count()
    }

    /// Every path the upstream was asked for, in order.
    pub fn paths(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(_, p)| p.clone()).collect()
    }

    /// How many calls had this method and a path ending with `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.calls.lock().unwrap().iter().filter(|(m, p)| m == method && p.ends_with(suffix)).count()
    }
}

/// A real `redis-server` on a Unix socket in a temporary directory, killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub url: String,
    pub sock: std::path::PathBuf,
}

impl RedisServer {
    /// Starts a server on `sock` (a path in a temporary directory the caller owns), so that a
    /// test can stop it and start it again at the same address.
    pub fn start_at(sock: &std::path::Path) -> RedisServer {
        Self::start_with(sock, &["--save", "", "--appendonly", "no"])
    }

    /// A server that persists every write before answering (`appendonly yes`, `appendfsync
    /// always`) into `dir`: started again on the same `dir` it has everything it acknowledged.
    pub fn start_durable(sock: &std::path::Path, dir: &std::path::Path) -> RedisServer {
        let dir = dir.to_str().expect("utf-8 path");
        Self::start_with(sock, &["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir])
    }

    fn start_with(sock: &std::path::Path, args: &[&str]) -> RedisServer {
        let _ = std::fs::remove_file(sock);
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(sock)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server); .ci/run installs it");
        // Ready once it accepts a connection on the socket (the file alone can precede the
        // listen); a loaded machine can take seconds to start it.
        for _ in 0..1_000 {
            if std::os::unix::net::UnixStream::connect(sock).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        RedisServer { child, url: format!("redis+unix://{}", sock.display()), sock: sock.to_path_buf() }
    }

    /// SIGKILL: the server gets no chance to flush anything it has not already written.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the emulator in-process on port 0 with `cfg`; returns its base URL.
pub async fn emulator_with(cfg: gemgate::emulator::EmulatorConfig) -> String {
    let state = gemgate::emulator::EmulatorState::new(cfg);
    format!("http://{}", serve(gemgate::emulator::router(state)).await)
}

/// Starts the emulator in-process on port 0 with its defaults.
pub async fn emulator() -> String {
    emulator_with(gemgate::emulator::EmulatorConfig::default()).await
}

/// GETs `url` (with an API key, if given) and parses the JSON body.
pub async fn get_json(url: &str, key: Option<&str>) -> serde_json::Value {
    let mut req = client().get(url);
    if let Some(k) = key {
        req = req.header("x-goog-api-key", k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// POSTs `body` as JSON with an API key.
pub async fn post(url: &str, key: &str, body: &serde_json::Value) -> reqwest::Response {
    client().post(url).header("x-goog-api-key", key).json(body).send().await.unwrap()
}

/// POSTs `body` as JSON with an API key and parses the JSON answer.
pub async fn post_json(url: &str, key: &str, body: &serde_json::Value) -> serde_json::Value {
    post(url, key, body).await.json().await.unwrap()
}

/// Storage (token-seconds) still committed until each cache in a `/gemgate/v1/caches` listing
/// expires, counted from `now_ms` (virtual time, when the clocks are scaled).
pub fn committed_token_seconds(listing: &serde_json::Value, now_ms: i64) -> f64 {
    listing["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let expire = gemgate::clock::parse_rfc3339(c["expireTime"].as_str().unwrap()).unwrap();
            c["tokens"].as_f64().unwrap() * ((expire - now_ms).max(0) as f64 / 1000.0)
        })
        .sum()
}

/// About `tokens` tokens of deterministic text (the emulator counts UTF-8 bytes / 4).
pub fn document(seed: &str, tokens: usize) -> String {
    let mut s = format!("Document {seed}. ");
    let mut i = 0;
    while s.len() < tokens * 4 {
        s.push_str(&format!("Clause {i} of {seed} sets out a rule the assistant follows. "));
        i += 1;
    }
    s
}

/// A gateway config in front of `emu` whose deferral runs on test time: caching off, a 50 ms
/// tick and 100–400 ms polling. Tests set `max_age` and the rest themselves.
pub fn fast_deferral_config(emu: &str) -> gemgate::config::Config {
    let mut cfg = config(emu);
    cfg.caching.enabled = false;
    let d = &mut cfg.deferral;
    d.tick = std::time::Duration::from_millis(50);
    d.poll_initial = std::time::Duration::from_millis(100);
    d.poll_max = std::time::Duration::from_millis(400);
    cfg
}

/// The sum of `metric`'s samples carrying `kind="{kind}"` on the gateway at `gw` (the recorder
/// is shared by every gateway in the test process, so counts only ever grow).
pub async fn counted(gw: &str, metric: &str, kind: &str) -> f64 {
    let text = client().get(format!("{gw}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(&format!("kind=\"{kind}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether `body` is Gemini's error JSON (`{"error":{"code","message","status"}}`).
pub fn is_gemini_error(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    let e = &v["error"];
    e["code"].is_u64() && e["message"].is_string() && e["status"].is_string()
}
