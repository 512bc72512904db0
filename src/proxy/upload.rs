//! Resumable uploads. The upstream answers an upload start with `X-Goog-Upload-URL`, and the
//! Python SDK follows that URL exactly, so the gateway rewrites its scheme and host to its own
//! (keeping path and query), and forwards the chunk uploads that come back to the original place.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

pub const UPLOAD_URL: &str = "x-goog-upload-url";
// Header names built at compile time: a `&str` name is parsed again on every look-up.
static UPLOAD_URL_NAME: HeaderName = HeaderName::from_static(UPLOAD_URL);
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Where a client reached the gateway, as its request said (`Host`, `X-Forwarded-Host`,
/// `X-Forwarded-Proto`): kept aside so the request's own header map can go upstream as it is.
#[derive(Debug, Default)]
pub struct ClientOrigin {
    host: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
    forwarded_proto: Option<HeaderValue>,
}

impl ClientOrigin {
    pub fn of(req: &HeaderMap) -> Self {
        Self {
            host: req.get(http::header::HOST).cloned(),
            forwarded_host: req.get(&X_FORWARDED_HOST).cloned(),
            forwarded_proto: req.get(&X_FORWARDED_PROTO).cloned(),
        }
    }
}

/// Rewrites upload URLs and remembers where chunks must go when that is not the upstream base.
#[derive(Clone)]
pub struct UploadRoutes {
    public_url: Option<String>,
    /// upload_id → original origin, for upload URLs that point somewhere other than the base.
    origins: moka::sync::Cache<String, String>,
}

impl UploadRoutes {
    pub fn new(public_url: &str) -> Self {
        let public_url = (!public_url.is_empty()).then(|| public_url.trim_end_matches('/').to_string());
        let origins =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(7 * 24 * 3600)).build();
        Self { public_url, origins }
    }

    /// The base URL the client reached the gateway at.
    fn gateway_base(&self, req: &ClientOrigin) -> Option<String> {
        if let Some(p) = &self.public_url {
            return Some(p.clone());
        }
        let get = |v: &Option<HeaderValue>| {
            v.as_ref().and_then(|v| v.to_str().ok()).map(|s| s.split(',').next().unwrap_or("").trim().to_string())
        };
        let host = get(&req.forwarded_host).filter(|h| !h.is_empty()).or_else(|| get(&req.host))?;
        let proto = get(&req.forwarded_proto).filter(|p| p == "https").unwrap_or_else(|| "http".into());
        Some(format!("{proto}://{host}"))
    }

    /// If the response carries an upload URL, points it at the gateway.
    pub fn rewrite(&self, req: &ClientOrigin, resp: &mut HeaderMap, upstream_base: &str) {
        let Some(original) = resp.get(&UPLOAD_URL_NAME).and_then(|v| v.to_str().ok()).map(str::to_string) else {
            return;
        };
        let Some(gateway) = self.gateway_base(req) else {
            return;
        };
        let Ok(url) = url::Url::parse(&original) else {
            return;
        };
        let relative = match original.strip_prefix(upstream_base) {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => {
                let origin = url.origin().ascii_serialization();
                if let Some(id) = upload_id(url.query().unwrap_or("")) {
                    self.origins.insert(id, origin);
                }
                match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_string(),
                }
            }
        };
        if let Ok(v) = HeaderValue::from_str(&format!("{gateway}{relative}")) {
            resp.insert(UPLOAD_URL, v);
        }
    }

    /// Where a chunk upload with this query must go, when not to the upstream base.
    pub fn origin_for(&self, query: &str) -> Option<String> {
        self.origins.get(&upload_id(query)?)
    }
}

fn upload_id(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "upload_id").map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn rewrites_scheme_and_host_and_keeps_path_and_query() {
        let routes = UploadRoutes::new("");
        let req = headers(&[("host", "127.0.0.1:9000")]);
        let mut resp = headers(&[(
            UPLOAD_URL,
            "http://127.0.0.1:7000/upload/v1beta/files?upload_id=abc&upload_protocol=resumable",
        )]);
        routes.rewrite(&ClientOrigin::of(&req), &mut resp, "http://127.0.0.1:7000");
        assert_eq!(
            resp[UPLOAD_URL],
            "http://127.0.0.1:9000/upload/v1beta/files?upload_id=abc&upload_protocol=resumable"
        );
        assert_eq!(routes.origin_for("upload_id=abc"), None);
    }

    #[test]
    fn remembers_foreign_upload_hosts() {
        let routes = UploadRoutes::new("https://gw.example.com");
        let mut resp = headers(&[(UPLOAD_URL, "https://uploads.example.net/upload/v1/files?upload_id=z9")]);
        routes.rewrite(&ClientOrigin::default(), &mut resp, "https://generativelanguage.googleapis.com");
        assert_eq!(resp[UPLOAD_URL], "https://gw.example.com/upload/v1/files?upload_id=z9");
        assert_eq!(
            routes.origin_for("upload_protocol=resumable&upload_id=z9").as_deref(),
            Some("https://uploads.example.net")
        );
    }
}
