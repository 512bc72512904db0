//! The SQLite file's disk fills up, then turns read-only, under a running gateway. Live calls go
//! on, `/readyz` says `degraded` with the reason, a batch request is acknowledged (202) only
//! when it is on disk, and after the disk recovers and the gateway restarts every acknowledged
//! request finishes: none is lost.
//!
//! The disk is a real tmpfs mounted for the test (root and mount rights needed, as on CI); where
//! it cannot be mounted the test says so and does nothing else.

use crate::support::{self, binary};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "disk-tenant";

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success())
}

fn spawn(emu: &str, db: &str, max_age: &str) -> (binary::Running, String) {
    binary::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--upstream", emu],
        &[
            ("GEMGATE_STORE__SQLITE_PATH", db),
            ("RUST_LOG", "error"),
            ("GEMGATE_DEFERRAL__MAX_AGE", max_age),
            ("GEMGATE_DEFERRAL__TICK", "50ms"),
            ("GEMGATE_DEFERRAL__POLL_INITIAL", "100ms"),
            ("GEMGATE_DEFERRAL__POLL_MAX", "300ms"),
        ],
    )
}

/// One call: (status, body). `defer` marks it for the batch queue.
async fn call(gw: &str, i: usize, defer: bool) -> (u16, serde_json::Value) {
    let mut req = support::client()
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", KEY)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": format!("disk question {i}")}]}]}));
    if defer {
        req = req.header("x-gemgate-defer", "batch");
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

async fn readyz(gw: &str) -> serde_json::Value {
    support::get_json(&format!("{gw}/readyz"), None).await
}

/// Sends batch requests while the disk misbehaves: returns the acknowledged ids; every other
/// answer must be a served call (200) or a clear refusal (503).
async fn under_fault(gw: &str, from: usize) -> Vec<String> {
    let mut acked = Vec::new();
    for i in from..from + 5 {
        let (live, body) = call(gw, 10_000 + i, false).await;
        assert_eq!(live, 200, "live calls go on: {body}");
        let (status, body) = call(gw, i, true).await;
        match status {
            202 => acked.push(body["name"].as_str().unwrap().trim_start_matches("operations/").to_string()),
            200 | 503 => {}
            other => panic!("batch request answered {other}: {body}"),
        }
    }
    acked
}

async fn all_finish(gw: &str, ids: &[String]) {
    let until = Instant::now() + Duration::from_secs(40);
    for id in ids {
        loop {
            let op = support::get_json(&format!("{gw}/gemgate/v1/operations/{id}"), Some(KEY)).await;
            if op["done"] == true {
                assert!(op["response"]["candidates"].is_array(), "{op}");
                break;
            }
            assert!(Instant::now() < until, "acknowledged request {id} lost or stuck: {op}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_then_read_only_disk_degrades_readiness_and_loses_no_acknowledged_request() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let mnt_s = mnt.to_str().unwrap().to_string();
    if !run(&["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", &mnt_s]) {
        println!("SKIPPED: cannot mount a tmpfs here (needs root and mount rights)");
        return;
    }
    let _mount = Mount(mnt.clone());
    let db = mnt.join("g.sqlite").to_str().unwrap().to_string();
    let emu = support::deferred::emulator().await;

    // Long max_age: acknowledged work stays queued on the disk while it fails.
    let (gw_proc, gw) = spawn(&emu, &db, "1h");
    let mut acked = Vec::new();
    for i in 0..3 {
        let (status, body) = call(&gw, i, true).await;
        assert_eq!(status, 202, "{body}");
        acked.push(body["name"].as_str().unwrap().trim_start_matches("operations/").to_string());
    }
    assert_eq!(readyz(&gw).await["status"], "ready");

    // 1. The disk fills up.
    let filler = mnt.join("filler");
    let _ = run(&["dd", "if=/dev/zero", &format!("of={}", filler.display()), "bs=64k", "status=none"]);
    let full = under_fault(&gw, 100).await;
    let ready = readyz(&gw).await;
    println!("disk full: readyz {ready}; {} of 5 batch requests acknowledged", full.len());
    assert_eq!(ready["status"], "degraded", "{ready}");
    acked.extend(full);
    std::fs::remove_file(&filler).unwrap();

    // 2. The gateway restarts on a file system that has turned read-only (a file system cannot
    // be remounted read-only under a process that holds files open for writing).
    drop(gw_proc);
    assert!(run(&["mount", "-o", "remount,ro", &mnt_s]), "remount read-only");
    let (gw_ro_proc, gw_ro) = spawn(&emu, &db, "1h");
    let ro = under_fault(&gw_ro, 200).await;
    let ready = readyz(&gw_ro).await;
    println!("read-only: readyz {ready}; {} of 5 batch requests acknowledged", ro.len());
    assert_eq!(ready["status"], "degraded", "{ready}");
    acked.extend(ro);
    drop(gw_ro_proc);

    // 3. The disk recovers; a restarted gateway finishes everything acknowledged.
    assert!(run(&["mount", "-o", "remount,rw", &mnt_s]), "remount read-write");
    let (_gw2, gw2) = spawn(&emu, &db, "200ms");
    // A tenant's queued work runs once the gateway has seen the tenant's key again.
    let (status, _) = call(&gw2, 999, false).await;
    assert_eq!(status, 200);
    all_finish(&gw2, &acked).await;
    println!("acknowledged: {}, finished after recovery: {}, lost: 0", acked.len(), acked.len());
    assert_eq!(readyz(&gw2).await["status"], "ready");
}
