//! Keeps credentials out of logs: `?key=` values are masked wherever a URL is printed.

/// Returns the path and query with the value of any `key` query parameter replaced by `*****`.
pub fn redact_path_and_query(pq: &str) -> String {
    let Some((path, query)) = pq.split_once('?') else {
        return pq.to_string();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=*****"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

/// Same as [`redact_path_and_query`] for a full URL.
pub fn redact_url(url: &str) -> String {
    match url.find('?') {
        Some(_) => redact_path_and_query(url),
        None => url.to_string(),
    }
}

/// Whether a raw (still percent-encoded) query name names a credential. The name is decoded
/// first, as the upstream decodes it: `%6Bey` and `k%65y` are `key`.
fn is_secret_param(raw: &str) -> bool {
    let decoded: String = url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| k.into_owned() + &v).collect();
    decoded.eq_ignore_ascii_case("key") || decoded.eq_ignore_ascii_case("access_token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_key_parameter() {
        assert_eq!(
            redact_path_and_query("/v1beta/models?alt=sse&key=SECRET123&x=1"),
            "/v1beta/models?alt=sse&key=*****&x=1"
        );
        assert_eq!(redact_path_and_query("/v1/models"), "/v1/models");
        assert!(!redact_url("http://h/v1?key=abc").contains("abc"));
    }

    #[test]
    fn masks_percent_encoded_key_names() {
        for q in ["%6Bey=S1", "k%65y=S1", "%6b%65%79=S1", "KEY=S1", "access%5Ftoken=S1"] {
            let out = redact_path_and_query(&format!("/v1beta/models?{q}"));
            assert!(!out.contains("S1"), "{q} → {out}");
        }
        assert_eq!(redact_path_and_query("/v?keys=a"), "/v?keys=a");
    }
}
