//! Spend rollups as the store keeps them: one row of summed figures per hour × model × tenant ×
//! tag × mechanism. The SQLite and Redis encodings live here; the arithmetic in `crate::spend`.

use super::{StoreError, StoreResult};
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::HashMap;

/// What one rollup row is keyed by. `hour_ms` is the start of the hour (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpendKey {
    pub hour_ms: i64,
    pub model: String,
    /// Tenant id: the first 16 hex digits of the credential's SHA-256, or `other` / `none`.
    pub tenant: String,
    pub tag: String,
    pub mechanism: String,
}

/// Summed figures of the responses in one rollup row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpendFigures {
    pub requests: u64,
    /// What the upstream billed, the cache creation and storage the requests committed included.
    pub billed_usd: f64,
    /// What the same requests would have cost without the gateway: billed + net saving.
    pub without_gateway_usd: f64,
    /// The sum of the responses' `x-gemgate-net-saving-usd`.
    pub net_saving_usd: f64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
}

impl SpendFigures {
    pub fn add(&mut self, o: &SpendFigures) {
        self.requests += o.requests;
        self.billed_usd += o.billed_usd;
        self.without_gateway_usd += o.without_gateway_usd;
        self.net_saving_usd += o.net_saving_usd;
        self.prompt_tokens += o.prompt_tokens;
        self.cached_tokens += o.cached_tokens;
        self.output_tokens += o.output_tokens;
    }
}

pub type SpendRow = (SpendKey, SpendFigures);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(super) const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spend_hourly (
    hour_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    tenant TEXT NOT NULL,
    tag TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    requests INTEGER NOT NULL,
    billed_usd REAL NOT NULL,
    without_gateway_usd REAL NOT NULL,
    net_saving_usd REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, model, tenant, tag, mechanism)
);";

pub(super) fn sqlite_add(c: &mut Connection, rows: &[SpendRow]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO spend_hourly VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (hour_ms, model, tenant, tag, mechanism) DO UPDATE SET
               requests = requests + excluded.requests,
               billed_usd = billed_usd + excluded.billed_usd,
               without_gateway_usd = without_gateway_usd + excluded.without_gateway_usd,
               net_saving_usd = net_saving_usd + excluded.net_saving_usd,
               prompt_tokens = prompt_tokens + excluded.prompt_tokens,
               cached_tokens = cached_tokens + excluded.cached_tokens,
               output_tokens = output_tokens + excluded.output_tokens",
        )?;
        for (k, f) in rows {
            stmt.execute(params![
                k.hour_ms,
                k.model,
                k.tenant,
                k.tag,
                k.mechanism,
                f.requests as i64,
                f.billed_usd,
                f.without_gateway_usd,
                f.net_saving_usd,
                f.prompt_tokens as i64,
                f.cached_tokens as i64,
                f.output_tokens as i64
            ])?;
        }
    }
    tx.commit()
}

pub(super) fn sqlite_rows(c: &Connection, from_ms: i64, to_ms: i64) -> rusqlite::Result<Vec<SpendRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT hour_ms, model, tenant, tag, mechanism, requests, billed_usd, without_gateway_usd,
                net_saving_usd, prompt_tokens, cached_tokens, output_tokens
         FROM spend_hourly WHERE hour_ms >= ?1 AND hour_ms < ?2",
    )?;
    let rows = stmt.query_map([from_ms, to_ms], |r| {
        Ok((
            SpendKey { hour_ms: r.get(0)?, model: r.get(1)?, tenant: r.get(2)?, tag: r.get(3)?, mechanism: r.get(4)? },
            SpendFigures {
                requests: r.get::<_, i64>(5)? as u64,
                billed_usd: r.get(6)?,
                without_gateway_usd: r.get(7)?,
                net_saving_usd: r.get(8)?,
                prompt_tokens: r.get::<_, i64>(9)? as u64,
                cached_tokens: r.get::<_, i64>(10)? as u64,
                output_tokens: r.get::<_, i64>(11)? as u64,
            },
        ))
    })?;
    rows.collect()
}

pub(super) fn sqlite_prune(c: &Connection, before_ms: i64) -> rusqlite::Result<()> {
    c.execute("DELETE FROM spend_hourly WHERE hour_ms < ?1", [before_ms]).map(|_| ())
}

