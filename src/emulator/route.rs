//! The one fallback handler: parses the Gemini path (axum cannot match `:method` suffixes),
//! authenticates, applies faults, then dispatches on (door, collection, id, method, HTTP method).

use super::admin;
use super::auth;
use super::batches::{self, Kind};
use super::caches;
use super::faults;
use super::files;
use super::generate_api::{self, Call};
use super::http::{JSON_CONTENT_TYPE, parse_query, read_json};
use super::models;
use super::state::EmulatorState;
use crate::gemini::GeminiError;
use crate::gemini::path::{self, Door};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::Method;

fn method_not_found() -> GeminiError {
    GeminiError::not_found("Method not found.")
}

/// Entry point for every request.
pub async fn dispatch(State(state): State<EmulatorState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path == "/emulator" || path.starts_with("/emulator/") {
        return admin::handle(&state, &parts.method, &path, parts.uri.query());
    }
    let query = parse_query(parts.uri.query());
    let Some(api) = path::parse(&path) else {
        return method_not_found().into_response();
    };
    let upload_id = (api.door == Door::Upload)
        .then(|| query.get("upload_id").cloned())
        .flatten();
    let caller = match upload_id {
        // Chunk uploads carry no API key (Python SDK): the upload_id authorises them.
        Some(_) => None,
        None => match auth::authenticate(&parts.headers, &query, &state.config().auth.keys) {
            Ok(c) => Some(c),
            Err(e) => return e.into_response(),
        },
    };
    let plan = match faults::plan(&state, &parts.headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    if let Some(e) = plan.error.clone() {
        return e.into_response();
    }
    let (Some(caller), None) = (caller, upload_id.as_deref()) else {
        let id = upload_id.unwrap_or_default();
        return files::chunk(&state, &id, &parts.headers, body).await;
    };
    let compact = query.get("prettyPrint").is_some_and(|v| v == "false") && !api.is_stream();
    let resp = route(&state, &caller, &api, &parts, &query, plan, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if compact {
        compact_json(resp).await
    } else {
        resp
    }
}

/// `?prettyPrint=false`: the same JSON without whitespace.
async fn compact_json(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == JSON_CONTENT_TYPE);
    if !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let out = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec()),
        Err(_) => bytes.to_vec(),
    };
    let mut resp = Response::from_parts(parts, Body::from(out));
    resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    resp
}

async fn route(
    state: &EmulatorState,
    caller: &auth::Caller,
    api: &path::ApiPath<'_>,
    parts: &http::request::Parts,
    query: &std::collections::HashMap<String, String>,
    plan: faults::Plan,
    body: Body,
) -> Result<Response, GeminiError> {
    let m = &parts.method;
    let v = api.version;
    let origin = files::origin(&parts.headers);
    if plan.drop
        && !matches!(
            api.method,
            Some("generateContent" | "streamGenerateContent")
        )
    {
        return Ok(super::stream::dropped());
    }
    match (api.door, api.collection, api.id, api.method) {
        (Door::Upload, "files", None, None) if m == Method::POST => {
            files::start(state, caller, v, &parts.headers, &read_json(body).await?)
        }
        (Door::Download, "files", Some(id), Some("download"))
        | (Door::Api, "files", Some(id), Some("download"))
            if m == Method::GET =>
        {
            files::download(state, caller, id)
        }
        (Door::Api, "models", None, None) if m == Method::GET => {
            Ok(models::list(state.config(), query))
        }
        (Door::Api, "models", Some(id), None) if m == Method::GET => {
            models::get_one(state.config(), id, v)
        }
        (Door::Api, "models" | "tunedModels", Some(_), Some(method)) if m == Method::POST => {
            let model = api.model_name().unwrap_or_default();
            models::check(state.config(), &model, v, method)?;
            let body = read_json(body).await?;
            match method {
                "generateContent" | "streamGenerateContent" => {
                    let stream = method == "streamGenerateContent";
                    let call = Call {
                        state,
                        caller,
                        model,
                        stream,
                        headers: &parts.headers,
                        query,
                        plan,
                    };
                    generate_api::generate(call, &body)
                }
                "countTokens" => generate_api::count_tokens(state, caller, &model, &body),
                "embedContent" => models::embed(state.config(), &model, &body),
                "batchEmbedContents" => models::batch_embed(state.config(), &model, &body),
                "batchGenerateContent" => batches::create(
                    state,
                    caller,
                    v,
                    &model,
                    Kind::Generate,
                    format!("{origin}/{v}"),
                    &body,
                ),
                "asyncBatchEmbedContent" => batches::create(
                    state,
                    caller,
                    v,
                    &model,
                    Kind::Embed,
                    format!("{origin}/{v}"),
                    &body,
                ),
                _ => Err(method_not_found()),
            }
        }
        (Door::Api, "cachedContents", None, None) if m == Method::POST => {
            caches::create(state, caller, v, &read_json(body).await?)
        }
        (Door::Api, "cachedContents", None, None) if m == Method::GET => {
            caches::list(state, caller, query)
        }
        (Door::Api, "cachedContents", Some(id), None) => match *m {
            Method::GET => caches::get_one(state, caller, id),
            Method::PATCH => caches::patch(state, caller, id, &read_json(body).await?),
            Method::DELETE => caches::delete(state, caller, id),
            _ => Err(method_not_found()),
        },
        (Door::Api, "batches", None, None) if m == Method::GET => {
            Ok(batches::list(state, caller, query))
        }
        (Door::Api, "batches", Some(id), None) => match *m {
            Method::GET => batches::get_one(state, caller, id),
            Method::DELETE => batches::delete(state, caller, id),
            _ => Err(method_not_found()),
        },
        (Door::Api, "batches", Some(id), Some("cancel")) if m == Method::POST => {
            batches::cancel(state, caller, id)
        }
        (Door::Api, "batches", Some(id), Some("delete")) => batches::delete(state, caller, id),
        (Door::Api, "files", None, None) if m == Method::GET => {
            Ok(files::list(state, caller, query))
        }
        (Door::Api, "files", Some(id), None) => match *m {
            Method::GET => files::get_one(state, caller, id),
            Method::DELETE => files::delete(state, caller, id),
            _ => Err(method_not_found()),
        },
        _ => Err(method_not_found()),
    }
}
