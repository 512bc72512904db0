//! Small HTTP helpers shared by the handlers: pretty JSON responses, query parsing, body reading,
//! ids, timestamps, proto Duration strings and page tokens.

use crate::gemini::GeminiError;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rand::Rng;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=UTF-8";

/// 200 with a pretty-printed JSON body, as Google sends non-streaming responses.
pub fn json_ok(v: &Value) -> Response {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

/// Query parameters (last value wins).
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Reads a JSON request body. An empty body is `{}`; anything but an object is rejected.
pub async fn read_json(body: Body) -> Result<Value, GeminiError> {
    let bytes = axum::body::to_bytes(body, 512 * 1024 * 1024)
        .await
        .map_err(|e| GeminiError::invalid_argument(format!("Failed to read request body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(GeminiError::invalid_argument(
            "Invalid JSON payload received. Expected an object at the top level.",
        )),
        Err(e) => Err(GeminiError::invalid_argument(format!(
            "Invalid JSON payload received. {e}"
        ))),
    }
}

/// A random id of `len` lowercase letters and digits.
pub fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// RFC 3339 with nanoseconds and `Z`, as Google's timestamps.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Parses a proto Duration string (`"600s"`, `"3.5s"`).
pub fn parse_proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Parses an RFC 3339 timestamp with any offset (`Z` or `+00:00`).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Page size from `pageSize`/`page_size`, clamped to `1..=max`, `default` when absent or 0.
pub fn page_size(q: &HashMap<String, String>, default: usize, max: usize) -> usize {
    q.get("pageSize")
        .or_else(|| q.get("page_size"))
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
        .min(max)
}

/// Returns one page of `items` and the token of the next page, if any.
pub fn paginate<T>(
    items: Vec<T>,
    q: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> (Vec<T>, Option<String>) {
    let size = page_size(q, default, max);
    let offset = q
        .get("pageToken")
        .or_else(|| q.get("page_token"))
        .and_then(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix("offset:")
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(0);
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let next = (offset + size < total).then(|| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{}", offset + size))
    });
    (page, next)
}

/// Header value as a str, if present and valid.
pub fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_durations_and_timestamps_parse() {
        assert_eq!(parse_proto_duration("600s"), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_proto_duration("3.5s"),
            Some(Duration::from_millis(3500))
        );
        assert_eq!(parse_proto_duration("10m"), None);
        let a = parse_timestamp("2030-01-01T00:00:00+00:00").unwrap();
        assert_eq!(a, parse_timestamp("2030-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn pagination_walks_all_items() {
        let mut q = HashMap::new();
        q.insert("pageSize".to_string(), "2".to_string());
        let (p1, next) = paginate(vec![1, 2, 3], &q, 10, 100);
        assert_eq!(p1, vec![1, 2]);
        q.insert("pageToken".to_string(), next.unwrap());
        let (p2, next) = paginate(vec![1, 2, 3], &q, 10, 100);
        assert_eq!((p2, next), (vec![3], None));
    }
}
