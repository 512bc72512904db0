//! The gateway's own trace: one [`TraceRecord`] per cached-path request (token counts and hashes
//! only, never content), appended by [`TraceWriter`]; `gemgate simulate` reads it back.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// One candidate cache boundary of a recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceBoundary {
    /// The prefix-chain hash at this boundary (already scoped to the tenant and model).
    pub hash: String,
    /// Tokens from the start of the prompt up to this boundary.
    pub tokens: u64,
}

/// One generate request as gemgate records it (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRecord {
    /// Arrival, ms (any origin; only differences matter).
    pub timestamp: i64,
    /// Model id, e.g. `gemini-2.5-flash`.
    pub model: String,
    /// Hash of the credential scope (never the credential).
    pub scope: String,
    /// Cacheable boundaries, shortest first (the last turn is never part of one).
    pub boundaries: Vec<TraceBoundary>,
    pub prompt_tokens: u64,
    /// Output tokens, thoughts included.
    pub output_tokens: u64,
    /// `cachedContentTokenCount` of the response when it was sent without an explicit cache.
    #[serde(default)]
    pub implicit_cached_tokens: u64,
}

/// Where the cached path's trace lines go: the caching path records through this and never
/// knows what keeps them ([`TraceWriter`]'s file, or a test's collector).
pub trait TraceSink: Send + Sync {
    fn record(&self, rec: &TraceRecord) -> std::io::Result<()>;
}

impl TraceSink for TraceWriter {
    fn record(&self, rec: &TraceRecord) -> std::io::Result<()> {
        self.append(rec)
    }
}

/// Appends [`TraceRecord`]s to a JSONL file; safe to share between request tasks.
pub struct TraceWriter {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl TraceWriter {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Mutex::new(std::io::BufWriter::new(file)) })
    }

    /// Writes one record as one line and flushes it, so a crash loses at most this line.
    pub fn append(&self, rec: &TraceRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&line)?;
        f.flush()
    }
}
