//! Connections that hold descriptors without asking anything: silent new connections, idle
//! kept-alive ones, more than the cap, and idle WebSocket sessions. Each is closed or refused in
//! bounded time, and the gateway's descriptor count returns to where it was.

use crate::support::{self, binary, raw};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Open file descriptors of a process.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Waits (up to `limit`) until `pid` holds at most `want` descriptors; returns the count and the wait.
async fn settle(pid: u32, want: usize, limit: Duration) -> (usize, Duration) {
    let started = Instant::now();
    loop {
        let n = descriptors(pid);
        if n <= want || started.elapsed() > limit {
            return (n, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_gateway(upstream: &str, env: &[(&str, &str)]) -> (binary::Running, String) {
    let mut all = vec![("GEMGATE_STORE__BACKEND", "memory"), ("RUST_LOG", "error")];
    all.extend_from_slice(env);
    binary::spawn(&["serve", "--listen", "127.0.0.1:0", "--upstream", upstream], &all)
}

#[tokio::test]
async fn silent_connections_are_closed_within_the_first_byte_timeout() {
    let n = if crate::slow() { 2_000 } else { 200 };
    let emu = support::emulator().await;
    // Long enough for all of them to be open at once: a few connects on loopback wait a second
    // for a SYN retransmit when thousands arrive back to back.
    let timeout = if crate::slow() { 20 } else { 4 };
    let (gw_proc, gw) = spawn_gateway(&emu, &[("GEMGATE_SERVER__FIRST_BYTE_TIMEOUT", &format!("{timeout}s"))]);
    let pid = gw_proc.id();
    // One request first, so that the pools and lazily opened files are in the baseline.
    assert_eq!(raw::status(&raw::request(&gw, "GET", "/healthz", &[]).await), 200);
    let baseline = descriptors(pid);
    let started = Instant::now();
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        socks.push(raw::connect(&gw).await);
    }
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = descriptors(pid);
    println!(
        "opened {n} silent connections in {:.1} s; the gateway holds {held} descriptors",
        started.elapsed().as_secs_f64()
    );
    assert!(held >= baseline + n * 9 / 10, "{n} silent connections open: {held} descriptors against {baseline}");
    let (after, waited) = settle(pid, baseline, Duration::from_secs(timeout + 10)).await;
    let closed_after = opened.elapsed();
    println!(
        "{n} silent connections: {baseline} descriptors before, {held} while open, {after} {:.1} s after the last was opened (first_byte_timeout {timeout} s)",
        closed_after.as_secs_f64()
    );
    assert!(after <= baseline, "descriptors did not return to the baseline: {after} > {baseline} after {waited:?}");
    assert!(
        closed_after < Duration::from_secs(timeout + 3),
        "closed {closed_after:?} after the last connection opened"
    );
    // Every client socket sees the close.
    let mut closed = 0;
    for mut s in socks {
        let mut b = [0u8; 16];
        if matches!(tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, n, "every silent connection is closed");
    let metrics = reqwest::get(format!("{gw}/metrics")).await.unwrap().text().await.unwrap();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("gemgate_client_timeouts_total") && l.contains("kind=\"first_byte\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(counted >= n as f64, "counted {counted} first-byte timeouts");
    // The gateway still serves.
    assert_eq!(raw::status(&raw::request(&gw, "GET", "/healthz", &[]).await), 200);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_between_requests() {
    let emu = support::emulator().await;
    let mut cfg = support::config(&emu);
    cfg.server.header_read_timeout = Duration::from_secs(1);
    let gw = support::gateway(cfg).await;
    let mut s = raw::connect(&gw).await;
    s.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", raw::host_of(&gw)).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "first request served");
    let (_, took, closed) = raw::read_until_closed(&mut s, Duration::from_secs(10)).await;
    println!("idle kept-alive connection closed after {took:?} (header_read_timeout 1 s)");
    assert!(closed && took < Duration::from_secs(4), "closed={closed} after {took:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_with_a_gemini_error() {
    let emu = support::emulator().await;
    let mut cfg = support::config(&emu);
    cfg.server.max_connections = 20;
    cfg.server.first_byte_timeout = Duration::from_secs(30);
    let gw = support::gateway(cfg).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(raw::connect(&gw).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = raw::connect(&gw).await;
    let (resp, took, closed) = raw::read_until_closed(&mut extra, Duration::from_secs(5)).await;
    assert!(closed && took < Duration::from_secs(2), "refused at once: closed={closed} after {took:?}");
    assert_eq!(raw::status(&resp), 503, "{resp}");
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    crate::assert_gemini_error(503, body, 503);
    assert!(body.contains("max_connections"), "{body}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(raw::status(&raw::request(&gw, "GET", "/healthz", &[]).await), 200, "served again once below the cap");
}

#[tokio::test]
async fn thousands_of_idle_websockets_are_bounded_and_released() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let n = if crate::slow() { 2_000 } else { 200 };
    let emu = support::emulator().await;
    let (gw_proc, gw) = spawn_gateway(&emu, &[("GEMGATE_SERVER__MAX_CONNECTIONS", &(n / 2).to_string())]);
    let pid = gw_proc.id();
    assert_eq!(raw::status(&raw::request(&gw, "GET", "/healthz", &[]).await), 200);
    let (fd_before, rss_before) = (descriptors(pid), binary::rss_kib(pid));
    let url = format!(
        "{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        gw.replace("http://", "ws://")
    );
    let (mut open, mut refused) = (Vec::new(), 0usize);
    for _ in 0..n {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("x-goog-api-key", "idle-key".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((mut ws, _)) => {
                ws.send(tokio_tungstenite::tungstenite::Message::text(
                    r#"{"setup":{"model":"models/gemini-live-2.5-flash"}}"#,
                ))
                .await
                .unwrap();
                let _ = ws.next().await;
                open.push(ws);
            }
            Err(_) => refused += 1,
        }
    }
    let (fd_open, rss_open) = (descriptors(pid), binary::rss_kib(pid));
    println!(
        "{n} idle WebSockets tried, cap {}: {} open, {refused} refused; descriptors {fd_before} -> {fd_open}; RSS {rss_before} -> {rss_open} KiB ({:.1} KiB per session)",
        n / 2,
        open.len(),
        (rss_open.saturating_sub(rss_before)) as f64 / open.len().max(1) as f64
    );
    assert_eq!(open.len(), n / 2, "sessions up to the cap are served");
    assert_eq!(refused, n - n / 2, "sessions beyond the cap are refused");
    assert!(rss_open.saturating_sub(rss_before) < (open.len() as u64) * 64, "under 64 KiB of RSS per idle session");
    drop(open);
    let (fd_after, waited) = settle(pid, fd_before, Duration::from_secs(15)).await;
    assert!(fd_after <= fd_before, "descriptors back to {fd_before}: {fd_after} after {waited:?}");
    assert_eq!(raw::status(&raw::request(&gw, "GET", "/healthz", &[]).await), 200);
}
