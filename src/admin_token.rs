//! `server.admin_token`: when set, the gateway's own endpoints (everything under `/gemgate/` and
//! `/metrics`) require `Authorization: Bearer <token>`. Deferred operations are the exception:
//! each tenant reads its own with its own API key, as before, and never sees another's. The
//! `/gemgate/ui` page's static files are let through too: a browser cannot send a header when it
//! navigates, and the page holds no data; its script sends the token on every call it makes. The check
//! itself runs in the layer stack (`layers::AdminToken`).

use crate::config::Config;
use subtle::ConstantTimeEq;

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
    fn only_the_exact_bearer_token_passes() {
        assert!(authorized(Some(b"Bearer s3cret"), "s3cret"));
        for wrong in [&b"Bearer s3cre"[..], b"Bearer s3cret2", b"bearer s3cret", b"s3cret", b""] {
            assert!(!authorized(Some(wrong), "s3cret"), "{}", String::from_utf8_lossy(wrong));
        }
        assert!(!authorized(None, "s3cret"));
    }
}
