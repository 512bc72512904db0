//! Open-loop constant-rate load: every request has an intended send time on a fixed schedule and
//! its latency is measured from that time (not from when it was actually sent), so a stalled
//! server cannot hide its queueing delay (no coordinated omission).

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1.1 client with TCP_NODELAY (one per target, so pools stay apart).
pub fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .pool_idle_timeout(Duration::from_secs(120))
        .build(c)
}

/// One request, sent identically many times.
#[derive(Clone)]
pub struct RequestSpec {
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: Bytes,
    /// A response header that must carry this value (else the response counts as unexpected).
    pub expect: Option<(&'static str, &'static str)>,
}

/// Largest number of requests in flight; beyond it a request is counted as an error (dropped).
pub const MAX_INFLIGHT: usize = 2000;
/// A request not finished this long after its intended time counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram bounds")
}

struct Acc {
    ok: u64,
    errors: u64,
    dropped: u64,
    unexpected: u64,
    bytes: u64,
    latency: Histogram<u64>,
    ttfb: Histogram<u64>,
    service: Histogram<u64>,
    first_error: Option<String>,
}

/// What one open-loop run measured (only requests whose intended time fell in the window).
pub struct Outcome {
    pub rate: f64,
    pub scheduled: u64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub unexpected: u64,
    pub bytes: u64,
    /// ns from intended send time to the last body byte.
    pub latency: Histogram<u64>,
    /// ns from intended send time to the first body byte.
    pub ttfb: Histogram<u64>,
    /// ns from actual send to the last body byte (for reference; can hide queueing).
    pub service: Histogram<u64>,
    pub window: Duration,
    pub first_error: Option<String>,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Pcts {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Pcts {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
        Pcts {
            p50: ms(0.50),
            p90: ms(0.90),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1e6,
        }
    }
}

impl Outcome {
    pub fn error_rate(&self) -> f64 {
        if self.scheduled == 0 {
            return 0.0;
        }
        (self.errors + self.unexpected) as f64 / self.scheduled as f64
    }
    pub fn achieved_rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
}

fn set_timer_slack() {
    // The default 50 µs timer slack would bunch sends; ask for 1 ns.
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Sends `spec` to `base` at `rate` requests per second for `warmup + window`; only requests
/// intended after the warm-up are measured. Waits for stragglers (bounded) before returning.
pub async fn open_loop(
    client: &HttpClient,
    base: &str,
    spec: &RequestSpec,
    rate: f64,
    warmup: Duration,
    window: Duration,
) -> Outcome {
    let uri: http::Uri = format!("{base}{}", spec.path)
        .parse()
        .expect("valid target URI");
    let acc = Arc::new(Mutex::new(Acc {
        ok: 0,
        errors: 0,
        dropped: 0,
        unexpected: 0,
        bytes: 0,
        latency: hist(),
        ttfb: hist(),
        service: hist(),
        first_error: None,
    }));
    let inflight = Arc::new(AtomicUsize::new(0));
    let spec = Arc::new(spec.clone());
    let handle = tokio::runtime::Handle::current();
    let total = ((warmup + window).as_secs_f64() * rate).round() as u64;
    let warm_n = (warmup.as_secs_f64() * rate).round() as u64;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let client = client.clone();
        let acc = acc.clone();
        let inflight = inflight.clone();
        let spec = spec.clone();
        std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                set_timer_slack();
                let start = Instant::now() + Duration::from_millis(5);
                for i in 0..total {
                    let intended = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let measured = i >= warm_n;
                    // Counted in flight from here, so the drain below cannot miss a request
                    // whose task has not started yet.
                    if inflight.fetch_add(1, Ordering::AcqRel) >= MAX_INFLIGHT {
                        inflight.fetch_sub(1, Ordering::AcqRel);
                        if measured {
                            let mut a = acc.lock().expect("poisoned");
                            a.errors += 1;
                            a.dropped += 1;
                        }
                        continue;
                    }
                    handle.spawn(one(
                        client.clone(),
                        uri.clone(),
                        spec.clone(),
                        intended,
                        measured,
                        acc.clone(),
                        inflight.clone(),
                    ));
                }
                let _ = done_tx.send(());
            })
            .expect("spawn pacer");
    }
    let _ = done_rx.await;
    let deadline = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(1);
    while inflight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut a = acc.lock().expect("poisoned");
    let scheduled = total - warm_n;
    // Anything still in flight past the deadline is an error too.
    let accounted = a.ok + a.errors + a.unexpected;
    if accounted < scheduled {
        a.errors += scheduled - accounted;
    }
    Outcome {
        rate,
        scheduled,
        ok: a.ok,
        errors: a.errors,
        dropped: a.dropped,
        unexpected: a.unexpected,
        bytes: a.bytes,
        latency: a.latency.clone(),
        ttfb: a.ttfb.clone(),
        service: a.service.clone(),
        window,
        first_error: a.first_error.clone(),
    }
}

