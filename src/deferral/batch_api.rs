//! The gateway's own calls to the Batch and Files APIs: create (inline or JSONL file through the
//! resumable upload), get, list (for reconciliation by `displayName`), cancel, download results.

use super::credentials::Credential;
use super::queue::ItemResult;
use crate::gemini::batch;
use crate::proxy::{Upstream, UpstreamFailure};
use serde_json::{Value, json};
use std::time::Duration;

/// What a job's requests get when its submission failed for good.
pub fn failed_submission(e: &UpstreamFailure) -> ItemResult {
    match e {
        UpstreamFailure::Status { status, message } => ItemResult::error(*status, message.clone()),
        other => ItemResult::error(502, format!("gemgate: batch submission failed: {}", other.detail())),
    }
}

/// Handle for batch calls with one tenant's credential.
pub struct BatchApi<'a> {
    pub upstream: &'a Upstream,
    pub cred: &'a Credential,
    pub version: &'a str,
    pub timeout: Duration,
}

/// The `displayName` that carries the gateway's own job id.
pub fn display_name(job_id: &str) -> String {
    format!("gemgate-{job_id}")
}

impl BatchApi<'_> {
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, UpstreamFailure> {
        let url = format!("{}{path}", self.upstream.base());
        let mut req = self
            .upstream
            .client()
            .request(method, url)
            .header(self.cred.name.clone(), self.cred.value.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(self.timeout);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(UpstreamFailure::transport)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            let status = resp.status().as_u16();
            Err(UpstreamFailure::from_answer(status, &resp.bytes().await.unwrap_or_default()))
        }
    }

    pub(super) async fn json(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, UpstreamFailure> {
        let resp = self.call(method, path, body).await?;
        let bytes = resp.bytes().await.map_err(UpstreamFailure::transport)?;
        if bytes.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&bytes).map_err(|e| UpstreamFailure::Transport(format!("bad JSON: {e}")))
    }

    /// Creates the job; returns the upstream `batches/…` name. `inputs` are `(key, body)`.
    pub async fn create(
        &self,
        model: &str,
        job_id: &str,
        inputs: &[(String, Vec<u8>)],
        inline_max: u64,
    ) -> Result<String, UpstreamFailure> {
        let total: usize = inputs.iter().map(|(_, b)| b.len() + 64).sum();
        let input_config = if (total as u64) < inline_max {
            batch::inline_input(inputs)
        } else {
            batch::file_input(&self.upload(&display_name(job_id), batch::jsonl_input(inputs)).await?)
        };
        let body = batch::create_body(&display_name(job_id), input_config);
        let path = format!("/{}/{model}:batchGenerateContent", self.version);
        let op = self.json(http::Method::POST, &path, serde_json::to_vec(&body).ok()).await?;
        op["name"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| UpstreamFailure::Transport("create answered without a name".into()))
    }

    /// Resumable upload (start, then one upload+finalize chunk); returns `files/…`.
    async fn upload(&self, display: &str, bytes: Vec<u8>) -> Result<String, UpstreamFailure> {
        let url = format!("{}/upload/{}/files", self.upstream.base(), self.version);
        let meta = json!({"file": {"displayName": display, "mimeType": "application/jsonl"}});
        let start = self
            .upstream
            .client()
            .post(url)
            .header(self.cred.name.clone(), self.cred.value.clone())
            .header("x-goog-upload-protocol", "resumable")
            .header("x-goog-upload-command", "start")
            .header("x-goog-upload-header-content-length", bytes.len())
            .header("x-goog-upload-header-content-type", "application/jsonl")
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(meta.to_string())
            .send()
            .await
            .map_err(UpstreamFailure::transport)?;
        if !start.status().is_success() {
            let s = start.status().as_u16();
            return Err(UpstreamFailure::from_answer(s, &start.bytes().await.unwrap_or_default()));
        }
        let upload_url = start
            .headers()
            .get("x-goog-upload-url")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| UpstreamFailure::Transport("no x-goog-upload-url".into()))?
            .to_string();
        let done = self
            .upstream
            .client()
            .post(upload_url)
            .header(self.cred.name.clone(), self.cred.value.clone())
            .header("x-goog-upload-command", "upload, finalize")
            .header("x-goog-upload-offset", "0")
            .timeout(self.timeout)
            .body(bytes)
            .send()
            .await
            .map_err(UpstreamFailure::transport)?;
        let status = done.status().as_u16();
        let text = done.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(UpstreamFailure::from_answer(status, text.as_bytes()));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        v["file"]["name"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| UpstreamFailure::Transport("upload finalized without a file name".into()))
    }

    pub async fn get(&self, batch: &str) -> Result<Value, UpstreamFailure> {
        self.json(http::Method::GET, &format!("/{}/{batch}", self.version), None).await
    }

    pub async fn cancel(&self, batch: &str) -> Result<(), UpstreamFailure> {
        let path = format!("/{}/{batch}:cancel", self.version);
        self.json(http::Method::POST, &path, None).await.map(|_| ())
    }

    /// Finds the upstream job whose `displayName` is `gemgate-{job_id}`, paging through the list.
    pub async fn find(&self, job_id: &str) -> Result<Option<String>, UpstreamFailure> {
        let want = display_name(job_id);
        let mut token = String::new();
        for _ in 0..1000 {
            let mut path = format!("/{}/batches?pageSize=100", self.version);
            if !token.is_empty() {
                path.push_str("&pageToken=");
                path.push_str(&url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>());
            }
            let page = self.json(http::Method::GET, &path, None).await?;
            for op in page["operations"].as_array().into_iter().flatten() {
                let name = op["metadata"]["displayName"].as_str().or(op["metadata"]["display_name"].as_str());
                if name == Some(want.as_str()) {
                    return Ok(op["name"].as_str().map(str::to_string));
                }
            }
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The finished job's per-item results, matched by key: inline responses or the JSONL file.
    pub async fn results(&self, op: &Value) -> Result<Vec<(String, ItemResult)>, UpstreamFailure> {
        let file = match batch::output_of(op) {
            batch::Output::Inline(items) => return Ok(item_results(items)),
            batch::Output::File(f) => f,
            batch::Output::None => return Ok(Vec::new()),
        };
        let path = format!("/{}/{file}:download?alt=media", self.version);
        let bytes =
            self.call(http::Method::GET, &path, None).await?.bytes().await.map_err(UpstreamFailure::transport)?;
        Ok(item_results(batch::jsonl_output(&bytes)))
    }
}

/// The queue's results for the job's output items.
fn item_results(items: Vec<(String, batch::ItemOutput)>) -> Vec<(String, ItemResult)> {
    let result = |o| match o {
        batch::ItemOutput::Response(r) => ItemResult::Response(r),
        batch::ItemOutput::Error { status, message } => ItemResult::error(status, message),
    };
    items.into_iter().map(|(k, o)| (k, result(o))).collect()
}
