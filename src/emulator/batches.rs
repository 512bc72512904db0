//! Batch API: batchGenerateContent / asyncBatchEmbedContent as long-running Operations with the
//! BATCH_STATE_* machine evaluated lazily on the emulator clock, inline or JSONL-file input,
//! results inline (both `metadata.output` and `response`) or in `files/batch-{id}`.

use super::auth::Caller;
use super::clock::delta;
use super::config::EmulatorConfig;
use super::files::{FileEntry, Source};
use super::generate;
use super::http::{json_ok, paginate, random_id, timestamp};
use super::ledger::{Tier, Usage};
use super::models;
use super::prompt;
use super::state::{EmulatorState, Store};
use super::tokens;
use crate::gemini::GeminiError;
use crate::gemini::canonical::get;
use crate::gemini::error::grpc_code;
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const TYPE_PREFIX: &str = "type.googleapis.com/google.ai.generativelanguage.v1main.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Pending,
    Running,
    Succeeded,
    Cancelled,
    Expired,
}

impl BatchState {
    pub fn wire(self) -> &'static str {
        match self {
            BatchState::Pending => "BATCH_STATE_PENDING",
            BatchState::Running => "BATCH_STATE_RUNNING",
            BatchState::Succeeded => "BATCH_STATE_SUCCEEDED",
            BatchState::Cancelled => "BATCH_STATE_CANCELLED",
            BatchState::Expired => "BATCH_STATE_EXPIRED",
        }
    }

    fn done(self) -> bool {
        matches!(
            self,
            BatchState::Succeeded | BatchState::Cancelled | BatchState::Expired
        )
    }
}

