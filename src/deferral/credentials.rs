//! Tenant credentials for the gateway's own batch calls, held in memory only and keyed by scope
//! (SHA-256 of the credential). The store never sees a key: after a restart a scope's queued work
//! waits until that tenant's next request (any request, polls included) or a configured service
//! key (see docs/deferral.md, "Credentials").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::gemini::Credential;

/// At most this many tenant credentials are held; the least recently used go first.
pub const MAX_TENANT_CREDENTIALS: u64 = 20_000;
/// A tenant credential not seen for this long is forgotten (its queued work then waits for the
/// tenant's next request, as after a restart).
pub const TENANT_CREDENTIAL_IDLE: Duration = Duration::from_secs(24 * 3600);

/// scope → credential. Service keys are pinned; tenant keys are refreshed by every request, and
/// bounded in number and idle time, because any client can send a made-up key.
#[derive(Clone)]
pub struct Credentials {
    service: Arc<HashMap<String, Credential>>,
    tenants: moka::sync::Cache<String, Credential>,
}

impl Default for Credentials {
    fn default() -> Self {
        Self::bounded(MAX_TENANT_CREDENTIALS, TENANT_CREDENTIAL_IDLE)
    }
}

impl Credentials {
    /// An empty map holding at most `max` tenant credentials, each for `idle` after its last use.
    pub fn bounded(max: u64, idle: Duration) -> Self {
        let tenants = moka::sync::Cache::builder().max_capacity(max).time_to_idle(idle).build();
        Self { service: Arc::default(), tenants }
    }

    /// Loads service keys from the named environment variables (missing ones are logged).
    pub fn with_service_keys(envs: &[String]) -> Self {
        let mut service = HashMap::new();
        for name in envs {
            match std::env::var(name).ok().filter(|k| !k.is_empty()) {
                Some(key) => {
                    if let Some(cred) = Credential::api_key(&key) {
                        let scope = crate::gemini::credential::key_scope(key.as_bytes());
                        tracing::info!(env = %name, scope = %&scope[..12], "service key loaded");
                        service.insert(scope, cred);
                    }
                }
                None => tracing::warn!(env = %name, "service key variable is not set"),
            }
        }
        Self { service: Arc::new(service), ..Self::default() }
    }

    /// Holds a tenant's credential (a service scope keeps its own). Answers whether the scope
    /// already had one: new work may then be waiting for it.
    pub fn remember(&self, scope: &str, cred: &Credential) -> bool {
        if self.service.contains_key(scope) {
            return true;
        }
        // The common case (the same key again) only refreshes the entry's idle time.
        let held = self.tenants.get(scope);
        if held.as_ref().is_some_and(|c| c.name == cred.name && c.value == cred.value) {
            return true;
        }
        self.tenants.insert(scope.to_string(), cred.clone());
        held.is_some()
    }

    pub fn get(&self, scope: &str) -> Option<Credential> {
        self.service.get(scope).cloned().or_else(|| self.tenants.get(scope))
    }

    /// Tenant credentials held now (after pending evictions are applied).
    pub fn tenant_count(&self) -> u64 {
        self.tenants.run_pending_tasks();
        self.tenants.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn cred(key: &str) -> (String, Credential) {
        let mut h = HeaderMap::new();
        h.insert("x-goog-api-key", HeaderValue::from_str(key).unwrap());
        Credential::scoped(&h, None).unwrap()
    }

    #[test]
    fn made_up_keys_cannot_grow_the_map_past_its_bound() {
        let creds = Credentials::bounded(100, Duration::from_secs(3600));
        for i in 0..5_000 {
            let (scope, c) = cred(&format!("made-up-{i}"));
            creds.remember(&scope, &c);
        }
        let n = creds.tenant_count();
        assert!(n <= 100, "{n} credentials held");
        let (scope, c) = cred("made-up-4999");
        creds.remember(&scope, &c);
        assert!(creds.get(&scope).is_some(), "a recent key stays usable");
    }

    #[test]
    fn remembering_tells_whether_the_scope_was_held_already() {
        let creds = Credentials::default();
        let (scope, c) = cred("first-key");
        assert!(!creds.remember(&scope, &c), "a new scope");
        assert!(creds.remember(&scope, &c), "the same key again");
        let (_, other) = cred("second-key");
        assert!(creds.remember(&scope, &other), "a scope held with another value is still held");
        assert_eq!(creds.get(&scope).unwrap().value, "second-key", "and now holds the newer value");
    }

    #[test]
    fn idle_credentials_expire() {
        let creds = Credentials::bounded(100, Duration::from_millis(50));
        let (scope, c) = cred("idle-key");
        creds.remember(&scope, &c);
        assert!(creds.get(&scope).is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(creds.get(&scope).is_none());
    }

    #[test]
    fn the_stored_value_does_not_share_the_request_buffer() {
        // A header parsed by the server is a slice of the connection's whole header buffer;
        // keeping that slice would keep every header (and any padding) alive with it.
        let buffer = bytes::Bytes::from(format!("{}secret-key-1", "x".repeat(30_000)));
        let value = HeaderValue::from_maybe_shared(buffer.slice(30_000..)).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-goog-api-key", value);
        let (scope, c) = Credential::scoped(&h, None).unwrap();
        let creds = Credentials::default();
        creds.remember(&scope, &c);
        let stored = creds.get(&scope).unwrap();
        assert_eq!(stored.value, "secret-key-1");
        let range = buffer.as_ptr_range();
        assert!(!range.contains(&stored.value.as_bytes().as_ptr()), "stored value points into the request buffer");
    }
}
