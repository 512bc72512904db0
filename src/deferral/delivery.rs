//! Handing results to clients: the operation resource (202 + `Location`, polling), the ordinary
//! GenerateContentResponse for clients that wait, and signed webhooks retried with backoff.

use super::Inner;
use super::marking::{TIER_HEADER, Tier};
use super::queue::{Item, ItemResult, ItemState};
use crate::caching::Annotation;
use crate::gemini::GeminiError;
use crate::telemetry;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const OPERATION_HEADER: &str = "x-gemgate-operation";

fn location(id: &str) -> String {
    format!("/gemgate/v1/operations/{id}")
}

/// The response with the gateway's annotation inside `usageMetadata.gemgate`.
fn annotated(response: &Value, id: &str) -> Value {
    let mut r = response.clone();
    if let Some(u) = r.get_mut("usageMetadata").and_then(Value::as_object_mut) {
        // The costs were added when the result was stored (see batch_cache::annotate).
        let g = u.entry("gemgate").or_insert_with(|| json!({}));
        if let Some(g) = g.as_object_mut() {
            g.insert("tier".into(), json!(Tier::Batch.as_str()));
            g.insert("discount".into(), json!(Tier::Batch.discount()));
            g.insert("operation".into(), json!(id));
        }
    }
    r
}

/// Adds `metadata.expectedCompletionTime` to an unfinished batch operation: when its job should
/// have its results, from the request's arrival, the flush age and the learned run time of the
/// model's jobs (`deferral.expected_job_run` until one has finished). An estimate, not a promise.
pub fn with_expected_completion(d: &Inner, mut op: Value, item: &Item) -> Value {
    if item.result.is_none() {
        let run = d.runs.expected_ms(&item.model, d.cfg.expected_job_run.as_millis() as i64);
        let at = item.created_ms + d.cfg.max_age.as_millis() as i64 + run;
        op["metadata"]["expectedCompletionTime"] = json!(crate::clock::rfc3339(at.max(d.clock.now_ms())));
    }
    op
}

/// The operation resource for an item. `metadata.state` is one of: `QUEUED` (on disk, not yet in
/// a job), `SUBMITTING` (in a job not yet accepted upstream), the upstream job's state without its
/// `BATCH_STATE_` prefix while it runs (`PENDING`, `RUNNING`, or `SUBMITTED` before the first
/// poll), then `SUCCEEDED`, `FAILED` or `CANCELLED` once it has its one result.
pub fn operation(item: &Item) -> Value {
    let state = match (&item.result, item.state) {
        (Some(ItemResult::Response(_)), _) => "SUCCEEDED".to_string(),
        (Some(ItemResult::Error(e)), _) if e["code"] == 499 => "CANCELLED".into(),
        (Some(ItemResult::Error(_)), _) => "FAILED".into(),
        (None, ItemState::Queued) => "QUEUED".into(),
        (None, _) if item.batch.is_none() => "SUBMITTING".into(),
        (None, _) => {
            item.batch_state.as_deref().and_then(|s| s.strip_prefix("BATCH_STATE_")).unwrap_or("SUBMITTED").to_string()
        }
    };
    let mut meta = json!({
        "@type": "type.googleapis.com/gemgate.v1.DeferredRequest",
        "tier": "batch",
        "state": state,
        "model": item.model,
        "createTime": crate::clock::rfc3339(item.created_ms),
    });
    if let Some(ms) = item.result_ms {
        meta["endTime"] = json!(crate::clock::rfc3339(ms));
    }
    if let Some(j) = &item.job_id {
        meta["job"] = json!(super::batch_api::display_name(j));
    }
    if let Some(b) = &item.batch {
        meta["batch"] = json!(b);
    }
    let mut op = json!({"name": format!("operations/{}", item.id), "metadata": meta, "done": item.result.is_some()});
    match &item.result {
        Some(ItemResult::Response(r)) => op["response"] = annotated(r, &item.id),
        Some(ItemResult::Error(e)) => op["error"] = e.clone(),
        None => {}
    }
    op
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut resp = (status, serde_json::to_vec_pretty(v).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    resp
}

fn tag(resp: &mut Response, id: &str) {
    resp.headers_mut().insert(TIER_HEADER, HeaderValue::from_static("batch"));
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(OPERATION_HEADER, v);
    }
}