/// Where a job's state is after `elapsed` of virtual time, given its delay and expiry.
/// Returns the state and the offset from creation at which it was entered.
pub fn state_after(
    elapsed: chrono::TimeDelta,
    cfg: &EmulatorConfig,
) -> (BatchState, chrono::TimeDelta) {
    let d = delta(cfg.batch.processing_delay);
    let e = delta(cfg.batch.expiry);
    if d <= e && elapsed >= d {
        (BatchState::Succeeded, d)
    } else if elapsed >= e {
        (BatchState::Expired, e)
    } else if elapsed >= d / 2 {
        (BatchState::Running, d / 2)
    } else {
        (BatchState::Pending, chrono::TimeDelta::zero())
    }
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

impl BatchJob {
    fn type_names(&self) -> (&'static str, &'static str) {
        match self.kind {
            Kind::Generate => ("GenerateContentBatch", "GenerateContentBatchOutput"),
            Kind::Embed => ("EmbedContentBatch", "EmbedContentBatchOutput"),
        }
    }

    fn output(&self) -> Value {
        match &self.input_file {
            Some(_) => json!({"responsesFile": format!("files/batch-{}", self.id)}),
            None => {
                let items: Vec<Value> = self
                    .items
                    .iter()
                    .map(|it| {
                        let mut m = Map::new();
                        match &it.outcome {
                            Outcome::Ok { response, .. } => {
                                m.insert("response".into(), response.clone())
                            }
                            Outcome::Err { code, message } => {
                                m.insert("error".into(), json!({"code": code, "message": message}))
                            }
                        };
                        if let Some(md) = &it.metadata {
                            m.insert("metadata".into(), md.clone());
                        }
                        Value::Object(m)
                    })
                    .collect();
                json!({"inlinedResponses": {"inlinedResponses": items}})
            }
        }
    }

    /// The Operation; `with_inline` false leaves inline responses out (as list does).
    pub fn to_json(&self, with_inline: bool) -> Value {
        let (meta_type, out_type) = self.type_names();
        let n = self.items.len();
        let ok = self
            .items
            .iter()
            .filter(|i| matches!(i.outcome, Outcome::Ok { .. }))
            .count();
        let mut stats = Map::new();
        stats.insert("requestCount".into(), json!(n.to_string()));
        match self.state {
            BatchState::Succeeded => {
                if ok > 0 {
                    stats.insert("successfulRequestCount".into(), json!(ok.to_string()));
                }
                if n > ok {
                    stats.insert("failedRequestCount".into(), json!((n - ok).to_string()));
                }
            }
            BatchState::Pending | BatchState::Running if n > 0 => {
                stats.insert("pendingRequestCount".into(), json!(n.to_string()));
            }
            _ => {}
        }
        let show_output =
            self.state == BatchState::Succeeded && (with_inline || self.input_file.is_some());
        let mut md = Map::new();
        md.insert("@type".into(), json!(format!("{TYPE_PREFIX}{meta_type}")));
        md.insert("model".into(), json!(self.model));
        if let Some(d) = &self.display_name {
            md.insert("displayName".into(), json!(d));
        }
        if let Some(f) = &self.input_file {
            md.insert("inputConfig".into(), json!({"fileName": f}));
        }
        if show_output {
            md.insert("output".into(), self.output());
        }
        md.insert("createTime".into(), json!(timestamp(self.create)));
        md.insert("updateTime".into(), json!(timestamp(self.update)));
        if let Some(e) = self.end {
            md.insert("endTime".into(), json!(timestamp(e)));
        }
        md.insert("batchStats".into(), Value::Object(stats));
        md.insert("state".into(), json!(self.state.wire()));
        md.insert("name".into(), json!(format!("batches/{}", self.id)));
        if self.priority != 0 {
            md.insert("priority".into(), json!(self.priority.to_string()));
        }
        let mut op = Map::new();
        op.insert("name".into(), json!(format!("batches/{}", self.id)));
        op.insert("metadata".into(), Value::Object(md));
        if self.state.done() {
            op.insert("done".into(), json!(true));
        }
        if self.state == BatchState::Succeeded {
            let mut resp = Map::new();
            resp.insert("@type".into(), json!(format!("{TYPE_PREFIX}{out_type}")));
            if show_output {
                if let Value::Object(o) = self.output() {
                    resp.extend(o);
                }
            }
            op.insert("response".into(), Value::Object(resp));
        }
        Value::Object(op)
    }

    /// JSONL results, one line per input line, in input order.
    fn results_jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for it in &self.items {
            let mut m = Map::new();
            match &it.outcome {
                Outcome::Ok { response, .. } => m.insert("response".into(), response.clone()),
                Outcome::Err { code, message } => {
                    m.insert("error".into(), json!({"code": code, "message": message}))
                }
            };
            if let Some(k) = &it.key {
                m.insert("key".into(), k.clone());
            }
            out.extend(serde_json::to_vec(&Value::Object(m)).unwrap_or_default());
            out.push(b'\n');
        }
        out
    }
}

impl Store {
    /// Moves every job to the state its age implies; completion bills and writes the results file.
    pub fn settle_batches(&mut self, cfg: &EmulatorConfig, now: DateTime<Utc>) {
        let mut finished = Vec::new();
        for job in self.batches.values_mut().filter(|j| !j.state.done()) {
            let (st, at) = state_after(now - job.create, cfg);
            if st != job.state {
                job.state = st;
                job.update = job.create + at;
                if st.done() {
                    job.end = Some(job.create + at);
                }
                if st == BatchState::Succeeded {
                    finished.push(job.id.clone());
                }
            }
        }
        for id in finished {
            let Some(job) = self.batches.get(&id) else {
                continue;
            };
            let acct = self.ledger.account(&job.owner.0);
            for it in &job.items {
                if let Outcome::Ok { usage, .. } = it.outcome {
                    acct.bill(Tier::Batch, usage);
                }
            }
            if job.input_file.is_some() {
                let file_id = format!("batch-{}", job.id);
                let created = job.end.unwrap_or(now);
                let entry = FileEntry {
                    owner: job.owner.clone(),
                    id: file_id.clone(),
                    display_name: None,
                    mime: "application/jsonl".into(),
                    data: Bytes::from(job.results_jsonl()),
                    create: created,
                    expire: created + delta(cfg.files.expiry),
                    source: Source::Generated,
                    base: job.base.clone(),
                };
                self.files.insert(file_id, entry);
            }
        }
    }
}

