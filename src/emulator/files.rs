//! Files API: the resumable upload handshake (start, chunks, finalize; chunks are authorised by
//! their upload_id, not an API key), get/list/delete, and download of generated files.

use super::auth::Caller;
use super::clock::delta;
use super::http::{header_str, json_ok, paginate, random_id, timestamp};
pub use super::records::{FileEntry, Source, UploadSession};
use super::state::{EmulatorState, Store};
use crate::gemini::GeminiError;
use crate::gemini::canonical::get;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub fn missing(id: &str) -> GeminiError {
    GeminiError::permission_denied(format!("You do not have permission to access the File {id} or it may not exist."))
}

impl FileEntry {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(format!("files/{}", self.id)));
        if let Some(d) = &self.display_name {
            m.insert("displayName".into(), json!(d));
        }
        m.insert("mimeType".into(), json!(self.mime));
        m.insert("sizeBytes".into(), json!(self.data.len().to_string()));
        m.insert("createTime".into(), json!(timestamp(self.create)));
        m.insert("updateTime".into(), json!(timestamp(self.create)));
        m.insert("expirationTime".into(), json!(timestamp(self.expire)));
        let hex = hex::encode(Sha256::digest(&self.data));
        m.insert("sha256Hash".into(), json!(base64::engine::general_purpose::STANDARD.encode(hex)));
        m.insert("uri".into(), json!(format!("{}/files/{}", self.base, self.id)));
        if self.source == Source::Generated {
            m.insert("downloadUri".into(), json!(format!("{}/files/{}:download?alt=media", self.base, self.id)));
        }
        m.insert("state".into(), json!("ACTIVE"));
        m.insert("source".into(), json!(if self.source == Source::Generated { "GENERATED" } else { "UPLOADED" }));
        Value::Object(m)
    }
}

impl Store {
    pub fn sweep_files(&mut self, now: DateTime<Utc>) {
        self.files.retain(|_, f| f.expire > now);
    }

    /// The caller's file `id` (without `files/`), or the 403 Google gives for missing files.
    pub fn own_file(&mut self, caller: &Caller, id: &str, now: DateTime<Utc>) -> Result<&FileEntry, GeminiError> {
        self.sweep_files(now);
        self.files.get(id).filter(|f| &f.owner == caller).ok_or_else(|| missing(id))
    }
}

/// `http://{Host}` of the request, so upload URLs point back at this emulator.
pub fn origin(headers: &HeaderMap) -> String {
    format!("http://{}", header_str(headers, "host").unwrap_or("localhost"))
}

fn valid_file_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

fn with_status(mut resp: Response, status: &'static str) -> Response {
    resp.headers_mut().insert("x-goog-upload-status", HeaderValue::from_static(status));
    resp
}

