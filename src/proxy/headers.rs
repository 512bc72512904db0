//! Which headers cross the gateway. Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection
//! and are dropped, and so are the gateway's own controls (every `x-gemgate-*` header); everything
//! else, credentials included, passes through unchanged. [`strip_request_headers`] is the one rule
//! for every request that goes upstream.

use http::{HeaderMap, HeaderName, header};

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            // The gateway reads the client's body itself; the upstream hop has its own framing.
            | "expect"
    )
}

/// The optional attribution header (`crate::spend`); it is the gateway's and never forwarded.
pub const TAG_HEADER: &str = "x-gemgate-tag";

/// The prefix every header the gateway reads or writes carries: such a header on a request is a
/// control for the gateway (defer, wait, deadline, tag, …), never meant for the upstream.
const GATEWAY_PREFIX: &str = "x-gemgate-";

fn is_gateway_only(name: &HeaderName) -> bool {
    name.as_str().starts_with(GATEWAY_PREFIX)
}

/// Headers to send upstream: the client's after [`strip_request_headers`], less `Host` (set from
/// the upstream URL).
pub fn copy_request_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = from.clone();
    strip_request_headers(&mut out);
    out.remove(header::HOST);
    out
}

/// The client's headers made ready to go upstream in place (no copy): less hop-by-hop ones, any
/// the `Connection` header names, and every `x-gemgate-*` control. `Host` is left for the sender
/// to replace with the upstream's. Other headers may change places; same-named ones keep their
/// order.
pub fn strip_request_headers(h: &mut HeaderMap) {
    strip_where(h, |n| is_hop_by_hop(n) || is_gateway_only(n));
}

/// Headers to return to the client: the upstream's, less hop-by-hop ones.
pub fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    let listed = connection_listed(from);
    for (name, value) in from {
        if is_hop_by_hop(name) || listed.iter().any(|l| l == name.as_str()) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// Removes hop-by-hop headers (and any the `Connection` header names) in place: a response is
/// passed on with its own header map, edited, instead of a copy.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    strip_where(h, is_hop_by_hop);
}

/// Removes, in one pass over the names, every header `drop` picks and any the `Connection`
/// header names.
fn strip_where(h: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    let listed = connection_listed(h);
    if listed.is_empty() && !h.keys().any(&drop) {
        return;
    }
    let names: Vec<HeaderName> =
        h.keys().filter(|n| drop(n) || listed.iter().any(|l| l == n.as_str())).cloned().collect();
    for name in names {
        h.remove(name);
    }
}

pub use crate::gemini::credential::owned_sensitive;

fn connection_listed(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Every header that must not reach the upstream, one by one: each is dropped alone, and a
    /// request carrying it keeps everything else.
    #[test]
    fn each_hop_by_hop_and_gateway_header_is_dropped() {
        let dropped = [
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "expect",
            "x-gemgate-tag",
            "x-gemgate-defer",
            "x-gemgate-wait",
            "x-gemgate-deadline",
            "x-gemgate-webhook",
            "x-gemgate-response-cache",
            "x-gemgate-anything-new",
        ];
        for name in dropped {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
            h.insert("x-goog-api-key", HeaderValue::from_static("k"));
            h.insert("content-type", HeaderValue::from_static("application/json"));
            let copied = copy_request_headers(&h);
            strip_request_headers(&mut h);
            assert_eq!(h, copied, "{name}");
            assert!(!h.contains_key(name), "{name} went upstream");
            assert_eq!(h.len(), 2, "{name}: {h:?}");
        }
        // Look-alikes are the client's and go on.
        for kept in ["x-gemgate", "x-gemgatex-tag", "x-goog-user-project", "x-server-timeout"] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(kept.as_bytes()).unwrap(), HeaderValue::from_static("1"));
            strip_request_headers(&mut h);
            assert!(h.contains_key(kept), "{kept}");
        }
    }

    #[test]
    fn drops_hop_by_hop_and_keeps_credentials() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-drop-me"));
        h.insert("x-drop-me", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("gw:8080"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-goog-api-key", HeaderValue::from_static("k"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let out = copy_request_headers(&h);
        assert_eq!(out.len(), 2);
        assert!(out.contains_key("x-goog-api-key") && out.contains_key("authorization"));
    }

    #[test]
    fn request_headers_stripped_in_place_are_the_copied_ones_plus_host() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("gw:8080"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-drop-me"));
        h.insert("x-drop-me", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert(TAG_HEADER, HeaderValue::from_static("team-a"));
        h.append("x-goog-api-key", HeaderValue::from_static("k"));
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        let copied = copy_request_headers(&h);
        strip_request_headers(&mut h);
        assert_eq!(h.remove(header::HOST).unwrap(), "gw:8080");
        assert_eq!(h, copied);
        let multi: Vec<_> = copied.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "2"]);
    }

    #[test]
    fn stripping_in_place_keeps_what_copying_keeps() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-drop-me"));
        h.insert("x-drop-me", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.insert("x-goog-upload-url", HeaderValue::from_static("http://u/1"));
        let mut copied = HeaderMap::new();
        copy_response_headers(&h, &mut copied);
        strip_hop_by_hop(&mut h);
        assert_eq!(h, copied);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
        assert!(!h.contains_key("x-drop-me") && !h.contains_key("transfer-encoding"));
    }
}