/// (JSONL key, inline metadata, the request or why it could not be read), in input order.
type RawItem = (Option<Value>, Option<Value>, Result<Value, GeminiError>);

fn item_error(e: &GeminiError) -> Outcome {
    Outcome::Err {
        code: grpc_code(e.code),
        message: e.message.clone(),
    }
}

/// Runs one request of a job (at submission; the result is revealed when the job completes).
fn run_item(
    state: &EmulatorState,
    store: &mut Store,
    caller: &Caller,
    job: (&str, Kind, &str),
    req: &Value,
) -> Outcome {
    let (model, kind, version) = job;
    let Some(obj) = req.as_object() else {
        return item_error(&GeminiError::invalid_argument(
            "Invalid JSON payload received. Request must be an object.",
        ));
    };
    let req_model = match get(obj, "model").and_then(Value::as_str) {
        Some(m) => {
            let full = if m.contains('/') {
                m.to_string()
            } else {
                format!("models/{m}")
            };
            let method = if kind == Kind::Generate {
                "generateContent"
            } else {
                "embedContent"
            };
            if let Err(e) = models::check(state.config(), &full, version, method) {
                return item_error(&e);
            }
            if full != model {
                return item_error(&GeminiError::invalid_argument(format!(
                    "Model used by the batch request ({full}) and the batch ({model}) has to be the same."
                )));
            }
            full
        }
        None => model.to_string(),
    };
    if state.chance(state.config().batch.item_error_rate) {
        return Outcome::Err {
            code: 4,
            message: "Deadline expired before operation could complete.".into(),
        };
    }
    match kind {
        Kind::Generate => {
            match prompt::build(store, state.clock().now(), caller, &req_model, obj) {
                Ok(p) => {
                    let out = generate::generate(&state.config().generation, &p);
                    Outcome::Ok {
                        response: out.response_json(),
                        usage: out.usage(),
                    }
                }
                Err(e) => item_error(&e),
            }
        }
        Kind::Embed => match models::embed_one(state.config(), &req_model, obj) {
            Ok(values) => {
                let prompt = get(obj, "content").map_or(0, |c| tokens::content_counts(c).total());
                Outcome::Ok {
                    response: json!({"embedding": values}),
                    usage: Usage {
                        prompt,
                        ..Usage::default()
                    },
                }
            }
            Err(e) => item_error(&e),
        },
    }
}