async fn one(
    client: HttpClient,
    uri: http::Uri,
    spec: Arc<RequestSpec>,
    intended: Instant,
    measured: bool,
    acc: Arc<Mutex<Acc>>,
    inflight: Arc<AtomicUsize>,
) {
    let sent = Instant::now();
    let mut b = hyper::Request::builder()
        .method(spec.method.clone())
        .uri(uri);
    for (k, v) in &spec.headers {
        b = b.header(k, v);
    }
    let req = b.body(Full::new(spec.body.clone())).expect("request");
    let remaining = REQUEST_TIMEOUT.saturating_sub(intended.elapsed());
    let result = tokio::time::timeout(remaining, async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let expected = spec
            .expect
            .map(|(k, v)| resp.headers().get(k).is_some_and(|h| h == v))
            .unwrap_or(true);
        let mut body = resp.into_body();
        let mut first: Option<Instant> = None;
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Some(d) = frame.data_ref() {
                if first.is_none() && !d.is_empty() {
                    first = Some(Instant::now());
                }
                n += d.len() as u64;
            }
        }
        Ok::<_, anyhow::Error>((status, expected, first, n))
    })
    .await;
    let done = Instant::now();
    // Recorded before leaving the in-flight count, so a drained run has recorded everything.
    let _leave = Leave(&inflight);
    if !measured {
        return;
    }
    let mut a = acc.lock().expect("poisoned");
    match result {
        Ok(Ok((status, expected, first, n))) if status.is_success() => {
            if !expected {
                a.unexpected += 1;
                if a.first_error.is_none() {
                    a.first_error = Some(format!("missing expected header {:?}", spec.expect));
                }
                return;
            }
            a.ok += 1;
            a.bytes += n;
            let ns = |d: Duration| (d.as_nanos() as u64).max(1_000);
            let _ = a.latency.record(ns(done - intended));
            let _ = a.ttfb.record(ns(first.unwrap_or(done) - intended));
            let _ = a.service.record(ns(done - sent));
        }
        Ok(Ok((status, ..))) => {
            a.errors += 1;
            if a.first_error.is_none() {
                a.first_error = Some(format!("HTTP {status}"));
            }
        }
        Ok(Err(e)) => {
            a.errors += 1;
            if a.first_error.is_none() {
                a.first_error = Some(format!("{e:#}"));
            }
        }
        Err(_) => {
            a.errors += 1;
            if a.first_error.is_none() {
                a.first_error = Some("timeout".into());
            }
        }
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request, waited for; for warming caches and checking a path works.
pub async fn once(
    client: &HttpClient,
    base: &str,
    spec: &RequestSpec,
) -> anyhow::Result<(http::StatusCode, http::HeaderMap, Bytes)> {
    let mut b = hyper::Request::builder()
        .method(spec.method.clone())
        .uri(format!("{base}{}", spec.path));
    for (k, v) in &spec.headers {
        b = b.header(k, v);
    }
    let resp = client
        .request(b.body(Full::new(spec.body.clone()))?)
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}