/// `POST /upload/{v}/files` with `X-Goog-Upload-Command: start`.
pub fn start(
    state: &EmulatorState,
    caller: &Caller,
    version: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Result<Response, GeminiError> {
    let protocol = header_str(headers, "x-goog-upload-protocol").unwrap_or("");
    let command = header_str(headers, "x-goog-upload-command").unwrap_or("");
    if !protocol.eq_ignore_ascii_case("resumable") || !command.eq_ignore_ascii_case("start") {
        return Err(GeminiError::invalid_argument(
            "The emulator supports resumable uploads only (X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Command: start).",
        ));
    }
    let obj = body.as_object().cloned().unwrap_or_default();
    let file = get(&obj, "file").and_then(Value::as_object).cloned().unwrap_or_default();
    let name = get(&file, "name").and_then(Value::as_str).map(|n| n.strip_prefix("files/").unwrap_or(n).to_string());
    if let Some(n) = &name {
        if !valid_file_id(n) {
            return Err(GeminiError::invalid_argument(format!(
                "Invalid file name files/{n}: up to 40 characters of [a-z0-9-], not starting or ending with '-'."
            )));
        }
    }
    let mime = get(&file, "mimeType")
        .and_then(Value::as_str)
        .or_else(|| header_str(headers, "x-goog-upload-header-content-type"))
        .unwrap_or("application/octet-stream")
        .to_string();
    let upload_id = random_id(48);
    let base = origin(headers);
    let session = UploadSession {
        owner: caller.clone(),
        base: format!("{base}/{version}"),
        name,
        display_name: get(&file, "displayName").and_then(Value::as_str).map(str::to_string),
        mime,
        data: Vec::new(),
    };
    state.store().uploads.insert(upload_id.clone(), session);
    let url = format!("{base}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable");
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert("x-goog-upload-url", HeaderValue::from_str(&url).map_err(|e| GeminiError::new(500, e.to_string()))?);
    h.insert("x-goog-upload-chunk-granularity", HeaderValue::from_static("8388608"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(with_status(resp, "active"))
}

/// A chunk (`upload`), the last chunk (`upload, finalize`), `finalize` alone or `query`.
pub async fn chunk(state: &EmulatorState, upload_id: &str, headers: &HeaderMap, body: Body) -> Response {
    match chunk_inner(state, upload_id, headers, body).await {
        Ok(r) => r,
        Err(e) => with_status(e.into_response(), "active"),
    }
}

async fn chunk_inner(
    state: &EmulatorState,
    upload_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, GeminiError> {
    let command = header_str(headers, "x-goog-upload-command").unwrap_or("upload").to_ascii_lowercase();
    let parts: Vec<&str> = command.split(',').map(str::trim).collect();
    let max = state.config().files.max_bytes;
    if !state.store().uploads.contains_key(upload_id) {
        return Err(GeminiError::not_found("Upload session not found or already finalized."));
    }
    if parts.contains(&"query") {
        let received = state.store().uploads.get(upload_id).map_or(0, |s| s.data.len());
        let mut resp = StatusCode::OK.into_response();
        if let Ok(v) = HeaderValue::from_str(&received.to_string()) {
            resp.headers_mut().insert("x-goog-upload-size-received", v);
        }
        return Ok(with_status(resp, "active"));
    }
    let mut received = Vec::new();
    if parts.contains(&"upload") {
        let mut s = body.into_data_stream();
        while let Some(piece) = s.next().await {
            let piece = piece.map_err(|e| GeminiError::invalid_argument(format!("Failed to read upload body: {e}")))?;
            received.extend_from_slice(&piece);
            if received.len() as u64 > max {
                return Err(GeminiError::invalid_argument(format!("File exceeds the limit of {max} bytes.")));
            }
        }
    }
    let offset = header_str(headers, "x-goog-upload-offset").and_then(|s| s.trim().parse::<usize>().ok());
    let now = state.clock().now();
    let mut store = state.store();
    let session = store
        .uploads
        .get_mut(upload_id)
        .ok_or_else(|| GeminiError::not_found("Upload session not found or already finalized."))?;
    if let Some(off) = offset {
        if parts.contains(&"upload") && off != session.data.len() {
            return Err(GeminiError::invalid_argument(format!(
                "Invalid X-Goog-Upload-Offset {off}: {} bytes received so far.",
                session.data.len()
            )));
        }
    }
    session.data.extend_from_slice(&received);
    if !parts.contains(&"finalize") {
        return Ok(with_status(StatusCode::OK.into_response(), "active"));
    }
    let Some(session) = store.uploads.remove(upload_id) else {
        return Err(GeminiError::not_found("Upload session not found or already finalized."));
    };
    let id = session.name.clone().unwrap_or_else(|| random_id(12));
    if store.files.contains_key(&id) {
        return Err(GeminiError::new(409, format!("File files/{id} already exists.")));
    }
    let entry = FileEntry {
        owner: session.owner,
        id: id.clone(),
        display_name: session.display_name,
        mime: session.mime,
        data: Bytes::from(session.data),
        create: now,
        expire: now + delta(state.config().files.expiry),
        source: Source::Uploaded,
        base: session.base,
    };
    let json = json!({"file": entry.to_json()});
    store.files.insert(id, entry);
    Ok(with_status(json_ok(&json), "final"))
}

pub fn get_one(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    Ok(json_ok(&store.own_file(caller, id, now)?.to_json()))
}

pub fn list(state: &EmulatorState, caller: &Caller, q: &HashMap<String, String>) -> Response {
    let now = state.clock().now();
    let mut store = state.store();
    store.sweep_files(now);
    let mut mine: Vec<&FileEntry> = store.files.values().filter(|f| &f.owner == caller).collect();
    mine.sort_by(|a, b| (b.create, &b.id).cmp(&(a.create, &a.id)));
    let (page, next) = paginate(mine.into_iter().map(FileEntry::to_json).collect(), q, 10, 100);
    let mut out = Map::new();
    if !page.is_empty() {
        out.insert("files".into(), Value::Array(page));
    }
    if let Some(n) = next {
        out.insert("nextPageToken".into(), json!(n));
    }
    json_ok(&Value::Object(out))
}

pub fn delete(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    store.own_file(caller, id, now)?;
    store.files.remove(id);
    Ok(json_ok(&json!({})))
}

/// Raw bytes of a generated file; uploaded files cannot be downloaded.
pub fn download(state: &EmulatorState, caller: &Caller, id: &str) -> Result<Response, GeminiError> {
    let now = state.clock().now();
    let mut store = state.store();
    let f = store.own_file(caller, id, now)?;
    if f.source != Source::Generated {
        return Err(GeminiError::invalid_argument(format!(
            "Cannot download files/{id}: only generated files (such as batch outputs) can be downloaded."
        )));
    }
    let mut resp = (StatusCode::OK, f.data.clone()).into_response();
    if let Ok(v) = HeaderValue::from_str(&f.mime) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
