//! Pre-populating the gateway's SQLite store (schema of `src/store/sqlite.rs`, table `caches`).

use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS caches (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    scope TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    contents INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expire_ms INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL,
    hits INTEGER NOT NULL
);";

/// Writes `n` unexpired entries (24 h left) under the scope of `api_key`, with keys that no
/// benchmark request produces, in one transaction.
pub fn populate(path: &Path, n: usize, api_key: &str) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(SCHEMA)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let scope = hex::encode(Sha256::digest(api_key.as_bytes()));
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO caches (key, name, model, scope, tokens, contents, created_ms, \
             expire_ms, last_used_ms, hits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for i in 0..n {
            let key = hex::encode(Sha256::digest(format!("bench-registry-{i}").as_bytes()));
            stmt.execute(params![
                key,
                format!("cachedContents/bench{i:08}"),
                "models/gemini-2.5-flash",
                scope,
                8000i64,
                1i64,
                now,
                now + 24 * 3600 * 1000,
                now,
                0i64
            ])?;
        }
    }
    tx.commit()?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}
