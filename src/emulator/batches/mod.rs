//! Batch API: batchGenerateContent / asyncBatchEmbedContent as long-running Operations with the
//! BATCH_STATE_* machine evaluated lazily on the emulator clock, inline or JSONL-file input,
//! results inline (both `metadata.output` and `response`) or in `files/batch-{id}`.
//! This file holds the job model, its Operation JSON and the lazy state machine.

mod ops;
mod submit;

pub use ops::{cancel, delete, get_one, list};
pub use submit::create;

use crate::emulator::clock::delta;
use crate::emulator::config::EmulatorConfig;
use crate::emulator::files::{FileEntry, Source};
use crate::emulator::http::timestamp;
use crate::emulator::ledger::Tier;
pub use crate::emulator::records::{BatchJob, BatchState, Item, Kind, Outcome};
use crate::emulator::state::Store;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

const TYPE_PREFIX: &str = "type.googleapis.com/google.ai.generativelanguage.v1main.";

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
        matches!(self, BatchState::Succeeded | BatchState::Cancelled | BatchState::Expired)
    }
}

/// Where a job's state is after `elapsed` of virtual time, given its delay and expiry.
/// Returns the state and the offset from creation at which it was entered.
pub fn state_after(elapsed: chrono::TimeDelta, cfg: &EmulatorConfig) -> (BatchState, chrono::TimeDelta) {
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
                            Outcome::Ok { response, .. } => m.insert("response".into(), response.clone()),
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
        let ok = self.items.iter().filter(|i| matches!(i.outcome, Outcome::Ok { .. })).count();
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
        let show_output = self.state == BatchState::Succeeded && (with_inline || self.input_file.is_some());
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
                Outcome::Err { code, message } => m.insert("error".into(), json!({"code": code, "message": message})),
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
                    acct.generation_usd += super::ledger::list_price_usd(&job.model, Tier::Batch, usage, now);
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