/// `202 Accepted`, `Location`, and the operation as the body.
pub fn accepted(id: &str, item: Option<&Item>) -> Response {
    let body = match item {
        Some(i) => operation(i),
        None => json!({"name": format!("operations/{id}"), "done": false}),
    };
    let mut resp = json_response(StatusCode::ACCEPTED, &body);
    if let Ok(v) = HeaderValue::from_str(&location(id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    tag(&mut resp, id);
    resp
}

/// The finished item as the client would have had it from generateContent: the response (200)
/// or the error in Gemini's shape with its status.
pub fn result_response(item: &Item) -> Response {
    let mut resp = match &item.result {
        Some(ItemResult::Response(r)) => {
            let mut resp = json_response(StatusCode::OK, &annotated(r, &item.id));
            let usage = &r["usageMetadata"];
            let cached = crate::gemini::usage::cached_tokens(usage);
            Annotation::from_json(&usage["gemgate"]).set_headers(resp.headers_mut(), cached);
            resp
        }
        Some(ItemResult::Error(e)) => {
            let code = e["code"].as_u64().unwrap_or(500) as u16;
            let msg = e["message"].as_str().unwrap_or("batch item failed");
            GeminiError::new(code, msg).into_response()
        }
        None => return accepted(&item.id, Some(item)),
    };
    tag(&mut resp, &item.id);
    resp
}

/// HMAC-SHA256 (RFC 2104), hex.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK { Sha256::digest(key).to_vec() } else { key.to_vec() };
    k.resize(BLOCK, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    hex::encode(Sha256::new().chain_update(&opad).chain_update(inner).finalize())
}

/// Sends due webhooks; each failure is retried with doubling backoff up to the configured count.
/// Delivery is at least once: receivers deduplicate on `x-gemgate-operation`.
pub async fn webhooks(d: &Inner) {
    if d.cfg.webhook_url.is_empty() {
        return;
    }
    let now = d.clock.now_ms();
    let due = match d.queue.webhooks_due(now, 64).await {
        Ok(v) => v,
        Err(e) => return tracing::warn!(error = %e, "webhook scan failed"),
    };
    for item in due {
        // With replicas, one of them delivers a given result at a time.
        let key = format!("webhook:{}", item.id);
        super::claims::with_claim(d, &key, |_| deliver(d, item, now)).await;
    }
}

/// One webhook attempt for `item`, unless another replica attempted it since it was read.
async fn deliver(d: &Inner, item: Item, now: i64) {
    if d.queue.shared() {
        match d.queue.item(&item.id).await {
            Ok(Some(fresh)) if fresh.webhook_attempts == item.webhook_attempts => {}
            _ => return,
        }
    }
    let body = serde_json::to_vec(&operation(&item)).unwrap_or_default();
    let mut req = d
        .upstream
        .client()
        .post(&d.cfg.webhook_url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(OPERATION_HEADER, &item.id)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(secret) = &d.webhook_secret {
        req = req.header("x-gemgate-signature", format!("sha256={}", hmac_sha256_hex(secret, &body)));
    }
    let ok = matches!(req.body(body).send().await, Ok(r) if r.status().is_success());
    let attempts = item.webhook_attempts + 1;
    let next = (!ok && attempts < d.cfg.webhook_max_attempts).then(|| {
        let backoff = d.cfg.webhook_initial_backoff.as_millis() as i64;
        now + backoff.saturating_mul(1i64 << attempts.min(20))
    });
    let outcome = if ok {
        "delivered"
    } else if next.is_some() {
        "retry"
    } else {
        "gave_up"
    };
    metrics::counter!(telemetry::DEFER_WEBHOOKS, "outcome" => outcome).increment(1);
    if let Err(e) = d.queue.webhook_attempted(&item.id, ok, next).await {
        tracing::warn!(error = %e, "recording a webhook attempt failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
