//! `server.admin_token`: when set, the gateway's own endpoints (everything under `/gemgate/` and
//! `/metrics`) require `Authorization: Bearer <token>`. Deferred operations are the exception:
//! each tenant reads its own with its own API key, as before, and never sees another's. The
//! `/gemgate/ui` page's static files are let through too: a browser cannot send a header when it
//! navigates, and the page holds no data; its script sends the token on every call it makes. The check
//! itself runs in the layer stack (`layers::AdminToken`), which also keeps the token from ever
//! leaving: the gateway's own paths are never forwarded, and on every other path a header that
//! carries the token is removed before the request can go upstream.

use crate::config::Config;
use http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The paths the gateway answers itself (besides everything under `/gemgate/`): never forwarded.
const OWNED: [&str; 4] = ["/gemgate", "/metrics", "/healthz", "/readyz"];

/// Whether the gateway owns `path`: one of [`OWNED`] or below it. An owned path the router does
/// not know is answered 404 by the gateway, never sent upstream.
pub fn is_owned_path(path: &str) -> bool {
    OWNED.iter().any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Removes every header of a request bound upstream that carries the admin token as a credential
/// (`Authorization: Bearer <token>`, or the token as `x-goog-api-key`); true if one was.
pub fn strip_from_headers(headers: &mut HeaderMap, token: &str) -> bool {
    let bearer = headers.get(header::AUTHORIZATION).is_some_and(|v| authorized(Some(v.as_bytes()), token));
    let as_key = headers.get(API_KEY).is_some_and(|v| bool::from(v.as_bytes().ct_eq(token.as_bytes())));
    if bearer {
        headers.remove(header::AUTHORIZATION);
    }
    if as_key {
        headers.remove(API_KEY);
    }
    bearer || as_key
}

/// Whether a query string carries the admin token as `key=`.
pub fn in_query(query: Option<&str>, token: &str) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "key" && bool::from(v.as_bytes().ct_eq(token.as_bytes())))
    })
}

const API_KEY: &str = "x-goog-api-key";

/// The tenant-facing part of `/gemgate/`, authenticated by the tenant's own key.
const TENANT_PATHS: &str = "/gemgate/v1/operations";

/// Whether a path is an admin endpoint the token protects.
pub fn is_admin_path(path: &str) -> bool {
    let tenant = path.strip_prefix(TENANT_PATHS).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    (path == "/metrics" || path.starts_with("/gemgate/")) && !tenant
}

/// Whether `authorization` carries the admin token, compared in constant time.
pub fn authorized(authorization: Option<&[u8]>, token: &str) -> bool {
    let Some(presented) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else {
        return false;
    };
    presented.ct_eq(token.as_bytes()).into()
}

/// The dashboard's files under `/gemgate/ui/` (besides the page itself); the spend module serves
/// them. Named here, below the layer stack, because the admin-token layer lets them through.
pub const UI_ASSETS: [&str; 2] = ["app.js", "style.css"];

/// Whether `path` is the dashboard page or one of its files, which the admin token does not guard.
pub fn is_static_ui(path: &str) -> bool {
    path == "/gemgate/ui" || path.strip_prefix("/gemgate/ui/").is_some_and(|n| UI_ASSETS.contains(&n))
}

/// Logs a warning when the admin endpoints are open to every address the gateway listens on.
pub fn warn_if_open(config: &Config) {
    if config.server.admin_token.is_empty() && !config.server.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.server.listen,
            "server.admin_token is not set and the gateway listens beyond loopback: /gemgate/ and /metrics \
             (cache names, tenant scopes, timings) are open to anyone who can reach the port"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_are_everything_under_gemgate_but_tenant_operations() {
        for p in ["/metrics", "/gemgate/v1/caches", "/gemgate/ui", "/gemgate/v1/spend", "/gemgate/v1/operationsx"] {
            assert!(is_admin_path(p), "{p}");
        }
        for p in ["/gemgate/v1/operations", "/gemgate/v1/operations/abc", "/healthz", "/readyz", "/v1beta/models"] {
            assert!(!is_admin_path(p), "{p}");
        }
    }

    #[test]
    fn owned_paths_are_the_gateways_and_what_lies_below_them() {
        for p in ["/gemgate", "/gemgate/", "/gemgate/v1/nope", "/metrics", "/metrics/x", "/healthz", "/readyz/a"] {
            assert!(is_owned_path(p), "{p}");
        }
        for p in ["/gemgatex", "/metricsx", "/v1beta/gemgate/x", "/v1beta/models", "/", "/healthzz"] {
            assert!(!is_owned_path(p), "{p}");
        }
    }

    #[test]
    fn the_token_is_stripped_from_every_header_form_and_found_in_the_query() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        h.insert(API_KEY, "s3cret".parse().unwrap());
        h.insert("x-other", "s3cret".parse().unwrap());
        assert!(strip_from_headers(&mut h, "s3cret"));
        assert_eq!(h.len(), 1, "{h:?}");
        // A tenant's own credentials stay.
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer ya29.token".parse().unwrap());
        h.insert(API_KEY, "AIza-key".parse().unwrap());
        assert!(!strip_from_headers(&mut h, "s3cret"));
        assert_eq!(h.len(), 2);
        assert!(in_query(Some("alt=sse&key=s3cret"), "s3cret"));
        assert!(in_query(Some("key=s3%63ret"), "s3cret"), "percent-encoded");
        assert!(!in_query(Some("key=other&x=s3cret"), "s3cret"));
        assert!(!in_query(None, "s3cret"));
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(authorized(Some(b"Bearer s3cret"), "s3cret"));
        for wrong in [&b"Bearer s3cre"[..], b"Bearer s3cret2", b"bearer s3cret", b"s3cret", b""] {
            assert!(!authorized(Some(wrong), "s3cret"), "{}", String::from_utf8_lossy(wrong));
        }
        assert!(!authorized(None, "s3cret"));
    }
}
