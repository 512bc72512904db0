//! The whole load suite: processes, scenarios, max-rate search, memory; writes results.json.

use crate::client::{self, HttpClient, Outcome, Pcts, RequestSpec};
use crate::procs::{self, Proc};
use crate::scenarios;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct SuiteArgs {
    /// The gemgate release binary.
    #[arg(long)]
    pub gemgate: PathBuf,
    /// Output directory (results.json, logs/, nginx/, the store file).
    #[arg(long)]
    pub out: PathBuf,
    /// Upstream: the real emulator (`gemgate emulator`), or the harness's own fake upstream
    /// (development only; published figures come from the emulator).
    #[arg(long, default_value = "emulator", value_parser = ["emulator", "fake"])]
    pub upstream: String,
    /// nginx binary.
    #[arg(long, default_value = "nginx")]
    pub nginx: String,
    /// Measured seconds per fixed-rate run (after a 1 s warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub window: f64,
    /// Measured seconds per max-rate step (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 2.0)]
    pub step_window: f64,
    /// Max-rate search: a step passes while p99 stays at or under this (ms) ...
    #[arg(long, default_value_t = 10.0)]
    pub max_p99_ms: f64,
    /// ... and errors stay at or under this fraction.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Load-generator worker threads.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Registry entries pre-populated for the 100k-entry run.
    #[arg(long, default_value_t = 100_000)]
    pub registry_entries: usize,
    /// Skip the max-rate search (quick development runs).
    #[arg(long)]
    pub no_max_rate: bool,
    /// Development runs: only small `generateContent` and `countTokens` at 1,000/s and the
    /// max-rate search; no other scenario and no registry run (published figures use the full
    /// suite).
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathResult {
    pub path: String,
    pub rate: f64,
    pub scheduled: u64,
    pub ok: u64,
    pub errors: u64,
    pub unexpected: u64,
    /// Errors that were requests never sent (over the in-flight cap).
    pub dropped: u64,
    /// Response body bytes received.
    pub bytes: u64,
    pub achieved_rps: f64,
    pub latency: Pcts,
    pub ttfb: Pcts,
    pub service: Pcts,
    /// CPU seconds (user+system) of the proxy process(es) per 1,000 requests; none for direct.
    pub proxy_cpu_s_per_1k: Option<f64>,
    /// Same for the upstream (emulator).
    pub upstream_cpu_s_per_1k: f64,
    /// Cores' worth of CPU used by processes outside the benchmark during this run (other
    /// sessions' builds on a shared machine); 0 on a quiet machine.
    #[serde(default)]
    pub foreign_cores: f64,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioRun {
    pub scenario: String,
    pub rate: f64,
    pub results: Vec<PathResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub rate: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub achieved_rps: f64,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaxRate {
    pub path: String,
    pub sustained: f64,
    pub first_failing: Option<f64>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    pub gemgate_idle_rss_mb: f64,
    pub gemgate_peak_hwm_mb: f64,
    #[serde(default)]
    pub gemgate_hwm_before_max_rate_mb: f64,
    pub nginx_idle_rss_mb: f64,
    pub nginx_peak_hwm_mb: f64,
    pub emulator_peak_hwm_mb: f64,
    pub reg_entries: usize,
    pub reg_startup_s: f64,
    pub reg_idle_rss_mb: f64,
    pub reg_peak_hwm_mb: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub rustc: String,
    pub nginx: String,
    pub mem_total: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub upstream: String,
    pub window_s: f64,
    pub step_window_s: f64,
    pub max_p99_ms: f64,
    pub max_error_rate: f64,
    pub client_threads: usize,
    /// Cores busy (any process) just before the suite started.
    #[serde(default)]
    pub busy_at_start: f64,
    pub runs: Vec<ScenarioRun>,
    pub max_rate: Vec<MaxRate>,
    pub memory: Memory,
    /// Cache-hit runs through a gateway holding the pre-populated registry.
    pub registry_runs: Vec<ScenarioRun>,
    pub total_s: f64,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let s = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&s).trim().to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn machine(nginx: &str) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_string(),
        kernel: sh("uname", &["-sr"]),
        rustc: sh("rustc", &["--version"]),
        nginx: sh(nginx, &["-v"]),
        mem_total: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap_or("")
            .trim()
            .to_string(),
    }
}

const EMULATOR_TOML: &str = r#"# Written by gemgate-load: zero added latency, no faults, streams as fast as they go.
[generation]
chunk_delay = "0s"

[faults]
latency_ms = 0
jitter_ms = 0
rate_429 = 0.0
rate_500 = 0.0
rate_503 = 0.0
midstream_error_rate = 0.0
drop_rate = 0.0
"#;

fn spawn_upstream(args: &SuiteArgs, logs: &Path) -> anyhow::Result<Proc> {
    if args.upstream == "fake" {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["fake-upstream", "--listen", "127.0.0.1:0"]);
        return Proc::spawn_announcing("fake-upstream", cmd, "fake upstream listening on", logs);
    }
    let cfg = args.out.join("emulator.toml");
    std::fs::write(&cfg, EMULATOR_TOML)?;
    let mut cmd = Command::new(&args.gemgate);
    cmd.args(["emulator", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn");
    Proc::spawn_announcing("emulator", cmd, "emulator listening on", logs)
}

fn spawn_gateway(
    args: &SuiteArgs,
    name: &str,
    upstream: &str,
    store: Option<&Path>,
    logs: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(&args.gemgate);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .env_remove("GEMGATE_CONFIG")
        .env_remove("RUST_LOG")
        .env("GEMGATE_TELEMETRY__LOG_LEVEL", "warn")
        .env("GEMGATE_CACHING__MIN_HITS", "1");
    match store {
        Some(p) => cmd
            .env("GEMGATE_STORE__BACKEND", "sqlite")
            .env("GEMGATE_STORE__SQLITE_PATH", p),
        None => cmd.env("GEMGATE_STORE__BACKEND", "memory"),
    };
    Proc::spawn_announcing(name, cmd, "gateway listening on", logs)
}

fn spawn_nginx(args: &SuiteArgs, upstream: &str, logs: &Path) -> anyhow::Result<Proc> {
    let dir = std::fs::canonicalize(&args.out)?.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let up = upstream.trim_start_matches("http://");
    let port = procs::free_port()?;
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let d = dir.display();
    let conf = format!(
        r#"# Written by gemgate-load: nginx as a plain reverse proxy in front of the emulator.
{user}daemon off;
master_process on;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 64m;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream emulator {{
        server {up};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"#,
        user = if root { "user root;\n" } else { "" },
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(&args.nginx);
    cmd.arg("-p").arg(&dir).arg("-c").arg(&path);
    Proc::spawn_listening("nginx", cmd, &format!("127.0.0.1:{port}"), logs)
}

struct Path3<'a> {
    name: &'static str,
    base: String,
    client: HttpClient,
    /// Proxy process whose CPU is charged to this path (none for direct).
    proxy: Option<&'a Proc>,
    /// nginx: count the workers too.
    tree: bool,
}

impl Path3<'_> {
    fn proxy_pids(&self) -> Vec<u32> {
        match self.proxy {
            None => vec![],
            Some(p) if self.tree => procs::with_children(p.pid()),
            Some(p) => vec![p.pid()],
        }
    }
}

async fn measure(
    p: &Path3<'_>,
    upstream: &Proc,
    spec: &RequestSpec,
    rate: f64,
    warmup: Duration,
    window: Duration,
) -> (Outcome, Option<f64>, f64, f64) {
    let pids = p.proxy_pids();
    let up_pids = [upstream.pid()];
    let me = [std::process::id()];
    let cpu0 = procs::cpu_of(&pids);
    let up0 = procs::cpu_of(&up_pids);
    let me0 = procs::cpu_of(&me);
    let sys0 = procs::system_busy_seconds();
    let t = Instant::now();
    let out = client::open_loop(&p.client, &p.base, spec, rate, warmup, window).await;
    let wall = t.elapsed().as_secs_f64();
    let cpu1 = procs::cpu_of(&pids);
    let up1 = procs::cpu_of(&up_pids);
    let me1 = procs::cpu_of(&me);
    let sys1 = procs::system_busy_seconds();
    let ours = (cpu1 - cpu0) + (up1 - up0) + (me1 - me0);
    let foreign = ((sys1 - sys0) - ours).max(0.0) / wall;
    // Warm-up requests cost CPU too: charge CPU over every request sent.
    let sent = ((warmup + window).as_secs_f64() * rate).max(1.0);
    let proxy_cpu = p.proxy.map(|_| (cpu1 - cpu0) / sent * 1000.0);
    (out, proxy_cpu, (up1 - up0) / sent * 1000.0, foreign)
}

/// Waits (up to `max`) until the machine is quiet: under 0.3 cores busy over one second.
/// Returns the busy cores last seen.
async fn wait_quiet(max: Duration) -> f64 {
    let deadline = Instant::now() + max;
    loop {
        let a = procs::system_busy_seconds();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = procs::system_busy_seconds() - a;
        if busy < 0.3 || Instant::now() > deadline {
            return busy;
        }
        eprintln!("machine busy ({busy:.2} cores used by other processes); waiting");
    }
}

fn path_result(
    name: &str,
    o: &Outcome,
    proxy_cpu: Option<f64>,
    up_cpu: f64,
    foreign_cores: f64,
) -> PathResult {
    PathResult {
        path: name.to_string(),
        rate: o.rate,
        scheduled: o.scheduled,
        ok: o.ok,
        errors: o.errors,
        unexpected: o.unexpected,
        dropped: o.dropped,
        bytes: o.bytes,
        achieved_rps: o.achieved_rps(),
        latency: Pcts::of(&o.latency),
        ttfb: Pcts::of(&o.ttfb),
        service: Pcts::of(&o.service),
        proxy_cpu_s_per_1k: proxy_cpu,
        upstream_cpu_s_per_1k: up_cpu,
        foreign_cores,
        first_error: o.first_error.clone(),
    }
}

fn print_result(scenario: &str, r: &PathResult) {
    eprintln!(
        "  {scenario:<14} {:>6.0}/s {:<8} p50 {:>7.3} p90 {:>7.3} p99 {:>7.3} p99.9 {:>7.3} ms | ttfb p50 {:>7.3} | ok {} err {} unexp {} | cpu/1k {} | foreign {:.2} {}",
        r.rate,
        r.path,
        r.latency.p50,
        r.latency.p90,
        r.latency.p99,
        r.latency.p999,
        r.ttfb.p50,
        r.ok,
        r.errors,
        r.unexpected,
        r.proxy_cpu_s_per_1k
            .map(|c| format!("{c:.3}s"))
            .unwrap_or_else(|| "-".into()),
        r.foreign_cores,
        r.first_error.as_deref().unwrap_or("")
    );
}

/// Sends `spec` once to `base` until the response carries `x-gemgate-cache: hit` (≤ 40 tries).
async fn warm_cache(client: &HttpClient, base: &str, spec: &RequestSpec) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..40 {
        let (status, headers, body) = client::once(client, base, spec).await?;
        let outcome = headers
            .get("x-gemgate-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if status.is_success() && outcome == "hit" {
            return Ok(());
        }
        last = format!(
            "HTTP {status}, x-gemgate-cache: {outcome:?}, body: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the cache-hit scenario never became a hit: {last}")
}

async fn check(p: &Path3<'_>, spec: &RequestSpec, scenario: &str) -> anyhow::Result<()> {
    let (status, headers, body) = client::once(&p.client, &p.base, spec)
        .await
        .with_context(|| format!("{scenario} via {}", p.name))?;
    if !status.is_success() {
        bail!(
            "{scenario} via {}: HTTP {status}: {}",
            p.name,
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    if p.name == "gemgate" {
        eprintln!(
            "  check {scenario:<14} via gemgate: {} bytes, x-gemgate-cache: {:?}",
            body.len(),
            headers.get("x-gemgate-cache")
        );
    }
    Ok(())
}

async fn max_rate(args: &SuiteArgs, p: &Path3<'_>, spec: &RequestSpec) -> MaxRate {
    let warmup = Duration::from_millis(500);
    let window = Duration::from_secs_f64(args.step_window);
    let mut steps = Vec::new();
    let mut lo = 0.0f64;
    let mut hi: Option<f64> = None;
    let mut rate = 1000.0f64;
    let cap = 64_000.0;
    let mut bisections = 0;
    loop {
        // A failing step is tried once more after a pause (a burst of unrelated load on a
        // shared machine should not end the search); the better try counts.
        let mut tries = 0;
        let (o, p99, er, pass) = loop {
            tries += 1;
            let o = client::open_loop(&p.client, &p.base, spec, rate, warmup, window).await;
            let p99 = Pcts::of(&o.latency).p99;
            let er = o.error_rate();
            let pass = o.ok > 0 && p99 <= args.max_p99_ms && er <= args.max_error_rate;
            if pass || tries == 2 {
                break (o, p99, er, pass);
            }
            eprintln!(
                "  max-rate {:<8} {:>7.0}/s p99 {:>8.3} ms errors {:>6.2}%: failed, trying once more",
                p.name,
                rate,
                p99,
                er * 100.0
            );
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        eprintln!(
            "  max-rate {:<8} {:>7.0}/s p99 {:>8.3} ms errors {:>6.2}% achieved {:>7.0}/s {}",
            p.name,
            rate,
            p99,
            er * 100.0,
            o.achieved_rps(),
            if pass { "pass" } else { "FAIL" }
        );
        steps.push(Step {
            rate,
            p99_ms: p99,
            error_rate: er,
            achieved_rps: o.achieved_rps(),
            pass,
        });
        // Let queues drain and connections settle after an overloaded step.
        tokio::time::sleep(Duration::from_millis(if pass { 300 } else { 1500 })).await;
        if pass {
            lo = rate;
        } else {
            hi = Some(rate);
        }
        match hi {
            None if rate * 2.0 <= cap => rate *= 2.0,
            None => break,
            Some(h) => {
                if bisections >= 4 || h - lo <= 250.0 {
                    break;
                }
                bisections += 1;
                rate = ((lo + h) / 2.0 / 50.0).round() * 50.0;
            }
        }
    }
    MaxRate {
        path: p.name.to_string(),
        sustained: lo,
        first_failing: hi,
        steps,
    }
}

pub async fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&args.out)?;
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let machine = machine(&args.nginx);
    eprintln!("machine: {machine:?}");
    let busy_at_start = wait_quiet(Duration::from_secs(90)).await;

    let upstream = spawn_upstream(&args, &logs)?;
    eprintln!("upstream ({}) at {}", args.upstream, upstream.addr);
    let mut gateway = spawn_gateway(&args, "gemgate", &upstream.addr, None, &logs)?;
    eprintln!("gemgate at {}", gateway.addr);
    let nginx = spawn_nginx(&args, &upstream.addr, &logs)?;
    eprintln!("nginx at {}", nginx.addr);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut memory = Memory {
        gemgate_idle_rss_mb: procs::mem_mb(&[gateway.pid()], "VmRSS"),
        nginx_idle_rss_mb: procs::mem_mb(&procs::with_children(nginx.pid()), "VmRSS"),
        ..Memory::default()
    };

    let paths = [
        Path3 {
            name: "direct",
            base: upstream.addr.clone(),
            client: client::client(),
            proxy: None,
            tree: false,
        },
        Path3 {
            name: "nginx",
            base: nginx.addr.clone(),
            client: client::client(),
            proxy: Some(&nginx),
            tree: true,
        },
        Path3 {
            name: "gemgate",
            base: gateway.addr.clone(),
            client: client::client(),
            proxy: Some(&gateway),
            tree: false,
        },
    ];

    let small = scenarios::small_generate();
    let mut hit = scenarios::cache_hit();
    type Scenario = (&'static str, RequestSpec, Vec<f64>);
    let mut fixed: Vec<Scenario> = vec![
        ("small", small.clone(), vec![500.0, 1000.0]),
        ("countTokens", scenarios::small_count_tokens(), vec![1000.0]),
        (
            "large-200KB",
            scenarios::large_generate(),
            vec![100.0, 250.0],
        ),
        ("stream-20", scenarios::stream20(), vec![250.0, 500.0]),
        ("cache-hit-8k", hit.clone(), vec![500.0, 1000.0]),
    ];
    if args.quick {
        fixed.retain(|(name, _, _)| *name == "small" || *name == "countTokens");
        for (_, _, rates) in &mut fixed {
            rates.retain(|r| *r == 1000.0);
        }
    }
    for (name, spec, _) in &fixed {
        for p in &paths {
            check(p, spec, name).await?;
        }
    }
    warm_cache(&paths[2].client, &paths[2].base, &hit).await?;
    hit.expect = Some(("x-gemgate-cache", "hit"));

    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs_f64(args.window);
    let mut runs = Vec::new();
    for (name, spec, rates) in &fixed {
        for &rate in rates {
            let mut results = Vec::new();
            for p in &paths {
                let spec = if *name == "cache-hit-8k" && p.name == "gemgate" {
                    &hit
                } else {
                    spec
                };
                let (o, cpu, up_cpu, foreign) =
                    measure(p, &upstream, spec, rate, warmup, window).await;
                let r = path_result(p.name, &o, cpu, up_cpu, foreign);
                print_result(name, &r);
                results.push(r);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            runs.push(ScenarioRun {
                scenario: name.to_string(),
                rate,
                results,
            });
        }
    }

    memory.gemgate_hwm_before_max_rate_mb = procs::mem_mb(&[gateway.pid()], "VmHWM");
    let mut max = Vec::new();
    if !args.no_max_rate {
        for p in &paths {
            max.push(max_rate(&args, p, &small).await);
        }
    }
    memory.gemgate_peak_hwm_mb = procs::mem_mb(&[gateway.pid()], "VmHWM");
    memory.nginx_peak_hwm_mb = procs::mem_mb(&procs::with_children(nginx.pid()), "VmHWM");
    drop(paths);
    drop(nginx);
    gateway.stop();
    drop(gateway);

    let mut registry_runs = Vec::new();
    if !args.quick {
        // A gateway whose store holds `registry_entries` valid entries, loaded at start.
        let db = std::fs::canonicalize(&args.out)?.join("registry.sqlite");
        let tp = Instant::now();
        crate::store::populate(&db, args.registry_entries, scenarios::API_KEY)?;
        eprintln!(
            "populated {} registry rows in {:.1}s",
            args.registry_entries,
            tp.elapsed().as_secs_f64()
        );
        let ts = Instant::now();
        let reg = spawn_gateway(&args, "gemgate-registry", &upstream.addr, Some(&db), &logs)?;
        memory.reg_entries = args.registry_entries;
        memory.reg_startup_s = ts.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        memory.reg_idle_rss_mb = procs::mem_mb(&[reg.pid()], "VmRSS");
        let reg_path = Path3 {
            name: "gemgate",
            base: reg.addr.clone(),
            client: client::client(),
            proxy: Some(&reg),
            tree: false,
        };
        hit.expect = None;
        warm_cache(&reg_path.client, &reg_path.base, &hit).await?;
        hit.expect = Some(("x-gemgate-cache", "hit"));
        // Once right after start, then across the first sweep (30 s after start by default), which
        // writes every entry's hit count back to the store.
        for (label, at) in [
            ("cache-hit-8k/100k", None),
            ("cache-hit-8k/100k+sweep", Some(27.0)),
        ] {
            if let Some(at) = at {
                let wait = at - ts.elapsed().as_secs_f64();
                if wait > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                }
            }
            let w = if at.is_some() {
                Duration::from_secs(8)
            } else {
                window
            };
            let (o, cpu, up_cpu, foreign) =
                measure(&reg_path, &upstream, &hit, 1000.0, warmup, w).await;
            let r = path_result("gemgate", &o, cpu, up_cpu, foreign);
            print_result(label, &r);
            registry_runs.push(ScenarioRun {
                scenario: label.to_string(),
                rate: 1000.0,
                results: vec![r],
            });
        }
        memory.reg_peak_hwm_mb = procs::mem_mb(&[reg.pid()], "VmHWM");
        drop(reg_path);
        drop(reg);
    }
    memory.emulator_peak_hwm_mb = procs::mem_mb(&[upstream.pid()], "VmHWM");
    drop(upstream);

    let results = Results {
        machine,
        upstream: args.upstream.clone(),
        window_s: args.window,
        step_window_s: args.step_window,
        max_p99_ms: args.max_p99_ms,
        max_error_rate: args.max_error_rate,
        client_threads: args.client_threads,
        busy_at_start,
        runs,
        max_rate: max,
        memory,
        registry_runs,
        total_s: t0.elapsed().as_secs_f64(),
    };
    let path = args.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("wrote {} ({:.0}s)", path.display(), results.total_s);
    Ok(())
}
