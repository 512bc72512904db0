//! Two gateway processes sharing one Redis in front of one emulator: concurrent first requests
//! for the same hot prefixes, spread over both replicas, create exactly one cache per prefix; what
//! that leaves in Redis expires and costs well under 2 KiB per prefix.

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use support::RedisServer;

struct Replica {
    child: Child,
    url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(upstream: &str, redis: &str) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .env("GEMGATE_STORE__BACKEND", "redis")
        .env("GEMGATE_STORE__REDIS_URL", redis)
        .env("GEMGATE_CACHING__MIN_HITS", "2")
        // The emulator does not cache implicitly: nothing to measure before caching.
        .env("GEMGATE_CACHING__COST__IMPLICIT_PROBES", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    Replica { child, url }
}

fn system(i: usize) -> String {
    let mut s = format!("Prefix {i}. ");
    let mut n = 0;
    while s.len() < 3000 * 4 {
        s.push_str(&format!("Standing instruction {n} of prefix {i}. "));
        n += 1;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_200_concurrent_requests_5_prefixes_make_exactly_5_caches() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_at(&dir.path().join("r.sock"));
    let emu = support::emulator().await;
    let a = replica(&emu, &redis.url);
    let b = replica(&emu, &redis.url);
    let systems: Vec<String> = (0..5).map(system).collect();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let base = if i % 2 == 0 { a.url.clone() } else { b.url.clone() };
        let body = json!({
            "systemInstruction": {"parts": [{"text": systems[i % 5]}]},
            "contents": [{"role": "user", "parts": [{"text": format!("question {i}")}]}]
        });
        tasks.push(tokio::spawn(async move {
            let r = support::client()
                .post(format!("{base}/v1beta/models/gemini-2.5-flash:generateContent"))
                .header("x-goog-api-key", "shared-key")
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers()["x-gemgate-cache"].to_str().unwrap().to_string())
        }));
    }
    let mut cached = 0;
    for t in tasks {
        let (status, cache) = t.await.unwrap();
        assert_eq!(status, 200);
        cached += usize::from(cache == "hit" || cache == "created");
    }
    let ledger: Value = support::get_json(&format!("{emu}/emulator/ledger"), None).await;
    assert_eq!(ledger["total"]["cache_creations"], 5, "{ledger}");
    // How many of the burst waited for a creation rather than going uncached depends on timing
    // (the single-flight wait is bounded), so it is reported, not asserted. Once the caches
    // exist, every prefix on either replica must be a hit: that is the cross-replica claim.
    println!("two replicas: 200 requests, 5 prefixes, 5 creations, {cached} served from cache");
    for (i, system) in systems.iter().enumerate() {
        for replica in [&a, &b] {
            let body = json!({
                "systemInstruction": {"parts": [{"text": system}]},
                "contents": [{"role": "user", "parts": [{"text": format!("follow-up {i}")}]}]
            });
            let url = format!("{}/v1beta/models/gemini-2.5-flash:generateContent", replica.url);
            let r = support::post(&url, "shared-key", &body).await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-gemgate-cache"], "hit", "prefix {i} via {}", replica.url);
        }
    }
    let ledger: Value = support::get_json(&format!("{emu}/emulator/ledger"), None).await;
    assert_eq!(ledger["total"]["cache_creations"], 5, "no creation after the burst: {ledger}");

    // What the registry leaves in Redis: keys that all expire, and their size per prefix.
    let mut c = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("gemgate:*").query_async(&mut c).await.unwrap();
    // The deferral queue shares the prefix: its batcher holds a short "flush" claim while it scans,
    // so under load a scan can catch it. Only the registry's keys are counted here.
    let keys: Vec<String> = keys.into_iter().filter(|k| !k.starts_with("gemgate:q:")).collect();
    let mut bytes = 0u64;
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(k).query_async(&mut c).await.unwrap();
        assert!(ttl > 0, "{k} never expires");
        bytes += redis::cmd("MEMORY").arg("USAGE").arg(k).query_async::<u64>(&mut c).await.unwrap();
    }
    assert_eq!(keys.len(), 15, "entry, fence counter and entry fence per prefix: {keys:?}");
    assert!(bytes / 5 < 2048, "{bytes} bytes for 5 prefixes");
    println!("registry in Redis: {} keys, {bytes} bytes, {} bytes per cached prefix", keys.len(), bytes / 5);
}
