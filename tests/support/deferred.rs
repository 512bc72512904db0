//! Helpers for tests of deferred execution on Redis: spawned replicas (the real binary) on one
//! Redis in front of the emulator, deferring, polling, and the exactly-once check by the ledger.

use gemgate::emulator::EmulatorConfig;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "redis-replica-key";

pub struct Replica {
    pub child: Child,
    pub url: Option<String>,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    pub fn url(&self) -> &str {
        self.url.as_deref().expect("replica started")
    }

    /// Waits up to `bound` for a failpoint abort, then SIGKILLs whatever still runs.
    pub async fn die_within(&mut self, bound: Duration) {
        let until = Instant::now() + bound;
        while self.child.try_wait().unwrap().is_none() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn replica(emu: &str, redis: &str, failpoint: Option<&str>) -> Replica {
    replica_with(emu, redis, failpoint, &[])
}

pub fn replica_with(emu: &str, redis: &str, failpoint: Option<&str>, env: &[(&str, &str)]) -> Replica {
    let store = [
        ("GEMGATE_STORE__BACKEND", "redis"),
        ("GEMGATE_STORE__REDIS_URL", redis),
        ("GEMGATE_DEFERRAL__CLAIM_TTL", "1s"),
    ];
    spawn_deferring_gateway(emu, &store, failpoint, env)
}

/// The real binary in front of `emu`, with deferral settings fast enough for tests (20 ms ticks,
/// jobs of at most 5 items flushed after 100 ms, polls from 100 ms), then `store` and `env`.
/// `url` is `None` when a failpoint fired during start-up (leftover work reached it).
pub fn spawn_deferring_gateway(
    emu: &str,
    store: &[(&str, &str)],
    failpoint: Option<&str>,
    env: &[(&str, &str)],
) -> Replica {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gemgate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--upstream", emu])
        .env_remove("GEMGATE_CONFIG")
        .env_remove("GEMGATE_FAILPOINT")
        .env("GEMGATE_DEFERRAL__TICK", "20ms")
        .env("GEMGATE_DEFERRAL__MAX_AGE", "100ms")
        .env("GEMGATE_DEFERRAL__MAX_ITEMS_PER_JOB", "5")
        .env("GEMGATE_DEFERRAL__POLL_INITIAL", "100ms")
        .env("GEMGATE_DEFERRAL__POLL_MAX", "300ms")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(f) = failpoint {
        cmd.env("GEMGATE_FAILPOINT", f);
    }
    for (k, v) in store.iter().chain(env) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn gemgate");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    // EOF here means a failpoint fired during start-up: a crash too.
    let _ = stdout.read_line(&mut line);
    let url = line.trim().split_once("listening on ").map(|(_, u)| u.to_string());
    Replica { child, url, _stdout: stdout }
}

pub async fn emulator() -> String {
    let mut cfg = EmulatorConfig::default();
    cfg.batch.processing_delay = Duration::from_millis(300);
    super::emulator_with(cfg).await
}

pub fn request(i: usize) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": format!("replica test request {i}")}]}]})
}

/// Sends one generate request (deferred to batch when `batch`); the status and body.
pub async fn send(gw: &str, i: usize, batch: bool) -> Option<(u16, Value)> {
    send_body(gw, &request(i), batch).await
}

/// Sends `body` as a generate request (deferred to batch when `batch`); the status and body.
pub async fn send_body(gw: &str, body: &Value, batch: bool) -> Option<(u16, Value)> {
    let mut req = super::client()
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", KEY)
        .timeout(Duration::from_secs(5))
        .json(body);
    if batch {
        req = req.header("x-gemgate-defer", "batch");
    }
    let r = req.send().await.ok()?;
    Some((r.status().as_u16(), r.json().await.ok()?))
}

/// Sends one deferred request; `Some(id)` only if it was acknowledged (202).
pub async fn defer(gw: &str, i: usize) -> Option<String> {
    defer_body(gw, &request(i)).await
}

/// Defers `body`; `Some(id)` only if it was acknowledged (202).
pub async fn defer_body(gw: &str, body: &Value) -> Option<String> {
    match send_body(gw, body, true).await? {
        (202, op) => Some(op["name"].as_str()?.trim_start_matches("operations/").to_string()),
        _ => None,
    }
}

/// Polls each operation through `gw` until done; every one must hold a response.
pub async fn finished(gw: &str, ids: &[String], bound: Duration) -> BTreeMap<String, Value> {
    let until = Instant::now() + bound;
    let mut out = BTreeMap::new();
    for id in ids {
        loop {
            let op = super::get_json(&format!("{gw}/gemgate/v1/operations/{id}"), Some(KEY)).await;
            if op["done"] == true {
                assert!(op["response"]["candidates"].is_array(), "{op}");
                out.insert(id.clone(), op);
                break;
            }
            assert!(Instant::now() < until, "acknowledged request {id} never finished: {op}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    out
}

/// Every request ever queued is done once; no `displayName` twice upstream; the ledger bills each
/// job and each request once. Returns (jobs, requests).
pub async fn assert_exactly_once(gw: &str, emu: &str) -> (usize, usize) {
    let until = Instant::now() + Duration::from_secs(30);
    let ops = loop {
        let listed = super::get_json(&format!("{gw}/gemgate/v1/operations?pageSize=1000"), Some(KEY)).await;
        let ops = listed["operations"].as_array().unwrap().clone();
        if ops.iter().all(|o| o["done"] == true) {
            break ops;
        }
        assert!(Instant::now() < until, "queued requests never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ops.iter().all(|o| o["response"].is_object()), "every queued request succeeded");
    let page = super::get_json(&format!("{emu}/v1beta/batches?pageSize=1000"), Some(KEY)).await;
    let mut names = BTreeMap::<String, usize>::new();
    for b in page["operations"].as_array().unwrap() {
        *names.entry(b["metadata"]["displayName"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let dupes: Vec<_> = names.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "jobs submitted twice: {dupes:?}");
    let ledger = super::get_json(&format!("{emu}/emulator/ledger"), None).await["total"].clone();
    assert_eq!(ledger["batch_jobs_submitted"], names.len(), "{ledger}");
    assert_eq!(ledger["batch_requests"], ops.len(), "each queued request billed exactly once: {ledger}");
    (names.len(), ops.len())
}

/// Where a gateway is aborted around a job's caches: after recording that they are being made,
/// after making one (before recording it), after recording them (before submission), after the
/// job is created upstream (before the queue records it), after fetching results, and after
/// deleting the caches (before the results are stored).
pub const CACHE_FAILPOINTS: [&str; 6] =
    ["cache_intent", "cache_created", "cache_recorded", "created", "fetched", "cache_deleted"];

/// Settings under which jobs of these tests get caches: a short expected run (little storage to
/// pay) and jobs of up to 8 requests (four per document).
pub const CACHE_ENV: [(&str, &str); 3] = [
    ("GEMGATE_DEFERRAL__EXPECTED_JOB_RUN", "1m"),
    ("GEMGATE_DEFERRAL__MAX_ITEMS_PER_JOB", "8"),
    ("GEMGATE_CACHING__ENABLED", "false"),
];

/// A request over one of two shared ~3k-token documents (one per system instruction).
pub fn shared_doc_request(i: usize) -> Value {
    let doc = i % 2;
    let text: String = (0..600).map(|k| format!("Fact {doc}.{k} holds. ")).collect();
    json!({
        "systemInstruction": {"parts": [{"text": format!("Document {doc}. {text}")}]},
        "contents": [{"role": "user", "parts": [{"text": format!("crash question {i}")}]}]
    })
}

/// Starts the gateway (`spawn`, with a failpoint) again and again, each time aborting it inside
/// one of the cache windows while it takes deferred requests over shared documents; then a clean
/// start finishes the work. Every acknowledged request gets one result, no job is submitted twice,
/// every cache made is deleted and none is left.
pub async fn crash_inside_cache_windows(emu: &str, spawn: impl Fn(Option<&str>) -> Replica) {
    let mut acked = Vec::new();
    let mut next = 0;
    for _ in 0..2 {
        for fp in CACHE_FAILPOINTS {
            let mut gw = spawn(Some(fp));
            if let Some(url) = gw.url.clone() {
                let bodies: Vec<Value> = (next..next + 8).map(shared_doc_request).collect();
                next += 8;
                let ids = futures::future::join_all(bodies.iter().map(|b| defer_body(&url, b))).await;
                acked.extend(ids.into_iter().flatten());
            }
            gw.die_within(Duration::from_secs(3)).await;
        }
    }
    assert!(acked.len() >= 40, "too few acknowledged to prove anything: {}", acked.len());
    let gw = spawn(None);
    finished(gw.url(), &acked, Duration::from_secs(60)).await;
    let (jobs, requests) = assert_exactly_once(gw.url(), emu).await;
    // Caches are deleted when their job ends: poll until the last job's are gone.
    let until = Instant::now() + Duration::from_secs(20);
    let ledger = loop {
        let l = super::get_json(&format!("{emu}/emulator/ledger"), None).await["total"].clone();
        let left = super::get_json(&format!("{emu}/v1beta/cachedContents"), Some(KEY)).await;
        if left["cachedContents"].as_array().is_none_or(Vec::is_empty) && l["cache_creations"] == l["cache_deletions"] {
            break l;
        }
        assert!(Instant::now() < until, "caches left behind: {left} {l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let made = ledger["cache_creations"].as_u64().unwrap();
    assert!(made >= 2, "the jobs had caches: {ledger}");
    // Two documents: at most two caches per job, so none was made twice for the same job.
    assert!(made <= 2 * jobs as u64, "{made} caches for {jobs} jobs: some made twice");
    println!(
        "{} kills inside cache windows: {} acknowledged of {next} sent, {requests} queued, {jobs} jobs, each once; \
         caches created={} deleted={} cached_tokens={}",
        2 * CACHE_FAILPOINTS.len(),
        acked.len(),
        ledger["cache_creations"],
        ledger["cache_deletions"],
        ledger["cached_tokens"]
    );
}
