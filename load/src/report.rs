//! results.json (+ criterion estimates) → markdown: the tables BENCHMARKS.md carries, and the
//! targets with a verdict computed from the numbers (never typed in by hand).

use crate::suite::{PathResult, Results, ScenarioRun};
use std::fmt::Write;
use std::path::Path;

/// One criterion benchmark: id and mean / median in nanoseconds.
struct Crit {
    id: String,
    mean_ns: f64,
    median_ns: f64,
}

fn criterion(dir: &Path) -> Vec<Crit> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let est = std::fs::read_to_string(p.join("estimates.json")).ok();
                let bench = std::fs::read_to_string(p.join("benchmark.json")).ok();
                if let (Some(est), Some(bench)) = (est, bench) {
                    let est: serde_json::Value = serde_json::from_str(&est).unwrap_or_default();
                    let bench: serde_json::Value = serde_json::from_str(&bench).unwrap_or_default();
                    out.push(Crit {
                        id: bench["full_id"].as_str().unwrap_or("?").to_string(),
                        mean_ns: est["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
                        median_ns: est["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
                    });
                }
            } else if p.file_name().is_none_or(|n| n != "report") {
                stack.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn human_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn find<'a>(runs: &'a [ScenarioRun], scenario: &str, rate: f64) -> Option<&'a ScenarioRun> {
    runs.iter()
        .find(|r| r.scenario == scenario && (r.rate - rate).abs() < 0.5)
}

fn path<'a>(run: &'a ScenarioRun, name: &str) -> Option<&'a PathResult> {
    run.results.iter().find(|r| r.path == name)
}

