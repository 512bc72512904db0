//! Crash safety of deferred execution with the REAL binary: `gemgate serve` on one SQLite file is
//! killed (SIGKILL at random moments, or aborted at named failpoints inside the narrow windows:
//! after enqueue, after forming a job, between recording an attempt and creating the job, between
//! creating it and recording it, after fetching results, after storing them) and restarted, over
//! and over. At the end every acknowledged request has exactly one result, and the emulator's
//! ledger and batch list show that no job was submitted twice and no request billed twice.

mod support;

use support::deferred::{Replica, spawn_deferring_gateway};

use gemgate::emulator::{EmulatorConfig, EmulatorState};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const KEY: &str = "crash-test-key";
const FAILPOINTS: [&str; 6] = ["enqueued", "formed", "attempt_noted", "created", "fetched", "finished"];

fn spawn_gateway(emu: &str, db: &Path, failpoint: Option<&str>) -> Replica {
    spawn_gateway_with(emu, db, failpoint, &[])
}

fn spawn_gateway_with(emu: &str, db: &Path, failpoint: Option<&str>, env: &[(&str, &str)]) -> Replica {
    let db = db.to_str().expect("utf-8 path");
    let store = [
        ("GEMGATE_STORE__BACKEND", "sqlite"),
        ("GEMGATE_STORE__SQLITE_PATH", db),
        ("GEMGATE_CACHING__ENABLED", "false"),
    ];
    spawn_deferring_gateway(emu, &store, failpoint, env)
}

fn request(i: usize) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": format!("crash test request {i}")}]}]})
}

