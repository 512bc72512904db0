//! Where a Gemini request carries its credential (`x-goog-api-key`, `?key=`, `Authorization`),
//! the one type that holds it, and the scope (its hash) that stands for the tenant everywhere
//! the gateway remembers something. The value itself never reaches a log, a metric or the store.

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const API_KEY: &str = "x-goog-api-key";

/// A tenant's credential, ready to be sent as a header on the gateway's own calls. It is copied
/// out of the request it came from and marked sensitive; Debug never shows the value.
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
    /// An API key, sent as `x-goog-api-key`.
    pub fn api_key(key: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(key).ok()?;
        value.set_sensitive(true);
        Some(Self { name: HeaderName::from_static(API_KEY), value })
    }

    /// The credential of a request: `x-goog-api-key`, `?key=` (sent on as the header), or
    /// `Authorization`.
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Option<Self> {
        if let Some(v) = headers.get(API_KEY) {
            return Some(Self { name: HeaderName::from_static(API_KEY), value: owned_sensitive(v) });
        }
        if let Some((_, k)) = query.and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "key")) {
            return Self::api_key(&k);
        }
        headers
            .get(http::header::AUTHORIZATION)
            .map(|v| Self { name: http::header::AUTHORIZATION, value: owned_sensitive(v) })
    }

    /// The request's scope and credential, both or neither.
    pub fn scoped(headers: &HeaderMap, query: Option<&str>) -> Option<(String, Self)> {
        Some((scope_of(headers, query)?, Self::from_request(headers, query)?))
    }
}

/// SHA-256 (hex) of the credential a request carries: `x-goog-api-key`, `?key=`, or an
/// `Authorization` header. `None` when there is none (such requests are never cached or queued).
pub fn scope_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let cred = headers
        .get(API_KEY)
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| {
            query.and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "key").map(|(_, v)| v.as_bytes().to_vec())
            })
        })
        .or_else(|| headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec()))?;
    if cred.is_empty() {
        return None;
    }
    Some(key_scope(&cred))
}

/// The scope of a raw key (a configured service key, say).
///
/// Each thread remembers the last key it hashed and its scope: a sidecar mostly sees one key, and
/// the hash (SHA-256, then hex) costs more than the rest of a small request's bookkeeping. One
/// entry per thread bounds what is kept; the key is compared in constant time so that the time
/// taken says nothing about the key remembered.
pub fn key_scope(key: &[u8]) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Box<[u8]>, String)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((k, scope)) if bool::from(k.ct_eq(key)) => scope.clone(),
            _ => {
                let scope = hex::encode(Sha256::digest(key));
                *last = Some((key.into(), scope.clone()));
                scope
            }
        }
    })
}

/// A copy of `v` in its own allocation, marked sensitive. A header parsed by the server is a slice
/// of the connection's whole header buffer, so a value kept beyond the request (a credential)
/// must be copied out, or every header of that request stays in memory with it.
pub fn owned_sensitive(v: &HeaderValue) -> HeaderValue {
    let mut out = HeaderValue::from_bytes(v.as_bytes()).expect("was a valid header value");
    out.set_sensitive(true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let mut h = HeaderMap::new();
        h.insert(API_KEY, HeaderValue::from_static("SECRET"));
        let c = Credential::from_request(&h, None).unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
        let q = Credential::from_request(&HeaderMap::new(), Some("key=QK")).unwrap();
        assert_eq!(q.value, "QK");
    }

    #[test]
    fn scope_is_the_same_however_the_key_is_sent() {
        let mut h = HeaderMap::new();
        assert_eq!(scope_of(&h, None), None);
        let q = scope_of(&h, Some("alt=sse&key=abc")).unwrap();
        h.insert(API_KEY, HeaderValue::from_static("abc"));
        assert_eq!(scope_of(&h, None).unwrap(), q);
        assert_eq!(key_scope(b"abc"), q);
        let (scope, cred) = Credential::scoped(&h, None).unwrap();
        assert_eq!((scope, cred.value), (q, HeaderValue::from_static("abc")));
    }

    #[test]
    fn the_remembered_scope_is_never_another_keys() {
        let hash = |k: &[u8]| hex::encode(Sha256::digest(k));
        // Alternating keys, repeats, keys of equal length differing in one byte, the empty key.
        let keys: [&[u8]; 7] = [b"key-a", b"key-a", b"key-b", b"key-a", b"", b"key-aa", b"key-b"];
        for k in keys {
            assert_eq!(key_scope(k), hash(k), "{:?}", String::from_utf8_lossy(k));
        }
    }
}
