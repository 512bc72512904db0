//! Batch submission: reads inline or JSONL-file requests, runs each through the emulated model
//! at submission (results are revealed when the job completes) and stores the job.

use super::{BatchJob, BatchState, Item, Kind, Outcome};
use crate::emulator::auth::Caller;
use crate::emulator::generate;
use crate::emulator::http::{json_ok, random_id};
use crate::emulator::ledger::Usage;
use crate::emulator::models;
use crate::emulator::prompt;
use crate::emulator::state::{EmulatorState, Store};
use crate::emulator::tokens;
use crate::gemini::GeminiError;
use crate::gemini::canonical::get;
use crate::gemini::error::grpc_code;
use axum::response::Response;
use serde_json::{Value, json};

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