/// Redis: one hash per hour (`<prefix>spend:<hour_ms>`), a field per row and figure
/// (`model|tenant|tag|mechanism|figure`), summed with HINCRBY / HINCRBYFLOAT; the hash expires
/// `retention_ms` after its hour.
const SEP: char = '|';
const FIGURES: [&str; 7] = ["requests", "billed", "without", "net", "prompt", "cached", "output"];

fn figure_values(f: &SpendFigures) -> [f64; 7] {
    [
        f.requests as f64,
        f.billed_usd,
        f.without_gateway_usd,
        f.net_saving_usd,
        f.prompt_tokens as f64,
        f.cached_tokens as f64,
        f.output_tokens as f64,
    ]
}

pub(super) fn redis_add_pipeline(prefix: &str, rows: &[SpendRow], retention_ms: i64) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let mut hours = Vec::new();
    for (k, f) in rows {
        let key = format!("{prefix}spend:{}", k.hour_ms);
        for (name, v) in FIGURES.iter().zip(figure_values(f)) {
            let field = format!("{}{SEP}{}{SEP}{}{SEP}{}{SEP}{name}", k.model, k.tenant, k.tag, k.mechanism);
            if *name == "requests" || *name == "prompt" || *name == "cached" || *name == "output" {
                pipe.cmd("HINCRBY").arg(&key).arg(field).arg(v as i64).ignore();
            } else {
                pipe.cmd("HINCRBYFLOAT").arg(&key).arg(field).arg(v).ignore();
            }
        }
        if !hours.contains(&k.hour_ms) {
            hours.push(k.hour_ms);
            pipe.cmd("PEXPIREAT").arg(&key).arg(k.hour_ms + 3_600_000 + retention_ms).ignore();
        }
    }
    pipe
}

pub(super) fn redis_parse(hour_ms: i64, fields: HashMap<String, String>) -> StoreResult<Vec<SpendRow>> {
    let mut out: HashMap<SpendKey, SpendFigures> = HashMap::new();
    for (field, value) in fields {
        let parts: Vec<&str> = field.split(SEP).collect();
        let [model, tenant, tag, mechanism, figure] = parts[..] else {
            return Err(err(format!("unexpected spend field {field:?}")));
        };
        let key = SpendKey {
            hour_ms,
            model: model.into(),
            tenant: tenant.into(),
            tag: tag.into(),
            mechanism: mechanism.into(),
        };
        let v: f64 = value.parse().map_err(err)?;
        let f = out.entry(key).or_default();
        match figure {
            "requests" => f.requests = v as u64,
            "billed" => f.billed_usd = v,
            "without" => f.without_gateway_usd = v,
            "net" => f.net_saving_usd = v,
            "prompt" => f.prompt_tokens = v as u64,
            "cached" => f.cached_tokens = v as u64,
            "output" => f.output_tokens = v as u64,
            _ => return Err(err(format!("unexpected spend figure {figure:?}"))),
        }
    }
    Ok(out.into_iter().collect())
}

/// The starts (Unix ms) of the hours from the one holding `from_ms` up to `to_ms` (excluded).
pub(super) fn hours(from_ms: i64, to_ms: i64) -> impl Iterator<Item = i64> {
    let first = from_ms.div_euclid(3_600_000) * 3_600_000;
    (0..).map(move |i| first + i * 3_600_000).take_while(move |h| *h < to_ms)
}

/// In-memory rollups, for the memory store.
#[derive(Default)]
pub(super) struct MemoryRollups(std::sync::Mutex<HashMap<SpendKey, SpendFigures>>);

impl MemoryRollups {
    pub fn add(&self, rows: &[SpendRow]) {
        let mut m = self.0.lock().expect("poisoned");
        for (k, f) in rows {
            m.entry(k.clone()).or_default().add(f);
        }
    }
    pub fn rows(&self, from_ms: i64, to_ms: i64) -> Vec<SpendRow> {
        let m = self.0.lock().expect("poisoned");
        m.iter().filter(|(k, _)| k.hour_ms >= from_ms && k.hour_ms < to_ms).map(|(k, f)| (k.clone(), *f)).collect()
    }
    pub fn prune(&self, before_ms: i64) {
        self.0.lock().expect("poisoned").retain(|k, _| k.hour_ms >= before_ms);
    }
}
