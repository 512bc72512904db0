//! Trace formats the simulator replays: the Mooncake JSONL trace and gemgate's own trace
//! ([`TraceRecord`], written by the gateway through [`TraceWriter`]; token counts and hashes only,
//! never content). Both become [`SimRequest`]s: cacheable prefix boundaries with token counts.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Tokens per Mooncake block (`hash_ids` entry).
pub const MOONCAKE_BLOCK_TOKENS: u64 = 512;

pub use crate::caching::trace::{TraceBoundary, TraceRecord, TraceWriter};

/// A Mooncake trace line.
#[derive(Debug, Deserialize)]
struct MooncakeRecord {
    timestamp: i64,
    input_length: u64,
    output_length: u64,
    hash_ids: Vec<u64>,
}

/// A request as the simulator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRequest {
    pub t_ms: i64,
    pub model: String,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Cacheable boundaries, shortest first: (unique prefix key, cumulative tokens).
    pub boundaries: Vec<(String, u64)>,
    /// Tokens implicit caching serves when the request goes without an explicit cache.
    pub implicit_cached_tokens: u64,
}

impl SimRequest {
    /// From a Mooncake line: block `k` (1-based) ends a boundary of `512·k` tokens keyed by its
    /// id (ids are assigned by prefix, so an id names the whole prefix); the last block is the
    /// request's own and is never a boundary.
    fn from_mooncake(r: MooncakeRecord, model: &str) -> Self {
        let cacheable = r.hash_ids.len().saturating_sub(1);
        let boundaries = r.hash_ids[..cacheable]
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), MOONCAKE_BLOCK_TOKENS * (i as u64 + 1)))
            .filter(|(_, tokens)| *tokens < r.input_length.max(1))
            .collect();
        SimRequest {
            t_ms: r.timestamp,
            model: model.to_string(),
            prompt_tokens: r.input_length,
            output_tokens: r.output_length,
            boundaries,
            implicit_cached_tokens: 0,
        }
    }

    fn from_record(r: TraceRecord, model: Option<&str>) -> Self {
        SimRequest {
            t_ms: r.timestamp,
            model: model.unwrap_or(&r.model).to_string(),
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
            boundaries: r.boundaries.into_iter().map(|b| (format!("{}:{}", r.scope, b.hash), b.tokens)).collect(),
            implicit_cached_tokens: r.implicit_cached_tokens,
        }
    }
}

/// Which format a trace file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    Mooncake,
    Gemgate,
    /// A workload from `workloads.rs`.
    Generated,
}

/// Reads a trace (format detected per file from the first line), sorted by time (stable).
/// Mooncake requests get `model` (or `default_model`); gemgate records keep theirs unless
/// `model` overrides it.
pub fn load(path: &Path, model: Option<&str>, default_model: &str) -> anyhow::Result<(TraceFormat, Vec<SimRequest>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut format = None;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let fmt = *format.get_or_insert(if line.contains("\"hash_ids\"") {
            TraceFormat::Mooncake
        } else {
            TraceFormat::Gemgate
        });
        let req = match fmt {
            TraceFormat::Mooncake => serde_json::from_str::<MooncakeRecord>(&line)
                .map(|r| SimRequest::from_mooncake(r, model.unwrap_or(default_model))),
            TraceFormat::Gemgate | TraceFormat::Generated => {
                serde_json::from_str::<TraceRecord>(&line).map(|r| SimRequest::from_record(r, model))
            }
        };
        out.push(req.with_context(|| format!("{}:{}: bad {fmt:?} record", path.display(), n + 1))?);
    }
    let Some(format) = format else {
        bail!("{} holds no records", path.display());
    };
    out.sort_by_key(|r| r.t_ms);
    Ok((format, out))
}

/// Models implicit caching for traces that do not record it: a request is served implicitly up
/// to its longest boundary that any request reached within `window_ms` before it, if that
/// boundary holds at least `min_tokens(model)` tokens.
pub fn add_implicit(reqs: &mut [SimRequest], window_ms: i64, min_tokens: impl Fn(&str) -> u64) {
    let mut last_seen: HashMap<String, i64> = HashMap::new();
    for r in reqs.iter_mut() {
        let min = min_tokens(&r.model);
        r.implicit_cached_tokens = r
            .boundaries
            .iter()
            .rev()
            .find(|(k, tokens)| *tokens >= min && last_seen.get(k).is_some_and(|t| r.t_ms - t <= window_ms))
            .map_or(0, |(_, tokens)| *tokens);
        for (k, _) in &r.boundaries {
            last_seen.insert(k.clone(), r.t_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mooncake_blocks_become_boundaries_without_the_last_block() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        std::fs::write(
            &p,
            "{\"timestamp\": 5, \"input_length\": 1300, \"output_length\": 7, \"hash_ids\": [0, 1, 2]}\n\
             {\"timestamp\": 1, \"input_length\": 400, \"output_length\": 3, \"hash_ids\": [9]}\n",
        )
        .unwrap();
        let (fmt, reqs) = load(&p, None, "gemini-2.5-flash").unwrap();
        assert_eq!(fmt, TraceFormat::Mooncake);
        assert_eq!(reqs[0].t_ms, 1, "sorted by time");
        assert!(reqs[0].boundaries.is_empty());
        let b = &reqs[1].boundaries;
        assert_eq!(b, &vec![("0".to_string(), 512), ("1".to_string(), 1024)]);
        assert_eq!(reqs[1].model, "gemini-2.5-flash");
    }

    #[test]
    fn writer_output_loads_back_as_gemgate_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.jsonl");
        let w = TraceWriter::open(&p).unwrap();
        let rec = TraceRecord {
            timestamp: 10,
            model: "gemini-2.5-pro".into(),
            scope: "s1".into(),
            boundaries: vec![TraceBoundary { hash: "ab".into(), tokens: 5000 }],
            prompt_tokens: 5100,
            output_tokens: 20,
            implicit_cached_tokens: 4096,
        };
        w.append(&rec).unwrap();
        w.append(&TraceRecord { timestamp: 20, ..rec.clone() }).unwrap();
        let (fmt, reqs) = load(&p, Some("gemini-2.5-flash"), "x").unwrap();
        assert_eq!(fmt, TraceFormat::Gemgate);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].boundaries, vec![("s1:ab".to_string(), 5000)]);
        assert_eq!(reqs[1].model, "gemini-2.5-flash", "--model overrides");
        assert_eq!(reqs[0].implicit_cached_tokens, 4096);
        std::fs::write(&p, "{\"timestamp\": 1, \"model\": \"m\", \"bogus\": 1}\n").unwrap();
        let err = format!("{:#}", load(&p, None, "x").unwrap_err());
        assert!(err.contains("g.jsonl:1"), "{err}");
    }

    #[test]
    fn implicit_model_covers_recently_seen_boundaries_above_the_minimum() {
        let req = |t, keys: &[(&str, u64)]| SimRequest {
            t_ms: t,
            model: "m".into(),
            prompt_tokens: 5000,
            output_tokens: 1,
            boundaries: keys.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            implicit_cached_tokens: 0,
        };
        let mut reqs = vec![
            req(0, &[("a", 512), ("b", 2048)]),
            req(1_000, &[("a", 512), ("b", 2048), ("c", 4096)]),
            req(100_000, &[("a", 512), ("b", 2048)]),
        ];
        add_implicit(&mut reqs, 60_000, |_| 1024);
        let got: Vec<u64> = reqs.iter().map(|r| r.implicit_cached_tokens).collect();
        assert_eq!(got, vec![0, 2048, 0]);
    }
}