/// Sends one deferred request; `Some(id)` only if the gateway acknowledged it (202).
async fn defer(http: &reqwest::Client, gw: &str, i: usize) -> Option<String> {
    let r = http
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", KEY)
        .header("x-gemgate-defer", "batch")
        .timeout(Duration::from_secs(5))
        .json(&request(i))
        .send()
        .await
        .ok()?;
    if r.status() != 202 {
        return None;
    }
    let op: Value = r.json().await.ok()?;
    Some(op["name"].as_str()?.trim_start_matches("operations/").to_string())
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).header("x-goog-api-key", KEY).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_request_gets_exactly_one_result_across_kills() {
    let mut ecfg = EmulatorConfig::default();
    ecfg.batch.processing_delay = Duration::from_millis(300);
    let emu = format!("http://{}", support::serve(gemgate::emulator::router(EmulatorState::new(ecfg))).await);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gemgate.sqlite");
    let http = support::client();
    let mut acked: Vec<String> = Vec::new();
    let mut next = 0usize;
    let (mut killed, mut aborted) = (0, 0);
    let runs = 24;
    for run in 0..runs {
        // Even runs: SIGKILL at a random moment; odd runs: abort at a failpoint (SIGKILL if it
        // was not reached within two seconds).
        let fp = (run % 2 == 1).then(|| FAILPOINTS[(run / 2) % FAILPOINTS.len()]);
        let mut gw = spawn_gateway(&emu, &db, fp);
        if let Some(url) = gw.url.clone() {
            let n = rand::rng().random_range(3..10);
            let sends = futures::future::join_all((0..n).map(|k| defer(&http, &url, next + k)));
            next += n;
            let kill_after = Duration::from_millis(rand::rng().random_range(0..700));
            let (ids, _) = tokio::join!(sends, async {
                if fp.is_none() {
                    tokio::time::sleep(kill_after).await;
                    let _ = gw.child.kill();
                }
            });
            acked.extend(ids.into_iter().flatten());
        }
        if fp.is_some() {
            let until = Instant::now() + Duration::from_secs(2);
            while gw.child.try_wait().unwrap().is_none() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let _ = gw.child.kill();
        let status = gw.child.wait().unwrap();
        match status.code() {
            None if fp.is_some() && !is_sigkill(&status) => aborted += 1,
            _ => killed += 1,
        }
    }
    println!(
        "{runs} runs: {killed} SIGKILLs, {aborted} failpoint aborts; {} requests acknowledged of {next} sent",
        acked.len()
    );
    assert!(acked.len() >= runs, "too few requests were acknowledged to prove anything");

    // Restart cleanly; polling with the tenant's key also hands the gateway its credential.
    let gw = spawn_gateway(&emu, &db, None);
    let url = gw.url.clone().expect("clean start");
    let until = Instant::now() + Duration::from_secs(90);
    let mut results = BTreeMap::new();
    for id in &acked {
        loop {
            let op = get_json(&http, &format!("{url}/gemgate/v1/operations/{id}")).await;
            if op["done"] == true {
                assert!(op["response"]["candidates"].is_array(), "{op}");
                results.insert(id.clone(), op);
                break;
            }
            assert!(Instant::now() < until, "acknowledged request {id} never finished: {op}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Exactly one result: asking again gives the very same one.
    for (id, op) in &results {
        let again = get_json(&http, &format!("{url}/gemgate/v1/operations/{id}")).await;
        assert_eq!(&again, op);
    }
    // Every request the gateway ever queued (acknowledged or not) is finished once; the upstream
    // saw each job once, and billed each request once.
    let listed = get_json(&http, &format!("{url}/gemgate/v1/operations?pageSize=1000")).await;
    let ops = listed["operations"].as_array().unwrap();
    let finished = loop {
        let listed = get_json(&http, &format!("{url}/gemgate/v1/operations?pageSize=1000")).await;
        let ops = listed["operations"].as_array().unwrap().clone();
        if ops.iter().all(|o| o["done"] == true) || Instant::now() > until {
            break ops;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(finished.len() >= ops.len());
    assert!(finished.iter().all(|o| o["response"].is_object()), "every queued request succeeded");
    let mut names = BTreeMap::<String, usize>::new();
    let mut token = String::new();
    loop {
        let page = get_json(&http, &format!("{emu}/v1beta/batches?pageSize=100&pageToken={token}")).await;
        for b in page["operations"].as_array().unwrap() {
            *names.entry(b["metadata"]["displayName"].as_str().unwrap().to_string()).or_default() += 1;
        }
        match page["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    let dupes: Vec<_> = names.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "jobs submitted twice: {dupes:?}");
    let ledger = get_json(&http, &format!("{emu}/emulator/ledger")).await["total"].clone();
    println!(
        "ledger: batch_jobs_submitted={} batch_requests={} distinct jobs={} queued requests={}",
        ledger["batch_jobs_submitted"],
        ledger["batch_requests"],
        names.len(),
        finished.len()
    );
    assert_eq!(ledger["batch_jobs_submitted"], names.len());
    assert_eq!(ledger["batch_requests"], finished.len(), "each queued request billed exactly once");
    let unique: BTreeSet<_> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len());
}

/// Aborts inside the windows around a job's caches (SQLite queue): see
/// `support::deferred::crash_inside_cache_windows`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_inside_the_cache_windows_lose_duplicate_and_leak_nothing() {
    let emu = support::deferred::emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gemgate.sqlite");
    let db = db.to_str().unwrap().to_string();
    support::deferred::crash_inside_cache_windows(&emu, |fp| {
        let store = [("GEMGATE_STORE__BACKEND", "sqlite"), ("GEMGATE_STORE__SQLITE_PATH", db.as_str())];
        spawn_deferring_gateway(&emu, &store, fp, &support::deferred::CACHE_ENV)
    })
    .await;
}

/// A job whose cache is gone when it runs (here: deleted behind the gateway's back while it was
/// down, between recording the cache and submitting the job): the requests' cache errors are not
/// their results; they go again uncached, once, in one more job, and each is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_cache_is_gone_go_again_uncached_once() {
    use support::deferred::{CACHE_ENV, KEY, defer_body, finished, shared_doc_request};
    let emu = support::deferred::emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gemgate.sqlite");
    let db = db.to_str().unwrap().to_string();
    let store = [("GEMGATE_STORE__BACKEND", "sqlite"), ("GEMGATE_STORE__SQLITE_PATH", db.as_str())];
    let mut gw = spawn_deferring_gateway(&emu, &store, Some("cache_recorded"), &CACHE_ENV);
    let url = gw.url.clone().unwrap();
    let bodies: Vec<Value> = (0..8).map(shared_doc_request).collect();
    let ids: Vec<String> =
        futures::future::join_all(bodies.iter().map(|b| defer_body(&url, b))).await.into_iter().flatten().collect();
    assert_eq!(ids.len(), 8);
    gw.die_within(Duration::from_secs(5)).await;
    let http = support::client();
    let listed = support::get_json(&format!("{emu}/v1beta/cachedContents"), Some(KEY)).await;
    let caches = listed["cachedContents"].as_array().cloned().unwrap_or_default();
    assert!(!caches.is_empty(), "the job's caches were made before the abort: {listed}");
    for c in &caches {
        let name = c["name"].as_str().unwrap();
        let r = http.delete(format!("{emu}/v1beta/{name}")).header("x-goog-api-key", KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let gw = spawn_deferring_gateway(&emu, &store, None, &CACHE_ENV);
    let done = finished(gw.url(), &ids, Duration::from_secs(30)).await;
    assert_eq!(done.len(), 8);
    let (jobs, requests) = support::deferred::assert_exactly_once(gw.url(), &emu).await;
    assert_eq!((jobs, requests), (2, 8), "the job, then one uncached resubmission of its requests");
    let ledger = support::get_json(&format!("{emu}/emulator/ledger"), None).await["total"].clone();
    assert_eq!(ledger["cache_creations"].as_u64().unwrap(), caches.len() as u64, "no new cache: {ledger}");
    for op in done.values() {
        assert!(op["response"]["usageMetadata"]["cachedContentTokenCount"].is_null(), "served uncached: {op}");
    }
}

#[cfg(unix)]
fn is_sigkill(s: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    s.signal() == Some(9)
}

async fn jobs_submitted(http: &reqwest::Client, emu: &str) -> u64 {
    get_json(http, &format!("{emu}/emulator/ledger")).await["total"]["batch_jobs_submitted"].as_u64().unwrap()
}

/// The credential decision: keys live in memory only, so after a restart a tenant's queued work
/// waits for that tenant's next request (a poll is enough), unless a service key is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_queued_work_waits_for_its_tenant_or_uses_a_service_key() {
    let mut ecfg = EmulatorConfig::default();
    ecfg.batch.processing_delay = Duration::from_millis(200);
    let emu = format!("http://{}", support::serve(gemgate::emulator::router(EmulatorState::new(ecfg))).await);
    let http = support::client();
    for service_key in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gemgate.sqlite");
        let before = jobs_submitted(&http, &emu).await;
        // Queue two requests that will not be flushed before the kill.
        let mut gw = spawn_gateway_with(&emu, &db, None, &[("GEMGATE_DEFERRAL__MAX_AGE", "1h")]);
        let url = gw.url.clone().unwrap();
        let a = defer(&http, &url, 1).await.unwrap();
        let b = defer(&http, &url, 2).await.unwrap();
        gw.child.kill().unwrap();
        gw.child.wait().unwrap();

        let env: Vec<(&str, &str)> = if service_key {
            vec![
                ("GEMGATE_DEFERRAL__SERVICE_KEY_ENVS", "[\"CRASH_TEST_SERVICE_KEY\"]"),
                ("CRASH_TEST_SERVICE_KEY", KEY),
            ]
        } else {
            vec![]
        };
        let mut gw = spawn_gateway_with(&emu, &db, None, &env);
        let url = gw.url.clone().unwrap();
        if service_key {
            // Nobody asks; the service key lets the gateway submit and finish on its own.
            let until = Instant::now() + Duration::from_secs(10);
            while jobs_submitted(&http, &emu).await == before {
                assert!(Instant::now() < until, "the service key was not used");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(jobs_submitted(&http, &emu).await, before, "without the tenant's key nothing can be submitted");
        }
        // Polling hands the key back (or finds the work done): both requests finish, in one job.
        for id in [&a, &b] {
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                let op = get_json(&http, &format!("{url}/gemgate/v1/operations/{id}")).await;
                if op["done"] == true {
                    assert!(op["response"].is_object(), "{op}");
                    break;
                }
                assert!(Instant::now() < until, "{op}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert_eq!(jobs_submitted(&http, &emu).await, before + 1);
        gw.child.kill().unwrap();
        gw.child.wait().unwrap();
    }
}
