//! What the emulator keeps, as plain data: cached contents, files and uploads, batch jobs and
//! the implicit-caching prefixes. The modules that serve them add their behaviour; [`Store`]
//! (state.rs) holds them. Kept apart so that the state does not depend on its own users.
//!
//! [`Store`]: super::state::Store

use super::auth::Caller;
use super::ledger::Usage;
use super::tokens::Counts;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub owner: Caller,
    pub id: String,
    /// `models/{id}`.
    pub model: String,
    pub display_name: String,
    pub system: Option<Value>,
    pub tools: Option<Value>,
    pub tool_config: Option<Value>,
    pub contents: Vec<Value>,
    pub counts: Counts,
    pub create: DateTime<Utc>,
    pub update: DateTime<Utc>,
    pub expire: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Uploaded,
    Generated,
}

#[derive(Debug, Clone)]
pub struct FileEntry {
    pub owner: Caller,
    pub id: String,
    pub display_name: Option<String>,
    pub mime: String,
    pub data: Bytes,
    pub create: DateTime<Utc>,
    pub expire: DateTime<Utc>,
    pub source: Source,
    /// `http://{host}/{version}` of the request that made it.
    pub base: String,
}

/// An upload between start and finalize.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub owner: Caller,
    pub base: String,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub mime: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Pending,
    Running,
    Succeeded,
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Generate,
    Embed,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Ok { response: Value, usage: Usage },
    Err { code: i32, message: String },
}

#[derive(Debug, Clone)]
pub struct Item {
    /// JSONL `key` (file input).
    pub key: Option<Value>,
    /// Inline `metadata`, echoed back.
    pub metadata: Option<Value>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct BatchJob {
    pub owner: Caller,
    pub id: String,
    pub kind: Kind,
    pub model: String,
    pub display_name: Option<String>,
    pub priority: i64,
    pub input_file: Option<String>,
    pub base: String,
    pub create: DateTime<Utc>,
    pub update: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub state: BatchState,
    pub items: Vec<Item>,
}

/// When each recently sent prefix was last seen.
#[derive(Debug, Default)]
pub struct ImplicitPrefixes {
    pub(crate) seen: HashMap<[u8; 32], DateTime<Utc>>,
    pub(crate) swept: Option<DateTime<Utc>>,
}