/// `POST /{v}/models/{m}:batchGenerateContent` and `:asyncBatchEmbedContent`.
pub fn create(
    state: &EmulatorState,
    caller: &Caller,
    version: &str,
    model: &str,
    kind: Kind,
    base: String,
    body: &Value,
) -> Result<Response, GeminiError> {
    let root = body.as_object().cloned().unwrap_or_default();
    let batch = get(&root, "batch")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or(root);
    let input = get(&batch, "inputConfig")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let priority = get(&batch, "priority")
        .and_then(|p| {
            p.as_i64()
                .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0);
    let now = state.clock().now();
    let mut store = state.store();
    store.settle_batches(state.config(), now);
    // (key, metadata, request) triples in input order.
    let mut raw: Vec<RawItem> = Vec::new();
    let file_name = get(&input, "fileName")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(f) = &file_name {
        let id = f.strip_prefix("files/").unwrap_or(f);
        let data = store.own_file(caller, id, now)?.data.clone();
        for line in String::from_utf8_lossy(&data)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(o)) if o.contains_key("request") => {
                    raw.push((o.get("key").cloned(), None, Ok(o["request"].clone())));
                }
                Ok(v) => raw.push((None, None, Ok(v))),
                Err(e) => raw.push((
                    None,
                    None,
                    Err(GeminiError::invalid_argument(format!(
                        "Invalid JSON payload received. {e}"
                    ))),
                )),
            }
        }
    } else {
        let reqs = get(&input, "requests")
            .and_then(Value::as_object)
            .and_then(|r| get(r, "requests"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in reqs {
            let o = r.as_object().cloned().unwrap_or_default();
            let req = get(&o, "request").cloned().ok_or_else(|| {
                GeminiError::invalid_argument("* InlinedRequest.request: request is required\n")
            });
            raw.push((None, get(&o, "metadata").cloned(), req));
        }
    }
    if raw.is_empty() {
        return Err(GeminiError::invalid_argument(
            "* BatchGenerateContentRequest.batch.input_config: the batch has no requests\n",
        ));
    }
    let items = raw
        .into_iter()
        .map(|(key, metadata, req)| {
            let outcome = match req {
                Ok(r) => run_item(state, &mut store, caller, (model, kind, version), &r),
                Err(e) => item_error(&e),
            };
            Item {
                key,
                metadata,
                outcome,
            }
        })
        .collect();
    let job = BatchJob {
        owner: caller.clone(),
        id: random_id(36),
        kind,
        model: model.to_string(),
        display_name: get(&batch, "displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        priority,
        input_file: file_name.map(|f| {
            if f.starts_with("files/") {
                f
            } else {
                format!("files/{f}")
            }
        }),
        base,
        create: now,
        update: now,
        end: None,
        state: BatchState::Pending,
        items,
    };
    let json = job.to_json(true);
    store.ledger.account(&caller.0).batch_jobs_submitted += 1;
    store.batches.insert(job.id.clone(), job);
    Ok(json_ok(&json))
}

fn not_found() -> GeminiError {
    GeminiError::not_found("Requested entity was not found.")
}

fn own<'a>(
    store: &'a mut Store,
    caller: &Caller,
    id: &str,
) -> Result<&'a mut BatchJob, GeminiError> {
    store
        .batches
        .get_mut(id)
        .filter(|j| &j.owner == caller)
        .ok_or_else(not_found)
}

pub fn get_one(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let mut store = state.store();
    store.settle_batches(state.config(), state.clock().now());
    Ok(json_ok(&own(&mut store, caller, id)?.to_json(true)))
}

pub fn list(state: &EmulatorState, caller: &Caller, q: &HashMap<String, String>) -> Response {
    let mut store = state.store();
    store.settle_batches(state.config(), state.clock().now());
    let mut mine: Vec<&BatchJob> = store
        .batches
        .values()
        .filter(|j| &j.owner == caller)
        .collect();
    mine.sort_by(|a, b| (b.create, &b.id).cmp(&(a.create, &a.id)));
    let (page, next) = paginate(
        mine.into_iter().map(|j| j.to_json(false)).collect(),
        q,
        50,
        1000,
    );
    let mut out = Map::new();
    if !page.is_empty() {
        out.insert("operations".into(), Value::Array(page));
    }
    if let Some(n) = next {
        out.insert("nextPageToken".into(), json!(n));
    }
    json_ok(&Value::Object(out))
}

pub fn cancel(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    store.settle_batches(state.config(), now);
    let job = own(&mut store, caller, id)?;
    if !job.state.done() {
        job.state = BatchState::Cancelled;
        job.update = now;
        job.end = Some(now);
    }
    Ok(json_ok(&json!({})))
}

pub fn delete(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let mut store = state.store();
    store.settle_batches(state.config(), state.clock().now());
    own(&mut store, caller, id)?;
    store.batches.remove(id);
    Ok(json_ok(&json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn state_machine_follows_delay_and_expiry() {
        let mut cfg = EmulatorConfig::default();
        cfg.batch.processing_delay = Duration::from_secs(10);
        let s = |secs| state_after(chrono::TimeDelta::seconds(secs), &cfg).0;
        assert_eq!(s(0), BatchState::Pending);
        assert_eq!(s(5), BatchState::Running);
        assert_eq!(s(10), BatchState::Succeeded);
        cfg.batch.processing_delay = Duration::from_secs(100 * 3600);
        let s = |secs| state_after(chrono::TimeDelta::seconds(secs), &cfg).0;
        assert_eq!(s(47 * 3600), BatchState::Pending);
        assert_eq!(s(48 * 3600), BatchState::Expired);
    }
}
