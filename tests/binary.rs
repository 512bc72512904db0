//! Tests that run the real binary: start-up announce line, `check-config`, and that credentials
//! never reach the logs, whether sent as a header or as `?key=`.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

mod support;

use support::binary::{BIN, spawn};

#[test]
fn credentials_never_reach_the_logs() {
    // An upstream that accepts the connection and answers 200 (a tiny std server).
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!("http://{}", upstream.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.sqlite");
    let (running, gw) = spawn(
        &["serve", "--listen", "127.0.0.1:0", "--upstream", &up],
        &[
            ("GEMGATE_STORE__SQLITE_PATH", db.to_str().unwrap()),
            ("RUST_LOG", "trace"),
            ("GEMGATE_TELEMETRY__LOG_FORMAT", "json"),
        ],
    );
    let client = reqwest::blocking::Client::new();
    client.get(format!("{gw}/v1beta/models?key=SECRET-QUERY-KEY")).send().unwrap();
    // Query names are percent-decoded upstream, so these are keys too.
    client.get(format!("{gw}/v1beta/models?%6Bey=SECRET-ENCODED-NAME-1")).send().unwrap();
    client.get(format!("{gw}/v1beta/models?alt=json&k%65y=SECRET-ENCODED-NAME-2")).send().unwrap();
    client
        .post(format!("{gw}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", "SECRET-HEADER-KEY")
        .header("authorization", "Bearer SECRET-BEARER")
        .body(r#"{"systemInstruction":{"parts":[{"text":"s"}]},"contents":[{"parts":[{"text":"hi"}]}]}"#)
        .send()
        .unwrap();
    let metrics = client.get(format!("{gw}/metrics")).send().unwrap().text().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut child = running.stop();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    child.wait().unwrap();
    assert!(logs.contains("key=*****"), "the request was logged, masked: {logs}");
    let stored = std::fs::read(&db).unwrap_or_default();
    for secret in
        ["SECRET-QUERY-KEY", "SECRET-HEADER-KEY", "SECRET-BEARER", "SECRET-ENCODED-NAME-1", "SECRET-ENCODED-NAME-2"]
    {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(!metrics.contains(secret), "{secret} leaked into metrics");
        assert!(!String::from_utf8_lossy(&stored).contains(secret), "{secret} leaked into the store");
    }
}

#[test]
fn check_config_reports_every_problem_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[upstream]\nurl = \"nope\"\n[caching]\nmin_hits = 0\nttl = \"5s\"\n").unwrap();
    let out = Command::new(BIN).args(["check-config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["upstream.url", "caching.min_hits", "caching.ttl"] {
        assert!(err.contains(key), "{key} not named: {err}");
    }
    let good = Command::new(BIN)
        .args(["check-config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/gemgate.toml")])
        .output()
        .unwrap();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_upload_streams_through_without_being_held_in_memory() {
    use futures::StreamExt;
    // Upstream that counts and discards what it receives.
    let sink = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let mut body = req.into_body().into_data_stream();
        let mut n = 0usize;
        while let Some(c) = body.next().await {
            n += c.unwrap().len();
        }
        n.to_string()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, sink).await.unwrap() });
    let (running, gw) = tokio::task::spawn_blocking(move || {
        spawn(
            &["serve", "--listen", "127.0.0.1:0", "--upstream", &up],
            &[("GEMGATE_STORE__BACKEND", "memory"), ("RUST_LOG", "warn")],
        )
    })
    .await
    .unwrap();
    let chunk = axum::body::Bytes::from(vec![b'x'; 1 << 20]);
    let stream = futures::stream::iter((0..256).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = reqwest::Client::new()
        .post(format!("{gw}/upload/v1beta/files?upload_id=big&upload_protocol=resumable"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), (256usize << 20).to_string());
    let peak = support::binary::peak_rss_kib(running.id());
    println!("gateway peak RSS while streaming 256 MiB: {peak} KiB");
    drop(running);
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB while streaming 256 MiB");
}

#[test]
fn logs_to_a_pipe_are_plain_with_rounded_latencies() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!("http://{}", upstream.local_addr().unwrap());
    drop(upstream); // nothing listens: the request gets a 502, which is logged all the same
    let (running, gw) = spawn(
        &["serve", "--listen", "127.0.0.1:0", "--upstream", &up],
        &[("GEMGATE_STORE__BACKEND", "memory"), ("RUST_LOG", "info"), ("GEMGATE_TELEMETRY__LOG_FORMAT", "text")],
    );
    reqwest::blocking::get(format!("{gw}/v1beta/models")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut child = running.stop();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    child.wait().unwrap();
    assert!(!logs.contains('\u{1b}'), "terminal colour codes in piped logs: {logs:?}");
    let served = logs.lines().find(|l| l.contains("served")).expect("an access log line");
    for field in ["ms=", "upstream_ms="] {
        let value = served.split(&format!(" {field}")).nth(1).unwrap().split(' ').next().unwrap();
        let decimals = value.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "{field}{value} in {served}");
    }
}

#[test]
fn a_taken_port_fails_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &addr, "--upstream", "http://127.0.0.1:9"])
        .env("GEMGATE_STORE__SQLITE_PATH", dir.path().join("g.sqlite"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "the error names {addr}: {err}");
}

#[test]
fn a_second_gateway_on_the_same_sqlite_file_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.sqlite");
    let env = [("GEMGATE_STORE__SQLITE_PATH", db.to_str().unwrap()), ("RUST_LOG", "error")];
    let (first, _) = spawn(&["serve", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9"], &env);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9"])
        .envs(env)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second gateway started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&first.id().to_string()) && err.contains("shared.sqlite"), "{err}");
    drop(first);
    let (_again, _) = spawn(&["serve", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9"], &env);
}

#[test]
fn check_config_reports_every_unknown_key_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("typos.toml");
    std::fs::write(
        &bad,
        "[server]\nlisen = \"127.0.0.1:1\"\n\n[upstream]\ntimout = \"5s\"\n[cachng]\nenabled = true\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check-config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for (key, line) in [("server.lisen", 2), ("upstream.timout", 5), ("cachng", 6)] {
        assert!(err.contains(&format!("{key}: unknown key (line {line})")), "{key} at line {line}: {err}");
    }
}
