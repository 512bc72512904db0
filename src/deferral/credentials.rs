//! Tenant credentials for the gateway's own batch calls, held in memory only and keyed by scope
//! (SHA-256 of the credential). The store never sees a key: after a restart a scope's queued work
//! waits until that tenant's next request (any request, polls included) or a configured service
//! key (see docs/deferral.md, "Credentials").

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One credential, ready to be sent as a header. Debug never prints the value.
#[derive(Clone)]
pub struct Credential {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: *****)", self.name)
    }
}

impl Credential {
    fn api_key(key: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(key).ok()?;
        value.set_sensitive(true);
        Some(Self { name: HeaderName::from_static("x-goog-api-key"), value })
    }

    /// The credential a request carries (`x-goog-api-key`, `?key=`, `Authorization`) and its
    /// scope, computed exactly as caching computes it.
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Option<(String, Self)> {
        let scope = crate::caching::scope_of(headers, query)?;
        let cred = if let Some(v) = headers.get("x-goog-api-key") {
            Self { name: HeaderName::from_static("x-goog-api-key"), value: v.clone() }
        } else if let Some((_, k)) =
            query.and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "key"))
        {
            Self::api_key(&k)?
        } else {
            let v = headers.get(http::header::AUTHORIZATION)?;
            Self { name: http::header::AUTHORIZATION, value: v.clone() }
        };
        Some((scope, cred))
    }
}

/// scope → credential. Service keys are pinned; tenant keys are refreshed by every request.
#[derive(Clone, Default)]
pub struct Credentials(Arc<RwLock<HashMap<String, Credential>>>);

impl Credentials {
    /// Loads service keys from the named environment variables (missing ones are logged).
    pub fn with_service_keys(envs: &[String]) -> Self {
        let c = Self::default();
        for name in envs {
            match std::env::var(name).ok().filter(|k| !k.is_empty()) {
                Some(key) => {
                    if let Some(cred) = Credential::api_key(&key) {
                        let scope = hex::encode(Sha256::digest(key.as_bytes()));
                        tracing::info!(env = %name, scope = %&scope[..12], "service key loaded");
                        c.remember(&scope, cred);
                    }
                }
                None => tracing::warn!(env = %name, "service key variable is not set"),
            }
        }
        c
    }

    pub fn remember(&self, scope: &str, cred: Credential) {
        // The common case (the same key again) only takes the read lock.
        let same = self.0.read().ok().and_then(|m| m.get(scope).map(|c| c.name == cred.name && c.value == cred.value));
        if same == Some(true) {
            return;
        }
        if let Ok(mut m) = self.0.write() {
            m.insert(scope.to_string(), cred);
        }
    }

    pub fn get(&self, scope: &str) -> Option<Credential> {
        self.0.read().ok()?.get(scope).cloned()
    }
}