/// Compares at the printed (µs) resolution: HDR histograms keep 3 significant digits, so a
/// difference of percentiles is not meaningful below a microsecond.
fn le(value_ms: f64, limit_ms: f64) -> bool {
    (value_ms * 1000.0).round() <= (limit_ms * 1000.0).round()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

pub fn render(results: &Path, criterion_dir: Option<&Path>) -> anyhow::Result<String> {
    let r: Results = serde_json::from_str(&std::fs::read_to_string(results)?)?;
    let crit = criterion_dir.map(criterion).unwrap_or_default();
    let mut s = String::new();
    let m = &r.machine;
    writeln!(
        s,
        "Run: upstream = {} (zero added latency), {} cores ({}), {}, {}, {}, MemTotal {}. \
         Fixed-rate runs: 1 s warm-up + {} s measured per path; load generator on {} tokio \
         threads; load generator, proxy and emulator share the same cores. Suite wall time {:.0} s.\n",
        r.upstream,
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.rustc,
        m.nginx,
        m.mem_total,
        r.window_s,
        r.client_threads,
        r.total_s
    )?;

    let foreign: Vec<f64> = r
        .runs
        .iter()
        .chain(&r.registry_runs)
        .flat_map(|x| x.results.iter().map(|p| p.foreign_cores))
        .collect();
    if !foreign.is_empty() {
        let max = foreign.iter().cloned().fold(0.0, f64::max);
        let mean = foreign.iter().sum::<f64>() / foreign.len() as f64;
        writeln!(
            s,
            "Processes outside the benchmark used {mean:.2} cores on average (at most {max:.2}) \
             during the measured runs; {:.2} cores were busy just before the suite started.\n",
            r.busy_at_start
        )?;
    }
    writeln!(
        s,
        "### Latency (ms, measured from each request's intended send time)\n"
    )?;
    writeln!(
        s,
        "| scenario | rate/s | path | p50 | p90 | p99 | p99.9 | +p50 | +p90 | +p99 | +p99.9 | ok | errors | proxy CPU s/1k req |"
    )?;
    writeln!(
        s,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for run in &r.runs {
        let direct = path(run, "direct");
        for p in &run.results {
            let add = |f: fn(&PathResult) -> f64| match (p.path.as_str(), direct) {
                ("direct", _) | (_, None) => "".to_string(),
                (_, Some(d)) => format!("{:+.3}", f(p) - f(d)),
            };
            writeln!(
                s,
                "| {} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
                run.scenario,
                run.rate,
                p.path,
                p.latency.p50,
                p.latency.p90,
                p.latency.p99,
                p.latency.p999,
                add(|x| x.latency.p50),
                add(|x| x.latency.p90),
                add(|x| x.latency.p99),
                add(|x| x.latency.p999),
                p.ok,
                p.errors + p.unexpected,
                p.proxy_cpu_s_per_1k
                    .map(|c| format!("{c:.3}"))
                    .unwrap_or_else(|| "–".into()),
            )?;
        }
    }
    writeln!(
        s,
        "\n`+pXX` = that percentile minus the direct path's same percentile in the same run. \
         Through gemgate the cache-hit request is rewritten to reference the cache, so the \
         emulator receives a small body instead of the 32 KB prefix.\n"
    )?;

    writeln!(s, "### Stream time to first byte (20-event SSE, ms)\n")?;
    writeln!(
        s,
        "| rate/s | path | TTFB p50 | TTFB p90 | TTFB p99 | +p50 | +p99 | whole stream p50 |"
    )?;
    writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|")?;
    for run in r.runs.iter().filter(|x| x.scenario.starts_with("stream")) {
        let d = path(run, "direct");
        for p in &run.results {
            let (a50, a99) = match (p.path.as_str(), d) {
                ("direct", _) | (_, None) => (String::new(), String::new()),
                (_, Some(d)) => (
                    format!("{:+.3}", p.ttfb.p50 - d.ttfb.p50),
                    format!("{:+.3}", p.ttfb.p99 - d.ttfb.p99),
                ),
            };
            writeln!(
                s,
                "| {:.0} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {:.3} |",
                run.rate, p.path, p.ttfb.p50, p.ttfb.p90, p.ttfb.p99, a50, a99, p.latency.p50
            )?;
        }
    }

    if !r.max_rate.is_empty() {
        writeln!(
            s,
            "\n### Highest sustained rate (small generateContent; a step passes while p99 ≤ {} ms and errors ≤ {}%; {} s per step)\n",
            r.max_p99_ms,
            r.max_error_rate * 100.0,
            r.step_window_s
        )?;
        writeln!(
            s,
            "| path | sustained req/s | first failing step | steps (rate: p99 ms) |"
        )?;
        writeln!(s, "|---|---:|---:|---|")?;
        for mr in &r.max_rate {
            let steps: Vec<String> = mr
                .steps
                .iter()
                .map(|st| {
                    format!(
                        "{:.0}: {:.2}{}",
                        st.rate,
                        st.p99_ms,
                        if st.pass { "" } else { " ✗" }
                    )
                })
                .collect();
            writeln!(
                s,
                "| {} | {:.0} | {} | {} |",
                mr.path,
                mr.sustained,
                mr.first_failing
                    .map(|f| format!("{f:.0}"))
                    .unwrap_or_else(|| "–".into()),
                steps.join(", ")
            )?;
        }
    }

    let mem = &r.memory;
    writeln!(s, "\n### Memory\n")?;
    writeln!(s, "| process | idle RSS MB | peak RSS (VmHWM) MB |")?;
    writeln!(s, "|---|---:|---:|")?;
    writeln!(
        s,
        "| gemgate (empty registry) | {:.1} | {:.1} |",
        mem.gemgate_idle_rss_mb, mem.gemgate_peak_hwm_mb
    )?;
    if mem.gemgate_hwm_before_max_rate_mb > 0.0 {
        writeln!(
            s,
            "| gemgate, peak before the max-rate search (fixed-rate runs only) | | {:.1} |",
            mem.gemgate_hwm_before_max_rate_mb
        )?;
    }
    writeln!(
        s,
        "| nginx (master + workers) | {:.1} | {:.1} |",
        mem.nginx_idle_rss_mb, mem.nginx_peak_hwm_mb
    )?;
    writeln!(
        s,
        "| gemgate, {} registry entries loaded from SQLite (start-up {:.2} s) | {:.1} | {:.1} |",
        mem.reg_entries, mem.reg_startup_s, mem.reg_idle_rss_mb, mem.reg_peak_hwm_mb
    )?;
    writeln!(s, "| emulator | | {:.1} |", mem.emulator_peak_hwm_mb)?;

    if !r.registry_runs.is_empty() {
        writeln!(
            s,
            "\n### Cache-hit path with {} registry entries (gemgate only, ms)\n",
            mem.reg_entries
        )?;
        writeln!(
            s,
            "| run | rate/s | p50 | p90 | p99 | p99.9 | max | ok | errors | CPU s/1k req |"
        )?;
        writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for run in &r.registry_runs {
            for p in &run.results {
                writeln!(
                    s,
                    "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
                    run.scenario,
                    run.rate,
                    p.latency.p50,
                    p.latency.p90,
                    p.latency.p99,
                    p.latency.p999,
                    p.latency.max,
                    p.ok,
                    p.errors + p.unexpected,
                    p.proxy_cpu_s_per_1k
                        .map(|c| format!("{c:.3}"))
                        .unwrap_or_default()
                )?;
            }
        }
    }

    if !crit.is_empty() {
        writeln!(s, "\n### Micro-benchmarks (criterion)\n")?;
        writeln!(s, "| benchmark | mean | median |")?;
        writeln!(s, "|---|---:|---:|")?;
        for c in &crit {
            writeln!(
                s,
                "| {} | {} | {} |",
                c.id,
                human_ns(c.mean_ns),
                human_ns(c.median_ns)
            )?;
        }
    }

    // Targets.
    writeln!(s, "\n### Targets\n")?;
    writeln!(s, "| target | measured | verdict |")?;
    writeln!(s, "|---|---|---|")?;
    let added = |scenario: &str, rate: f64, f: fn(&PathResult) -> f64| -> Option<f64> {
        let run = find(&r.runs, scenario, rate)?;
        Some(f(path(run, "gemgate")?) - f(path(run, "direct")?))
    };
    match (
        added("small", 1000.0, |x| x.latency.p50),
        added("small", 1000.0, |x| x.latency.p99),
    ) {
        (Some(a50), Some(a99)) => {
            writeln!(
                s,
                "| small passthrough @1000/s: added p50 ≤ 0.10 ms | {a50:+.3} ms | {} |",
                verdict(le(a50, 0.10))
            )?;
            writeln!(
                s,
                "| small passthrough @1000/s: added p99 ≤ 0.5 ms | {a99:+.3} ms | {} |",
                verdict(le(a99, 0.5))
            )?;
        }
        _ => writeln!(s, "| small passthrough @1000/s | not measured | – |")?,
    }
    if let (Some(a99), Some(run)) = (
        added("cache-hit-8k", 1000.0, |x| x.latency.p99),
        find(&r.runs, "cache-hit-8k", 1000.0),
    ) {
        let abs = path(run, "gemgate")
            .map(|p| p.latency.p99)
            .unwrap_or(f64::NAN);
        writeln!(
            s,
            "| cache-hit 8k-token prefix @1000/s: p99 ≤ 1.5 ms (added over direct; absolute shown too) | added {a99:+.3} ms (absolute {abs:.3} ms) | {} |",
            verdict(le(a99, 1.5))
        )?;
    }
    let mr = |n: &str| r.max_rate.iter().find(|m| m.path == n).map(|m| m.sustained);
    if let (Some(g), Some(n)) = (mr("gemgate"), mr("nginx")) {
        writeln!(
            s,
            "| highest sustained rate gemgate ≥ 0.8 × nginx | {g:.0} vs {n:.0} req/s = {:.2}× | {} |",
            if n > 0.0 { g / n } else { f64::NAN },
            verdict(n > 0.0 && g >= 0.8 * n)
        )?;
    }
    for run in r.runs.iter().filter(|x| x.scenario.starts_with("stream")) {
        if let (Some(g), Some(d)) = (path(run, "gemgate"), path(run, "direct")) {
            let a50 = g.ttfb.p50 - d.ttfb.p50;
            let a99 = g.ttfb.p99 - d.ttfb.p99;
            writeln!(
                s,
                "| stream TTFB within 0.5 ms of direct @{:.0}/s (p50; p99 shown) | p50 {a50:+.3} ms, p99 {a99:+.3} ms | {} |",
                run.rate,
                verdict(le(a50, 0.5))
            )?;
        }
    }
    let c = |id: &str| crit.iter().find(|c| c.id == id).map(|c| c.mean_ns);
    if let Some(ns) = c("fingerprint/128k-tokens") {
        writeln!(
            s,
            "| fingerprint of a 128k-token request ≤ 1 ms | {} (mean) | {} |",
            human_ns(ns),
            verdict(ns <= 1e6)
        )?;
    }
    if let Some(ns) = c("registry/get-hit/100k") {
        writeln!(
            s,
            "| registry lookup ≤ 2 µs at 100k entries | {} (mean) | {} |",
            human_ns(ns),
            verdict(ns <= 2e3)
        )?;
    }
    writeln!(
        s,
        "| RSS ≤ 30 MB idle | {:.1} MB | {} |",
        mem.gemgate_idle_rss_mb,
        verdict(mem.gemgate_idle_rss_mb <= 30.0)
    )?;
    writeln!(
        s,
        "| RSS ≤ 150 MB with {} registry entries under load | {:.1} MB (VmHWM) | {} |",
        mem.reg_entries,
        mem.reg_peak_hwm_mb,
        verdict(mem.reg_peak_hwm_mb <= 150.0)
    )?;
    Ok(s)
}
